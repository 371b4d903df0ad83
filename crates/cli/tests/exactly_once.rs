//! Exactly-once effects end to end: the real `redrive serve` pushes 2,000
//! order events to the example receiver (`examples/receiver-orders`, built
//! on `redrive-receiver`), which is killed with SIGKILL several times
//! mid-stream and restarted; then every delivery is redriven once by hand.
//! Every order must be recorded exactly once while the receiver saw more
//! than 2,000 pushes. Once with the receiver on SQLite, once on PostgreSQL
//! (REDRIVE_TEST_DATABASE_URL; without it that test is reported ignored).
//!
//! The receiver binary is the one cargo builds beside `redrive`; the
//! example has a test of the same name, so
//! `cargo test --workspace --test exactly_once` builds both.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use serde_json::{Value, json};

mod common;

use common::{Api, RunningServer};

const TOKEN: &str = "exactly-once-admin-token-0123456789";
const EVENTS: usize = 2_000;
/// Orders recorded when the receiver is killed, one kill each.
const KILL_AT: [usize; 4] = [250, 650, 1_050, 1_450];
/// How long any one wait may take before the test gives up.
const PATIENCE: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// The example receiver, as a process
// ---------------------------------------------------------------------------

/// `receiver-orders`, next to the `redrive` binary.
fn receiver_binary() -> PathBuf {
    let binary = Path::new(common::REDRIVE).with_file_name("receiver-orders");
    let built = std::fs::metadata(&binary)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| {
            panic!(
                "{} is missing: build it with `cargo build --workspace --bins`",
                binary.display()
            )
        });
    // A binary older than its sources would test old code.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for dir in ["examples/receiver-orders/src", "crates/receiver/src"] {
        for entry in std::fs::read_dir(root.join(dir))
            .into_iter()
            .flatten()
            .flatten()
        {
            let changed = entry.metadata().and_then(|m| m.modified());
            if let Ok(changed) = changed {
                assert!(
                    changed <= built,
                    "{} is older than {}: run `cargo build --workspace --bins`",
                    binary.display(),
                    entry.path().display()
                );
            }
        }
    }
    binary
}

struct Receiver {
    child: Child,
}

impl Receiver {
    /// Starts the receiver on `port`, its log in `log`, and waits until it
    /// listens.
    fn start(port: u16, secret: &str, database: &str, log: &Path) -> Receiver {
        let log_file = std::fs::File::create(log).expect("a log file");
        let mut child = Command::new(receiver_binary())
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--secret", secret, "--database", database])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .spawn()
            .expect("receiver-orders starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        assert!(
            line.starts_with("receiver listening on "),
            "the receiver did not start: {line:?}; log:\n{}",
            common::read(log)
        );
        Receiver { child }
    }

    fn kill_9(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("the killed receiver is reaped");
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the receiver's logs say it answered, over every run.
fn answered(dir: &Path) -> (usize, usize) {
    let (mut pushes, mut duplicates) = (0, 0);
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if !entry.file_name().to_string_lossy().starts_with("receiver-") {
            continue;
        }
        for line in common::read(&entry.path()).lines() {
            if line.contains("push answered") {
                pushes += 1;
                duplicates += usize::from(line.contains("outcome=\"duplicate\""));
            }
        }
    }
    (pushes, duplicates)
}

/// The last lines of run `run`'s log.
fn log_tail(dir: &Path, run: usize) -> String {
    let log = common::read(&dir.join(format!("receiver-{run}.log")));
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

// ---------------------------------------------------------------------------
// The receiver's database, read by the test
// ---------------------------------------------------------------------------

enum Database {
    Sqlite(PathBuf),
    Postgres {
        client: tokio_postgres::Client,
        schema: String,
    },
}

impl Database {
    /// Rows of the orders table per event id.
    async fn orders(&self) -> BTreeMap<String, i64> {
        match self {
            Database::Sqlite(path) => {
                let Ok(conn) = rusqlite::Connection::open(path) else {
                    return BTreeMap::new();
                };
                let Ok(mut query) =
                    conn.prepare("SELECT event_id, count(*) FROM orders GROUP BY event_id")
                else {
                    // Not created yet.
                    return BTreeMap::new();
                };
                query
                    .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
                    .expect("the orders")
                    .collect::<Result<_, _>>()
                    .expect("the orders")
            }
            Database::Postgres { client, schema } => {
                let sql =
                    format!("SELECT event_id, count(*) FROM {schema}.orders GROUP BY event_id");
                match client.query(&sql, &[]).await {
                    Ok(rows) => rows
                        .iter()
                        .map(|row| (row.get::<_, String>(0), row.get::<_, i64>(1)))
                        .collect(),
                    Err(_) => BTreeMap::new(),
                }
            }
        }
    }

    async fn recorded(&self) -> usize {
        self.orders().await.len()
    }
}

// ---------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------

/// A port free now, for the receiver to take and take again after each
/// restart (the subscription's endpoint names it).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}

/// Every delivery of the subscription: id → attempts, once all `EVENTS`
/// are delivered and `done` holds for each.
async fn wait_all_delivered(api: &Api, done: impl Fn(&Value) -> bool) -> BTreeMap<String, u64> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let delivered = api.deliveries_in("orders-receiver", "delivered").await;
        if delivered.len() == EVENTS && delivered.iter().all(&done) {
            return delivered
                .iter()
                .map(|d| {
                    (
                        d["id"].as_str().unwrap_or_default().to_owned(),
                        d["attempts"].as_u64().unwrap_or_default(),
                    )
                })
                .collect();
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {EVENTS} delivered after {PATIENCE:?}",
            delivered.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn run(database_arg: &str, database: Database, dir: &Path) {
    let started = Instant::now();
    let server =
        RunningServer::try_start_in_temp_dir(TOKEN, &["--publish-rate-limit", "unlimited"])
            .unwrap_or_else(|problem| panic!("redrive serve did not start: {problem}"));
    let api = Api::new(&server.url, TOKEN);
    let port = free_port();
    api.create_topic("orders").await;
    api.create_subscription(json!({
        "name": "orders-receiver",
        "topic": "orders",
        "endpoint": format!("http://127.0.0.1:{port}/orders"),
        "retry_policy": {"backoff": {"kind": "fixed", "interval": "0.1s"}},
        "timeout": "5s",
    }))
    .await;
    let (status, body) = api.get("/v1/subscriptions/orders-receiver/secret").await;
    assert_eq!(status, 200, "{body}");
    let secret = body["secret"].as_str().expect("a secret").to_owned();

    let mut runs = 1;
    let start_receiver = |run: usize| {
        let log = dir.join(format!("receiver-{run}.log"));
        Receiver::start(port, &secret, database_arg, &log)
    };
    let mut receiver = start_receiver(runs);

    for batch in 0..EVENTS / 1000 {
        let events: Vec<Value> = (batch * 1000..(batch + 1) * 1000)
            .map(|i| {
                json!({
                    "specversion": "1.0",
                    "id": format!("order-{i}"),
                    "source": "/shop",
                    "type": "order.created",
                    "datacontenttype": "application/json",
                    "data": {"total": i},
                })
            })
            .collect();
        let (status, body) = api.publish_batch("orders", &events).await;
        assert_eq!(status, 202, "{body}");
    }

    // Kill the receiver mid-stream, several times.
    let mut killed_at = Vec::new();
    for threshold in KILL_AT {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let recorded = database.recorded().await;
            if recorded >= threshold {
                receiver.kill_9();
                killed_at.push(recorded);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "stuck at {recorded} orders; the receiver's log ends with:\n{}",
                log_tail(dir, runs)
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        runs += 1;
        receiver = start_receiver(runs);
    }
    let first_pass = wait_all_delivered(&api, |_| true).await;

    // Redrive every delivery once by hand, killing the receiver halfway.
    let ids: Vec<String> = first_pass.keys().cloned().collect();
    for (half, chunk) in ids.chunks(EVENTS / 2).enumerate() {
        let statuses: Vec<reqwest::StatusCode> = futures::stream::iter(chunk)
            .map(|id| {
                let api = &api;
                async move {
                    api.post(&format!("/v1/deliveries/{id}/retry"), json!({}))
                        .await
                        .0
                }
            })
            .buffer_unordered(16)
            .collect()
            .await;
        assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
        if half == 0 {
            receiver.kill_9();
            runs += 1;
            receiver = start_receiver(runs);
        }
    }
    let second_pass = wait_all_delivered(&api, |d| {
        let id = d["id"].as_str().unwrap_or_default();
        d["attempts"].as_u64() > first_pass.get(id).copied()
    })
    .await;
    drop(receiver);

    let orders = database.orders().await;
    let missing = (0..EVENTS)
        .filter(|i| !orders.contains_key(&format!("order-{i}")))
        .count();
    let doubled = orders.values().filter(|rows| **rows > 1).count();
    let (pushes, duplicates) = answered(dir);
    let attempts: u64 = second_pass.values().sum();
    eprintln!(
        "{EVENTS} events, receiver killed at {killed_at:?} orders and once during the redrive \
         ({runs} runs): {missing} missing, {doubled} doubled; the receiver answered {pushes} \
         pushes ({duplicates} duplicates, {lost} of them retries of a push whose effects \
         committed but whose answer was lost), redrive made {attempts} attempts; {:.1}s",
        started.elapsed().as_secs_f64(),
        lost = duplicates.saturating_sub(EVENTS)
    );
    assert_eq!(
        (missing, doubled),
        (0, 0),
        "orders: {} distinct",
        orders.len()
    );
    assert_eq!(orders.len(), EVENTS);
    assert!(
        pushes > EVENTS,
        "the receiver answered only {pushes} pushes"
    );
    // Every manual redrive was answered as a duplicate, without a new row.
    assert!(duplicates >= EVENTS, "{duplicates} duplicates");
    assert!(
        killed_at.iter().all(|at| *at < EVENTS),
        "a kill came after the stream ended: {killed_at:?}"
    );
}

async fn every_order_is_recorded_exactly_once_through_kills_and_redrives_on_sqlite(_: ()) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("orders.db");
    let arg = path.to_string_lossy().into_owned();
    run(&arg, Database::Sqlite(path), dir.path()).await;
}

async fn every_order_is_recorded_exactly_once_through_kills_and_redrives_on_postgres(url: String) {
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect to REDRIVE_TEST_DATABASE_URL");
    tokio::spawn(connection);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let schema = format!("receiver_{}_{nanos}", std::process::id());
    client
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .expect("a schema");
    // The receiver creates its tables in the fresh schema.
    let separator = if url.contains('?') { '&' } else { '?' };
    let receiver_url = format!("{url}{separator}options=-c%20search_path%3D{schema}");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let database = Database::Postgres {
        client,
        schema: schema.clone(),
    };
    run(&receiver_url, database, dir.path()).await;
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect again");
    tokio::spawn(connection);
    let _ = client
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await;
}

fn main() -> std::process::ExitCode {
    use redrive_testkit::{Need, Runtime, trial};
    redrive_testkit::run(vec![
        trial(
            "every_order_is_recorded_exactly_once_through_kills_and_redrives_on_sqlite",
            &Need::Met(()),
            Runtime::MultiThread(2),
            every_order_is_recorded_exactly_once_through_kills_and_redrives_on_sqlite,
        ),
        trial(
            "every_order_is_recorded_exactly_once_through_kills_and_redrives_on_postgres",
            &redrive_testkit::postgres(),
            Runtime::MultiThread(2),
            every_order_is_recorded_exactly_once_through_kills_and_redrives_on_postgres,
        ),
    ])
}

//! Durability of the real `redrive` binary: it is started as a child
//! process on a data directory, killed with SIGKILL or stopped with SIGTERM,
//! and restarted on the same directory. The webhook endpoint is a real HTTP
//! server in this test process.

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

mod common;

use common::{Api, Endpoint, RunningServer};

/// The admin token the server runs with, as users would run it.
const TOKEN: &str = "durability-admin-token-0123456789";

/// `redrive serve` on `data`, logging to `log`.
async fn start_server(data: &Path, log: &Path) -> RunningServer {
    RunningServer::start_async(common::serve(TOKEN, data), log).await
}

/// How long a test waits for what should happen within a second.
const PATIENCE: Duration = Duration::from_secs(10);

/// How long a graceful stop may take.
const STOP_PATIENCE: Duration = Duration::from_secs(20);

fn event(id: &str) -> Value {
    json!({
        "specversion": "1.0",
        "id": id,
        "source": "/durability",
        "type": "order.created",
        "datacontenttype": "application/json",
        "data": {"id": id},
    })
}

// ---------------------------------------------------------------------------
// The endpoint
// ---------------------------------------------------------------------------

/// What the endpoint knows about one ce-id.
#[derive(Clone, Copy, Debug, Default)]
struct Seen {
    pushes: usize,
    highest_attempt: u32,
    /// Some push of it was answered 200 while the redrive that sent it was
    /// alive (arrived and finished within one phase, not while killing).
    acknowledged: bool,
}

/// Phases of a kill test, so that a push in flight at the kill, whose
/// answer nobody read, does not count as delivered. The first process runs
/// in phase 0, where every endpoint starts.
const KILLING: u8 = 1;
const SECOND_PROCESS: u8 = 2;

/// How often a test looks at what the endpoint received.
const POLL: Duration = Duration::from_millis(5);

/// What the endpoint received, per ce-id.
fn per_event(endpoint: &Endpoint) -> BTreeMap<String, Seen> {
    endpoint
        .by_ce_id()
        .into_iter()
        .map(|(id, pushes)| {
            let seen = Seen {
                pushes: pushes.len(),
                highest_attempt: pushes
                    .iter()
                    .map(|push| {
                        push.header("redrive-attempt")
                            .and_then(|attempt| attempt.parse().ok())
                            .unwrap_or(0)
                    })
                    .max()
                    .unwrap_or(0),
                acknowledged: pushes
                    .iter()
                    .any(|push| push.acknowledged_unless_in(KILLING)),
            };
            (id, seen)
        })
        .collect()
}

/// Distinct ce-ids acknowledged.
fn acknowledged(endpoint: &Endpoint) -> usize {
    per_event(endpoint)
        .values()
        .filter(|s| s.acknowledged)
        .count()
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

async fn kill_9_mid_delivery_loses_no_accepted_event(_: ()) {
    const EVENTS: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let endpoint = Endpoint::ok_after(Duration::from_millis(40)).await;

    let first = start_server(&data, &dir.path().join("first.log")).await;
    let api = Api::new(&first.url, TOKEN);
    common::create_orders_hook(&api, &endpoint.url, "0.1s", "2s", 4).await;
    let mut accepted = HashSet::new();
    for batch in 0..EVENTS / 50 {
        let events: Vec<Value> = (0..50)
            .map(|i| event(&format!("e-{:03}", batch * 50 + i)))
            .collect();
        let (status, body) = api.publish_batch("orders", &events).await;
        assert_eq!(status, 202, "{body}");
        for outcome in body["events"].as_array().unwrap() {
            assert_eq!(outcome["duplicate"], false, "{outcome}");
            accepted.insert(outcome["id"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(accepted.len(), EVENTS);

    // Some delivered, four in flight, the rest waiting: now kill -9.
    assert!(
        endpoint
            .wait_until(Duration::from_secs(20), POLL, |e| e.unique() >= 40)
            .await,
        "deliveries did not start; log:\n{}",
        first.log()
    );
    endpoint.set_phase(KILLING);
    first.kill_9();
    let at_kill = endpoint.unique();
    assert!(
        at_kill < EVENTS,
        "every event was delivered before the kill; nothing was left to recover"
    );

    endpoint.set_phase(SECOND_PROCESS);
    let second = start_server(&data, &dir.path().join("second.log")).await;
    let api = Api::new(&second.url, TOKEN);
    endpoint
        .wait_until(Duration::from_secs(60), POLL, |e| acknowledged(e) >= EVENTS)
        .await;
    let seen = per_event(&endpoint);
    let missing: Vec<&String> = accepted
        .iter()
        .filter(|id| !seen.get(*id).is_some_and(|s| s.acknowledged))
        .collect();
    assert!(
        missing.is_empty() && seen.len() == EVENTS,
        "{} accepted events were never answered 200 to a live redrive (e.g. {:?}); log:\n{}",
        missing.len(),
        missing.iter().take(5).collect::<Vec<_>>(),
        second.log()
    );

    // The store agrees: every delivery ends delivered.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut delivered = api.count("orders-hook", "delivered").await;
    while delivered < EVENTS && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        delivered = api.count("orders-hook", "delivered").await;
    }
    let duplicates = endpoint.count() - EVENTS;
    let repeated = seen.values().filter(|s| s.pushes > 1).count();
    // An endpoint that always answers 200 sees a second attempt only when
    // the first one was interrupted.
    let interrupted = seen.values().filter(|s| s.highest_attempt > 1).count();
    assert_eq!(
        delivered, EVENTS,
        "deliveries recorded as delivered ({duplicates} duplicate pushes)"
    );
    assert_eq!(api.count("orders-hook", "failed").await, 0);
    // The deliveries in flight at the kill came back as later attempts.
    assert!(
        interrupted >= 1,
        "no delivery was in flight at the kill ({at_kill} of {EVENTS} received by then)"
    );
    eprintln!(
        "kill -9 after {at_kill}/{EVENTS} events: no loss; {duplicates} duplicate pushes \
         over {repeated} events; {interrupted} events retried after the restart"
    );
}

async fn second_server_on_a_data_dir_in_use_exits_with_an_error(_: ()) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let first = start_server(&data, &dir.path().join("first.log")).await;

    let data_arg = data.clone();
    let (status, stdout, stderr) = tokio::task::spawn_blocking(move || {
        let mut second = common::serve(TOKEN, &data_arg)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("redrive starts");
        let status = common::wait_with_timeout(&mut second, Duration::from_secs(20));
        if status.is_none() {
            let _ = second.kill();
            let _ = second.wait();
        }
        let mut stdout = String::new();
        let mut stderr = String::new();
        second
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut stdout)
            .unwrap();
        second
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        (status, stdout, stderr)
    })
    .await
    .unwrap();

    let status = status.expect("the second redrive should exit, not run");
    assert!(!status.success(), "it exited with {status}");
    assert!(
        stderr.contains("in use") && stderr.contains(&data.display().to_string()),
        "stderr should say the directory is in use: {stderr}"
    );
    assert!(!stdout.contains("listening"), "stdout: {stdout}");

    // The first one is unharmed.
    let (status, body) = Api::new(&first.url, TOKEN).get("/healthz").await;
    assert_eq!(status, 200, "{body}");
}

async fn data_survives_a_clean_restart(_: ()) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let endpoint = Endpoint::ok().await;

    let first = start_server(&data, &dir.path().join("first.log")).await;
    let api = Api::new(&first.url, TOKEN);
    common::create_orders_hook(&api, &endpoint.url, "0.1s", "2s", 4).await;
    let events: Vec<Value> = ["a", "b", "c"].iter().map(|id| event(id)).collect();
    let (status, body) = api.publish_batch("orders", &events).await;
    assert_eq!(status, 202, "{body}");
    assert!(
        endpoint
            .wait_until(Duration::from_secs(10), POLL, |e| e.unique() >= 3)
            .await,
        "log:\n{}",
        first.log()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while api.count("orders-hook", "delivered").await < 3 {
        assert!(Instant::now() < deadline, "not delivered before the stop");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = first.terminate(STOP_PATIENCE);
    assert!(
        status.success(),
        "SIGTERM should end redrive cleanly: {status}"
    );

    let second = start_server(&data, &dir.path().join("second.log")).await;
    let api = Api::new(&second.url, TOKEN);
    let (status, body) = api.get("/v1/topics/orders").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = api.get("/v1/subscriptions/orders-hook").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["endpoint"], endpoint.url.as_str());
    assert_eq!(body["max_concurrency"], 4);
    let (status, body) = api
        .get("/v1/subscriptions/orders-hook/deliveries?limit=10")
        .await;
    assert_eq!(status, 200, "{body}");
    let deliveries = body["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 3, "{body}");
    for delivery in deliveries {
        assert_eq!(delivery["state"], "delivered", "{delivery}");
        let (_, detail) = api
            .get(&format!(
                "/v1/deliveries/{}",
                delivery["id"].as_str().unwrap()
            ))
            .await;
        assert_eq!(
            detail["attempt_log"].as_array().unwrap().len(),
            1,
            "{detail}"
        );
        assert_eq!(detail["attempt_log"][0]["status"], 200);
    }

    // Nothing is pushed again, duplicates are still known, and new events flow.
    let (status, body) = api.publish_batch("orders", &events[..1]).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["events"][0]["duplicate"], true, "{body}");
    let (status, body) = api.publish_batch("orders", &[event("d")]).await;
    assert_eq!(status, 202, "{body}");
    assert!(
        endpoint
            .wait_until(Duration::from_secs(10), POLL, |e| e.unique() >= 4)
            .await,
        "log:\n{}",
        second.log()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(endpoint.count(), 4, "an event was pushed twice");
}

// ---------------------------------------------------------------------------
// A full disk
// ---------------------------------------------------------------------------

/// A tmpfs of a few megabytes mounted on a fresh directory, unmounted when
/// dropped: a disk that fills in milliseconds.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// None when this process may not mount one (it needs root).
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        mounted.then_some(SmallDisk { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file until the disk refuses more; returns its path.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.path().join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        loop {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(err) if err.raw_os_error() == Some(28) => break,
                Err(err) => panic!("filling the disk: {err}"),
            }
        }
        // The last partial chunk, byte by byte into the last page.
        while file.write(&[0]).is_ok_and(|n| n == 1) {}
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Publishes one event; the status and the `Retry-After` header.
async fn publish_one(api: &Api, id: &str) -> (u16, Option<String>) {
    let response = api
        .http
        .post(format!("{}/v1/topics/orders/events", api.base))
        .header("content-type", "application/cloudevents+json")
        .body(event(id).to_string())
        .send()
        .await
        .expect("the API answers");
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    (response.status().as_u16(), retry_after)
}

async fn readyz(api: &Api) -> (StatusCode, Value) {
    api.get("/readyz").await
}

async fn a_full_disk_answers_503_logs_little_and_recovers_without_a_double_push(_: ()) {
    let disk = SmallDisk::mount("8m").expect("a tmpfs (mounting one worked at start)");
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("redrive.log");
    let mut command = common::serve(TOKEN, &disk.path().join("data"));
    // The flood below goes faster than the default per-token rate.
    command.args(["--log-format", "json", "--publish-rate-limit", "unlimited"]);
    let server = RunningServer::start_async(command, &log).await;
    let api = Api::new(&server.url, TOKEN);
    // Each push takes long enough for the disk to fill while it is under way.
    let endpoint = Endpoint::ok_after(Duration::from_millis(400)).await;
    common::create_orders_hook(&api, &endpoint.url, "0.1s", "2s", 64).await;

    let mut accepted: Vec<String> = (0..16).map(|i| format!("early-{i}")).collect();
    let early: Vec<Value> = accepted.iter().map(|id| event(id)).collect();
    let (status, body) = api.publish_batch("orders", &early).await;
    assert_eq!(status, 202, "{body}");
    assert!(
        endpoint
            .wait_until(PATIENCE, POLL, |e| e.unique() >= early.len())
            .await,
        "log:\n{}",
        server.log()
    );
    let filler = disk.fill();

    // Publishes are answered 503 with Retry-After (a few may still fit).
    let mut refused = Vec::new();
    let flood_started = Instant::now();
    let mut n = 0;
    while flood_started.elapsed() < Duration::from_millis(1500) || refused.is_empty() {
        assert!(
            flood_started.elapsed() < PATIENCE,
            "no publish was refused on a full disk; log:\n{}",
            server.log()
        );
        let id = format!("flood-{n}");
        n += 1;
        match publish_one(&api, &id).await {
            (202, _) => accepted.push(id),
            (503, Some(retry_after)) => {
                assert!(
                    retry_after.parse::<u64>().is_ok_and(|s| s >= 1),
                    "{retry_after}"
                );
                refused.push(id);
            }
            other => panic!("publish on a full disk answered {other:?}"),
        }
    }
    let (status, body) = readyz(&api).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["checks"]["store"]["writable"], false, "{body}");
    let errors = server
        .log()
        .lines()
        .filter(|line| line.contains(r#""level":"ERROR""#))
        .count();
    eprintln!(
        "full disk: {} publishes refused, {} accepted, {errors} error lines",
        refused.len(),
        accepted.len()
    );
    assert!(
        errors <= 3,
        "{errors} error lines for {} refused publishes; log:\n{}",
        refused.len(),
        server.log()
    );

    // Space comes back: ready again, publishes accepted, and every
    // accepted event pushed exactly once — the pushes whose outcome could
    // not be written are recorded, not pushed again after their lease.
    std::fs::remove_file(filler).unwrap();
    let deadline = Instant::now() + PATIENCE;
    while readyz(&api).await.0 != 200 {
        assert!(Instant::now() < deadline, "not ready after space was freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for i in 0..4 {
        let id = format!("after-{i}");
        assert_eq!(publish_one(&api, &id).await.0, 202);
        accepted.push(id);
    }
    let deadline = Instant::now() + PATIENCE;
    while api.count("orders-hook", "delivered").await < accepted.len() {
        assert!(
            Instant::now() < deadline,
            "accepted events not all delivered well within a lease; log:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen = per_event(&endpoint);
    for id in &accepted {
        assert_eq!(seen.get(id).map(|s| s.pushes), Some(1), "{id}: {seen:?}");
    }
    for id in &refused {
        assert!(!seen.contains_key(id), "refused {id} was delivered");
    }
    assert_eq!(seen.len(), accepted.len());
    assert_eq!(api.count("orders-hook", "in_flight").await, 0);
}

fn main() -> std::process::ExitCode {
    use redrive_testkit::{Need, Runtime, trial};
    // Mounting a tmpfs needs root: tried once, the full-disk test runs or
    // is reported ignored.
    let small_disk = match SmallDisk::mount("1m") {
        Some(_disk) => Need::Met(()),
        None => Need::Missing("needs root, to mount a small tmpfs to fill".to_owned()),
    };
    redrive_testkit::run(vec![
        trial(
            "kill_9_mid_delivery_loses_no_accepted_event",
            &Need::Met(()),
            Runtime::MultiThread(2),
            kill_9_mid_delivery_loses_no_accepted_event,
        ),
        trial(
            "second_server_on_a_data_dir_in_use_exits_with_an_error",
            &Need::Met(()),
            Runtime::MultiThread(2),
            second_server_on_a_data_dir_in_use_exits_with_an_error,
        ),
        trial(
            "data_survives_a_clean_restart",
            &Need::Met(()),
            Runtime::MultiThread(2),
            data_survives_a_clean_restart,
        ),
        trial(
            "a_full_disk_answers_503_logs_little_and_recovers_without_a_double_push",
            &small_disk,
            Runtime::MultiThread(2),
            a_full_disk_answers_503_logs_little_and_recovers_without_a_double_push,
        ),
    ])
}

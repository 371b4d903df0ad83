//! Operating the real `redrive` binary: SIGTERM under load drains and
//! leaves nothing waiting for a lease; an online backup of a running server
//! restores with its deliveries still scheduled; version and completions.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common;

use common::{Api, Endpoint, REDRIVE, Reply, RunningServer};

/// The admin token the servers under test run with, as users would.
const TOKEN: &str = "ops-admin-token-0123456789abcdef";

/// `redrive serve` on `data`, logging at info to `log`.
async fn start_server(data: &Path, log: &Path, extra: &[&str]) -> RunningServer {
    let mut command = common::serve(TOKEN, data);
    command.env("RUST_LOG", "info").args(extra);
    RunningServer::start_async(command, log).await
}

// ---------------------------------------------------------------------------
// This file's use of the API, over real HTTP
// ---------------------------------------------------------------------------

/// Publishes a batch; `None` when the server no longer answers.
async fn try_publish(api: &Api, events: &[Value]) -> Option<(u16, Value)> {
    let response = api.batch_request("orders", events).send().await.ok()?;
    let status = response.status().as_u16();
    let text = response.text().await.ok()?;
    Some((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

async fn wait_delivered(api: &Api, count: usize, patience: Duration) -> usize {
    let deadline = Instant::now() + patience;
    loop {
        let delivered = api.deliveries_in("orders-hook", "delivered").await.len();
        if delivered >= count || Instant::now() > deadline {
            return delivered;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn event(id: &str) -> Value {
    json!({
        "specversion": "1.0",
        "id": id,
        "source": "/ops",
        "type": "order.created",
        "data": {"id": id},
    })
}

/// Phases of a restart test: the first process runs in phase 0, where
/// every endpoint starts.
const FIRST: u8 = 0;
const BETWEEN: u8 = 1;
const SECOND: u8 = 2;

/// How often a test looks at what the endpoint received.
const POLL: Duration = Duration::from_millis(10);

/// A real endpoint: ids starting with `slow` take 10s while the first
/// process runs; while `failing` is set, every answer is 503. An id is
/// acknowledged when a 200 was answered within the phase it arrived in.
async fn start_endpoint(failing: Arc<AtomicBool>) -> Endpoint {
    Endpoint::start(move |request, _| {
        if failing.load(Ordering::SeqCst) {
            return Reply::status(503);
        }
        let id = request.header("ce-id").unwrap_or_default();
        if id.starts_with("slow") && request.phase == FIRST {
            Reply::ok().after(Duration::from_secs(10))
        } else {
            Reply::ok().after(Duration::from_millis(20))
        }
    })
    .await
}

/// ce-id → (pushes, acknowledged).
fn per_event(endpoint: &Endpoint) -> BTreeMap<String, (usize, bool)> {
    endpoint
        .by_ce_id()
        .into_iter()
        .map(|(id, pushes)| {
            let acknowledged = pushes
                .iter()
                .any(|push| push.acknowledged_unless_in(BETWEEN));
            (id, (pushes.len(), acknowledged))
        })
        .collect()
}

fn acknowledged(endpoint: &Endpoint, prefix: &str) -> usize {
    per_event(endpoint)
        .iter()
        .filter(|(id, (_, ack))| *ack && id.starts_with(prefix))
        .count()
}

fn received(endpoint: &Endpoint, prefix: &str) -> usize {
    per_event(endpoint)
        .keys()
        .filter(|id| id.starts_with(prefix))
        .count()
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_drains_refuses_publishes_and_leaves_no_lease_behind() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let failing = Arc::new(AtomicBool::new(false));
    let endpoint = start_endpoint(failing.clone()).await;
    let mut first = start_server(
        &data,
        &dir.path().join("first.log"),
        &["--drain-timeout", "1s"],
    )
    .await;
    let api = Arc::new(Api::new(&first.url, TOKEN));
    common::create_orders_hook(&api, &endpoint.url, "0.1s", "30s", 8).await;

    // Three pushes that cannot finish within the drain timeout.
    let slow: Vec<Value> = (0..3).map(|i| event(&format!("slow-{i}"))).collect();
    let (status, body) = try_publish(&api, &slow).await.expect("publish");
    assert_eq!(status, 202, "{body}");
    assert!(
        endpoint
            .wait_until(Duration::from_secs(10), POLL, |e| received(e, "slow") == 3)
            .await,
        "slow pushes did not start; log:\n{}",
        first.log()
    );

    // Steady publishing until the server stops answering 202.
    let publisher = {
        let api = api.clone();
        tokio::spawn(async move {
            let mut accepted = HashSet::new();
            let mut refused = 0usize;
            let mut other = Vec::new();
            for batch in 0.. {
                let events: Vec<Value> = (0..10)
                    .map(|i| event(&format!("fast-{batch:05}-{i}")))
                    .collect();
                match try_publish(&api, &events).await {
                    Some((202, body)) => {
                        for outcome in body["events"].as_array().unwrap() {
                            accepted.insert(outcome["id"].as_str().unwrap().to_owned());
                        }
                    }
                    Some((503, body)) => {
                        assert_eq!(body["error"]["code"], "shutting_down", "{body}");
                        refused += 1;
                    }
                    Some((status, body)) => other.push(format!("{status} {body}")),
                    None => break,
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (accepted, refused, other)
        })
    };
    assert!(
        endpoint
            .wait_until(Duration::from_secs(20), POLL, |e| acknowledged(e, "fast")
                >= 100)
            .await,
        "deliveries did not flow; log:\n{}",
        first.log()
    );

    first.send_sigterm();
    let stopping = Instant::now();
    // While draining, readiness fails so load balancers move on.
    let readiness = loop {
        let (status, body) = api.get("/readyz").await;
        if status == 503 || stopping.elapsed() > Duration::from_millis(800) {
            break (status, body);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(readiness.0, 503, "{}", readiness.1);
    assert_eq!(readiness.1["status"], "shutting_down");
    assert_eq!(readiness.1["checks"]["shutting_down"], true);
    let status = tokio::task::block_in_place(|| first.wait_exit(Duration::from_secs(20)));
    let took = stopping.elapsed();
    endpoint.set_phase(BETWEEN);
    let first_log = first.log();
    assert!(
        status.success(),
        "SIGTERM should exit 0: {status}; log:\n{first_log}"
    );
    // Waited for the drain timeout, not for the 10s pushes.
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(8),
        "shutdown took {took:?}; log:\n{first_log}"
    );
    assert!(
        first_log.contains("drain timeout passed"),
        "the unfinished pushes should be released; log:\n{first_log}"
    );
    let (accepted, refused, other) = publisher.await.unwrap();
    assert!(other.is_empty(), "unexpected answers: {other:?}");
    assert!(refused > 0, "no publish was refused while draining");

    endpoint.set_phase(SECOND);
    let second = start_server(&data, &dir.path().join("second.log"), &[]).await;
    let api = Api::new(&second.url, TOKEN);
    let total = accepted.len() + slow.len();
    let delivered = wait_delivered(&api, total, Duration::from_secs(60)).await;
    let second_log = second.log();
    assert_eq!(delivered, total, "log:\n{second_log}");
    // Nothing was left in flight for the new process to rescue.
    assert!(
        !second_log.contains("left in flight by a previous process"),
        "a lease was left behind; log:\n{second_log}"
    );
    let seen = per_event(&endpoint);
    for id in accepted
        .iter()
        .chain(["slow-0", "slow-1", "slow-2"].map(str::to_owned).iter())
    {
        assert!(
            seen.get(id).is_some_and(|(_, ack)| *ack),
            "{id} was accepted but never acknowledged"
        );
    }
    // The released pushes show the interrupted attempt, then the success.
    for delivery in api.deliveries_in("orders-hook", "delivered").await {
        if !delivery["event_id"].as_str().unwrap().starts_with("slow") {
            continue;
        }
        let (_, detail) = api
            .get(&format!(
                "/v1/deliveries/{}",
                delivery["id"].as_str().unwrap()
            ))
            .await;
        let attempts = detail["attempt_log"].as_array().unwrap();
        assert_eq!(attempts.len(), 2, "{detail}");
        assert_eq!(attempts[0]["error"], "interrupted", "{detail}");
        assert_eq!(attempts[1]["status"], 200, "{detail}");
    }
    eprintln!(
        "SIGTERM under load: {} events accepted, {refused} publishes refused while draining, \
         stopped in {took:?}, all delivered after restart",
        accepted.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_of_a_running_server_restores_with_deliveries_still_scheduled() {
    let dir = tempfile::tempdir().unwrap();
    let failing = Arc::new(AtomicBool::new(false));
    let endpoint = start_endpoint(failing.clone()).await;
    let live = start_server(&dir.path().join("live"), &dir.path().join("live.log"), &[]).await;
    let api = Api::new(&live.url, TOKEN);
    common::create_orders_hook(&api, &endpoint.url, "3s", "30s", 8).await;
    let (status, body) = try_publish(&api, &[event("done-1"), event("done-2")])
        .await
        .unwrap();
    assert_eq!(status, 202, "{body}");
    assert_eq!(wait_delivered(&api, 2, Duration::from_secs(10)).await, 2);
    // These fail once and wait 3s for their retry when the copy is taken.
    failing.store(true, Ordering::SeqCst);
    let waiting: Vec<Value> = (0..5).map(|i| event(&format!("wait-{i}"))).collect();
    let (status, body) = try_publish(&api, &waiting).await.unwrap();
    assert_eq!(status, 202, "{body}");
    assert!(
        endpoint
            .wait_until(Duration::from_secs(10), POLL, |e| received(e, "wait") == 5)
            .await
    );
    tokio::time::sleep(Duration::from_millis(200)).await;

    let copy = dir.path().join("copy.db");
    let output = tokio::task::spawn_blocking({
        let (url, copy) = (live.url.clone(), copy.clone());
        move || {
            Command::new(REDRIVE)
                .args(["--server", &url, "--token", TOKEN, "backup", "--out"])
                .arg(&copy)
                .output()
                .expect("redrive backup runs")
        }
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "backup failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("wrote"));
    // Published after the copy: not in it.
    let (status, _) = try_publish(&api, &[event("after")]).await.unwrap();
    assert_eq!(status, 202);
    drop(live);

    let restored_dir = dir.path().join("restored");
    std::fs::create_dir_all(&restored_dir).unwrap();
    std::fs::copy(&copy, restored_dir.join("redrive.db")).unwrap();
    // The signing secrets in the copy are encrypted with this key.
    std::fs::copy(
        dir.path().join("live").join("secret.key"),
        restored_dir.join("secret.key"),
    )
    .unwrap();
    failing.store(false, Ordering::SeqCst);
    let restored = start_server(&restored_dir, &dir.path().join("restored.log"), &[]).await;
    let api = Api::new(&restored.url, TOKEN);
    let scheduled = api.deliveries_in("orders-hook", "scheduled").await;
    assert_eq!(
        scheduled.len(),
        5,
        "the copy should hold the retries still scheduled: {scheduled:?}"
    );
    assert!(
        scheduled.iter().all(|d| d["attempts"] == 1),
        "{scheduled:?}"
    );
    assert_eq!(wait_delivered(&api, 7, Duration::from_secs(20)).await, 7);
    let pushes = per_event(&endpoint);
    assert_eq!(pushes["done-1"].0, 1, "a delivered event was pushed again");
    assert!(!pushes.contains_key("after") || pushes["after"].0 == 1);
    let (status, _) = api
        .get("/v1/subscriptions/orders-hook/deliveries?limit=100")
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        api.deliveries_in("orders-hook", "delivered").await.len(),
        7,
        "the copy has 7 deliveries"
    );
}

#[test]
fn a_backup_refuses_to_overwrite_and_reports_an_unreachable_server() {
    let dir = tempfile::tempdir().unwrap();
    let existing = dir.path().join("exists.db");
    std::fs::write(&existing, b"keep me").unwrap();
    let output = Command::new(REDRIVE)
        .args(["--server", "http://127.0.0.1:9", "backup", "--out"])
        .arg(&existing)
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("already exists"));
    assert_eq!(std::fs::read(&existing).unwrap(), b"keep me");

    let output = Command::new(REDRIVE)
        .args(["--server", "http://127.0.0.1:9", "backup", "--out"])
        .arg(dir.path().join("new.db"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot reach"));
    assert!(!dir.path().join("new.db").exists());
}

#[tokio::test]
async fn a_start_removes_staged_backups_an_interrupted_backup_left_behind() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let leftover = data.join(".backup-0193a1b2c3d4e5f6.db");
    std::fs::write(&leftover, b"half a database").unwrap();
    let unrelated = data.join("backup-by-hand.db");
    std::fs::write(&unrelated, b"keep me").unwrap();

    let server = start_server(&data, &dir.path().join("redrive.log"), &[]).await;
    assert!(!leftover.exists(), "the staged backup is still there");
    assert_eq!(std::fs::read(&unrelated).unwrap(), b"keep me");
    let log = server.log();
    let named = log.lines().any(|line| {
        line.contains("removed a staged backup") && line.contains(&leftover.display().to_string())
    });
    assert!(named, "no info line names the removed file; log:\n{log}");
}

#[test]
fn version_names_the_commit_and_completions_cover_the_commands() {
    let output = Command::new(REDRIVE).arg("--version").output().unwrap();
    let version = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success());
    assert!(
        version.starts_with(&format!("redrive {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );
    for shell in ["bash", "zsh", "fish"] {
        let output = Command::new(REDRIVE)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(output.status.success(), "{shell}");
        let script = String::from_utf8_lossy(&output.stdout);
        assert!(
            script.contains("backup") && script.contains("subscriptions"),
            "{shell}"
        );
    }
    let output = Command::new(REDRIVE)
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert!(!output.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_request_ids_and_failures_but_no_payloads() {
    let dir = tempfile::tempdir().unwrap();
    let failing = Arc::new(AtomicBool::new(false));
    let endpoint = start_endpoint(failing.clone()).await;
    failing.store(true, Ordering::SeqCst);
    let mut server = start_server(
        &dir.path().join("data"),
        &dir.path().join("server.log"),
        &[
            "--log-format",
            "json",
            "--log-level",
            "info,tower_http=debug",
        ],
    )
    .await;
    let api = Api::new(&server.url, TOKEN);
    let (status, _) = api
        .send(
            api.http
                .get(format!("{}/v1/topics", server.url))
                .header("x-request-id", "log-test-42"),
        )
        .await;
    assert_eq!(status, 200);
    api.create_topic("orders").await;
    api.create_subscription(json!({
        "name": "orders-hook",
        "topic": "orders",
        "endpoint": format!("{}?token=endpoint-secret", endpoint.url),
        "retry_policy": {"backoff": {"kind": "immediate"}, "retry_limit": 1},
    }))
    .await;
    let mut secret = event("logged-1");
    secret["data"] = json!({"card": "payload-secret-4242"});
    let (status, body) = try_publish(&api, &[secret]).await.unwrap();
    assert_eq!(status, 202, "{body}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while api.deliveries_in("orders-hook", "failed").await.is_empty() {
        assert!(Instant::now() < deadline, "log:\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.send_sigterm();
    let status = tokio::task::block_in_place(|| server.wait_exit(Duration::from_secs(20)));
    assert!(status.success());

    let log = server.log();
    let lines: Vec<Value> = log
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|_| panic!("not a JSON line: {line}"))
        })
        .collect();
    let with_message = |message: &str| {
        lines
            .iter()
            .filter(|l| l["fields"]["message"] == message)
            .cloned()
            .collect::<Vec<_>>()
    };
    assert!(
        lines
            .iter()
            .any(|l| l["span"]["request_id"] == "log-test-42"),
        "no line carries the request id; log:\n{log}"
    );
    // Two attempts: one info per failed attempt, one warn for the failure.
    let failed_attempts = with_message("attempt failed; retry scheduled").len()
        + with_message("attempt failed").len();
    assert_eq!(failed_attempts, 2, "log:\n{log}");
    let failures = with_message("delivery failed");
    assert_eq!(failures.len(), 1, "log:\n{log}");
    assert_eq!(failures[0]["level"], "WARN");
    assert_eq!(failures[0]["fields"]["reason"], "retries_exhausted");
    assert!(!log.contains("payload-secret-4242"), "a payload was logged");
    assert!(
        !log.contains("endpoint-secret"),
        "an endpoint URL was logged"
    );
}

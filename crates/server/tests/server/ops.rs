//! Operating a real server: Prometheus metrics that parse and move as
//! deliveries happen, health and readiness, request ids, online backups.

use crate::common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use reqwest::StatusCode;
use serde_json::json;

/// One sample: metric name and sorted labels → value.
type Samples = BTreeMap<(String, BTreeMap<String, String>), f64>;

/// A strict reader of the Prometheus text format (0.0.4): every line is a
/// `# HELP`, a `# TYPE` or a sample with a float value; label values are
/// quoted with `\\`, `\"` and `\n` escapes. Panics on anything else.
fn parse_prometheus(text: &str) -> (Samples, BTreeMap<String, String>) {
    let mut samples = Samples::new();
    let mut types = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            types.insert(name.to_owned(), kind.to_owned());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        assert!(!line.starts_with('#'), "unknown comment line: {line}");
        let (name, rest) = match line.find(['{', ' ']) {
            Some(i) => line.split_at(i),
            None => panic!("no value: {line}"),
        };
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line}"
        );
        let mut labels = BTreeMap::new();
        let value_text = if let Some(mut rest) = rest.strip_prefix('{') {
            loop {
                if let Some(after) = rest.strip_prefix('}') {
                    break after;
                }
                let (key, after) = rest.split_once("=\"").expect("label=\"value\"");
                let mut value = String::new();
                let mut chars = after.char_indices();
                let end = loop {
                    match chars.next().expect("unterminated label value") {
                        (i, '"') => break i,
                        (_, '\\') => match chars.next().expect("escape").1 {
                            'n' => value.push('\n'),
                            other => value.push(other),
                        },
                        (_, c) => value.push(c),
                    }
                };
                labels.insert(key.trim_start_matches(',').to_owned(), value);
                rest = after[end + 1..].trim_start_matches(',');
            }
        } else {
            rest
        };
        let value: f64 = match value_text.trim() {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            other => other
                .split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line}")),
        };
        samples.insert((name.to_owned(), labels), value);
    }
    (samples, types)
}

fn sample(samples: &Samples, name: &str, labels: &[(&str, &str)]) -> f64 {
    let labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    samples
        .get(&(name.to_owned(), labels))
        .copied()
        .unwrap_or(0.0)
}

async fn scrape(server: &Server) -> (Samples, BTreeMap<String, String>) {
    let response = server
        .http
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("metrics answer");
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    parse_prometheus(&response.text().await.unwrap())
}

/// Topic `topic` and its subscription `hook`, retrying after 0.1 s, to an
/// endpoint that fails each event's first attempt with 503 and takes the
/// retry.
async fn failing_once(server: &Server, topic: &str, hook: &str) -> Endpoint {
    let endpoint = Endpoint::start(|_, earlier| {
        if earlier == 0 {
            Reply::status(503)
        } else {
            Reply::ok()
        }
    })
    .await;
    server.create_topic(topic).await;
    server
        .create_subscription(subscription(
            hook,
            topic,
            &endpoint.url,
            json!({"retry_policy": {"backoff": {"kind": "fixed", "interval": "0.1s"}}}),
        ))
        .await;
    endpoint
}

#[tokio::test]
async fn metrics_parse_and_their_counters_move_as_deliveries_happen() {
    let server = Server::start().await;
    let _endpoint = failing_once(&server, "metered", "metered-hook").await;
    let (before, _) = scrape(&server).await;
    let delivered_before = sample(
        &before,
        "redrive_deliveries_finished_total",
        &[("state", "delivered"), ("reason", "none")],
    );
    let commits_before = sample(&before, "redrive_store_commit_seconds_count", &[]);

    for id in ["m1", "m2", "m3"] {
        server.publish_ok("metered", &event(id, "t")).await;
    }
    let (status, body) = server.publish("metered", &event("m1", "t")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["events"][0]["duplicate"], true);
    server.wait_all_ended("metered-hook", 3).await;

    let (after, types) = scrape(&server).await;
    let sub = [("subscription", "metered-hook")];
    assert_eq!(
        sample(
            &after,
            "redrive_events_published_total",
            &[("topic", "metered"), ("duplicate", "false")]
        ),
        3.0
    );
    assert_eq!(
        sample(
            &after,
            "redrive_events_published_total",
            &[("topic", "metered"), ("duplicate", "true")]
        ),
        1.0
    );
    let attempts = |outcome| {
        sample(
            &after,
            "redrive_attempts_total",
            &[("subscription", "metered-hook"), ("outcome", outcome)],
        )
    };
    assert_eq!((attempts("5xx"), attempts("2xx")), (3.0, 3.0));
    assert_eq!(sample(&after, "redrive_retries_scheduled_total", &sub), 3.0);
    assert_eq!(
        sample(&after, "redrive_attempt_duration_seconds_count", &sub),
        6.0
    );
    assert_eq!(
        sample(
            &after,
            "redrive_attempt_duration_seconds_bucket",
            &[("subscription", "metered-hook"), ("le", "+Inf")]
        ),
        6.0
    );
    // Other tests of this process deliver too: at least ours counted.
    assert!(
        sample(
            &after,
            "redrive_deliveries_finished_total",
            &[("state", "delivered"), ("reason", "none")]
        ) >= delivered_before + 3.0
    );
    if !on_postgres() {
        // The embedded store's group commits; PostgreSQL commits each write.
        assert!(sample(&after, "redrive_store_commit_seconds_count", &[]) > commits_before);
        assert!(sample(&after, "redrive_store_commit_batch_size_count", &[]) > 0.0);
    }
    assert_eq!(sample(&after, "redrive_deliveries_due", &sub), 0.0);
    assert_eq!(sample(&after, "redrive_subscription_health", &sub), 0.0);
    assert_eq!(sample(&after, "redrive_subscription_paused", &sub), 0.0);
    let (status, body) = server
        .post("/v1/subscriptions/metered-hook/pause", json!({}))
        .await;
    assert_eq!(status.as_u16(), 200, "{body}");
    let (paused, _) = scrape(&server).await;
    assert_eq!(sample(&paused, "redrive_subscription_paused", &sub), 1.0);
    assert_eq!(sample(&paused, "redrive_subscription_health", &sub), 0.0);
    assert_eq!(sample(&after, "redrive_up", &[]), 1.0);
    for (name, kind) in [
        ("redrive_events_published_total", "counter"),
        ("redrive_deliveries_finished_total", "counter"),
        ("redrive_attempts_total", "counter"),
        ("redrive_attempt_duration_seconds", "histogram"),
        ("redrive_retries_scheduled_total", "counter"),
        ("redrive_deliveries_due", "gauge"),
        ("redrive_oldest_due_age_seconds", "gauge"),
        ("redrive_retries_scheduled", "gauge"),
        ("redrive_deliveries_in_flight", "gauge"),
        ("redrive_pushes_in_flight", "gauge"),
        ("redrive_subscription_health", "gauge"),
        ("redrive_subscription_paused", "gauge"),
        ("redrive_store_commit_seconds", "histogram"),
        ("redrive_store_commit_batch_size", "histogram"),
    ] {
        if on_postgres() && name.starts_with("redrive_store_commit") {
            continue;
        }
        assert_eq!(types.get(name).map(String::as_str), Some(kind), "{name}");
    }
    // No label carries an event id, a delivery id or a URL.
    for (_, labels) in after.keys() {
        for value in labels.values() {
            assert!(
                !value.contains("m1") && !value.contains("http"),
                "unbounded label value {value:?}"
            );
        }
    }
}

#[tokio::test]
async fn backlog_gauges_show_due_in_flight_and_waiting_retries() {
    let server = Server::start().await;
    let slow = Endpoint::start(|_, _| Reply::ok().after(Duration::from_secs(3))).await;
    let failing = Endpoint::start(|_, _| Reply::status(500)).await;
    server.create_topic("backlog").await;
    server
        .create_subscription(subscription(
            "backlog-slow",
            "backlog",
            &slow.url,
            json!({"max_concurrency": 1, "timeout": "10s"}),
        ))
        .await;
    server
        .create_subscription(subscription(
            "backlog-retry",
            "backlog",
            &failing.url,
            json!({"retry_policy": {"backoff": {"kind": "fixed", "interval": "1h"}}}),
        ))
        .await;
    for id in ["b1", "b2", "b3"] {
        server.publish_ok("backlog", &event(id, "t")).await;
    }
    failing.wait_for(3).await;
    slow.wait_for(1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let (samples, _) = scrape(&server).await;
    let slow_sub = [("subscription", "backlog-slow")];
    let retry_sub = [("subscription", "backlog-retry")];
    assert_eq!(sample(&samples, "redrive_deliveries_due", &slow_sub), 2.0);
    assert_eq!(
        sample(&samples, "redrive_deliveries_in_flight", &slow_sub),
        1.0
    );
    let age = sample(&samples, "redrive_oldest_due_age_seconds", &slow_sub);
    assert!(age > 0.2 && age < 10.0, "oldest due age {age}");
    assert_eq!(sample(&samples, "redrive_deliveries_due", &retry_sub), 0.0);
    assert_eq!(
        sample(&samples, "redrive_retries_scheduled", &retry_sub),
        3.0
    );
    assert_eq!(
        sample(
            &samples,
            "redrive_attempts_total",
            &[("subscription", "backlog-retry"), ("outcome", "5xx")]
        ),
        3.0
    );
    assert!(sample(&samples, "redrive_pushes_in_flight", &[]) >= 1.0);
}

#[tokio::test]
async fn connection_failures_count_as_their_own_outcome_class() {
    let server = Server::start().await;
    server.create_topic("refused").await;
    server
        .create_subscription(subscription(
            "refused-hook",
            "refused",
            &format!("http://127.0.0.1:{}/hook", closed_port()),
            json!({"retry_policy": {"backoff": {"kind": "fixed", "interval": "1h"}}}),
        ))
        .await;
    server.publish_ok("refused", &event("r1", "t")).await;
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (samples, _) = scrape(&server).await;
        let connect = sample(
            &samples,
            "redrive_attempts_total",
            &[("subscription", "refused-hook"), ("outcome", "connect")],
        );
        if connect == 1.0 {
            break;
        }
        assert!(Instant::now() < deadline, "no connect failure counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn health_and_readiness_answer_with_details() {
    let server = Server::start().await;
    let (status, body) = server.get("/healthz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ok");
    assert!(body["uptime_seconds"].is_u64(), "{body}");
    // The dispatcher reports itself running shortly after start.
    let deadline = Instant::now() + PATIENCE;
    let body = loop {
        let (status, body) = server.get("/readyz").await;
        if status == StatusCode::OK {
            break body;
        }
        assert!(Instant::now() < deadline, "never ready: {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(body["status"], "ready");
    assert_eq!(body["checks"]["store"]["ok"], true);
    assert_eq!(body["checks"]["migrations"]["ok"], true);
    assert_eq!(
        body["checks"]["migrations"]["schema_version"],
        body["checks"]["migrations"]["latest_schema_version"]
    );
    assert_eq!(body["checks"]["dispatcher"]["ok"], true);
    assert_eq!(body["checks"]["shutting_down"], false);
}

#[tokio::test]
async fn requests_carry_an_id_echoed_in_the_response() {
    let server = Server::start().await;
    let response = server
        .http
        .get(server.url("/v1/topics"))
        .header("x-request-id", "client-chosen-7")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "client-chosen-7");
    let response = server
        .http
        .get(server.url("/v1/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let made_up = response.headers()["x-request-id"].to_str().unwrap();
    assert_eq!(made_up.len(), 32, "{made_up}");
}

#[tokio::test]
async fn the_backup_route_streams_a_sqlite_database() {
    let server = Server::start().await;
    server.create_topic("kept").await;
    if on_postgres() {
        // PostgreSQL is backed up with its own tools: a JSON refusal.
        let response = server
            .http
            .post(server.url("/v1/admin/backup"))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_client_error(), "{}", response.status());
        let body: serde_json::Value = response.json().await.expect("a JSON error");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("pg_dump")),
            "{body}"
        );
        return;
    }
    let response = server
        .http
        .post(server.url("/v1/admin/backup"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "application/vnd.sqlite3"
    );
    let length: usize = response.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let bytes = response.bytes().await.unwrap();
    assert_eq!(bytes.len(), length);
    assert!(bytes.starts_with(b"SQLite format 3\0"));
    // Restored, it is a store with the topic in it.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("redrive.db"), &bytes).unwrap();
    let store = redrive_store::SqliteStore::open(dir.path(), jiff::Timestamp::now()).unwrap();
    use redrive_store::TopicStore;
    assert!(store.get_topic("kept").await.is_ok());
}

/// A publish while the dispatcher waits with room goes straight into
/// flight, without a claim; a retry is always claimed.
#[tokio::test]
async fn a_publish_to_a_waiting_dispatcher_needs_no_claim_but_its_retry_does() {
    let server = Server::start().await;
    let _endpoint = failing_once(&server, "handed", "handed-hook").await;
    // One at a time, each once the one before has ended: the dispatcher
    // is waiting, its claims having found the queue empty.
    for i in 0..3 {
        let (status, body) = server
            .publish("handed", &event(&format!("h{i}"), "t"))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        server.wait_all_ended("handed-hook", i + 1).await;
    }
    let (after, _) = scrape(&server).await;
    let started = |how| {
        sample(
            &after,
            "redrive_attempts_started_total",
            &[("subscription", "handed-hook"), ("how", how)],
        )
    };
    let (at_publish, claimed) = (started("publish"), started("claim"));
    assert_eq!(at_publish + claimed, 6.0, "3 first attempts and 3 retries");
    // The first may come before the loop knows the queue is empty.
    assert!(at_publish >= 2.0, "{at_publish} taken at publish");
    assert!(claimed >= 3.0, "{claimed} claimed: every retry is");
    let ended = server.wait_all_ended("handed-hook", 3).await;
    assert!(ended.iter().all(|d| d["attempts"] == 2), "{ended:?}");
}

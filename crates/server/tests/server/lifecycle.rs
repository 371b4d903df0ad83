//! The failure lifecycle end to end, with real endpoints on 127.0.0.1:
//! dead-letter topics, attempt and age limits, non-retryable codes,
//! retention expiry, cancel, redrive, the journal and the history purge.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use redrive_server::app::Limits;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A topic, its dead-letter topic, a failing push subscription that
/// dead-letters there, and a healthy subscription on the dead-letter topic.
struct DeadLetterRig {
    server: Server,
    failing: Endpoint,
    dead: Endpoint,
}

async fn dead_letter_rig(extra: Value) -> DeadLetterRig {
    let server = Server::start().await;
    let failing = Endpoint::start(|_, _| Reply::status(503)).await;
    let dead = Endpoint::ok().await;
    server.create_topic("orders").await;
    server.create_topic("orders-dead").await;
    let mut spec = json!({"dead_letter_topic": "orders-dead"});
    if let (Value::Object(spec), Value::Object(extra)) = (&mut spec, extra) {
        spec.extend(extra);
    }
    server
        .create_subscription(subscription("push", "orders", &failing.url, spec))
        .await;
    server
        .create_subscription(subscription(
            "dead-reader",
            "orders-dead",
            &dead.url,
            json!({}),
        ))
        .await;
    DeadLetterRig {
        server,
        failing,
        dead,
    }
}

#[tokio::test]
async fn retry_limit_dead_letters_to_a_topic_another_subscription_receives() {
    let rig = dead_letter_rig(json!({})).await;
    let ops = Endpoint::ok().await;
    rig.server
        .create_subscription(subscription("ops", "redrive.system", &ops.url, json!({})))
        .await;
    let mut event = event("order-1", "order.created");
    event["tenant"] = json!("acme");
    rig.server.publish_ok("orders", &event).await;

    // retry_limit 3: four attempts, then failed and dead-lettered.
    let id = rig.server.only_delivery("push").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let failed = rig.server.wait_for_state(&id, "failed").await;
    assert_eq!(failed["failure_reason"], "retries_exhausted");
    // (A delivery's detail lists its attempts under `attempts`.)
    assert_eq!(failed["attempt_log"].as_array().unwrap().len(), 4);
    rig.failing.assert_settles_at(4).await;
    let copy_id = failed["dead_letter_event"]
        .as_str()
        .expect("a link")
        .to_owned();

    let received = rig.dead.wait_for(1).await;
    let copy = &received[0];
    assert_eq!(copy.ce_id(), copy_id);
    assert_eq!(copy.header("ce-source"), Some("/tests"));
    assert_eq!(copy.header("ce-type"), Some("order.created"));
    assert_eq!(copy.header("ce-tenant"), Some("acme"));
    assert_eq!(copy.header("ce-deadletterid"), Some("order-1"));
    assert_eq!(
        copy.header("ce-deadletterreason"),
        Some("retries_exhausted")
    );
    assert_eq!(copy.header("ce-deadlettersubscription"), Some("push"));
    assert_eq!(copy.header("ce-deadletterattempts"), Some("4"));
    assert_eq!(copy.header("ce-deadletterlaststatus"), Some("503"));
    assert_eq!(
        timestamp(&json!(copy.header("ce-deadletterfirstattempt").unwrap())),
        timestamp(&failed["first_attempt_at"])
    );
    assert_eq!(
        timestamp(&json!(copy.header("ce-deadletterlastattempt").unwrap())),
        timestamp(&failed["last_attempt_at"])
    );
    let data: Value = serde_json::from_slice(&copy.body).unwrap();
    assert_eq!(data, json!({"id": "order-1"}));

    // Operators hear of it on the system topic.
    let notices = ops.wait_for(1).await;
    assert_eq!(
        notices[0].header("ce-type"),
        Some("redrive.delivery.failed")
    );
    let notice: Value = serde_json::from_slice(&notices[0].body).unwrap();
    assert_eq!(notice["delivery_id"], json!(id));
    assert_eq!(notice["reason"], "retries_exhausted");
    assert_eq!(notice["dead_letter_event"], json!(copy_id));

    // Failed deliveries are listed by state and reason.
    let (status, page) = rig
        .server
        .get("/v1/subscriptions/push/deliveries?state=failed&reason=retries_exhausted")
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["deliveries"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn max_delivery_attempts_defaults_to_five_with_a_dead_letter_topic() {
    // No retry limit in the policy: only the attempt limit stops it.
    let rig = dead_letter_rig(json!({
        "retry_policy": {"backoff": {"kind": "fixed", "interval": "0.1s"}},
    }))
    .await;
    let (_, spec) = rig.server.get("/v1/subscriptions/push").await;
    assert_eq!(spec["message_retention"], "604800s");
    rig.server.publish_ok("orders", &event("e1", "t")).await;
    let id = rig.server.only_delivery("push").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let failed = rig.server.wait_for_state(&id, "failed").await;
    assert_eq!(failed["attempt_log"].as_array().unwrap().len(), 5);
    assert_eq!(failed["failure_reason"], "retries_exhausted");
    rig.failing.assert_settles_at(5).await;
    rig.dead.wait_for(1).await;
}

#[tokio::test]
async fn lifecycle_settings_are_validated() {
    let server = Server::start().await;
    server.create_topic("orders").await;
    let url = "http://127.0.0.1:9/hook";
    let cases = [
        (json!({"dead_letter_topic": "missing"}), "dead_letter_topic"),
        (json!({"dead_letter_topic": "orders"}), "dead_letter_topic"),
        (json!({"max_delivery_attempts": 4}), "max_delivery_attempts"),
        (
            json!({"max_delivery_attempts": 101}),
            "max_delivery_attempts",
        ),
        (json!({"message_retention": "5m"}), "message_retention"),
        (json!({"message_retention": "32d"}), "message_retention"),
    ];
    for (extra, field) in cases {
        let (status, body) = server
            .post(
                "/v1/subscriptions",
                subscription("s", "orders", url, extra.clone()),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{extra}: {body}");
        assert_eq!(body["error"]["code"], "invalid_argument");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.starts_with(field), "{extra}: {message}");
    }
    // A dead-letter topic in use can't be deleted, nor the system topic.
    server.create_topic("orders-dead").await;
    server
        .create_subscription(subscription(
            "s",
            "orders",
            url,
            json!({"dead_letter_topic": "orders-dead"}),
        ))
        .await;
    let (status, _) = server.delete("/v1/topics/orders-dead").await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = server.delete("/v1/topics/redrive.system").await;
    assert_eq!(status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn age_limit_fails_with_age_exhausted() {
    let server = Server::start().await;
    let failing = Endpoint::start(|_, _| Reply::status(500)).await;
    server.create_topic("orders").await;
    server
        .create_subscription(subscription(
            "push",
            "orders",
            &failing.url,
            json!({"retry_policy": {
                "backoff": {"kind": "fixed", "interval": "0.2s"},
                "age_limit": "0.5s",
            }}),
        ))
        .await;
    server.publish_ok("orders", &event("e1", "t")).await;
    let id = server.only_delivery("push").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let failed = server.wait_for_state(&id, "failed").await;
    assert_eq!(failed["failure_reason"], "age_exhausted");
    // Retries at ~0.2s and ~0.4s are young enough; the one ending past 0.5s
    // is the last. Generous bounds: timing on a busy machine varies.
    let attempts = failed["attempt_log"].as_array().unwrap().len();
    assert!((3..=5).contains(&attempts), "{failed:#}");
    let first = timestamp(&failed["first_attempt_at"]);
    let last = timestamp(&failed["last_attempt_at"]);
    assert!(
        last.duration_since(first).as_secs_f64() >= 0.5,
        "{failed:#}"
    );
}

#[tokio::test]
async fn a_non_retryable_code_fails_at_once() {
    let rig = dead_letter_rig(json!({
        "retry_policy": {"backoff": {"kind": "fixed", "interval": "0.1s"}, "final_codes": [410]},
    }))
    .await;
    let gone = Endpoint::start(|_, _| Reply::status(410)).await;
    let (status, patched) = rig
        .server
        .patch("/v1/subscriptions/push", json!({"endpoint": gone.url}))
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    rig.server.publish_ok("orders", &event("e1", "t")).await;
    let id = rig.server.only_delivery("push").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let failed = rig.server.wait_for_state(&id, "failed").await;
    assert_eq!(failed["failure_reason"], "non_retryable");
    assert_eq!(
        failed["attempt_log"].as_array().unwrap().len(),
        1,
        "{failed:#}"
    );
    gone.assert_settles_at(1).await;
    let copy = rig.dead.wait_for(1).await;
    assert_eq!(copy[0].header("ce-deadletterreason"), Some("non_retryable"));
    assert_eq!(copy[0].header("ce-deadletterlaststatus"), Some("410"));
}

#[tokio::test]
async fn retention_expiry_fails_and_dead_letters_undelivered_events() {
    let rig = dead_letter_rig(json!({
        "message_retention": "10m",
        "max_delivery_attempts": 100,
        "retry_policy": {"backoff": {"kind": "fixed", "interval": "0.2s"}},
    }))
    .await;
    rig.server.publish_ok("orders", &event("e1", "t")).await;
    let id = rig.server.only_delivery("push").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    rig.failing.wait_for(1).await;
    // Nothing expires before the retention passes...
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_ne!(rig.server.delivery(&id).await["state"], "failed");
    // ...and once the clock passes ten minutes after publish, it fails.
    rig.server.clock.advance(Duration::from_secs(601));
    let failed = rig.server.wait_for_state(&id, "failed").await;
    assert_eq!(failed["failure_reason"], "retention_expired");
    let copy = rig.dead.wait_for(1).await;
    assert_eq!(
        copy[0].header("ce-deadletterreason"),
        Some("retention_expired")
    );
    let attempts = rig.failing.received().len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        rig.failing.received().len(),
        attempts,
        "no push after expiry"
    );
}

#[tokio::test]
async fn cancel_ends_a_scheduled_delivery() {
    let rig = dead_letter_rig(json!({
        "retry_policy": {"backoff": {"kind": "fixed", "interval": "1h"}},
    }))
    .await;
    rig.server.publish_ok("orders", &event("e1", "t")).await;
    rig.failing.wait_for(1).await;
    let id = rig.server.only_delivery("push").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Wait for the first attempt to be recorded (scheduled for an hour).
    let deadline = Instant::now() + PATIENCE;
    while rig.server.delivery(&id).await["state"] != "scheduled" {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, cancelled) = rig
        .server
        .post(&format!("/v1/deliveries/{id}/cancel"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["state"], "failed");
    assert_eq!(cancelled["failure_reason"], "cancelled");
    let copy = rig.dead.wait_for(1).await;
    assert_eq!(copy[0].header("ce-deadletterreason"), Some("cancelled"));
    let (status, body) = rig
        .server
        .post(&format!("/v1/deliveries/{id}/cancel"), json!({}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    // The attempt log ends with the cancel, after the attempt it followed.
    let log = rig.server.delivery(&id).await["attempt_log"].clone();
    let entries: Vec<(&str, i64, &str)> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["kind"].as_str().unwrap(),
                a["number"].as_i64().unwrap(),
                a["decision"]["kind"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        entries,
        [("push", 1, "retry"), ("cancel", 1, "failed")],
        "{log}"
    );
    assert_eq!(log[1]["decision"]["reason"], "cancelled");
}

/// An endpoint that answers 503 while `down` is set, 200 after.
async fn switchable() -> (Endpoint, Arc<AtomicBool>) {
    let down = Arc::new(AtomicBool::new(true));
    let flag = down.clone();
    let endpoint = Endpoint::start(move |_, _| {
        if flag.load(Ordering::SeqCst) {
            Reply::status(503)
        } else {
            Reply::ok()
        }
    })
    .await;
    (endpoint, down)
}

async fn failed_backlog(server: &Server, endpoint: &Endpoint, count: usize) {
    server.create_topic("orders").await;
    server
        .create_subscription(subscription(
            "push",
            "orders",
            &endpoint.url,
            json!({"retry_policy": {"backoff": {"kind": "fixed", "interval": "0.1s"}, "retry_limit": 1}}),
        ))
        .await;
    for i in 0..count {
        server
            .publish_ok("orders", &event(&format!("e{i}"), "order.created"))
            .await;
    }
    let ended = server.wait_all_ended("push", count).await;
    assert!(ended.iter().all(|d| d["state"] == "failed"), "{ended:#?}");
    endpoint.assert_settles_at(2 * count).await;
}

#[tokio::test]
async fn redrive_delivers_failed_deliveries_once() {
    let server = Server::start().await;
    let (endpoint, down) = switchable().await;
    failed_backlog(&server, &endpoint, 3).await;
    down.store(false, Ordering::SeqCst);

    // A filter that matches nothing moves nothing.
    let (status, none) = server
        .post(
            "/v1/subscriptions/push/redrive",
            json!({"reasons": ["non_retryable"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{none}");
    assert_eq!(none["moved"], 0);

    let (status, body) = server
        .post("/v1/subscriptions/push/redrive", json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["total"], 3);
    assert_eq!(body["moved"], 3);
    let delivered = server.wait_all_ended("push", 3).await;
    assert!(delivered.iter().all(|d| d["state"] == "delivered"));
    // A fresh budget: attempt 3 overall, the first since the redrive.
    assert!(
        delivered
            .iter()
            .all(|d| d["attempts"] == 3 && d["attempts_before_redrive"] == 2)
    );

    // Redriving again delivers nothing twice.
    let (_, again) = server
        .post("/v1/subscriptions/push/redrive", json!({}))
        .await;
    assert_eq!(again["moved"], 0);
    let received = endpoint.assert_settles_at(9).await;
    let successes = tally(
        received
            .iter()
            .filter(|r| r.attempt() == 3)
            .map(|r| r.ce_id()),
    );
    assert_eq!(successes.len(), 3);
    assert!(successes.values().all(|n| *n == 1));

    let (status, bad) = server
        .post(
            "/v1/subscriptions/push/redrive",
            json!({"states": ["delivered"]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    let (status, _) = server
        .post("/v1/subscriptions/nope/redrive", json!({}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_large_redrive_runs_as_a_job_to_poll() {
    let server = Server::start_with(Limits {
        redrive_inline_limit: 2,
        ..Limits::default()
    })
    .await;
    let (endpoint, down) = switchable().await;
    failed_backlog(&server, &endpoint, 4).await;
    down.store(false, Ordering::SeqCst);

    let (status, body) = server
        .send(
            server
                .http
                .post(server.url("/v1/subscriptions/push/redrive")),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["total"], 4);
    let job_id = body["job"]["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + PATIENCE;
    let job = loop {
        let (status, job) = server.get(&format!("/v1/jobs/{job_id}")).await;
        assert_eq!(status, StatusCode::OK, "{job}");
        if job["state"] != "running" {
            break job;
        }
        assert!(Instant::now() < deadline, "{job}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(job["state"], "succeeded");
    assert_eq!(
        (job["total"].clone(), job["done"].clone()),
        (json!(4), json!(4))
    );
    let delivered = server.wait_all_ended("push", 4).await;
    assert!(delivered.iter().all(|d| d["state"] == "delivered"));
    let (status, _) = server.get("/v1/jobs/no-such-job").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn journal_pages_oldest_first_and_answers_410_after_purge() {
    let server = Server::start().await;
    // The webhook is down: the journal is how this consumer reads.
    let down = Endpoint::start(|_, _| Reply::status(503)).await;
    server.create_topic("orders").await;
    server
        .create_subscription(subscription("push", "orders", &down.url, json!({})))
        .await;
    for i in 0..5 {
        server
            .publish_ok("orders", &event(&format!("e{i}"), "t"))
            .await;
    }
    let read = |since: Option<i64>| {
        let server = &server;
        async move {
            let query = match since {
                Some(since) => format!("?limit=2&since={since}"),
                None => "?limit=2".to_owned(),
            };
            server
                .get(&format!("/v1/subscriptions/push/journal{query}"))
                .await
        }
    };
    let ids = |page: &Value| -> Vec<String> {
        page["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["event"]["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (status, first) = read(None).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(ids(&first), ["e0", "e1"]);
    assert_eq!(first["entries"][0]["event"]["data"], json!({"id": "e0"}));
    let (_, second) = read(first["next"].as_i64()).await;
    assert_eq!(ids(&second), ["e2", "e3"]);
    let (_, third) = read(second["next"].as_i64()).await;
    assert_eq!(ids(&third), ["e4"]);
    let end = third["next"].as_i64().unwrap();
    let (status, empty) = read(Some(end)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(ids(&empty).is_empty());
    assert_eq!(empty["next"], json!(end));
    let (_, past) = read(Some(end + 1000)).await;
    assert!(ids(&past).is_empty());

    // The events fail, and once the history retention passes they are
    // purged: reading from before them is 410 Gone.
    server
        .patch(
            "/v1/subscriptions/push",
            json!({"retry_policy": {"backoff": {"kind": "fixed", "interval": "0.1s"}, "retry_limit": 0}}),
        )
        .await;
    server.wait_all_ended("push", 5).await;
    server.clock.advance(Duration::from_secs(8 * 86_400));
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (status, body) = read(first["next"].as_i64()).await;
        if status == StatusCode::GONE {
            assert_eq!(body["error"]["code"], "gone");
            break;
        }
        assert!(Instant::now() < deadline, "no 410: {status} {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, fresh) = read(None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(ids(&fresh).is_empty());

    let (status, _) = server.get("/v1/subscriptions/push/journal?limit=0").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = server.get("/v1/subscriptions/nope/journal").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// The journal reader of a store idle past its history retention: its
/// position stays valid and it sees every event published after the purge.
/// (SQLite only: PostgreSQL drops history a day at a time, and the store
/// conformance suite holds both backends to the same positions.)
#[tokio::test]
async fn a_journal_reader_keeps_its_place_across_a_purge_of_everything() {
    if on_postgres() {
        return;
    }
    let server = Server::start_configured(
        Limits::default(),
        redrive_server::sweeper::SweeperConfig {
            history_retention: Duration::from_millis(300),
            ..quick_sweeper()
        },
    )
    .await;
    let endpoint = Endpoint::ok().await;
    server.create_topic("orders").await;
    server
        .create_subscription(subscription("push", "orders", &endpoint.url, json!({})))
        .await;
    for i in 0..3 {
        server
            .publish_ok("orders", &event(&format!("e{i}"), "t"))
            .await;
    }
    server.wait_all_ended("push", 3).await;
    let read = |since: i64| {
        let server = &server;
        async move {
            server
                .get(&format!("/v1/subscriptions/push/journal?since={since}"))
                .await
        }
    };
    let (_, all) = server.get("/v1/subscriptions/push/journal").await;
    let reader_at = all["next"].as_i64().unwrap();
    assert_eq!(all["entries"].as_array().unwrap().len(), 3, "{all}");
    // Wait for the purge of everything.
    let deadline = Instant::now() + PATIENCE;
    while !server.deliveries("push").await.is_empty() {
        assert!(Instant::now() < deadline, "nothing was purged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // New deliveries wait (nothing listens), so they are not purged in turn.
    server
        .patch(
            "/v1/subscriptions/push",
            json!({"endpoint": format!("http://127.0.0.1:{}/", closed_port()),
                   "retry_policy": {"backoff": {"kind": "fixed", "interval": "1h"}}}),
        )
        .await;
    for i in 3..6 {
        server
            .publish_ok("orders", &event(&format!("e{i}"), "t"))
            .await;
    }
    let (status, page) = read(reader_at).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let entries = page["entries"].as_array().unwrap();
    let ids: Vec<&str> = entries
        .iter()
        .map(|e| e["event"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["e3", "e4", "e5"], "{page}");
    assert!(entries[0]["position"].as_i64().unwrap() > reader_at);
}

#[tokio::test]
async fn finished_history_is_purged_after_the_history_retention() {
    let server = Server::start().await;
    let endpoint = Endpoint::ok().await;
    server.create_topic("orders").await;
    server
        .create_subscription(subscription("push", "orders", &endpoint.url, json!({})))
        .await;
    for i in 0..3 {
        server
            .publish_ok("orders", &event(&format!("e{i}"), "t"))
            .await;
    }
    let delivered = server.wait_all_ended("push", 3).await;
    let id = delivered[0]["id"].as_str().unwrap().to_owned();
    // A day later everything is still there.
    server.clock.advance(Duration::from_secs(86_400));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.deliveries("push").await.len(), 3);
    // Past seven days it is gone: deliveries, attempts and the events.
    server.clock.advance(Duration::from_secs(7 * 86_400));
    let deadline = Instant::now() + PATIENCE;
    while !server.deliveries("push").await.is_empty() {
        assert!(Instant::now() < deadline, "history was not purged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, _) = server.get(&format!("/v1/deliveries/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The event's identity was purged with it: publishing it again is new.
    // On PostgreSQL a whole day of deliveries goes at once and the sweeper
    // deletes their events right after, so the event may trail a moment.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (status, body) = server.publish("orders", &event("e0", "t")).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        if body["events"][0]["duplicate"] == false {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the event was not purged: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_openapi_document_describes_the_lifecycle_routes_and_fields() {
    let server = Server::start().await;
    let (status, doc) = server.get("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    for path in [
        "/v1/subscriptions/{name}/redrive",
        "/v1/subscriptions/{name}/journal",
        "/v1/jobs/{id}",
        "/v1/deliveries/{id}/cancel",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
    let spec = &doc["components"]["schemas"]["SubscriptionSpec"]["properties"];
    for field in [
        "dead_letter_topic",
        "max_delivery_attempts",
        "message_retention",
    ] {
        assert!(spec[field].is_object(), "{field} missing: {spec}");
    }
    let delivery = &doc["components"]["schemas"]["Delivery"]["properties"];
    assert!(delivery["dead_letter_event"].is_object(), "{delivery}");
    assert!(doc["components"]["schemas"]["Job"].is_object());
}

//! Endpoint health and push backoff, end to end with real endpoints on
//! 127.0.0.1: healthy → unstable → disabled → (enable) → healthy, pause and
//! resume, a dead endpoint beside a healthy one, `Retry-After` pauses, and
//! retry schedules that hold exactly unless push backoff is chosen.

use crate::common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::{
    Endpoint, PATIENCE, Reply, Server, event, quick_sweeper, subscription, timestamp, wait_for_hold,
};
use serde_json::{Value, json};

/// Polls a subscription until its health is `health`; returns it.
async fn wait_for_health(server: &Server, name: &str, health: &str, patience: Duration) -> Value {
    let deadline = Instant::now() + patience;
    loop {
        let (status, body) = server.get(&format!("/v1/subscriptions/{name}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if body["health"] == health {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{name} did not become {health} within {patience:?}: {body:#}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The types of the operational events an endpoint on the system topic got.
fn event_types(ops: &Endpoint) -> Vec<String> {
    ops.received()
        .iter()
        .filter_map(|r| r.header("ce-type").map(str::to_owned))
        .collect()
}

/// An endpoint that fails with 503 while `failing` is set, else answers 200.
async fn switchable(failing: Arc<AtomicBool>) -> Endpoint {
    Endpoint::start(move |_, _| {
        if failing.load(Ordering::SeqCst) {
            Reply::status(503)
        } else {
            Reply::ok()
        }
    })
    .await
}

/// Small thresholds: three attempts, all failed, in the last hour make it
/// unstable; one more second of that disables it.
fn small_health_policy() -> Value {
    json!({
        "window": "1h",
        "min_attempts": 3,
        "failure_percent": 100,
        "hold": "1s",
        "recovery_successes": 1,
    })
}

#[tokio::test]
async fn health_goes_unstable_then_disabled_and_enable_delivers_the_backlog() {
    let server = Server::start().await;
    let failing = Arc::new(AtomicBool::new(true));
    let endpoint = switchable(failing.clone()).await;
    let ops = Endpoint::ok().await;
    server.create_topic("orders").await;
    server
        .create_subscription(subscription("ops", "redrive.system", &ops.url, json!({})))
        .await;
    let created = server
        .create_subscription(subscription(
            "push",
            "orders",
            &endpoint.url,
            json!({
                "retry_policy": {"backoff": {"kind": "fixed", "interval": "0.1s"}, "retry_limit": 1000},
                "health_policy": small_health_policy(),
            }),
        ))
        .await;
    assert_eq!(created["health"], "healthy");
    assert_eq!(created["paused"], false);
    assert_eq!(created["health_policy"]["min_attempts"], 3);
    // Unset fields take their defaults.
    assert_eq!(created["health_policy"]["auto_disable"], true);

    for i in 0..3 {
        server
            .publish_ok("orders", &event(&format!("o-{i}"), "order.created"))
            .await;
    }

    let unstable = wait_for_health(&server, "push", "unstable", PATIENCE).await;
    let reason = unstable["health_reason"].as_str().unwrap();
    assert!(
        reason.contains("attempts failed in the last 3600s"),
        "{reason}"
    );
    let unstable_at = timestamp(&unstable["health_changed_at"]);

    // Still failing a second later: disabled.
    let disabled = wait_for_health(&server, "push", "disabled", PATIENCE).await;
    let disabled_at = timestamp(&disabled["health_changed_at"]);
    assert!(
        disabled_at.duration_since(unstable_at) >= jiff::SignedDuration::from_secs(1),
        "disabled at {disabled_at}, only {} after unstable",
        disabled_at.duration_since(unstable_at)
    );
    assert!(
        disabled["health_reason"]
            .as_str()
            .unwrap()
            .starts_with("still failing after 1s unstable"),
        "{disabled}"
    );
    // The answer says the pushes are held, for as long as it stays so.
    assert_eq!(disabled["pushes_held"]["reason"], "disabled", "{disabled}");
    assert_eq!(disabled["pushes_held"]["until"], Value::Null);
    let detail = disabled["pushes_held"]["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("endpoint health is disabled (still failing after 1s unstable"),
        "{detail}"
    );

    // Disabled: no pushes, also not of events published meanwhile; the
    // deliveries keep their place.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pushes_when_disabled = endpoint.received().len();
    for i in 3..5 {
        server
            .publish_ok("orders", &event(&format!("o-{i}"), "order.created"))
            .await;
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(endpoint.received().len(), pushes_when_disabled);
    let waiting = server.deliveries("push").await;
    assert_eq!(waiting.len(), 5);
    assert!(
        waiting.iter().all(|d| d["state"] == "scheduled"),
        "{waiting:#?}"
    );

    // The endpoint is fixed and someone enables the subscription.
    failing.store(false, Ordering::SeqCst);
    let (status, enabled) = server
        .post("/v1/subscriptions/push/enable", json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{enabled}");
    assert_eq!(enabled["health"], "healthy");
    assert_eq!(enabled["health_reason"], "enabled by hand");
    let delivered = server.wait_all_ended("push", 5).await;
    assert!(
        delivered.iter().all(|d| d["state"] == "delivered"),
        "{delivered:#?}"
    );
    // Successes keep it healthy: the failures before the enable are forgiven.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, after) = server.get("/v1/subscriptions/push").await;
    assert_eq!(after["health"], "healthy", "{after}");

    // Operators heard of each change on the system topic, in order.
    ops.wait_for(3).await;
    assert_eq!(
        event_types(&ops),
        [
            "redrive.subscription.unstable",
            "redrive.subscription.disabled",
            "redrive.subscription.healthy"
        ]
    );
    let notice: Value = serde_json::from_slice(&ops.received()[1].body).unwrap();
    assert_eq!(notice["subscription"], "push");
    assert_eq!(notice["health"], "disabled");
    assert_eq!(notice["previous_health"], "unstable");
}

#[tokio::test]
async fn an_unstable_endpoint_that_succeeds_again_becomes_healthy_on_its_own() {
    let server = Server::start().await;
    let failing = Arc::new(AtomicBool::new(true));
    let endpoint = switchable(failing.clone()).await;
    server.create_topic("orders").await;
    let mut policy = small_health_policy();
    policy["auto_disable"] = json!(false);
    server
        .create_subscription(subscription(
            "push",
            "orders",
            &endpoint.url,
            json!({
                "retry_policy": {"backoff": {"kind": "fixed", "interval": "0.1s"}, "retry_limit": 1000},
                "health_policy": policy,
            }),
        ))
        .await;
    server
        .publish_ok("orders", &event("o-1", "order.created"))
        .await;
    wait_for_health(&server, "push", "unstable", PATIENCE).await;
    // Past the hold, but auto_disable is off: still unstable, still pushed.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, body) = server.get("/v1/subscriptions/push").await;
    assert_eq!(body["health"], "unstable", "{body}");
    let pushes = endpoint.received().len();

    failing.store(false, Ordering::SeqCst);
    let healthy = wait_for_health(&server, "push", "healthy", PATIENCE).await;
    // One success outweighs the failures since it became unstable (the
    // policy calls it failing only when all of them failed).
    let reason = healthy["health_reason"].as_str().unwrap();
    assert!(
        reason.starts_with("1 of ")
            && reason.ends_with("attempts succeeded since it became unstable"),
        "{reason}"
    );
    assert!(endpoint.received().len() > pushes);
}

#[tokio::test]
async fn pause_holds_pushes_and_resume_delivers_the_backlog() {
    let server = Server::start().await;
    let endpoint = Endpoint::ok().await;
    server.create_topic("orders").await;
    server
        .create_subscription(subscription("push", "orders", &endpoint.url, json!({})))
        .await;

    let (status, paused) = server.post("/v1/subscriptions/push/pause", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{paused}");
    assert_eq!(paused["paused"], true);
    assert_eq!(paused["health"], "healthy");
    for i in 0..5 {
        server
            .publish_ok("orders", &event(&format!("o-{i}"), "order.created"))
            .await;
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        endpoint.received().is_empty(),
        "a paused subscription got pushes"
    );
    let (_, shown) = server.get("/v1/subscriptions/push").await;
    assert_eq!(shown["paused"], true);

    let (status, resumed) = server
        .post("/v1/subscriptions/push/resume", json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{resumed}");
    assert_eq!(resumed["paused"], false);
    let received = endpoint.assert_settles_at(5).await;
    // Each delivered on its first attempt: the pause cost no attempts.
    assert!(received.iter().all(|r| r.attempt() == 1));
    server.wait_all_ended("push", 5).await;

    // Enabling a healthy subscription changes nothing.
    let (status, same) = server
        .post("/v1/subscriptions/push/enable", json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{same}");
    assert_eq!(same["health"], "healthy");
    assert!(same.get("health_reason").is_none(), "{same}");

    let (_, openapi) = server.get("/openapi.json").await;
    for action in ["pause", "resume", "enable"] {
        let path = format!("/v1/subscriptions/{{name}}/{action}");
        assert!(
            openapi["paths"][&path]["post"].is_object(),
            "{path} is not in the OpenAPI document"
        );
        let (status, body) = server
            .post(&format!("/v1/subscriptions/nope/{action}"), json!({}))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{action}: {body}");
        assert_eq!(body["error"]["code"], "not_found");
    }
}

#[tokio::test]
async fn invalid_health_policies_are_refused_naming_the_field() {
    let server = Server::start().await;
    server.create_topic("orders").await;
    for (policy, field) in [
        (json!({"window": "0s"}), "health_policy.window"),
        (json!({"min_attempts": 0}), "health_policy.min_attempts"),
        (
            json!({"failure_percent": 120}),
            "health_policy.failure_percent",
        ),
        (json!({"hold": "90d"}), "health_policy.hold"),
    ] {
        let spec = subscription(
            "push",
            "orders",
            "http://127.0.0.1:9/hook",
            json!({ "health_policy": policy }),
        );
        let (status, body) = server.post("/v1/subscriptions", spec).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{policy}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.starts_with(field), "{policy}: {message}");
    }
    let spec = subscription(
        "push",
        "orders",
        "http://127.0.0.1:9/hook",
        json!({ "health_policy": {"windw": "1h"} }),
    );
    let (status, body) = server.post("/v1/subscriptions", spec).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_endpoint_does_not_slow_a_healthy_subscription_on_the_same_topic() {
    // Few push slots in all, so a dead endpoint holding them would starve
    // the healthy one.
    let server = Server::start_tuned(Default::default(), quick_sweeper(), |options| {
        options.dispatcher.max_in_flight = 32;
    })
    .await;
    // The dead endpoint never answers: each push holds its slot for the
    // whole 2s timeout.
    let dead = Endpoint::start(|_, _| Reply::ok().after(Duration::from_secs(30))).await;
    let healthy = Endpoint::start(|_, _| Reply::ok().after(Duration::from_millis(20))).await;
    server.create_topic("orders").await;
    let retry = json!({"backoff": {"kind": "fixed", "interval": "0.1s"}, "retry_limit": 1000});
    server
        .create_subscription(subscription(
            "dead",
            "orders",
            &dead.url,
            // Push backoff off (the default): only the timeouts limit it.
            json!({"retry_policy": retry, "max_concurrency": 32, "push_backoff": false}),
        ))
        .await;
    server
        .create_subscription(subscription(
            "healthy",
            "orders",
            &healthy.url,
            json!({"retry_policy": retry, "max_concurrency": 32}),
        ))
        .await;

    let events: Vec<Value> = (0..600)
        .map(|i| event(&format!("o-{i}"), "order.created"))
        .collect();
    let started = Instant::now();
    for chunk in events.chunks(100) {
        let (status, body) = server.publish_batch("orders", chunk).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }

    // 600 pushes of 20ms through at least 16 slots take about a second.
    // Without flow control the dead endpoint holds nearly every slot for 2s
    // at a time: 26 of the 600 arrived in those 8 seconds.
    healthy.wait_for_within(600, Duration::from_secs(8)).await;
    let took = started.elapsed();
    let dead_pushes = dead.received().len();
    eprintln!(
        "healthy: 600 delivered in {took:?}; dead endpoint: {dead_pushes} pushes, at most {} at once",
        dead.most_in_flight()
    );
    // The dead endpoint's window started at 16 and only shrank, one halving
    // per round of timeouts.
    assert!(dead.most_in_flight() <= 16, "{}", dead.most_in_flight());
    assert!(
        dead_pushes <= 32,
        "the dead endpoint got {dead_pushes} pushes"
    );
    server.wait_all_ended("healthy", 600).await;
    // The dead subscription's deliveries wait their turn, none failed.
    let dead_deliveries = server.deliveries("dead").await;
    assert_eq!(dead_deliveries.len(), 600);
    assert!(dead_deliveries.iter().all(|d| d["state"] != "failed"));
}

/// An endpoint that answers the first push `503` with `Retry-After: 1`, and
/// every later one 200, noting when each arrived.
async fn retry_after_endpoint() -> (String, Arc<std::sync::Mutex<Vec<(Instant, u32)>>>) {
    use axum::http::HeaderMap;
    use axum::response::IntoResponse;

    let seen: Arc<std::sync::Mutex<Vec<(Instant, u32)>>> = Arc::default();
    let state = seen.clone();
    let app = axum::Router::new().fallback(move |headers: HeaderMap| {
        let state = state.clone();
        async move {
            let attempt = headers
                .get("redrive-attempt")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let first = {
                let mut seen = state.lock().unwrap();
                seen.push((Instant::now(), attempt));
                seen.len() == 1
            };
            if first {
                (StatusCode::SERVICE_UNAVAILABLE, [("retry-after", "1")]).into_response()
            } else {
                StatusCode::OK.into_response()
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (format!("http://{address}/hook"), seen)
}

#[tokio::test]
async fn retry_after_pauses_the_subscription_without_consuming_attempts() {
    let server = Server::start().await;
    let (url, seen) = retry_after_endpoint().await;
    server.create_topic("orders").await;
    // The policy alone would retry after 0.1s; it lets a Retry-After delay
    // a retry up to 10s.
    let policy = json!({
        "backoff": {"kind": "exponential", "min_backoff": "0.1s", "max_backoff": "10s",
                    "max_doublings": 3},
        "retry_limit": 5,
    });
    let created = server
        .create_subscription(subscription(
            "push",
            "orders",
            &url,
            json!({ "retry_policy": policy }),
        ))
        .await;
    // Without push backoff too, an endpoint that says "wait" is waited for.
    assert_eq!(created["push_backoff"], false);
    server
        .publish_ok("orders", &event("o-1", "order.created"))
        .await;
    let deadline = Instant::now() + PATIENCE;
    while seen.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "no push arrived");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Once the 503 is on record, the pause is in force.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let delivery = server.only_delivery("push").await;
        if delivery["last_status"] == 503 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the 503 was not recorded: {delivery}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Published during the pause: it waits too.
    server
        .publish_ok("orders", &event("o-2", "order.created"))
        .await;
    let ended = server.wait_all_ended("push", 2).await;
    assert!(
        ended.iter().all(|d| d["state"] == "delivered"),
        "{ended:#?}"
    );

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "{seen:?}");
    let first = seen[0].0;
    for (at, _) in &seen[1..] {
        let waited = *at - first;
        assert!(
            waited >= Duration::from_millis(950) && waited < Duration::from_secs(3),
            "a push came {waited:?} after the 503 with Retry-After: 1"
        );
    }
    // o-1 took two attempts, o-2 one: waiting out the pause cost none.
    let mut attempts: Vec<u32> = seen.iter().map(|(_, attempt)| *attempt).collect();
    attempts.sort();
    assert_eq!(attempts, [1, 1, 2]);
}

// ---------------------------------------------------------------------------
// Retry schedules: exact without push backoff, Pub/Sub's with it
// ---------------------------------------------------------------------------

/// An endpoint answering 503 to the first two attempts of each event and
/// 200 to the third.
async fn failing_twice() -> Endpoint {
    Endpoint::start(|_, earlier| {
        if earlier < 2 {
            Reply::status(503)
        } else {
            Reply::ok()
        }
    })
    .await
}

fn fixed_1s() -> Value {
    json!({"backoff": {"kind": "fixed", "interval": "1s"}})
}

/// The time between consecutive attempts of each event, as its endpoint
/// saw them arrive.
fn gaps_per_event(endpoint: &Endpoint) -> HashMap<String, Vec<Duration>> {
    let mut arrivals: HashMap<String, Vec<(u32, Instant)>> = HashMap::new();
    for request in endpoint.received() {
        arrivals
            .entry(request.ce_id().to_owned())
            .or_default()
            .push((request.attempt(), request.at));
    }
    arrivals
        .into_iter()
        .map(|(id, mut attempts)| {
            attempts.sort();
            let gaps = attempts.windows(2).map(|w| w[1].1 - w[0].1).collect();
            (id, gaps)
        })
        .collect()
}

/// The value below which `share` of the sorted `values` lie.
fn percentile(sorted: &[Duration], share: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * share).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_push_backoff_retries_start_on_schedule_however_many_failed_before() {
    let server = Server::start().await;
    let endpoint = failing_twice().await;
    server.create_topic("orders").await;
    let created = server
        .create_subscription(subscription(
            "push",
            "orders",
            &endpoint.url,
            json!({ "retry_policy": fixed_1s() }),
        ))
        .await;
    // Off unless chosen.
    assert_eq!(created["push_backoff"], false);
    let events: Vec<Value> = (0..20)
        .map(|i| event(&format!("o-{i}"), "order.created"))
        .collect();
    let (status, body) = server.publish_batch("orders", &events).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");

    // The policy says: all 20 delivered about 2s after publish. Forty
    // failed attempts in a row change nothing about that.
    endpoint.wait_for_within(60, Duration::from_secs(6)).await;
    let gaps = gaps_per_event(&endpoint);
    assert_eq!(gaps.len(), 20);
    let furthest = gaps
        .values()
        .flatten()
        .map(|gap| gap.abs_diff(Duration::from_secs(1)))
        .max()
        .unwrap_or_default();
    eprintln!("20 events: attempts 1s ± {furthest:?} apart");
    for (id, gaps) in &gaps {
        assert_eq!(gaps.len(), 2, "{id}: {gaps:?}");
        for gap in gaps {
            assert!(
                gap.abs_diff(Duration::from_secs(1)) <= Duration::from_millis(250),
                "{id}: attempts {gaps:?} apart, the policy says 1s"
            );
        }
    }
    let delivered = server.wait_all_ended("push", 20).await;
    assert!(delivered.iter().all(|d| d["state"] == "delivered"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn always_failing_deliveries_are_dead_lettered_when_the_policy_says() {
    let server = Server::start().await;
    let endpoint = Endpoint::start(|_, _| Reply::status(500)).await;
    let reader = Endpoint::ok().await;
    server.create_topic("orders").await;
    server.create_topic("orders-dead").await;
    let mut policy = fixed_1s();
    policy["retry_limit"] = 2.into();
    server
        .create_subscription(subscription(
            "push",
            "orders",
            &endpoint.url,
            json!({"retry_policy": policy, "dead_letter_topic": "orders-dead"}),
        ))
        .await;
    server
        .create_subscription(subscription(
            "dead-reader",
            "orders-dead",
            &reader.url,
            json!({}),
        ))
        .await;
    let started = Instant::now();
    let events: Vec<Value> = (0..3)
        .map(|i| event(&format!("o-{i}"), "order.created"))
        .collect();
    let (status, body) = server.publish_batch("orders", &events).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");

    // Attempts at 0s, 1s and 2s, then the copies: well within 5s.
    reader.wait_for_within(3, Duration::from_secs(5)).await;
    let took = started.elapsed();
    eprintln!("3 dead-lettered copies delivered {took:?} after publish");
    assert!(took >= Duration::from_secs(2), "{took:?}");
    assert_eq!(endpoint.count(), 9);
    let mut copied: Vec<String> = reader
        .received()
        .iter()
        .map(|r| r.header("ce-deadletterid").unwrap_or_default().to_owned())
        .collect();
    copied.sort();
    assert_eq!(copied, ["o-0", "o-1", "o-2"]);
    for delivery in server.wait_all_ended("push", 3).await {
        assert_eq!(delivery["state"], "failed", "{delivery}");
        assert_eq!(delivery["failure_reason"], "retries_exhausted");
        assert_eq!(delivery["attempts"], 3);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_deliveries_failing_twice_each_retry_within_250ms_of_due() {
    let server = Server::start().await;
    let endpoint = failing_twice().await;
    server.create_topic("orders").await;
    server
        .create_subscription(subscription(
            "push",
            "orders",
            &endpoint.url,
            json!({ "retry_policy": fixed_1s() }),
        ))
        .await;
    let events: Vec<Value> = (0..1000)
        .map(|i| event(&format!("o-{i}"), "order.created"))
        .collect();
    for chunk in events.chunks(100) {
        let (status, body) = server.publish_batch("orders", chunk).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    endpoint
        .wait_for_within(3000, Duration::from_secs(30))
        .await;
    // A retry is due 1s after the attempt before it ended; the gap between
    // their arrivals also holds that attempt's round trip, so what exceeds
    // 1s bounds the lateness from above.
    let mut lateness: Vec<Duration> = Vec::with_capacity(2000);
    for (id, gaps) in gaps_per_event(&endpoint) {
        assert_eq!(gaps.len(), 2, "{id}: {gaps:?}");
        for gap in gaps {
            assert!(
                gap >= Duration::from_millis(990),
                "{id}: a retry started {gap:?} after the attempt before it, before it was due"
            );
            lateness.push(gap.saturating_sub(Duration::from_secs(1)));
        }
    }
    lateness.sort();
    let (p50, p99, max) = (
        percentile(&lateness, 0.5),
        percentile(&lateness, 0.99),
        lateness[lateness.len() - 1],
    );
    eprintln!("2000 retries: lateness p50 {p50:?}, p99 {p99:?}, max {max:?}");
    assert!(
        max <= Duration::from_millis(250),
        "a retry started {max:?} late"
    );
    let ended = server.wait_all_ended("push", 1000).await;
    assert!(ended.iter().all(|d| d["state"] == "delivered"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_push_backoff_pauses_grow_until_it_is_switched_off() {
    let server = Server::start().await;
    let endpoint = failing_twice().await;
    server.create_topic("orders").await;
    let created = server
        .create_subscription(subscription(
            "push",
            "orders",
            &endpoint.url,
            json!({ "retry_policy": fixed_1s(), "push_backoff": true }),
        ))
        .await;
    assert_eq!(created["push_backoff"], true);
    let events: Vec<Value> = (0..20)
        .map(|i| event(&format!("o-{i}"), "order.created"))
        .collect();
    let (status, body) = server.publish_batch("orders", &events).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");

    // Failures cut the window 16 → 8 → 4 → 2 → 1, then every failure
    // pauses the subscription twice as long as the last: 100ms, 200ms,
    // 400ms, 800ms. Wait for those pauses to show as gaps between pushes.
    let pauses = |endpoint: &Endpoint| -> Vec<Duration> {
        let mut arrivals: Vec<Instant> = endpoint.received().iter().map(|r| r.at).collect();
        arrivals.sort();
        arrivals
            .windows(2)
            .map(|w| w[1] - w[0])
            .filter(|gap| *gap >= Duration::from_millis(80))
            .collect()
    };
    let deadline = Instant::now() + PATIENCE;
    let mut seen;
    loop {
        seen = pauses(&endpoint);
        // The first long gap is the wait for the first retries to be due.
        if seen.len() >= 5 {
            break;
        }
        assert!(Instant::now() < deadline, "pauses so far: {seen:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("gaps between pushes with push backoff: {seen:?}");
    let growing = &seen[seen.len() - 4..];
    for pair in growing.windows(2) {
        assert!(pair[1] >= pair[0] * 3 / 2, "pauses do not grow: {seen:?}");
    }
    assert!(growing[3] >= Duration::from_millis(700), "{seen:?}");
    // The schedule alone would have delivered every event by now.
    let delivered = server
        .deliveries("push")
        .await
        .iter()
        .filter(|d| d["state"] == "delivered")
        .count();
    assert!(delivered < 20, "{delivered} delivered despite the pauses");

    // Switched off, the pause ends and the backlog goes on schedule.
    let (status, patched) = server
        .patch("/v1/subscriptions/push", json!({"push_backoff": false}))
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["push_backoff"], false);
    let switched = Instant::now();
    let ended = server.wait_all_ended("push", 20).await;
    assert!(ended.iter().all(|d| d["state"] == "delivered"));
    eprintln!(
        "all delivered {:?} after push backoff was switched off",
        switched.elapsed()
    );
    assert!(switched.elapsed() < Duration::from_secs(4));
}

#[tokio::test]
async fn push_backoff_is_a_setting_presets_bring_and_patches_change() {
    let server = Server::start().await;
    server.create_topic("orders").await;
    let created = server
        .create_subscription(subscription(
            "push",
            "orders",
            "http://127.0.0.1:9/hook",
            json!({"retry_policy": {"preset": "pubsub"}}),
        ))
        .await;
    assert_eq!(created["push_backoff"], true);
    let patch = |body: Value| server.patch("/v1/subscriptions/push", body);
    let setting = |(status, body): (StatusCode, Value)| {
        assert_eq!(status, StatusCode::OK, "{body}");
        body["push_backoff"].clone()
    };
    // A new preset brings its own choice.
    let appengine = json!({"retry_policy": {"preset": "appengine"}});
    assert_eq!(setting(patch(appengine).await), false);
    assert_eq!(setting(patch(json!({"push_backoff": true})).await), true);
    // Other changes keep the choice, though the preset would say otherwise.
    assert_eq!(setting(patch(json!({"timeout": "5s"})).await), true);
    // null goes back to what the preset brings.
    assert_eq!(setting(patch(json!({"push_backoff": null})).await), false);
    let (status, body) = patch(json!({"push_backoff": "yes"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("expected a boolean"), "{message}");
    let (_, openapi) = server.get("/openapi.json").await;
    assert_eq!(
        openapi["components"]["schemas"]["SubscriptionSpec"]["properties"]["push_backoff"]["type"],
        "boolean"
    );
}

/// An endpoint that answers the first push `503` with `Retry-After: 30` and
/// every later one 200.
async fn asks_to_wait_30s() -> Endpoint {
    Endpoint::start(|_, earlier| {
        if earlier == 0 {
            Reply::status(503).header("retry-after", "30")
        } else {
            Reply::ok()
        }
    })
    .await
}

#[tokio::test]
async fn a_subscription_says_until_when_and_why_its_pushes_are_held() {
    let server = Server::start().await;
    let endpoint = asks_to_wait_30s().await;
    server.create_topic("orders").await;
    // Retries 30s apart: a Retry-After of 30s is honoured whole.
    let created = server
        .create_subscription(subscription(
            "hooks",
            "orders",
            &endpoint.url,
            json!({"retry_policy": {"backoff": {"kind": "fixed", "interval": "30s"}}}),
        ))
        .await;
    assert_eq!(created["pushes_held"], Value::Null, "{created}");

    server.publish_ok("orders", &event("e-1", "t")).await;
    let asked_at = jiff::Timestamp::now();
    let held = wait_for_hold(&server, "hooks", "retry_after").await;
    let until = timestamp(&held["pushes_held"]["until"]);
    let wait = until.duration_since(asked_at);
    assert!(
        wait > jiff::SignedDuration::from_secs(28) && wait <= jiff::SignedDuration::from_secs(31),
        "held {wait} after the 503: {held:#}"
    );
    let detail = held["pushes_held"]["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("the endpoint answered 429 or 503 with Retry-After (a wait it asks for"),
        "{detail}"
    );
    let (_, listed) = server.get("/v1/subscriptions").await;
    assert_eq!(
        listed["subscriptions"][0]["pushes_held"],
        held["pushes_held"]
    );

    // A delivery published meanwhile is due and waits: no attempt yet.
    server.publish_ok("orders", &event("e-2", "t")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let waiting = server
        .deliveries("hooks")
        .await
        .into_iter()
        .find(|d| d["event_id"] == "e-2")
        .unwrap();
    assert_eq!(waiting["state"], "scheduled", "{waiting}");
    assert_eq!(waiting["attempts"], 0, "{waiting}");
    assert!(timestamp(&waiting["next_attempt_at"]) <= jiff::Timestamp::now());
    assert_eq!(endpoint.count(), 1, "only the first push went out");

    // What a GET answered can be sent back whole: the hold is output only.
    let (status, patched) = server.patch("/v1/subscriptions/hooks", held.clone()).await;
    assert_eq!(status, StatusCode::OK, "{patched}");

    // A pause by hand outranks it and lasts until lifted; so does a rate of 0.
    let (_, paused) = server
        .post("/v1/subscriptions/hooks/pause", json!({}))
        .await;
    assert_eq!(paused["pushes_held"]["reason"], "paused", "{paused}");
    assert_eq!(paused["pushes_held"]["until"], Value::Null);
    let (_, resumed) = server
        .post("/v1/subscriptions/hooks/resume", json!({}))
        .await;
    assert_eq!(resumed["pushes_held"]["reason"], "retry_after", "{resumed}");
    let (status, zero) = server
        .patch("/v1/subscriptions/hooks", json!({"rate": "0"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{zero}");
    assert_eq!(zero["pushes_held"]["reason"], "rate_zero", "{zero}");
    assert_eq!(
        zero["pushes_held"]["detail"],
        "the subscription's rate is 0; raising it starts them again"
    );
}

#[tokio::test]
async fn push_backoff_shows_as_a_hold_with_its_failure_count() {
    let server = Server::start().await;
    let endpoint = Endpoint::start(|_, _| Reply::status(500)).await;
    server.create_topic("orders").await;
    server
        .create_subscription(subscription(
            "hooks",
            "orders",
            &endpoint.url,
            json!({"retry_policy": {"backoff": {"kind": "fixed", "interval": "0.1s"}},
                   "push_backoff": true}),
        ))
        .await;
    server.publish_ok("orders", &event("e-1", "t")).await;
    let held = wait_for_hold(&server, "hooks", "push_backoff").await;
    let detail = held["pushes_held"]["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("push backoff is on and ") && detail.contains(" failed in a row: "),
        "{detail}"
    );
    assert!(timestamp(&held["pushes_held"]["until"]) > timestamp(&held["updated_at"]));
}

//! End-to-end tests: a real redrive server (API, dispatcher, SQLite store in
//! a temporary directory) and real webhook endpoints, all on 127.0.0.1.
//! Nothing is mocked; every push crosses a socket.

use crate::common;

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::{
    Endpoint, Received, Reply, Server, closed_port, event, subscription, tally, timestamp,
};
use redrive_server::app::Limits;
use serde_json::{Value, json};

/// The ce-ids an endpoint received, sorted, for comparing with expectations.
fn sorted(ids: &[&str]) -> Vec<String> {
    let mut ids: Vec<String> = ids.iter().map(|id| id.to_string()).collect();
    ids.sort();
    ids
}

fn error_message(body: &Value) -> &str {
    body["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("not an API error: {body}"))
}

fn assert_api_error(status: StatusCode, body: &Value, expected: StatusCode, code: &str) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(!error_message(body).is_empty(), "{body}");
}

// ---------------------------------------------------------------------------
// Delivery and retries
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_delivered_on_first_try_reaches_endpoint_once_in_binary_mode() {
    let server = Server::start().await;
    let endpoint = Endpoint::ok().await;
    server.create_topic("orders").await;
    server
        .create_subscription(subscription(
            "orders-hook",
            "orders",
            &endpoint.url,
            json!({}),
        ))
        .await;
    let published = json!({
        "specversion": "1.0",
        "id": "order-1",
        "source": "/shop/orders",
        "type": "order.created",
        "subject": "orders/1 (new)",
        "time": "2024-05-01T12:00:00Z",
        "tenant": "acme",
        "datacontenttype": "application/json",
        "data": {"total": 42, "items": ["book"]},
    });
    let (status, body) = server.publish("orders", &published).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(
        body,
        json!({"events": [{"id": "order-1", "source": "/shop/orders", "duplicate": false}]})
    );

    let delivery = server.only_delivery("orders-hook").await;
    let id = delivery["id"].as_str().unwrap().to_owned();
    let detail = server.wait_for_state(&id, "delivered").await;
    let received = endpoint.assert_settles_at(1).await;

    let push = &received[0];
    assert_eq!(push.method, "POST");
    assert_eq!(push.path, "/hook");
    assert_eq!(push.header("ce-id"), Some("order-1"));
    assert_eq!(push.header("ce-source"), Some("/shop/orders"));
    assert_eq!(push.header("ce-type"), Some("order.created"));
    assert_eq!(push.header("ce-specversion"), Some("1.0"));
    // The binding percent-encodes spaces in header values.
    assert_eq!(push.header("ce-subject"), Some("orders/1%20(new)"));
    assert_eq!(push.header("ce-time"), Some("2024-05-01T12:00:00Z"));
    assert_eq!(push.header("ce-tenant"), Some("acme"));
    assert_eq!(push.header("content-type"), Some("application/json"));
    let data: Value = serde_json::from_slice(&push.body).expect("the body is the JSON data");
    assert_eq!(data, json!({"total": 42, "items": ["book"]}));
    assert_eq!(push.header("redrive-attempt"), Some("1"));
    assert_eq!(push.header("webhook-id"), Some(id.as_str()));
    let sent_at: i64 = push
        .header("webhook-timestamp")
        .expect("a webhook-timestamp")
        .parse()
        .expect("webhook-timestamp is in seconds");
    let now = jiff::Timestamp::now().as_second();
    assert!((now - 60..=now).contains(&sent_at), "{sent_at} vs {now}");

    assert_eq!(detail["subscription"], "orders-hook");
    assert_eq!(detail["event_id"], "order-1");
    // The count and the list each under its own key, never one key twice.
    assert_eq!(detail["attempts"], 1, "{detail:#}");
    let raw = server
        .http
        .get(server.url(&format!("/v1/deliveries/{id}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(raw.matches("\"attempts\":").count(), 1, "{raw}");
    assert_eq!(
        detail["attempt_log"].as_array().unwrap().len(),
        1,
        "{detail:#}"
    );
    let attempt = &detail["attempt_log"][0];
    assert_eq!(attempt["number"], 1);
    assert_eq!(attempt["status"], 200);
    assert_eq!(attempt["error"], Value::Null);
    assert_eq!(attempt["decision"]["kind"], "delivered");
    assert_eq!(detail["last_status"], 200);
    assert_eq!(detail["failure_reason"], Value::Null);
    assert_eq!(detail["event"]["id"], "order-1");
    assert_eq!(
        detail["event"]["data"],
        json!({"total": 42, "items": ["book"]})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_failing_twice_gets_three_attempts_on_policy_delays() {
    let server = Server::start().await;
    let endpoint = Endpoint::start(|_, earlier| {
        if earlier < 2 {
            Reply::status(503).body("busy")
        } else {
            Reply::ok()
        }
    })
    .await;
    server.create_topic("orders").await;
    let policy = json!({
        "backoff": {"kind": "exponential", "min_backoff": "0.3s", "max_backoff": "2s", "max_doublings": 3},
        "retry_limit": 5,
    });
    server
        .create_subscription(subscription(
            "orders-hook",
            "orders",
            &endpoint.url,
            json!({ "retry_policy": policy }),
        ))
        .await;
    server
        .publish_ok("orders", &event("o-1", "order.created"))
        .await;

    let id = server.only_delivery("orders-hook").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let detail = server.wait_for_state(&id, "delivered").await;
    let received = endpoint.assert_settles_at(3).await;

    let attempts: Vec<u32> = received.iter().map(Received::attempt).collect();
    assert_eq!(attempts, [1, 2, 3]);
    for push in &received {
        assert_eq!(push.header("webhook-id"), Some(id.as_str()));
        assert_eq!(push.header("ce-id"), Some("o-1"));
    }
    // Retry 1 waits min_backoff, retry 2 twice that.
    let slack = Duration::from_secs(1);
    for (gap, delay) in [(0, 300), (1, 600)] {
        let delay = Duration::from_millis(delay);
        let waited = received[gap + 1].at - received[gap].at;
        assert!(
            waited >= delay && waited <= delay + slack,
            "gap before attempt {}: {waited:?}, policy says {delay:?}",
            gap + 2
        );
    }

    let attempts = detail["attempt_log"].as_array().unwrap();
    assert_eq!(attempts.len(), 3, "{detail:#}");
    let decisions: Vec<(&str, Option<u64>)> = attempts
        .iter()
        .map(|a| {
            (
                a["decision"]["kind"].as_str().unwrap(),
                a["decision"]["retry"].as_u64(),
            )
        })
        .collect();
    assert_eq!(
        decisions,
        [("retry", Some(1)), ("retry", Some(2)), ("delivered", None)]
    );
    let statuses: Vec<&Value> = attempts.iter().map(|a| &a["status"]).collect();
    assert_eq!(statuses, [&json!(503), &json!(503), &json!(200)]);
    assert_eq!(attempts[0]["response_snippet"], "busy");

    // Each retry is scheduled at the end of its attempt plus the policy's
    // delay, and the next attempt starts then.
    for (i, delay_ms) in [(0usize, 300i64), (1, 600)] {
        let attempt = &attempts[i];
        let started = timestamp(&attempt["started_at"]);
        let ended = started
            .checked_add(jiff::SignedDuration::from_millis(
                attempt["duration_ms"].as_i64().unwrap(),
            ))
            .unwrap();
        let at = timestamp(&attempt["decision"]["at"]);
        let scheduled_after_end = at.duration_since(ended).as_millis();
        assert!(
            (delay_ms - 5..=delay_ms + 100).contains(&(scheduled_after_end as i64)),
            "retry {} at {at}, {scheduled_after_end} ms after attempt {} ended at {ended}",
            i + 1,
            i + 1
        );
        let next_started = timestamp(&attempts[i + 1]["started_at"]);
        let late = next_started.duration_since(at).as_millis() as i64;
        assert!(
            (-2..=1000).contains(&late),
            "attempt {} started {late} ms after its scheduled time",
            i + 2
        );
    }
    let numbers: Vec<&Value> = attempts.iter().map(|a| &a["number"]).collect();
    assert_eq!(numbers, [&json!(1), &json!(2), &json!(3)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_slower_than_the_timeout_fails_with_timeout_until_retries_run_out() {
    let server = Server::start().await;
    let endpoint = Endpoint::start(|_, _| Reply::ok().after(Duration::from_secs(2))).await;
    server.create_topic("orders").await;
    server
        .create_subscription(subscription(
            "slow-hook",
            "orders",
            &endpoint.url,
            json!({
                "timeout": "0.3s",
                "retry_policy": {"backoff": {"kind": "fixed", "interval": "0.2s"}, "retry_limit": 1},
            }),
        ))
        .await;
    server
        .publish_ok("orders", &event("o-1", "order.created"))
        .await;

    let id = server.only_delivery("slow-hook").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let detail = server.wait_for_state(&id, "failed").await;
    let received = endpoint.assert_settles_at(2).await;
    let attempts: Vec<u32> = received.iter().map(Received::attempt).collect();
    assert_eq!(attempts, [1, 2]);

    assert_eq!(detail["failure_reason"], "retries_exhausted", "{detail:#}");
    assert_eq!(detail["last_error"], "timeout");
    let attempts = detail["attempt_log"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{detail:#}");
    for attempt in attempts {
        assert_eq!(attempt["error"], "timeout", "{attempt:#}");
        assert_eq!(attempt["status"], Value::Null);
        let took = attempt["duration_ms"].as_u64().unwrap();
        assert!((300..1500).contains(&took), "a 0.3s timeout took {took} ms");
    }
    assert_eq!(attempts[0]["decision"]["kind"], "retry");
    assert_eq!(attempts[0]["decision"]["retry"], 1);
    assert_eq!(
        attempts[1]["decision"],
        json!({"kind": "failed", "reason": "retries_exhausted"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn final_status_codes_fail_the_delivery_without_a_retry() {
    let server = Server::start().await;
    // 410 is final by code, 404 by the "4xx" class; 503 stays retryable.
    let endpoint = Endpoint::start(|push, _| match push.header("ce-type") {
        Some("gone") => Reply::status(410).body("gone for good"),
        _ => Reply::status(404),
    })
    .await;
    server.create_topic("orders").await;
    for (name, ty, final_codes) in [
        ("by-code", "gone", json!([410])),
        ("by-class", "missing", json!(["4xx"])),
    ] {
        server
            .create_subscription(subscription(
                name,
                "orders",
                &endpoint.url,
                json!({
                    "filter": {"type": ty},
                    "retry_policy": {
                        "backoff": {"kind": "fixed", "interval": "0.1s"},
                        "retry_limit": 5,
                        "final_codes": final_codes,
                    },
                }),
            ))
            .await;
    }
    server.publish_ok("orders", &event("o-1", "gone")).await;
    server.publish_ok("orders", &event("o-2", "missing")).await;

    for (name, status) in [("by-code", 410), ("by-class", 404)] {
        let id = server.only_delivery(name).await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let detail = server.wait_for_state(&id, "failed").await;
        assert_eq!(detail["failure_reason"], "non_retryable", "{detail:#}");
        let attempts = detail["attempt_log"].as_array().unwrap();
        assert_eq!(attempts.len(), 1, "{detail:#}");
        assert_eq!(attempts[0]["status"], status);
        assert_eq!(
            attempts[0]["decision"],
            json!({"kind": "failed", "reason": "non_retryable"})
        );
    }
    let detail = server
        .delivery(
            server.only_delivery("by-code").await["id"]
                .as_str()
                .unwrap(),
        )
        .await;
    assert_eq!(
        detail["attempt_log"][0]["response_snippet"],
        "gone for good"
    );
    // A retry would come 0.1s later; none does.
    endpoint.assert_settles_at(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_refusing_connections_records_a_connect_error() {
    let server = Server::start().await;
    server.create_topic("orders").await;
    let endpoint = format!("http://127.0.0.1:{}/hook", closed_port());
    server
        .create_subscription(subscription(
            "nobody-home",
            "orders",
            &endpoint,
            json!({"retry_policy": {"backoff": {"kind": "immediate"}, "retry_limit": 1}}),
        ))
        .await;
    server
        .publish_ok("orders", &event("o-1", "order.created"))
        .await;

    let id = server.only_delivery("nobody-home").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let detail = server.wait_for_state(&id, "failed").await;
    assert_eq!(detail["failure_reason"], "retries_exhausted", "{detail:#}");
    assert_eq!(detail["last_error"], "connect");
    let attempts = detail["attempt_log"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{detail:#}");
    for attempt in attempts {
        assert_eq!(attempt["error"], "connect", "{attempt:#}");
        assert_eq!(attempt["status"], Value::Null);
        let message = attempt["error_message"].as_str().unwrap_or_default();
        assert!(!message.is_empty(), "{attempt:#}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_now_on_a_failed_delivery_makes_another_attempt() {
    let server = Server::start().await;
    let endpoint = Endpoint::start(|_, earlier| {
        if earlier == 0 {
            Reply::status(410)
        } else {
            Reply::ok()
        }
    })
    .await;
    server.create_topic("orders").await;
    server
        .create_subscription(subscription(
            "orders-hook",
            "orders",
            &endpoint.url,
            json!({"retry_policy": {"backoff": {"kind": "fixed", "interval": "0.1s"}, "final_codes": [410]}}),
        ))
        .await;
    server
        .publish_ok("orders", &event("o-1", "order.created"))
        .await;
    let id = server.only_delivery("orders-hook").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    server.wait_for_state(&id, "failed").await;
    endpoint.assert_settles_at(1).await;

    let (status, body) = server
        .post(&format!("/v1/deliveries/{id}/retry"), Value::Null)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["id"], id.as_str());
    assert!(
        ["scheduled", "in_flight", "delivered"].contains(&body["state"].as_str().unwrap()),
        "{body}"
    );

    let detail = server.wait_for_state(&id, "delivered").await;
    let received = endpoint.assert_settles_at(2).await;
    assert_eq!(received[1].attempt(), 2);
    assert_eq!(received[1].header("webhook-id"), Some(id.as_str()));
    let attempts = detail["attempt_log"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{detail:#}");
    assert_eq!(attempts[0]["decision"]["kind"], "failed");
    assert_eq!(attempts[1]["number"], 2);
    assert_eq!(attempts[1]["decision"]["kind"], "delivered");
    assert_eq!(detail["failure_reason"], Value::Null);

    let (status, body) = server
        .post("/v1/deliveries/no-such-delivery/retry", Value::Null)
        .await;
    assert_api_error(status, &body, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_subscription_does_not_hold_up_another_one() {
    let server = Server::start().await;
    let slow = Endpoint::start(|_, _| Reply::ok().after(Duration::from_millis(700))).await;
    let fast = Endpoint::ok().await;
    server.create_topic("orders").await;
    server
        .create_subscription(subscription(
            "slow-hook",
            "orders",
            &slow.url,
            json!({"max_concurrency": 1, "timeout": "5s"}),
        ))
        .await;
    server
        .create_subscription(subscription(
            "fast-hook",
            "orders",
            &fast.url,
            json!({"max_concurrency": 4}),
        ))
        .await;
    let events: Vec<Value> = (0..20)
        .map(|i| event(&format!("o-{i}"), "order.created"))
        .collect();
    let started = Instant::now();
    let (status, body) = server.publish_batch("orders", &events).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");

    fast.wait_for_within(20, Duration::from_millis(2500)).await;
    let fast_took = started.elapsed();
    let slow_so_far = slow.received().len();
    assert!(
        slow_so_far <= 5,
        "the slow endpoint answered {slow_so_far} pushes in {fast_took:?}; 20 would take 14s"
    );
    assert_eq!(slow.most_in_flight(), 1, "max_concurrency 1 was exceeded");
    assert!(fast.most_in_flight() <= 4, "{}", fast.most_in_flight());
    let mut expected: Vec<String> = (0..20).map(|i| format!("o-{i}")).collect();
    expected.sort();
    assert_eq!(fast.ce_ids(), expected);
}

// ---------------------------------------------------------------------------
// Publishing
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_publish_is_answered_as_duplicate_and_not_delivered_twice() {
    let server = Server::start().await;
    let endpoint = Endpoint::ok().await;
    server.create_topic("orders").await;
    server
        .create_subscription(subscription(
            "orders-hook",
            "orders",
            &endpoint.url,
            json!({}),
        ))
        .await;
    let first = event("o-1", "order.created");
    server.publish_ok("orders", &first).await;

    let (status, body) = server.publish("orders", &first).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(
        body,
        json!({"events": [{"id": "o-1", "source": "/tests", "duplicate": true}]})
    );
    // The same id from another source is another event.
    let mut other_source = first.clone();
    other_source["source"] = json!("/elsewhere");
    // In a batch, the known event is a duplicate and the new one is not.
    let (status, body) = server
        .publish_batch("orders", &[first.clone(), other_source])
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let duplicates: Vec<&Value> = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["duplicate"])
        .collect();
    assert_eq!(duplicates, [&json!(true), &json!(false)], "{body}");

    server.wait_all_ended("orders-hook", 2).await;
    let received = endpoint.assert_settles_at(2).await;
    let sources = tally(received.iter().map(|r| r.header("ce-source").unwrap()));
    assert_eq!(sources.get("/tests"), Some(&1), "{sources:?}");
    assert_eq!(sources.get("/elsewhere"), Some(&1), "{sources:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_route_only_matching_events() {
    let server = Server::start().await;
    server.create_topic("orders").await;
    let exact = Endpoint::ok().await;
    let prefix = Endpoint::ok().await;
    let subject = Endpoint::ok().await;
    let everything = Endpoint::ok().await;
    for (name, endpoint, filter) in [
        ("exact-type", &exact, json!({"type": "order.created"})),
        ("type-prefix", &prefix, json!({"type": "order.*"})),
        ("vip-subject", &subject, json!({"subject": "vip"})),
        ("everything", &everything, json!({})),
    ] {
        server
            .create_subscription(subscription(
                name,
                "orders",
                &endpoint.url,
                json!({ "filter": filter }),
            ))
            .await;
    }
    let with_subject = |id: &str, ty: &str, subject: Option<&str>| {
        let mut event = event(id, ty);
        if let Some(subject) = subject {
            event["subject"] = json!(subject);
        }
        event
    };
    let events = [
        with_subject("e1", "order.created", Some("vip")),
        with_subject("e2", "order.shipped", None),
        with_subject("e3", "invoice.paid", Some("vip")),
        with_subject("e4", "order.created.v2", Some("regular")),
        with_subject("e5", "order", None),
    ];
    let (status, body) = server.publish_batch("orders", &events).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");

    for (name, endpoint, expected) in [
        ("exact-type", &exact, vec!["e1"]),
        ("type-prefix", &prefix, vec!["e1", "e2", "e4"]),
        ("vip-subject", &subject, vec!["e1", "e3"]),
        (
            "everything",
            &everything,
            vec!["e1", "e2", "e3", "e4", "e5"],
        ),
    ] {
        // Deliveries exist only for matching events…
        let mut stored: Vec<String> = server
            .deliveries(name)
            .await
            .iter()
            .map(|d| d["event_id"].as_str().unwrap().to_owned())
            .collect();
        stored.sort();
        assert_eq!(stored, sorted(&expected), "deliveries of {name}");
        // …and only those reach the endpoint.
        endpoint.assert_settles_at(expected.len()).await;
        assert_eq!(endpoint.ce_ids(), sorted(&expected), "pushes to {name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_publish_delivers_every_event() {
    let server = Server::start().await;
    let endpoint = Endpoint::ok().await;
    server.create_topic("orders").await;
    server
        .create_subscription(subscription(
            "orders-hook",
            "orders",
            &endpoint.url,
            json!({}),
        ))
        .await;
    let ids: Vec<String> = (0..10).map(|i| format!("o-{i}")).collect();
    let events: Vec<Value> = ids.iter().map(|id| event(id, "order.created")).collect();
    let (status, body) = server.publish_batch("orders", &events).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let answered: Vec<(&str, bool)> = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["id"].as_str().unwrap(), e["duplicate"].as_bool().unwrap()))
        .collect();
    let expected: Vec<(&str, bool)> = ids.iter().map(|id| (id.as_str(), false)).collect();
    assert_eq!(answered, expected, "one answer per event, in order");

    let deliveries = server.wait_all_ended("orders-hook", 10).await;
    assert!(deliveries.iter().all(|d| d["state"] == "delivered"));
    let received = endpoint.assert_settles_at(10).await;
    for push in &received {
        let data: Value = serde_json::from_slice(&push.body).unwrap();
        assert_eq!(data, json!({"id": push.ce_id()}));
    }
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    assert_eq!(endpoint.ce_ids(), sorted(&ids));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_mode_publish_is_delivered_with_the_same_attributes_and_body() {
    let server = Server::start().await;
    let endpoint = Endpoint::ok().await;
    server.create_topic("orders").await;
    server
        .create_subscription(subscription(
            "orders-hook",
            "orders",
            &endpoint.url,
            json!({}),
        ))
        .await;
    let request = server
        .http
        .post(server.url("/v1/topics/orders/events"))
        .header("ce-id", "bin-1")
        .header("ce-source", "/shop")
        .header("ce-type", "order.note")
        .header("ce-specversion", "1.0")
        .header("ce-subject", "caf%C3%A9%20order")
        .header("ce-traceparent", "00-abc-def-01")
        .header("content-type", "text/plain; charset=utf-8")
        .body("hello, world");
    let (status, body) = server.send(request).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["events"][0]["id"], "bin-1");

    let id = server.only_delivery("orders-hook").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let detail = server.wait_for_state(&id, "delivered").await;
    assert_eq!(detail["event"]["subject"], "café order");
    let received = endpoint.assert_settles_at(1).await;
    let push = &received[0];
    assert_eq!(push.header("ce-id"), Some("bin-1"));
    assert_eq!(push.header("ce-source"), Some("/shop"));
    assert_eq!(push.header("ce-type"), Some("order.note"));
    assert_eq!(push.header("ce-specversion"), Some("1.0"));
    assert_eq!(push.header("ce-subject"), Some("caf%C3%A9%20order"));
    assert_eq!(push.header("ce-traceparent"), Some("00-abc-def-01"));
    assert_eq!(
        push.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(&push.body[..], b"hello, world");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_without_an_id_is_rejected_naming_the_id() {
    let server = Server::start().await;
    server.create_topic("orders").await;
    let mut missing_id = event("x", "order.created");
    missing_id.as_object_mut().unwrap().remove("id");
    let (status, body) = server.publish("orders", &missing_id).await;
    assert_api_error(status, &body, StatusCode::BAD_REQUEST, "invalid_argument");
    assert!(error_message(&body).starts_with("id:"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_of_specversion_0_3_is_rejected_naming_specversion() {
    let server = Server::start().await;
    server.create_topic("orders").await;
    let mut old = event("o-1", "order.created");
    old["specversion"] = json!("0.3");
    let (status, body) = server.publish("orders", &old).await;
    assert_api_error(status, &body, StatusCode::BAD_REQUEST, "invalid_argument");
    let message = error_message(&body);
    assert!(message.starts_with("specversion:"), "{body}");
    assert!(message.contains("0.3"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_to_an_unknown_topic_is_404() {
    let server = Server::start().await;
    let (status, body) = server
        .publish("no-such-topic", &event("o-1", "order.created"))
        .await;
    assert_api_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    assert!(error_message(&body).contains("no-such-topic"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_body_over_the_limit_is_413() {
    let server = Server::start_with(Limits {
        max_publish_bytes: 1024,
        ..Limits::default()
    })
    .await;
    let endpoint = Endpoint::ok().await;
    server.create_topic("orders").await;
    server
        .create_subscription(subscription(
            "orders-hook",
            "orders",
            &endpoint.url,
            json!({}),
        ))
        .await;
    let mut big = event("big", "order.created");
    big["data"] = json!({"padding": "x".repeat(2000)});
    let (status, body) = server.publish("orders", &big).await;
    assert_api_error(
        status,
        &body,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );
    // A body under the limit still goes through.
    server
        .publish_ok("orders", &event("small", "order.created"))
        .await;
    let deliveries = server.deliveries("orders-hook").await;
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0]["event_id"], "small");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_with_one_invalid_event_stores_and_delivers_nothing() {
    let server = Server::start().await;
    let endpoint = Endpoint::ok().await;
    server.create_topic("orders").await;
    server
        .create_subscription(subscription(
            "orders-hook",
            "orders",
            &endpoint.url,
            json!({}),
        ))
        .await;
    let mut invalid = event("o-3", "order.created");
    invalid.as_object_mut().unwrap().remove("type");
    let batch = [
        event("o-1", "order.created"),
        event("o-2", "order.created"),
        invalid,
    ];
    let (status, body) = server.publish_batch("orders", &batch).await;
    assert_api_error(status, &body, StatusCode::BAD_REQUEST, "invalid_argument");
    assert!(error_message(&body).starts_with("[2].type"), "{body}");

    assert!(server.deliveries("orders-hook").await.is_empty());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(endpoint.received().is_empty());
    // Nothing of the batch was stored: its valid events are new.
    let (status, body) = server.publish_batch("orders", &batch[..2]).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["events"][0]["duplicate"], false, "{body}");
    assert_eq!(body["events"][1]["duplicate"], false, "{body}");
    endpoint.assert_settles_at(2).await;
}

// ---------------------------------------------------------------------------
// Administration
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_an_existing_topic_is_409() {
    let server = Server::start().await;
    server.create_topic("orders").await;
    let (status, body) = server.post("/v1/topics", json!({"name": "orders"})).await;
    assert_api_error(status, &body, StatusCode::CONFLICT, "conflict");
    let (status, body) = server.get("/v1/topics").await;
    assert_eq!(status, StatusCode::OK);
    // One `orders`, beside the built-in `redrive.system`.
    let names: Vec<&str> = body["topics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["orders", "redrive.system"], "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_subscriptions_are_refused_with_json_errors() {
    let server = Server::start().await;
    server.create_topic("orders").await;
    let good = "http://127.0.0.1:9/hook";

    let (status, body) = server
        .post(
            "/v1/subscriptions",
            subscription("bad-url", "orders", "not a url", json!({})),
        )
        .await;
    assert_api_error(status, &body, StatusCode::BAD_REQUEST, "invalid_argument");
    assert!(error_message(&body).starts_with("endpoint:"), "{body}");

    let (status, body) = server
        .post(
            "/v1/subscriptions",
            subscription("bad-scheme", "orders", "ftp://127.0.0.1/hook", json!({})),
        )
        .await;
    assert_api_error(status, &body, StatusCode::BAD_REQUEST, "invalid_argument");
    assert!(error_message(&body).starts_with("endpoint:"), "{body}");

    let (status, body) = server
        .post(
            "/v1/subscriptions",
            subscription("no-topic", "no-such-topic", good, json!({})),
        )
        .await;
    assert_api_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    assert!(error_message(&body).contains("no-such-topic"), "{body}");

    let min_over_max = json!({"retry_policy": {"backoff": {
        "kind": "exponential", "min_backoff": "10s", "max_backoff": "1s", "max_doublings": 3,
    }}});
    let (status, body) = server
        .post(
            "/v1/subscriptions",
            subscription("bad-policy", "orders", good, min_over_max),
        )
        .await;
    assert_api_error(status, &body, StatusCode::BAD_REQUEST, "invalid_argument");
    assert!(error_message(&body).contains("max_backoff"), "{body}");

    let (status, body) = server
        .post(
            "/v1/subscriptions",
            subscription("bad-timeout", "orders", good, json!({"timeout": "0s"})),
        )
        .await;
    assert_api_error(status, &body, StatusCode::BAD_REQUEST, "invalid_argument");
    assert!(error_message(&body).starts_with("timeout:"), "{body}");

    let (status, body) = server
        .send(
            server
                .http
                .post(server.url("/v1/subscriptions"))
                .header("content-type", "application/json")
                .body("{not json"),
        )
        .await;
    assert_api_error(status, &body, StatusCode::BAD_REQUEST, "invalid_argument");

    let (status, body) = server.get("/v1/subscriptions").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["subscriptions"], json!([]), "nothing was created");
}

/// Asserts a 400 whose message names the unknown `field`, where it sits and
/// the fields known there, in the words `redrive.toml` uses too.
fn assert_unknown_field(status: StatusCode, body: &Value, field: &str, at: &str, known: &str) {
    assert_api_error(status, body, StatusCode::BAD_REQUEST, "invalid_argument");
    let message = error_message(body);
    let place = if at.is_empty() {
        String::new()
    } else {
        format!(" in {at}")
    };
    let expected = format!("unknown field \"{field}\"{place}; known fields: ");
    assert!(message.contains(&expected), "{expected} in {body}");
    assert!(message.contains(known), "{known} in {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_fields_are_refused_in_every_body_at_every_level() {
    let server = Server::start().await;
    server.create_topic("orders").await;
    let good = "http://127.0.0.1:9/hook";
    let sub = |extra: Value| subscription("typo", "orders", good, extra);

    // A subscription, its retry policy (with and without a preset, every
    // backoff kind), its health policy and its filter.
    let cases = [
        (
            json!({"retry_polcy": {}}),
            "retry_polcy",
            "",
            "retry_policy",
        ),
        (
            json!({"retry_policy": {"retry_limmit": 5}}),
            "retry_limmit",
            "retry_policy",
            "retry_limit",
        ),
        (
            json!({"retry_policy": {"preset": "pubsub", "retry_limmit": 5}}),
            "retry_limmit",
            "retry_policy",
            "age_limit, backoff,",
        ),
        (
            json!({"retry_policy": {"backoff": {"kind": "fixed", "interval": "1s", "intervl": "2s"}}}),
            "intervl",
            "retry_policy.backoff",
            "interval",
        ),
        (
            json!({"retry_policy": {"backoff": {"kind": "exponential", "min_backoff": "1s",
                "max_backoff": "2s", "max_doublings": 1, "max_doubling": 2}}}),
            "max_doubling",
            "retry_policy.backoff",
            "max_doublings",
        ),
        (
            json!({"retry_policy": {"backoff": {"kind": "schedule", "delays": ["1s"], "delay": "1s"}}}),
            "delay",
            "retry_policy.backoff",
            "delays",
        ),
        (
            json!({"health_policy": {"windw": "1h"}}),
            "windw",
            "health_policy",
            "window",
        ),
        (
            json!({"filter": {"types": "a"}}),
            "types",
            "filter",
            "source, subject, type",
        ),
    ];
    for (extra, field, at, known) in cases {
        let (status, body) = server.post("/v1/subscriptions", sub(extra)).await;
        assert_unknown_field(status, &body, field, at, known);
    }
    let (status, body) = server
        .post(
            "/v1/subscriptions",
            sub(json!({"retry_policy": {"backoff": {"kind": "immediate", "interval": "1s"}}})),
        )
        .await;
    assert_api_error(status, &body, StatusCode::BAD_REQUEST, "invalid_argument");
    assert!(
        error_message(&body).contains("unknown field \"interval\" in retry_policy.backoff"),
        "{body}"
    );

    // A PATCH, whose merge result is read as strictly.
    server.create_subscription(sub(json!({}))).await;
    let (status, body) = server
        .patch(
            "/v1/subscriptions/typo",
            json!({"retry_policy": {"retry_limmit": 1}}),
        )
        .await;
    assert_unknown_field(status, &body, "retry_limmit", "retry_policy", "retry_limit");
    let (status, body) = server
        .patch("/v1/subscriptions/typo", json!({"timout": "1s"}))
        .await;
    assert_unknown_field(status, &body, "timout", "", "timeout");

    // Topics, tokens, secret rotation, redrive, apply (and its entries).
    let (status, body) = server
        .post("/v1/topics", json!({"name": "x", "nme": "y"}))
        .await;
    assert_unknown_field(status, &body, "nme", "", "name");
    let (status, body) = server
        .post("/v1/tokens", json!({"scope": "read", "labl": "x"}))
        .await;
    assert_unknown_field(status, &body, "labl", "", "name, scope");
    let (status, body) = server
        .post(
            "/v1/subscriptions/typo/secret/rotate",
            json!({"secrt": "x"}),
        )
        .await;
    assert_unknown_field(status, &body, "secrt", "", "secret");
    let (status, body) = server
        .post(
            "/v1/subscriptions/typo/redrive",
            json!({"state": ["failed"]}),
        )
        .await;
    assert_unknown_field(
        status,
        &body,
        "state",
        "",
        "reasons, since, states, type, until",
    );
    let (status, body) = server
        .post("/v1/apply", json!({"dry_run": true, "subscription": []}))
        .await;
    assert_unknown_field(
        status,
        &body,
        "subscription",
        "",
        "dry_run, prune, subscriptions, topics",
    );
    let (status, body) = server
        .post(
            "/v1/apply",
            json!({"dry_run": true, "topics": [{"name": "a", "nam": "b"}]}),
        )
        .await;
    assert_unknown_field(status, &body, "nam", "", "name");
    assert!(error_message(&body).starts_with("topics[0]: "), "{body}");
    let (status, body) = server
        .post(
            "/v1/apply",
            json!({"dry_run": true, "subscriptions": [
                sub(json!({})),
                sub(json!({"health_policy": {"hld": "1h"}})),
            ]}),
        )
        .await;
    assert_unknown_field(status, &body, "hld", "health_policy", "hold");
    assert!(
        error_message(&body).starts_with("subscriptions[1]: "),
        "{body}"
    );

    // Nothing was changed by any of them.
    let (_, body) = server.get("/v1/subscriptions/typo").await;
    assert_eq!(body["timeout"], "2s", "{body}");
    let (_, body) = server.get("/v1/topics").await;
    assert_eq!(body["topics"].as_array().map(Vec::len), Some(2), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_read_from_the_api_is_accepted_back_whole() {
    let server = Server::start().await;
    server.create_topic("orders").await;
    server.create_topic("orders-dead").await;
    let created = server
        .create_subscription(subscription(
            "hook",
            "orders",
            "http://127.0.0.1:9/hook",
            json!({"retry_policy": {"preset": "adobe-io", "retry_limit": 3},
                   "dead_letter_topic": "orders-dead", "rate": "5/s",
                   "health_policy": {"window": "1h"}, "filter": {"type": "order.*"}}),
        ))
        .await;

    // GET, change one field, PATCH the whole answer back.
    let (status, mut whole) = server.get("/v1/subscriptions/hook").await;
    assert_eq!(status, StatusCode::OK);
    whole["timeout"] = json!("5s");
    let (status, body) = server.patch("/v1/subscriptions/hook", whole.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["timeout"], "5s", "{body}");
    assert_eq!(body["retry_policy"], created["retry_policy"], "{body}");

    // A read-only field changed in a PATCH is refused, not ignored.
    let mut paused = body.clone();
    paused["paused"] = json!(true);
    let (status, body) = server.patch("/v1/subscriptions/hook", paused).await;
    assert_api_error(status, &body, StatusCode::BAD_REQUEST, "invalid_argument");
    assert!(error_message(&body).starts_with("paused: "), "{body}");
    assert!(error_message(&body).contains("/pause"), "{body}");

    // Apply takes what the list answers, read-only fields and all.
    let (_, list) = server.get("/v1/subscriptions").await;
    let (status, body) = server
        .post(
            "/v1/apply",
            json!({"topics": [{"name": "orders"}, {"name": "orders-dead"}],
                   "subscriptions": list["subscriptions"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let changes: Vec<&str> = body["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["change"].as_str().unwrap())
        .collect();
    assert!(changes.iter().all(|c| *c == "unchanged"), "{body}");

    // Creating with a read-only field is refused, naming it.
    let mut copy = whole;
    copy["name"] = json!("hook-copy");
    let (status, body) = server.post("/v1/subscriptions", copy).await;
    assert_api_error(status, &body, StatusCode::BAD_REQUEST, "invalid_argument");
    assert!(error_message(&body).contains("set by the server"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_and_methods_answer_json_errors() {
    let server = Server::start().await;
    let (status, body) = server.get("/v1/nothing-here").await;
    assert_api_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = server.get("/v1/topics/no-such-topic").await;
    assert_api_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = server.get("/v1/deliveries/no-such-delivery").await;
    assert_api_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = server
        .get("/v1/subscriptions/no-such-subscription/deliveries")
        .await;
    assert_api_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = server.send(server.http.put(server.url("/v1/topics"))).await;
    assert_api_error(
        status,
        &body,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_topic_with_subscriptions_is_409_until_they_are_gone() {
    let server = Server::start().await;
    server.create_topic("orders").await;
    server
        .create_subscription(subscription(
            "orders-hook",
            "orders",
            "http://127.0.0.1:9/hook",
            json!({}),
        ))
        .await;
    let (status, body) = server.delete("/v1/topics/orders").await;
    assert_api_error(status, &body, StatusCode::CONFLICT, "conflict");
    assert!(error_message(&body).contains("orders-hook"), "{body}");

    let (status, _) = server.delete("/v1/subscriptions/orders-hook").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = server.delete("/v1/topics/orders").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = server.get("/v1/topics/orders").await;
    assert_api_error(status, &body, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patching_a_subscription_endpoint_sends_later_deliveries_to_the_new_one() {
    let server = Server::start().await;
    let old = Endpoint::ok().await;
    let new = Endpoint::ok().await;
    server.create_topic("orders").await;
    let created = server
        .create_subscription(subscription(
            "orders-hook",
            "orders",
            &old.url,
            json!({"filter": {"type": "order.*"}, "max_concurrency": 3}),
        ))
        .await;
    server
        .publish_ok("orders", &event("before", "order.created"))
        .await;
    let id = server.only_delivery("orders-hook").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    server.wait_for_state(&id, "delivered").await;

    let (status, patched) = server
        .patch(
            "/v1/subscriptions/orders-hook",
            json!({"endpoint": new.url}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["endpoint"], new.url.as_str());
    // A merge patch keeps every field it does not name.
    for field in [
        "topic",
        "filter",
        "retry_policy",
        "timeout",
        "max_concurrency",
    ] {
        assert_eq!(patched[field], created[field], "{field} changed");
    }
    let (_, fetched) = server.get("/v1/subscriptions/orders-hook").await;
    assert_eq!(fetched["endpoint"], new.url.as_str());

    server
        .publish_ok("orders", &event("after", "order.created"))
        .await;
    server.wait_all_ended("orders-hook", 2).await;
    let received = new.assert_settles_at(1).await;
    assert_eq!(received[0].ce_id(), "after");
    assert_eq!(old.ce_ids(), ["before"]);

    // A patch that breaks the spec is refused and changes nothing.
    let (status, body) = server
        .patch("/v1/subscriptions/orders-hook", json!({"endpoint": "nope"}))
        .await;
    assert_api_error(status, &body, StatusCode::BAD_REQUEST, "invalid_argument");
    let (_, fetched) = server.get("/v1/subscriptions/orders-hook").await;
    assert_eq!(fetched["endpoint"], new.url.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_list_filters_by_state_and_reason_and_pages_with_a_cursor() {
    let server = Server::start().await;
    let endpoint = Endpoint::start(|push, _| match push.header("ce-type") {
        Some("bad") => Reply::status(410),
        _ => Reply::ok(),
    })
    .await;
    server.create_topic("orders").await;
    server
        .create_subscription(subscription(
            "orders-hook",
            "orders",
            &endpoint.url,
            json!({"retry_policy": {"final_codes": [410]}}),
        ))
        .await;
    let events: Vec<Value> = ["ok", "bad", "ok", "bad", "ok"]
        .iter()
        .enumerate()
        .map(|(i, ty)| event(&format!("o-{i}"), ty))
        .collect();
    let (status, _) = server.publish_batch("orders", &events).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    server.wait_all_ended("orders-hook", 5).await;

    let list = |query: &'static str| {
        let server = &server;
        async move {
            let (status, body) = server
                .get(&format!("/v1/subscriptions/orders-hook/deliveries?{query}"))
                .await;
            assert_eq!(status, StatusCode::OK, "{query}: {body}");
            body
        }
    };
    let count = |body: &Value| body["deliveries"].as_array().unwrap().len();
    assert_eq!(count(&list("state=delivered").await), 3);
    assert_eq!(count(&list("state=failed&reason=non_retryable").await), 2);
    assert_eq!(count(&list("reason=retries_exhausted").await), 0);

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for expected_len in [2, 2, 1] {
        let path = match &cursor {
            Some(cursor) => {
                format!("/v1/subscriptions/orders-hook/deliveries?limit=2&cursor={cursor}")
            }
            None => "/v1/subscriptions/orders-hook/deliveries?limit=2".to_owned(),
        };
        let (status, body) = server.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(count(&body), expected_len, "{body}");
        seen.extend(
            body["deliveries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["id"].as_str().unwrap().to_owned()),
        );
        cursor = body["next_cursor"].as_str().map(str::to_owned);
    }
    assert_eq!(cursor, None, "the last page has no cursor");
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 5, "pages overlap: {seen:?}");

    let (status, body) = server
        .get("/v1/subscriptions/orders-hook/deliveries?state=bogus")
        .await;
    assert_api_error(status, &body, StatusCode::BAD_REQUEST, "invalid_argument");
    assert!(error_message(&body).starts_with("state:"), "{body}");
}

/// A value the server accepts for a declared parameter, so a request built
/// from the document alone reaches its handler.
fn sample_parameter(name: &str) -> &'static str {
    match name {
        "name" => "orders",
        "state" => "delivered",
        "reason" => "retries_exhausted",
        "limit" => "5",
        "since" => "0",
        "cursor" => "zzzz",
        _ => "x",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_parameters_sit_where_the_router_reads_them() {
    let server = Server::start().await;
    let (status, document) = server.get("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    let paths = document["paths"].as_object().expect("paths");
    let operations: usize = paths
        .values()
        .map(|item| item.as_object().map_or(0, |m| m.len()))
        .sum();
    assert!(operations >= 27, "{operations}");
    for (path, item) in paths {
        for (method, operation) in item.as_object().expect("a path item") {
            let parameters = operation["parameters"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let mut in_path: Vec<&str> = parameters
                .iter()
                .filter(|p| p["in"] == "path")
                .map(|p| p["name"].as_str().expect("a parameter name"))
                .collect();
            in_path.sort_unstable();
            let mut segments = redrive_server::api::path_parameters(path);
            segments.sort_unstable();
            assert_eq!(in_path, segments, "{method} {path}: path parameters");
            for parameter in &parameters {
                assert!(
                    ["path", "query", "header"].contains(&parameter["in"].as_str().unwrap_or("")),
                    "{method} {path}: {parameter}"
                );
                if parameter["in"] == "path" {
                    assert_eq!(parameter["required"], true, "{method} {path}: {parameter}");
                } else {
                    assert_ne!(parameter["required"], true, "{method} {path}: {parameter}");
                }
            }
            // The route exists for this method, and every query parameter
            // it declares is one the handler reads: no `no route`, no 405,
            // no `unknown field` for the query.
            let mut url = path.clone();
            for segment in redrive_server::api::path_parameters(path) {
                url = url.replace(&format!("{{{segment}}}"), sample_parameter(segment));
            }
            let query: Vec<String> = parameters
                .iter()
                .filter(|p| p["in"] == "query")
                .map(|p| {
                    let name = p["name"].as_str().unwrap_or_default();
                    format!("{name}={}", sample_parameter(name))
                })
                .collect();
            if !query.is_empty() {
                url = format!("{url}?{}", query.join("&"));
            }
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            // Bodies are left out: a 400 for the missing body still proves
            // the route; it must not be the query's.
            let response = server
                .http
                .request(method.clone(), server.url(&url))
                .send()
                .await
                .unwrap();
            let status = response.status();
            // Not every answer is JSON (the backup route streams a file).
            let body: Value =
                serde_json::from_slice(&response.bytes().await.unwrap()).unwrap_or(Value::Null);
            let message = body["error"]["message"].as_str().unwrap_or_default();
            assert!(
                !message.starts_with("no route") && status != StatusCode::METHOD_NOT_ALLOWED,
                "{method} {url}: {status} {body}"
            );
            assert!(
                !message.starts_with("invalid query"),
                "{method} {url}: {body}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_declares_what_the_server_answers_and_takes() {
    let server = Server::start().await;
    let (_, document) = server.get("/openapi.json").await;
    let paths = document["paths"].as_object().expect("paths");
    for (path, item) in paths {
        for (method, operation) in item.as_object().expect("a path item") {
            let responses = &operation["responses"];
            for status in ["401", "403", "408", "431", "503"] {
                assert!(
                    responses.get(status).is_some(),
                    "{method} {path} lacks {status}"
                );
            }
            if operation.get("requestBody").is_some() {
                assert!(responses.get("413").is_some(), "{method} {path} lacks 413");
                let content = operation["requestBody"]["content"].to_string();
                assert!(
                    !content.contains(r#""type":"null""#),
                    "{method} {path}: {content}"
                );
            }
        }
    }
    let publish = &document["paths"]["/v1/topics/{name}/events"]["post"];
    let content = publish["requestBody"]["content"].as_object().unwrap();
    let mut types: Vec<&str> = content.keys().map(String::as_str).collect();
    types.sort_unstable();
    assert_eq!(
        types,
        [
            "*/*",
            "application/cloudevents+json",
            "application/cloudevents-batch+json"
        ]
    );
    for status in ["202", "400", "404", "413", "429", "431", "503"] {
        assert!(
            publish["responses"].get(status).is_some(),
            "publish lacks {status}"
        );
    }
    let headers: Vec<&str> = publish["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["in"] == "header")
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(headers, ["ce-specversion", "ce-id", "ce-source", "ce-type"]);
    let batch = &document["components"]["schemas"]["CloudEventBatch"];
    assert_eq!(batch["maxItems"], Limits::default().max_batch_events);

    // What the server refuses, the schema refuses: empty names, names with
    // characters outside the set, control characters in a token name, an
    // apply topic without a name, unknown fields.
    let schemas = &document["components"]["schemas"];
    assert_eq!(schemas["Name"]["minLength"], 1);
    assert_eq!(
        schemas["CreateTopic"]["properties"]["name"]["$ref"],
        "#/components/schemas/Name"
    );
    assert_eq!(schemas["CreateTopic"]["additionalProperties"], false);
    assert_eq!(
        schemas["SubscriptionRequest"]["additionalProperties"],
        false
    );
    assert_eq!(schemas["SubscriptionPatch"]["additionalProperties"], false);
    assert!(
        schemas["CreateToken"]["properties"]["name"]["pattern"]
            .as_str()
            .unwrap()
            .contains(r"\u0000-\u001F")
    );
    let apply_topic = &schemas["ApplyRequest"]["properties"]["topics"]["items"];
    assert_eq!(apply_topic["required"], json!(["name"]), "{apply_topic}");

    // Each declared error answer carries the API's error body, as served.
    let (status, body) = server.post("/v1/topics", json!({"name": ""})).await;
    assert_api_error(status, &body, StatusCode::BAD_REQUEST, "invalid_argument");
    let anonymous = reqwest::Client::new()
        .get(server.url("/v1/topics"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let body: Value = anonymous.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthenticated", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_and_health_check_are_served() {
    let server = Server::start().await;
    let response = server
        .http
        .get(server.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let document: Value = response.json().await.expect("the document is JSON");
    assert!(
        document["openapi"]
            .as_str()
            .unwrap_or_default()
            .starts_with('3'),
        "{}",
        document["openapi"]
    );
    for path in [
        "/v1/topics",
        "/v1/subscriptions",
        "/v1/topics/{name}/events",
        "/v1/deliveries/{id}",
    ] {
        assert!(document["paths"].get(path).is_some(), "{path} is missing");
    }
    let detail = document["components"]["schemas"]["DeliveryDetail"].to_string();
    assert!(detail.contains("\"attempt_log\""), "{detail}");

    let (status, body) = server.get("/healthz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ok", "{body}");
}

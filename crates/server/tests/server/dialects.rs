//! Each system's dialect end to end, with real endpoints on 127.0.0.1:
//! retry presets through the API, rate limits and concurrency measured at
//! the endpoint, App Engine task headers and the payload formats on the wire.

use crate::common;

use std::time::{Duration, Instant};

use base64::Engine;
use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

fn events(count: usize) -> Vec<Value> {
    (0..count)
        .map(|i| event(&format!("e-{i:03}"), "order.created"))
        .collect()
}

#[tokio::test]
async fn a_rate_of_20_per_second_with_a_bucket_of_5_spreads_100_events_over_5_seconds() {
    let server = Server::start().await;
    let endpoint = Endpoint::ok().await;
    server.create_topic("orders").await;
    server
        .create_subscription(subscription(
            "paced",
            "orders",
            &endpoint.url,
            json!({"rate": "20/s", "bucket_size": 5}),
        ))
        .await;
    let started = Instant::now();
    let (status, _) = server.publish_batch("orders", &events(100)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let received = endpoint.wait_for_within(100, Duration::from_secs(20)).await;
    let took = received[99].at.duration_since(started);
    let burst = received[4].at.duration_since(started);
    println!("100 events at 20/s with a bucket of 5: first 5 by {burst:?}, all by {took:?}");
    // The burst of 5 goes at once, the other 95 one every 50ms: 4.75s.
    assert!(
        took >= Duration::from_millis(4400) && took <= Duration::from_secs(8),
        "100 events took {took:?}"
    );
    // No second of the run saw more than the rate plus the burst.
    let arrivals: Vec<Duration> = received
        .iter()
        .map(|r| r.at.duration_since(started))
        .collect();
    for (i, first) in arrivals.iter().enumerate() {
        let within = arrivals[i..]
            .iter()
            .take_while(|at| **at < *first + Duration::from_secs(1))
            .count();
        assert!(
            within <= 25,
            "{within} pushes within a second from {first:?}"
        );
    }
    endpoint.assert_settles_at(100).await;
}

#[tokio::test]
async fn concurrency_never_exceeds_max_concurrent_requests_at_the_endpoint() {
    let server = Server::start().await;
    let endpoint = Endpoint::start(|_, _| Reply::ok().after(Duration::from_millis(150))).await;
    server.create_topic("orders").await;
    let created = server
        .create_subscription(subscription(
            "narrow",
            "orders",
            &endpoint.url,
            json!({"max_concurrent_requests": 3}),
        ))
        .await;
    assert_eq!(created["max_concurrency"], 3);
    let (status, patched) = server
        .patch(
            "/v1/subscriptions/narrow",
            json!({"max_concurrent_requests": 2}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["max_concurrency"], 2);
    server.publish_batch("orders", &events(30)).await;
    endpoint.wait_for(30).await;
    assert_eq!(endpoint.most_in_flight(), 2);
}

#[tokio::test]
async fn a_rate_of_zero_pauses_until_the_rate_is_raised() {
    let server = Server::start().await;
    let endpoint = Endpoint::ok().await;
    server.create_topic("orders").await;
    server
        .create_subscription(subscription(
            "paused",
            "orders",
            &endpoint.url,
            json!({"rate": 0}),
        ))
        .await;
    server.publish_batch("orders", &events(3)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(endpoint.received().is_empty());
    let (status, body) = server
        .patch("/v1/subscriptions/paused", json!({"rate": "10/s"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    endpoint.assert_settles_at(3).await;
}

#[tokio::test]
async fn invalid_rates_and_bucket_sizes_are_400s() {
    let server = Server::start().await;
    server.create_topic("orders").await;
    for (extra, needle) in [
        (json!({"rate": "5/w"}), "unit must be s, m, h or d"),
        (json!({"rate": "5"}), "expected a count and a unit"),
        (json!({"rate": "5/s", "bucket_size": 0}), "bucket_size"),
        (json!({"bucket_size": 5}), "only applies with a rate"),
        (json!({"payload_format": "xml"}), "unknown variant"),
        (json!({"retry_policy": {"preset": "sqs"}}), "unknown preset"),
    ] {
        let (status, body) = server
            .post(
                "/v1/subscriptions",
                subscription("bad", "orders", "http://127.0.0.1:9/", extra.clone()),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{extra}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{extra}: {message}");
    }
}

#[tokio::test]
async fn a_preset_brings_its_policy_and_settings_and_fields_beside_it_win() {
    let server = Server::start().await;
    server.create_topic("orders").await;
    let mut spec = subscription("adobe", "orders", "http://127.0.0.1:9/", json!({}));
    spec["retry_policy"] = json!({"preset": "adobe-io", "age_limit": "2h"});
    spec.as_object_mut().unwrap().remove("timeout");
    let created = server.create_subscription(spec).await;
    assert_eq!(created["timeout"], "10s");
    let policy = &created["retry_policy"];
    assert_eq!(policy["preset"], "adobe-io");
    assert_eq!(policy["age_limit"], "7200s");
    assert_eq!(policy["backoff"]["min_backoff"], "60s");
    assert_eq!(policy["retry_codes"], json!([429, "500-504", "506-599"]));

    // Patching in another preset replaces the policy rather than merging
    // the old fields over it.
    let (status, patched) = server
        .patch(
            "/v1/subscriptions/adobe",
            json!({"retry_policy": {"preset": "eventarc"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["retry_policy"]["preset"], "eventarc");
    assert!(patched["retry_policy"].get("age_limit").is_none());
    assert_eq!(patched["retry_policy"]["success_codes_only"], true);
    assert_eq!(patched["message_retention"], "86400s");
}

#[tokio::test]
async fn the_pubsub_preset_retries_a_2xx_outside_its_success_codes() {
    let server = Server::start().await;
    // 203 first: not an acknowledgement to Pub/Sub. Then 204, which is.
    let endpoint =
        Endpoint::start(|_, earlier| Reply::status(if earlier == 0 { 203 } else { 204 })).await;
    server.create_topic("orders").await;
    let mut spec = subscription("pubsub", "orders", &endpoint.url, json!({}));
    spec["retry_policy"] =
        json!({"preset": "pubsub", "backoff": {"kind": "fixed", "interval": "0.1s"}});
    server.create_subscription(spec).await;
    server
        .publish_ok("orders", &event("m-1", "order.created"))
        .await;
    endpoint.assert_settles_at(2).await;
    let delivery = server.only_delivery("pubsub").await;
    let delivery = server
        .wait_for_state(delivery["id"].as_str().unwrap(), "delivered")
        .await;
    assert_eq!(delivery["attempt_log"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn appengine_profile_adds_the_task_headers_on_the_wire() {
    let server = Server::start().await;
    let endpoint =
        Endpoint::start(|_, earlier| Reply::status(if earlier == 0 { 500 } else { 200 })).await;
    server.create_topic("emails").await;
    server
        .create_subscription(subscription(
            "emails",
            "emails",
            &endpoint.url,
            json!({"headers_profile": "appengine"}),
        ))
        .await;
    let before = jiff::Timestamp::now();
    server.publish_ok("emails", &event("t-1", "task.run")).await;
    let received = endpoint.assert_settles_at(2).await;
    let delivery_id = received[0].header("webhook-id").unwrap();
    for (n, request) in received.iter().enumerate() {
        assert_eq!(request.header("x-appengine-queuename"), Some("emails"));
        assert_eq!(request.header("x-appengine-taskname"), Some(delivery_id));
        let count = n.to_string();
        assert_eq!(request.header("x-appengine-taskretrycount"), Some(&*count));
        assert_eq!(
            request.header("x-appengine-taskexecutioncount"),
            Some(&*count)
        );
        let eta: f64 = request
            .header("x-appengine-tasketa")
            .unwrap()
            .parse()
            .unwrap();
        let (secs, micros) = request
            .header("x-appengine-tasketa")
            .unwrap()
            .split_once('.')
            .unwrap();
        assert_eq!(micros.len(), 6);
        assert!(secs.parse::<i64>().unwrap() >= before.as_second());
        assert!(eta > 1.0e9);
        // The event still travels as a binary-mode CloudEvent.
        assert_eq!(request.header("ce-id"), Some("t-1"));
    }
}

#[tokio::test]
async fn pubsub_push_format_sends_the_envelope_with_base64_data() {
    let server = Server::start().await;
    let endpoint =
        Endpoint::start(|_, earlier| Reply::status(if earlier == 0 { 503 } else { 200 })).await;
    server.create_topic("orders").await;
    server
        .create_subscription(subscription(
            "push",
            "orders",
            &endpoint.url,
            json!({"payload_format": "pubsub-push"}),
        ))
        .await;
    let mut event = event("m-7", "order.created");
    event["region"] = json!("eu");
    event["dataschema"] = json!("https://example.com/order.json");
    server.publish_ok("orders", &event).await;
    let received = endpoint.assert_settles_at(2).await;
    for (n, request) in received.iter().enumerate() {
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert!(request.header("ce-id").is_none());
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let data = base64::engine::general_purpose::STANDARD
            .decode(body["message"]["data"].as_str().unwrap())
            .unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&data).unwrap(),
            json!({"id": "m-7"})
        );
        assert_eq!(body["message"]["messageId"], "m-7");
        assert_eq!(body["message"]["message_id"], "m-7");
        assert_eq!(body["message"]["attributes"]["region"], "eu");
        assert_eq!(body["message"]["attributes"]["ce-type"], "order.created");
        assert_eq!(
            body["message"]["attributes"]["ce-dataschema"],
            "https://example.com/order.json"
        );
        timestamp(&body["message"]["publishTime"]);
        assert_eq!(body["deliveryAttempt"], n + 1);
        assert_eq!(body["subscription"], "projects/redrive/subscriptions/push");
    }
}

#[tokio::test]
async fn structured_format_sends_the_whole_event_as_json() {
    let server = Server::start().await;
    let endpoint = Endpoint::ok().await;
    server.create_topic("orders").await;
    server
        .create_subscription(subscription(
            "structured",
            "orders",
            &endpoint.url,
            json!({"payload_format": "cloudevents-structured"}),
        ))
        .await;
    server
        .publish_ok("orders", &event("s-1", "order.created"))
        .await;
    let received = endpoint.assert_settles_at(1).await;
    assert_eq!(
        received[0].header("content-type"),
        Some("application/cloudevents+json")
    );
    let body: Value = serde_json::from_slice(&received[0].body).unwrap();
    assert_eq!(body["id"], "s-1");
    assert_eq!(body["type"], "order.created");
    assert_eq!(body["data"], json!({"id": "s-1"}));
}

#[tokio::test]
async fn apply_plans_checks_everything_first_and_answers_bad_input_with_400s() {
    let server = Server::start().await;
    let endpoint = Endpoint::ok().await;
    let body = json!({
        "topics": [{"name": "orders"}],
        "subscriptions": [subscription("hook", "orders", &endpoint.url, json!({"rate": "5/s"}))],
    });
    let mut dry = body.clone();
    dry["dry_run"] = json!(true);
    let (status, answer) = server.post("/v1/apply", dry).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["changes"][0]["change"], "created");
    let (status, _) = server.get("/v1/topics/orders").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, answer) = server.post("/v1/apply", body.clone()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let kinds: Vec<&str> = answer["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["change"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["created", "created"]);
    // The dispatcher hears of the new subscription at once.
    server
        .publish_ok("orders", &event("a-1", "order.created"))
        .await;
    endpoint.wait_for(1).await;
    let (_, again) = server.post("/v1/apply", body).await;
    assert_eq!(again["changes"][1]["change"], "unchanged");

    for (bad, needle) in [
        (json!({"topics": [{"name": "a b"}]}), "invalid topic name"),
        (
            json!({"topics": [{"nam": "x"}]}),
            "topics[0]: unknown field \"nam\"; known fields: name",
        ),
        (
            json!({"topics": [{"name": "t"}], "subscriptions": [
                subscription("s", "elsewhere", "http://127.0.0.1:9/", json!({}))]}),
            "neither declared nor on the server",
        ),
        (
            json!({"subscriptions": [subscription("hook", "redrive.system", "http://127.0.0.1:9/", json!({}))]}),
            "its topic can't change",
        ),
        (
            json!({"subscriptions": [{"name": "x"}]}),
            "invalid subscription",
        ),
        (json!([]), "must be a JSON object"),
    ] {
        let (status, answer) = server.post("/v1/apply", bad.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{bad}: {message}");
    }
    // Nothing of the refused sets was created.
    let (status, _) = server.get("/v1/topics/t").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (_, document) = server.get("/openapi.json").await;
    assert!(document["paths"].get("/v1/apply").is_some());
    let spec = &document["components"]["schemas"]["SubscriptionSpec"]["properties"];
    for field in ["rate", "bucket_size", "headers_profile", "payload_format"] {
        assert!(spec[field].is_object(), "{field} missing: {spec}");
    }
}

/// Everything in a subscription answer except what a write stamps anew.
fn settings(answer: &Value) -> Value {
    let mut answer = answer.clone();
    if let Some(fields) = answer.as_object_mut() {
        fields.remove("updated_at");
    }
    answer
}

#[tokio::test]
async fn answers_read_back_the_values_in_force_and_round_trip_unchanged() {
    let server = Server::start().await;
    server.create_topic("orders").await;
    server.create_topic("orders-dead").await;
    let created = server
        .create_subscription(subscription(
            "paced",
            "orders",
            "http://127.0.0.1:9/",
            json!({"rate": "5/s", "dead_letter_topic": "orders-dead"}),
        ))
        .await;
    // What was written reads back as written; what applies reads back in
    // `effective`, defaults included.
    assert!(created.get("bucket_size").is_none(), "{created}");
    assert!(created.get("max_delivery_attempts").is_none(), "{created}");
    assert_eq!(
        created["effective"],
        json!({
            "timeout": created["timeout"], "max_concurrency": 64,
            "message_retention": "604800s", "bucket_size": 5, "max_delivery_attempts": 5,
            "headers_profile": "standard", "payload_format": "cloudevents-binary",
            "push_backoff": false
        })
    );
    let (_, fetched) = server.get("/v1/subscriptions/paced").await;
    assert_eq!(fetched["effective"], created["effective"]);
    let (_, listed) = server.get("/v1/subscriptions").await;
    let listed = listed["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "paced")
        .unwrap()
        .clone();
    assert_eq!(listed["effective"], created["effective"]);

    // A GET answer sent back as a patch or applied changes nothing and
    // pins no default: removing the rate later still works.
    let (status, patched) = server
        .patch("/v1/subscriptions/paced", fetched.clone())
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(settings(&patched), settings(&fetched));
    let (status, applied) = server
        .post(
            "/v1/apply",
            json!({"topics": [{"name": "orders"}, {"name": "orders-dead"}],
                   "subscriptions": [fetched]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{applied}");
    let changes = applied["changes"].as_array().unwrap();
    assert!(
        changes.iter().all(|c| c["change"] == "unchanged"),
        "{applied}"
    );
    let (status, unrated) = server
        .patch(
            "/v1/subscriptions/paced",
            json!({"rate": null, "dead_letter_topic": null}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{unrated}");
    assert_eq!(unrated["effective"]["bucket_size"], Value::Null);
    assert_eq!(unrated["effective"]["max_delivery_attempts"], Value::Null);
}

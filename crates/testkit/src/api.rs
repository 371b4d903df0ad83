//! A client of a running redrive's HTTP API for tests, over real HTTP:
//! each call answers the status and the body as JSON, and a few calls
//! insist on the answer a test's setup needs.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use serde_json::{Value, json};

use crate::endpoint::PATIENCE;

/// An HTTP client for tests: no proxy (the servers are on 127.0.0.1),
/// sending `token` as a bearer token when there is one.
pub fn client(token: Option<&str>) -> reqwest::ClientBuilder {
    // reqwest's TLS needs a process-wide crypto provider; a second install
    // (tests start several clients) is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut headers = HeaderMap::new();
    if let Some(token) = token {
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).expect("a token fit for a header"),
        );
    }
    reqwest::Client::builder()
        .no_proxy()
        .default_headers(headers)
}

/// The API of a running server.
#[derive(Clone)]
pub struct Api {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    pub http: reqwest::Client,
}

impl Api {
    /// The API at `base` with `token` (an admin token, for most tests).
    pub fn new(base: &str, token: &str) -> Api {
        Api {
            base: base.to_owned(),
            http: client(Some(token)).build().expect("an HTTP client"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request and returns its status with the body as JSON
    /// (`Null` for an empty body).
    pub async fn send(&self, request: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let response = request.send().await.expect("the API answers");
        let status = response.status();
        let text = response.text().await.expect("the API's body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|err| panic!("the API answered non-JSON ({err}): {text}"))
        };
        (status, body)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.http.get(self.url(path))).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(self.http.post(self.url(path)).json(&body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(self.http.patch(self.url(path)).json(&body)).await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.http.delete(self.url(path))).await
    }

    pub async fn create_topic(&self, name: &str) {
        let (status, body) = self.post("/v1/topics", json!({ "name": name })).await;
        assert_eq!(status, StatusCode::CREATED, "create topic {name}: {body}");
    }

    pub async fn create_subscription(&self, spec: Value) -> Value {
        let (status, body) = self.post("/v1/subscriptions", spec.clone()).await;
        assert_eq!(status, StatusCode::CREATED, "create {spec}: {body}");
        body
    }

    /// Publishes one event in structured mode.
    pub async fn publish(&self, topic: &str, event: &Value) -> (StatusCode, Value) {
        self.publish_raw(
            topic,
            "application/cloudevents+json",
            event.to_string().into_bytes(),
        )
        .await
    }

    pub async fn publish_batch(&self, topic: &str, events: &[Value]) -> (StatusCode, Value) {
        self.send(self.batch_request(topic, events)).await
    }

    /// A batch publish, built but not sent: for a test that must see a
    /// server that no longer answers.
    pub fn batch_request(&self, topic: &str, events: &[Value]) -> reqwest::RequestBuilder {
        self.http
            .post(self.url(&format!("/v1/topics/{topic}/events")))
            .header(CONTENT_TYPE, "application/cloudevents-batch+json")
            .body(Value::from(events.to_vec()).to_string())
    }

    pub async fn publish_raw(
        &self,
        topic: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let request = self
            .http
            .post(self.url(&format!("/v1/topics/{topic}/events")))
            .header(CONTENT_TYPE, content_type)
            .body(body);
        self.send(request).await
    }

    /// Publishes and insists on a 202 for new events.
    pub async fn publish_ok(&self, topic: &str, event: &Value) {
        let (status, body) = self.publish(topic, event).await;
        assert_eq!(status, StatusCode::ACCEPTED, "publish {event}: {body}");
        assert_eq!(body["events"][0]["duplicate"], false, "{body}");
    }

    /// Every delivery of a subscription, newest first (one page of 1000).
    pub async fn deliveries(&self, subscription: &str) -> Vec<Value> {
        let (status, body) = self
            .get(&format!(
                "/v1/subscriptions/{subscription}/deliveries?limit=1000"
            ))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["deliveries"].as_array().expect("a list").clone()
    }

    /// The deliveries of `subscription` in `state`, every page of them.
    pub async fn deliveries_in(&self, subscription: &str, state: &str) -> Vec<Value> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path =
                format!("/v1/subscriptions/{subscription}/deliveries?state={state}&limit=500");
            if let Some(cursor) = &cursor {
                path.push_str(&format!("&cursor={cursor}"));
            }
            let (status, body) = self.get(&path).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            all.extend(body["deliveries"].as_array().cloned().unwrap_or_default());
            match body["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return all,
            }
        }
    }

    /// How many deliveries of `subscription` are in `state`.
    pub async fn count(&self, subscription: &str, state: &str) -> usize {
        self.deliveries_in(subscription, state).await.len()
    }

    /// The only delivery of a subscription.
    pub async fn only_delivery(&self, subscription: &str) -> Value {
        let deliveries = self.deliveries(subscription).await;
        assert_eq!(deliveries.len(), 1, "{deliveries:?}");
        deliveries[0].clone()
    }

    /// A delivery with its event and attempts.
    pub async fn delivery(&self, id: &str) -> Value {
        let (status, body) = self.get(&format!("/v1/deliveries/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// Polls a delivery until it reaches `state` (delivered or failed) and
    /// no attempt is missing from its record.
    pub async fn wait_for_state(&self, id: &str, state: &str) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let detail = self.delivery(id).await;
            if detail["state"] == state {
                return detail;
            }
            assert!(
                Instant::now() < deadline,
                "delivery {id} did not become {state}: {detail:#}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls until every delivery of `subscription` has ended (delivered or
    /// failed) and there are `count` of them; returns them newest first.
    pub async fn wait_all_ended(&self, subscription: &str, count: usize) -> Vec<Value> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let deliveries = self.deliveries(subscription).await;
            let ended = deliveries
                .iter()
                .filter(|d| d["state"] == "delivered" || d["state"] == "failed")
                .count();
            if deliveries.len() == count && ended == count {
                return deliveries;
            }
            assert!(
                Instant::now() < deadline,
                "{subscription}: expected {count} ended deliveries, have {deliveries:#?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

//! Shared pieces of the end-to-end tests: a real redrive server on
//! 127.0.0.1 with its own data directory, and real webhook endpoints that
//! record what they receive and answer as each test scripts them.

// Each test binary uses its own part of these helpers.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use redrive_server::ServeOptions;
use redrive_server::app::Limits;
use redrive_server::clock::Clock;
use redrive_server::dispatcher::DispatcherConfig;
use redrive_server::health::HealthConfig;
use redrive_server::security::{AdminToken, SecurityOptions};
use redrive_server::sweeper::SweeperConfig;
use redrive_store::postgres::testing::{TEST_DATABASE_URL, TestSchema};
use reqwest::header::CONTENT_TYPE;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::oneshot;

/// How long a test waits for something that should happen within a second.
pub const PATIENCE: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// The server under test
// ---------------------------------------------------------------------------

/// A redrive server running in this process on its own data directory.
/// Dropping it starts a graceful shutdown.
pub struct Server {
    pub base: String,
    pub http: reqwest::Client,
    /// The sweeper's clock: tests move it forward to pass retention windows.
    pub clock: Clock,
    shutdown: Option<oneshot::Sender<()>>,
    _data: TempDir,
    _schema: Option<TestSchema>,
}

impl Server {
    pub async fn start() -> Server {
        Server::start_with(Limits::default()).await
    }

    pub async fn start_with(limits: Limits) -> Server {
        Server::start_configured(limits, quick_sweeper()).await
    }

    pub async fn start_configured(limits: Limits, sweeper: SweeperConfig) -> Server {
        Server::start_tuned(limits, sweeper, |_| {}).await
    }

    pub async fn start_secured(
        limits: Limits,
        sweeper: SweeperConfig,
        security: SecurityOptions,
    ) -> Server {
        Server::start_tuned(limits, sweeper, move |options| {
            options.security = security;
        })
        .await
    }

    /// Starts a server as users run it — with an admin token (which `http`
    /// sends) and endpoints on 127.0.0.0/8 allowed — whose options `tune`
    /// adjusts last.
    pub async fn start_tuned(
        limits: Limits,
        sweeper: SweeperConfig,
        tune: impl FnOnce(&mut ServeOptions),
    ) -> Server {
        redrive_server::dispatcher::push::install_crypto_provider();
        let clock = sweeper.clock.clone();
        let data = tempfile::tempdir().expect("a temporary data directory");
        let schema = postgres_schema().await;
        let mut options = ServeOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: data.path().join("data"),
            database_url: schema.as_ref().map(|s| format!("{}&pool_size=8", s.url)),
            limits,
            dispatcher: DispatcherConfig {
                drain_timeout: Duration::from_secs(1),
                clock: clock.clone(),
                ..DispatcherConfig::default()
            },
            sweeper,
            health: HealthConfig {
                interval: Duration::from_millis(100),
                clock: clock.clone(),
            },
            security: test_security(),
            config: None,
        };
        tune(&mut options);
        let (address_tx, address_rx) = oneshot::channel::<SocketAddr>();
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let result = redrive_server::serve(
                options,
                move |address| {
                    let _ = address_tx.send(address);
                },
                async move {
                    let _ = shutdown_rx.await;
                },
            )
            .await;
            if let Err(err) = result {
                panic!("the server failed: {err:#}");
            }
        });
        let address = tokio::time::timeout(PATIENCE, address_rx)
            .await
            .expect("the server starts listening in time")
            .expect("the server reports its address");
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {TOKEN}").parse().expect("a header value"),
        );
        let http = reqwest::Client::builder()
            .no_proxy()
            .default_headers(headers)
            .build()
            .expect("a reqwest client");
        Server {
            base: format!("http://{address}"),
            http,
            clock,
            shutdown: Some(shutdown_tx),
            _data: data,
            _schema: schema,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request and returns its status with the body as JSON
    /// (`Null` for an empty body).
    pub async fn send(&self, request: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let response = request.send().await.expect("the API answers");
        let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
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
        self.publish_raw(
            topic,
            "application/cloudevents-batch+json",
            Value::from(events.to_vec()).to_string().into_bytes(),
        )
        .await
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

/// A sweeper that looks every 50ms, so tests see expiry and purges soon
/// after they move the clock.
pub fn quick_sweeper() -> SweeperConfig {
    SweeperConfig {
        interval: Duration::from_millis(50),
        ..SweeperConfig::default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// A structured-mode CloudEvent with JSON data.
pub fn event(id: &str, ty: &str) -> Value {
    json!({
        "specversion": "1.0",
        "id": id,
        "source": "/tests",
        "type": ty,
        "datacontenttype": "application/json",
        "data": {"id": id},
    })
}

/// A subscription spec with test-friendly defaults: short timeout, a quick
/// fixed backoff and few retries. `extra` is merged on top.
pub fn subscription(name: &str, topic: &str, endpoint: &str, extra: Value) -> Value {
    let mut spec = json!({
        "name": name,
        "topic": topic,
        "endpoint": endpoint,
        "retry_policy": {"backoff": {"kind": "fixed", "interval": "0.2s"}, "retry_limit": 3},
        "timeout": "2s",
    });
    if let (Value::Object(spec), Value::Object(extra)) = (&mut spec, extra) {
        spec.extend(extra);
    }
    spec
}

/// Parses an RFC 3339 timestamp field of the API.
pub fn timestamp(value: &Value) -> jiff::Timestamp {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{value} is not a timestamp string"))
        .parse()
        .unwrap_or_else(|err| panic!("{value} is not a timestamp: {err}"))
}

/// A port on 127.0.0.1 where nothing listens (bound, then released).
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

// ---------------------------------------------------------------------------
// Webhook endpoints
// ---------------------------------------------------------------------------

/// One request an endpoint received.
#[derive(Clone, Debug)]
pub struct Received {
    /// When the request arrived (its headers were read).
    pub at: Instant,
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|value| {
            value
                .to_str()
                .unwrap_or_else(|_| panic!("header {name} is not ASCII"))
        })
    }

    pub fn ce_id(&self) -> &str {
        self.header("ce-id").expect("a ce-id header")
    }

    pub fn attempt(&self) -> u32 {
        self.header("redrive-attempt")
            .expect("a redrive-attempt header")
            .parse()
            .expect("a numeric redrive-attempt")
    }
}

/// How an endpoint answers one request.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub delay: Duration,
    pub body: String,
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            delay: Duration::ZERO,
            body: String::new(),
            headers: Vec::new(),
        }
    }

    pub fn ok() -> Reply {
        Reply::status(200)
    }

    pub fn after(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }

    pub fn body(mut self, body: &str) -> Reply {
        self.body = body.to_owned();
        self
    }

    pub fn header(mut self, name: &'static str, value: &str) -> Reply {
        self.headers.push((name, value.to_owned()));
        self
    }
}

/// Decides the reply to a request; the second argument counts the earlier
/// requests with the same `webhook-id` (0 for the first attempt).
type Script = dyn Fn(&Received, usize) -> Reply + Send + Sync;

struct EndpointState {
    script: Box<Script>,
    received: Mutex<Log>,
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
}

/// What an endpoint received, with a count per `webhook-id` so that a
/// script's `earlier` costs no scan of thousands of requests.
#[derive(Default)]
struct Log {
    requests: Vec<Received>,
    per_id: HashMap<String, usize>,
}

/// A real HTTP endpoint on 127.0.0.1 that records every request.
pub struct Endpoint {
    /// The URL to subscribe (`http://127.0.0.1:PORT/hook`).
    pub url: String,
    state: Arc<EndpointState>,
}

impl Endpoint {
    /// An endpoint that always answers 200.
    pub async fn ok() -> Endpoint {
        Endpoint::start(|_, _| Reply::ok()).await
    }

    pub async fn start(
        script: impl Fn(&Received, usize) -> Reply + Send + Sync + 'static,
    ) -> Endpoint {
        let state = Arc::new(EndpointState {
            script: Box::new(script),
            received: Mutex::default(),
            in_flight: AtomicUsize::new(0),
            most_in_flight: AtomicUsize::new(0),
        });
        let app = Router::new().fallback(receive).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Endpoint {
            url: format!("http://{address}/hook"),
            state,
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().requests.clone()
    }

    /// How many requests arrived so far (cheaper than `received`).
    pub fn count(&self) -> usize {
        self.state.received.lock().unwrap().requests.len()
    }

    pub fn ce_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .received()
            .iter()
            .map(|r| r.ce_id().to_owned())
            .collect();
        ids.sort();
        ids
    }

    /// The most requests this endpoint ever had open at once.
    pub fn most_in_flight(&self) -> usize {
        self.state.most_in_flight.load(Ordering::SeqCst)
    }

    /// Waits until at least `count` requests arrived; returns all of them.
    pub async fn wait_for(&self, count: usize) -> Vec<Received> {
        self.wait_for_within(count, PATIENCE).await
    }

    pub async fn wait_for_within(&self, count: usize, patience: Duration) -> Vec<Received> {
        let deadline = Instant::now() + patience;
        loop {
            if self.count() >= count {
                return self.received();
            }
            if Instant::now() >= deadline {
                let received = self.received();
                panic!(
                    "expected {count} requests within {patience:?}, got {}: {:?}",
                    received.len(),
                    received
                        .iter()
                        .map(|r| r.header("ce-id"))
                        .collect::<Vec<_>>()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits a little and checks that exactly `count` requests arrived, so
    /// that a stray extra push would be seen.
    pub async fn assert_settles_at(&self, count: usize) -> Vec<Received> {
        self.wait_for(count).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
        let received = self.received();
        assert_eq!(
            received.len(),
            count,
            "unexpected extra requests: {:?}",
            received
                .iter()
                .map(|r| (r.header("ce-id"), r.header("redrive-attempt")))
                .collect::<Vec<_>>()
        );
        received
    }
}

/// Decrements the in-flight gauge also when the caller hangs up mid-request.
struct InFlight(Arc<EndpointState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn receive(
    State(state): State<Arc<EndpointState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let now_open = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.most_in_flight.fetch_max(now_open, Ordering::SeqCst);
    let _guard = InFlight(state.clone());
    let request = Received {
        at: Instant::now(),
        method,
        path: uri.path().to_owned(),
        headers,
        body,
    };
    let reply = {
        let mut log = state.received.lock().unwrap();
        let webhook_id = request.header("webhook-id").unwrap_or_default().to_owned();
        let seen = log.per_id.entry(webhook_id).or_default();
        let earlier = *seen;
        *seen += 1;
        let reply = (state.script)(&request, earlier);
        log.requests.push(request);
        reply
    };
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut response = (StatusCode::from_u16(reply.status).unwrap(), reply.body).into_response();
    for (name, value) in reply.headers {
        response
            .headers_mut()
            .insert(name, axum::http::HeaderValue::from_str(&value).unwrap());
    }
    response
}

/// Counts how often each value occurs.
pub fn tally<'a>(values: impl IntoIterator<Item = &'a str>) -> HashMap<&'a str, usize> {
    let mut counts = HashMap::new();
    for value in values {
        *counts.entry(value).or_default() += 1;
    }
    counts
}

// ---------------------------------------------------------------------------
// The backend under test
// ---------------------------------------------------------------------------

/// The variable choosing the store the servers run on: `sqlite` (the
/// default) or `postgres`, on REDRIVE_TEST_DATABASE_URL.
pub const TEST_BACKEND: &str = "REDRIVE_TEST_BACKEND";

/// Whether the servers of this run use PostgreSQL.
pub fn on_postgres() -> bool {
    std::env::var(TEST_BACKEND).as_deref() == Ok("postgres")
}

/// A schema of its own for a server on PostgreSQL, or `None` on SQLite.
pub async fn postgres_schema() -> Option<TestSchema> {
    match std::env::var(TEST_BACKEND).as_deref() {
        Ok("postgres") => {
            let url = std::env::var(TEST_DATABASE_URL)
                .unwrap_or_else(|_| panic!("{TEST_BACKEND}=postgres needs {TEST_DATABASE_URL}"));
            Some(TestSchema::create(&url).await.expect("a test schema"))
        }
        Ok("sqlite") | Ok("") | Err(_) => None,
        Ok(other) => panic!("{TEST_BACKEND}={other}: expected sqlite or postgres"),
    }
}

// ---------------------------------------------------------------------------
// Security defaults of the test server
// ---------------------------------------------------------------------------

/// The admin token of every test server; `Server::http` sends it.
pub const TOKEN: &str = "test-admin-token-0123456789";

/// A token and an allow-list for the test endpoints on 127.0.0.1, as a user
/// running redrive next to their receivers would configure.
pub fn test_security() -> SecurityOptions {
    SecurityOptions {
        admin_token: AdminToken::Given(TOKEN.into()),
        endpoint_policy: redrive_core::security::EndpointPolicy {
            allow: redrive_core::security::parse_networks("127.0.0.0/8").expect("a valid network"),
            https_only: false,
        },
        ..SecurityOptions::default()
    }
}

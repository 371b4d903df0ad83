//! Shared pieces of the end-to-end tests: a real redrive server on
//! 127.0.0.1 with its own data directory, reached through the test kit's
//! API client, and the kit's webhook endpoints that record what they
//! receive and answer as each test scripts them.

// Each test binary uses its own part of these helpers and re-exports.
#![allow(dead_code, unused_imports)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use redrive_server::ServeOptions;
use redrive_server::app::Limits;
use redrive_server::clock::Clock;
use redrive_server::dispatcher::DispatcherConfig;
use redrive_server::health::HealthConfig;
use redrive_server::security::{AdminToken, SecurityOptions};
use redrive_server::sweeper::SweeperConfig;
use redrive_store::postgres::testing::{TEST_DATABASE_URL, TestSchema};
pub use redrive_testkit::api::Api;
pub use redrive_testkit::endpoint::{Endpoint, PATIENCE, Received, Reply};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::oneshot;

// ---------------------------------------------------------------------------
// The server under test
// ---------------------------------------------------------------------------

/// A redrive server running in this process on its own data directory.
/// Dropping it starts a graceful shutdown.
pub struct Server {
    /// The server's API, with the admin token; the server derefs to it.
    pub api: Api,
    /// The sweeper's clock: tests move it forward to pass retention windows.
    pub clock: Clock,
    shutdown: Option<oneshot::Sender<()>>,
    /// The task running the server: done once it let go of its store.
    serving: Option<tokio::task::JoinHandle<()>>,
    /// Kept while the server runs; `None` only inside a restart.
    data: Option<TempDir>,
    schema: Option<TestSchema>,
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
        let data = tempfile::tempdir().expect("a temporary data directory");
        let schema = postgres_schema().await;
        Server::launch(data, schema, limits, sweeper, tune).await
    }

    /// Stops the server gracefully and starts it again on the same data
    /// directory (and PostgreSQL schema) and clock, with default limits, a
    /// quick sweeper and the options `tune` adjusts last.
    pub async fn restart(mut self, tune: impl FnOnce(&mut ServeOptions)) -> Server {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(serving) = self.serving.take() {
            tokio::time::timeout(PATIENCE, serving)
                .await
                .expect("the server stops in time")
                .expect("the server stops cleanly");
        }
        let sweeper = SweeperConfig {
            clock: self.clock.clone(),
            ..quick_sweeper()
        };
        let data = self.data.take().expect("the data directory");
        let schema = self.schema.take();
        Server::launch(data, schema, Limits::default(), sweeper, tune).await
    }

    async fn launch(
        data: TempDir,
        schema: Option<TestSchema>,
        limits: Limits,
        sweeper: SweeperConfig,
        tune: impl FnOnce(&mut ServeOptions),
    ) -> Server {
        redrive_server::dispatcher::push::install_crypto_provider();
        let clock = sweeper.clock.clone();
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
        let serving = tokio::spawn(async move {
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
        Server {
            api: Api::new(&format!("http://{address}"), TOKEN),
            clock,
            shutdown: Some(shutdown_tx),
            serving: Some(serving),
            data: Some(data),
            schema,
        }
    }
}

impl std::ops::Deref for Server {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
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

/// Polls a subscription until what holds its pushes is `reason`.
pub async fn wait_for_hold(server: &Server, name: &str, reason: &str) -> Value {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let (status, body) = server.get(&format!("/v1/subscriptions/{name}")).await;
        assert_eq!(status, reqwest::StatusCode::OK, "{body}");
        if body["pushes_held"]["reason"] == reason {
            return body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{name}'s pushes were not held by {reason}: {body:#}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
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

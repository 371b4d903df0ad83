//! `redrive serve`: the store, the API and the dispatcher, wired together.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use redrive_store::{PostgresStore, SqliteStore, Store};
use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot, watch};

use crate::app::{self, AppState, Limits};
use crate::clock::Clock;
use crate::dispatcher::{self, Dispatcher, DispatcherConfig};
use crate::health::{self, HealthConfig};
use crate::ops::OpsState;
use crate::security::{Security, SecurityOptions};
use crate::state::Shared;
use crate::sweeper::{self, SweeperConfig};

#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// A `postgres://` URL: share that database with other nodes instead
    /// of the embedded store in `data_dir`.
    pub database_url: Option<String>,
    pub limits: Limits,
    pub dispatcher: DispatcherConfig,
    pub sweeper: SweeperConfig,
    pub health: HealthConfig,
    pub security: SecurityOptions,
    /// Topics and subscriptions to apply before serving (`--config`).
    pub config: Option<redrive_core::config::Desired>,
}

/// Runs the server until `shutdown` completes, then shuts down gracefully:
/// publishes get 503 and readiness fails, the dispatcher stops claiming and
/// lets in-flight pushes finish (up to its drain timeout), releasing the
/// claims of the rest; then the HTTP server closes and the store is flushed.
/// `on_listening` learns the bound address (useful with port 0).
pub async fn serve(
    options: ServeOptions,
    on_listening: impl FnOnce(SocketAddr),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // One clock for the whole server: the dispatcher's, which tests move.
    let clock = options.dispatcher.clock.clone();
    let store = open_store(&options, &clock).await?;
    // Only once the store is open: the embedded store then holds the data
    // directory, so no other process is staging a backup there (and a
    // PostgreSQL node never stages one).
    crate::backup_staging::remove_leftovers(&options.data_dir);
    if let Some(desired) = &options.config {
        let changes = crate::declared::apply(
            &*store,
            desired,
            &options.security.endpoint_policy,
            false,
            clock.now(),
        )
        .await
        .context("cannot apply the configuration file")?;
        for change in changes {
            tracing::info!(resource = %change.resource, name = %change.name,
                change = ?change.change, "configuration");
        }
    }
    let listener = TcpListener::bind(options.listen)
        .await
        .with_context(|| format!("cannot listen on {}", options.listen))?;
    let address = listener
        .local_addr()
        .context("cannot read the listening address")?;
    // Installed before any traffic so the first counts are kept.
    crate::metrics::handle();
    let ops = Arc::new(OpsState::new(options.data_dir.clone()));

    let startup = Security::start(&options.security, &options.data_dir, store.clone())
        .context("cannot set up authentication and signing")?;
    if startup.generated_token.is_some() {
        tracing::warn!(path = %options.data_dir.join("api-token").display(),
            "generated the admin API token; it is in this file");
    }
    let security = startup.security;
    match security.secrets.first_unreadable().await {
        Ok(None) => {}
        Ok(Some(subscription)) => tracing::error!(%subscription,
            "the secret key does not open the stored signing secrets, so no push can be signed \
             or sent: start every node with the same --secret-key (REDRIVE_SECRET_KEY), or \
             restore DATA/secret.key with the data"),
        Err(err) => tracing::warn!(error = %format!("{err:#}"),
            "cannot check the secret key against the stored signing secrets"),
    }
    let subscriptions_changed = Arc::new(Notify::new());
    let client = dispatcher::client::client(security.endpoint_policy.clone())
        .context("cannot build the HTTP client")?;
    let dispatcher = Dispatcher::new(
        store.clone(),
        client,
        options.dispatcher.clone(),
        subscriptions_changed.clone(),
    )
    .with_security(security.clone())
    .reporting_to(&ops);
    let (stop_dispatcher, stopped) = watch::channel(false);
    let sweeper = tokio::spawn(sweeper::run(
        store.clone(),
        options.sweeper.clone(),
        ops.store_writes.clone(),
        stopped.clone(),
    ));
    let evaluator = tokio::spawn(health::run(
        store.clone(),
        options.health.clone(),
        subscriptions_changed.clone(),
        ops.store_writes.clone(),
        stopped.clone(),
    ));
    let push_holds = dispatcher.push_holds();
    let dispatcher = tokio::spawn(dispatcher.run(stopped));

    let app = app::router(AppState::new(Shared {
        store: store.clone(),
        subscriptions_changed,
        limits: options.limits,
        jobs: Default::default(),
        security,
        ops: ops.clone(),
        push_holds,
        clock,
    }));
    match &options.database_url {
        Some(_) => tracing::info!(%address, store = "postgres", "redrive is listening"),
        None => tracing::info!(%address, data_dir = %options.data_dir.display(),
            "redrive is listening"),
    }
    on_listening(address);
    let (close_http, http_closed) = oneshot::channel::<()>();
    let mut http = tokio::spawn(serve_http(
        listener,
        app,
        options.security.header_read_timeout,
        options.dispatcher.drain_timeout,
        async move {
            let _ = http_closed.await;
        },
    ));
    let http_ended_early = tokio::select! {
        () = shutdown => None,
        ended = &mut http => Some(ended),
    };
    tracing::info!("shutting down: refusing publishes, draining in-flight pushes");
    ops.begin_drain();
    let _ = stop_dispatcher.send(true);
    if let Err(err) = dispatcher.await {
        tracing::error!(error = %err, "the dispatcher stopped abnormally");
    }
    if let Err(err) = sweeper.await {
        tracing::error!(error = %err, "the sweeper stopped abnormally");
    }
    if let Err(err) = evaluator.await {
        tracing::error!(error = %err, "the health evaluator stopped abnormally");
    }
    let _ = close_http.send(());
    let served = match http_ended_early {
        Some(ended) => ended,
        None => http.await,
    };
    let served = served
        .context("the HTTP server task failed")
        .and_then(|result| result.context("the HTTP server failed"));
    match store.flush().await {
        Ok(()) => tracing::info!("store flushed; bye"),
        Err(err) => tracing::error!(error = %err, "cannot flush the store"),
    }
    served
}

async fn open_store(options: &ServeOptions, clock: &Clock) -> anyhow::Result<Arc<dyn Store>> {
    if let Some(url) = &options.database_url {
        // The data directory still holds this node's key and admin token.
        std::fs::create_dir_all(&options.data_dir).with_context(|| {
            format!(
                "cannot create the data directory {}",
                options.data_dir.display()
            )
        })?;
        let store = PostgresStore::connect(url, clock.now())
            .await
            // The URL may carry a password: name only where it points.
            .with_context(|| format!("cannot open the PostgreSQL store at {}", redact(url)))?;
        return Ok(Arc::new(store));
    }
    let store = SqliteStore::open(&options.data_dir, clock.now())
        .with_context(|| format!("cannot open the store in {}", options.data_dir.display()))?;
    Ok(Arc::new(store))
}

/// The URL without its user information.
fn redact(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, _)), Some(at)) => format!("{scheme}://…@{}", &url[at + 1..]),
        _ => url.to_owned(),
    }
}

/// Accepts connections until `shutdown`, then lets open requests finish for
/// up to `drain`. Unlike a bare `axum::serve`, a client that does not send
/// its request headers within `header_read_timeout` is disconnected, so slow
/// clients cannot hold connections open forever.
async fn serve_http(
    listener: TcpListener,
    app: axum::Router,
    header_read_timeout: std::time::Duration,
    drain: std::time::Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    use hyper::server::conn::http1;
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::server::graceful::GracefulShutdown;
    use hyper_util::service::TowerToHyperService;

    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .keep_alive(true);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(err) => {
                        // Out of file descriptors and the like: pause, not stop.
                        tracing::warn!(error = %err, "cannot accept a connection");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let service = TowerToHyperService::new(app.clone());
                let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
                tokio::spawn(async move {
                    if let Err(err) = connection.await {
                        tracing::debug!(error = %err, "a client connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("open requests did not finish in time; closing their connections");
    }
    Ok(())
}

//! `redrive serve`: the store, the API and the dispatcher, wired together.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use jiff::Timestamp;
use redrive_store::{PostgresStore, SqliteStore, Store};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

use crate::api::{self, AppState, Limits};
use crate::dispatcher::{Dispatcher, DispatcherConfig, push};
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
}

/// Runs the server until `shutdown` completes; then stops accepting
/// requests, lets in-flight pushes finish and closes the store.
/// `on_listening` learns the bound address (useful with port 0).
pub async fn serve(
    options: ServeOptions,
    on_listening: impl FnOnce(SocketAddr),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let store = open_store(&options).await?;
    let listener = TcpListener::bind(options.listen)
        .await
        .with_context(|| format!("cannot listen on {}", options.listen))?;
    let address = listener
        .local_addr()
        .context("cannot read the listening address")?;

    let subscriptions_changed = Arc::new(Notify::new());
    let client = push::client().context("cannot build the HTTP client")?;
    let dispatcher = Dispatcher::new(
        store.clone(),
        client,
        options.dispatcher.clone(),
        subscriptions_changed.clone(),
    );
    let (stop_dispatcher, stopped) = watch::channel(false);
    let sweeper = tokio::spawn(sweeper::run(
        store.clone(),
        options.sweeper.clone(),
        stopped.clone(),
    ));
    let dispatcher = tokio::spawn(dispatcher.run(stopped));

    let app = api::router(AppState {
        store: store.clone(),
        subscriptions_changed,
        limits: options.limits,
        jobs: Default::default(),
    });
    match &options.database_url {
        Some(_) => tracing::info!(%address, store = "postgres", "redrive is listening"),
        None => tracing::info!(%address, data_dir = %options.data_dir.display(),
            "redrive is listening"),
    }
    on_listening(address);
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .context("the HTTP server failed");
    let _ = stop_dispatcher.send(true);
    if let Err(err) = dispatcher.await {
        tracing::error!(error = %err, "the dispatcher stopped abnormally");
    }
    if let Err(err) = sweeper.await {
        tracing::error!(error = %err, "the sweeper stopped abnormally");
    }
    served
}

async fn open_store(options: &ServeOptions) -> anyhow::Result<Arc<dyn Store>> {
    if let Some(url) = &options.database_url {
        let store = PostgresStore::connect(url, Timestamp::now())
            .await
            // The URL may carry a password: name only where it points.
            .with_context(|| format!("cannot open the PostgreSQL store at {}", redact(url)))?;
        return Ok(Arc::new(store));
    }
    let store = SqliteStore::open(&options.data_dir, Timestamp::now())
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

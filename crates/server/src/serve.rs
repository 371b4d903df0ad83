//! `redrive serve`: the store, the API and the dispatcher, wired together.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use jiff::Timestamp;
use redrive_store::{SqliteStore, Store};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

use crate::api::{self, AppState, Limits};
use crate::dispatcher::{Dispatcher, DispatcherConfig, push};
use crate::sweeper::{self, SweeperConfig};

#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub limits: Limits,
    pub dispatcher: DispatcherConfig,
    pub sweeper: SweeperConfig,
    /// Topics and subscriptions to apply before serving (`--config`).
    pub config: Option<redrive_core::config::Desired>,
}

/// Runs the server until `shutdown` completes; then stops accepting
/// requests, lets in-flight pushes finish and closes the store.
/// `on_listening` learns the bound address (useful with port 0).
pub async fn serve(
    options: ServeOptions,
    on_listening: impl FnOnce(SocketAddr),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let store = SqliteStore::open(&options.data_dir, Timestamp::now())
        .with_context(|| format!("cannot open the store in {}", options.data_dir.display()))?;
    let store: Arc<dyn Store> = Arc::new(store);
    if let Some(desired) = &options.config {
        let changes = crate::config::apply(&*store, desired, false, Timestamp::now())
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
    tracing::info!(%address, data_dir = %options.data_dir.display(), "redrive is listening");
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

//! `redrive serve`: the store, the API and the dispatcher, wired together.

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use jiff::Timestamp;
use redrive_store::{SqliteStore, Store};
use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot, watch};

use crate::api::{self, AppState, Limits};
use crate::dispatcher::{Dispatcher, DispatcherConfig, push};
use crate::ops::OpsState;
use crate::sweeper::{self, SweeperConfig};

#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub limits: Limits,
    pub dispatcher: DispatcherConfig,
    pub sweeper: SweeperConfig,
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
    let store = SqliteStore::open(&options.data_dir, Timestamp::now())
        .with_context(|| format!("cannot open the store in {}", options.data_dir.display()))?;
    let store: Arc<dyn Store> = Arc::new(store);
    let listener = TcpListener::bind(options.listen)
        .await
        .with_context(|| format!("cannot listen on {}", options.listen))?;
    let address = listener
        .local_addr()
        .context("cannot read the listening address")?;
    // Installed before any traffic so the first counts are kept.
    crate::metrics::handle();
    let ops = Arc::new(OpsState::new(options.data_dir.clone()));

    let subscriptions_changed = Arc::new(Notify::new());
    let client = push::client().context("cannot build the HTTP client")?;
    let dispatcher = Dispatcher::new(
        store.clone(),
        client,
        options.dispatcher.clone(),
        subscriptions_changed.clone(),
    )
    .reporting_to(&ops);
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
        ops: ops.clone(),
    });
    tracing::info!(%address, data_dir = %options.data_dir.display(), "redrive is listening");
    on_listening(address);
    let (close_http, http_closed) = oneshot::channel::<()>();
    let mut http = tokio::spawn(
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = http_closed.await;
            })
            .into_future(),
    );
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

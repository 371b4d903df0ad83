//! What every request handler can reach: the application state.

use std::sync::Arc;

use redrive_store::Store;
use tokio::sync::Notify;

use crate::dispatcher::flow::PushHolds;

/// What every handler can reach. Middleware clones it for every request,
/// so it is one shared pointer to [`Shared`].
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }
}

impl Shared {
    /// Says that subscriptions changed: the dispatcher reloads them, and
    /// until it has, publishes take nothing straight into flight (its
    /// offer, made with the old limits, closes now).
    pub fn announce_subscription_change(&self) {
        if let Some(handoff) = self.store.handoff() {
            handoff.close();
        }
        self.subscriptions_changed.notify_one();
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The application state's parts.
pub struct Shared {
    pub store: Arc<dyn Store>,
    /// Tells the dispatcher that subscriptions changed.
    pub subscriptions_changed: Arc<Notify>,
    pub limits: Limits,
    /// Background jobs (large redrives).
    pub jobs: crate::jobs::Jobs,
    /// Tokens, sessions, signing secrets, network policy and rate limits.
    pub security: crate::security::Security,
    /// Draining, dispatcher liveness, backup staging.
    pub ops: Arc<crate::ops::OpsState>,
    /// Subscriptions whose pushes this node's dispatcher holds back (push
    /// backoff or `Retry-After`), until when and why.
    pub push_holds: Arc<PushHolds>,
    /// The one clock every handler reads (the dispatcher's: tests move it).
    pub clock: crate::clock::Clock,
}

impl axum::extract::FromRef<AppState> for crate::security::Security {
    fn from_ref(state: &AppState) -> Self {
        state.security.clone()
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest publish body, in bytes.
    pub max_publish_bytes: usize,
    /// Most events in one batch publish.
    pub max_batch_events: usize,
    /// What one event may carry (extensions, attribute bytes).
    pub event: redrive_core::event::EventLimits,
    /// Redrives matching at most this many deliveries finish before the
    /// answer; larger ones run as a background job.
    pub redrive_inline_limit: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_publish_bytes: 1024 * 1024,
            max_batch_events: 1000,
            event: Default::default(),
            redrive_inline_limit: 1000,
        }
    }
}

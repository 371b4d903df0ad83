//! The dispatcher: claims due deliveries in batches, pushes them within the
//! global and per-subscription concurrency limits, and records each attempt
//! with the decision `redrive-core` takes for it. Each subscription's pushes
//! also follow its flow control ([`flow`]): without push backoff it only
//! limits how many pushes an endpoint that does not answer may hold, never
//! when a due delivery starts; with push backoff it is Pub/Sub's. A paused
//! or disabled subscription gets none.
//!
//! `claim_loop` wakes, claims and starts pushes; `admission` says what each
//! subscription may claim now (concurrency, rate, flow windows, pauses);
//! `signing` reads the secrets a push is signed with (a node that cannot
//! hands the claim back and pauses the subscription); `attempt` pushes once
//! and asks core for the decision; `push` only sends the request
//! `redrive_core::outbound` builds; `record` writes outcomes in batches.

mod admission;
mod attempt;
mod claim_loop;
pub mod client;
pub mod flow;
mod offers;
pub mod push;
mod record;
mod signing;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redrive_store::Store;
use tokio::sync::Notify;

use crate::clock::Clock;
use flow::{PushHolds, Signal, Ticket};

#[derive(Clone, Debug)]
pub struct DispatcherConfig {
    /// Pushes in flight at once, over all subscriptions.
    pub max_in_flight: usize,
    /// Longest sleep without a wake-up; a safety net, not the fast path.
    pub poll_interval: Duration,
    /// How long a claim outlives the push timeout before others may take it.
    pub lease_margin: Duration,
    /// How long in-flight pushes may finish after shutdown begins.
    pub drain_timeout: Duration,
    /// The time claims and decisions read (tests move it forward).
    pub clock: Clock,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        DispatcherConfig {
            max_in_flight: 512,
            poll_interval: Duration::from_secs(1),
            lease_margin: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(30),
            clock: Clock::default(),
        }
    }
}

pub struct Dispatcher {
    store: Arc<dyn Store>,
    client: client::Client,
    config: DispatcherConfig,
    subscriptions_changed: Arc<Notify>,
    security: Option<crate::security::Security>,
    /// True while the claim loop runs (readiness reads it).
    running: Arc<AtomicBool>,
    /// Pushes under way (the in-flight gauge reads it).
    pushes: Arc<AtomicUsize>,
    /// Deliveries claimed and not yet recorded: released at shutdown.
    claimed: Arc<Mutex<HashSet<String>>>,
    /// Whether store writes work; failures are logged there, once per
    /// interval.
    writes: Arc<crate::ops::StoreWrites>,
    /// Where the pauses in force are noted for others to read.
    holds: Arc<PushHolds>,
}

/// A claim whose push ended, or never started, for the dispatcher loop's
/// bookkeeping.
struct Finished {
    subscription: String,
    ended: Ended,
}

enum Ended {
    /// Pushed: what it tells the flow.
    Pushed { ticket: Ticket, signal: Signal },
    /// Not sent: the signing secret could not be read, and the claim was
    /// handed back.
    Unsigned(signing::Unsigned),
}

impl Dispatcher {
    pub fn new(
        store: Arc<dyn Store>,
        client: client::Client,
        config: DispatcherConfig,
        subscriptions_changed: Arc<Notify>,
    ) -> Self {
        let holds = Arc::new(PushHolds::new(config.clock.clone()));
        Dispatcher {
            store,
            client,
            config,
            subscriptions_changed,
            security: None,
            running: Arc::default(),
            pushes: Arc::default(),
            claimed: Arc::default(),
            writes: Arc::default(),
            holds,
        }
    }

    /// Signs pushes and enforces the network policy on literal addresses.
    pub fn with_security(mut self, security: crate::security::Security) -> Self {
        self.security = Some(security);
        self
    }

    /// Reports liveness and in-flight pushes into `ops`.
    pub fn reporting_to(mut self, ops: &crate::ops::OpsState) -> Self {
        self.running = ops.dispatcher_running.clone();
        self.pushes = ops.pushes_in_flight.clone();
        self.writes = ops.store_writes.clone();
        self
    }

    /// The pushes this dispatcher holds back, for the API to show.
    pub fn push_holds(&self) -> Arc<PushHolds> {
        self.holds.clone()
    }
}

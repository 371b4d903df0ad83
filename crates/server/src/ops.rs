//! What the process knows about its own state, for health checks and
//! graceful shutdown: whether it is draining, whether the dispatcher runs,
//! how many pushes it has under way.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

#[derive(Debug)]
pub struct OpsState {
    draining: AtomicBool,
    /// Set by the dispatcher while its claim loop runs.
    pub dispatcher_running: Arc<AtomicBool>,
    /// Pushes this process has under way, kept by the dispatcher.
    pub pushes_in_flight: Arc<AtomicUsize>,
    /// Subscriptions whose pushes this process holds back (push backoff or
    /// `Retry-After`), until when and why; kept by the dispatcher.
    pub push_holds: Arc<crate::dispatcher::flow::PushHolds>,
    started_at: Instant,
    /// Where backups are staged before they are streamed (the data
    /// directory: same filesystem as the database, and never a tmpfs).
    pub staging_dir: PathBuf,
}

impl OpsState {
    pub fn new(staging_dir: PathBuf) -> Self {
        OpsState {
            draining: AtomicBool::new(false),
            dispatcher_running: Arc::new(AtomicBool::new(false)),
            pushes_in_flight: Arc::new(AtomicUsize::new(0)),
            push_holds: Arc::default(),
            started_at: Instant::now(),
            staging_dir,
        }
    }

    /// From now on publishes are refused and readiness fails.
    pub fn begin_drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    pub fn dispatcher_running(&self) -> bool {
        self.dispatcher_running.load(Ordering::SeqCst)
    }

    pub fn pushes_in_flight(&self) -> usize {
        self.pushes_in_flight.load(Ordering::SeqCst)
    }

    pub fn uptime_seconds(&self) -> u64 {
        self.started_at.elapsed().as_secs()
    }
}

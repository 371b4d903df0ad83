//! What the process knows about its own state, for health checks and
//! graceful shutdown: whether it is draining, whether the dispatcher runs,
//! how many pushes it has under way.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redrive_store::StoreError;

#[derive(Debug)]
pub struct OpsState {
    draining: AtomicBool,
    /// Set by the dispatcher while its claim loop runs.
    pub dispatcher_running: Arc<AtomicBool>,
    /// Pushes this process has under way, kept by the dispatcher.
    pub pushes_in_flight: Arc<AtomicUsize>,
    started_at: Instant,
    /// Where backups are staged before they are streamed (the data
    /// directory: same filesystem as the database, and never a tmpfs).
    pub staging_dir: PathBuf,
    /// Whether store writes work, and the log of their failures.
    pub store_writes: Arc<StoreWrites>,
}

impl OpsState {
    pub fn new(staging_dir: PathBuf) -> Self {
        OpsState {
            draining: AtomicBool::new(false),
            dispatcher_running: Arc::new(AtomicBool::new(false)),
            pushes_in_flight: Arc::new(AtomicUsize::new(0)),
            started_at: Instant::now(),
            staging_dir,
            store_writes: Arc::default(),
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

/// At most one log line per this interval while store writes fail.
const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Whether the store's writes work, as the last write found them, and the
/// one log line per interval that reports their failures: a full disk
/// fails every publish and every attempt record, and a line for each
/// would bury everything else in the log.
#[derive(Debug, Default)]
pub struct StoreWrites {
    state: Mutex<WriteFailures>,
}

#[derive(Debug, Default)]
struct WriteFailures {
    /// Since when writes fail, if they do.
    failing_since: Option<Instant>,
    /// Failures since writes last worked.
    total: u64,
    /// Failures not yet counted in a log line.
    unlogged: u64,
    last_logged: Option<Instant>,
}

impl StoreWrites {
    /// Notes a store failure that passes by itself or by an operator's
    /// hand (a full disk, a lost connection). Logs it at once if it is the
    /// first, else at most once per interval, with how many happened since
    /// the last line.
    pub fn failed(&self, err: &StoreError) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let now = Instant::now();
        let since = *state.failing_since.get_or_insert(now);
        state.total += 1;
        state.unlogged += 1;
        if state
            .last_logged
            .is_some_and(|at| now.duration_since(at) < FAILURE_LOG_INTERVAL)
        {
            return;
        }
        tracing::error!(
            error = %err,
            failures = state.unlogged,
            failures_total = state.total,
            failing_for_seconds = now.duration_since(since).as_secs(),
            "store writes fail; publishes answer 503 and attempts wait to be recorded \
             until they work again"
        );
        state.unlogged = 0;
        state.last_logged = Some(now);
    }

    /// Reports a store failure: one that passes counts among the write
    /// failures (logged once per interval), any other is logged at once
    /// with `what` failed.
    pub fn report(&self, err: &StoreError, what: &str) {
        if err.is_transient() {
            self.failed(err);
        } else {
            tracing::error!(error = %err, "{what}");
        }
    }

    /// Notes a write that worked; logs the recovery once.
    pub fn succeeded(&self) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        if let Some(since) = state.failing_since.take() {
            tracing::warn!(
                failures_total = state.total,
                failed_for_ms = u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX),
                "store writes work again"
            );
            *state = WriteFailures::default();
        }
    }

    /// True from a failed write until one works again.
    pub fn failing(&self) -> bool {
        self.state
            .lock()
            .map(|state| state.failing_since.is_some())
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_counted_until_a_write_works() {
        let writes = StoreWrites::default();
        assert!(!writes.failing());
        for _ in 0..1000 {
            writes.failed(&StoreError::Unavailable("disk full".into()));
        }
        assert!(writes.failing());
        {
            let state = writes.state.lock().unwrap();
            assert_eq!(state.total, 1000);
            // The first was logged at once; the rest wait for the interval.
            assert_eq!(state.unlogged, 999);
        }
        writes.succeeded();
        assert!(!writes.failing());
        assert_eq!(writes.state.lock().unwrap().total, 0);
    }
}

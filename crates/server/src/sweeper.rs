//! The sweeper: ends deliveries that outlived their subscription's message
//! retention, and purges finished history after the history retention. It
//! works in small batches, each its own short write, so it never holds the
//! store for long and the dispatcher's writes interleave with it.

use std::sync::Arc;
use std::time::Duration;

use redrive_core::lifecycle::DEFAULT_HISTORY_RETENTION;
use redrive_store::{PurgeRequest, Store};
use tokio::sync::watch;

use crate::clock::Clock;
use crate::ops::StoreWrites;

#[derive(Clone, Debug)]
pub struct SweeperConfig {
    /// Pause between sweeps once there is nothing left to do.
    pub interval: Duration,
    /// How long finished deliveries, their attempts and unreferenced events
    /// are kept.
    pub history_retention: Duration,
    /// Rows handled per write.
    pub batch_size: u32,
    /// The time the sweeper reads.
    pub clock: Clock,
}

impl Default for SweeperConfig {
    fn default() -> Self {
        SweeperConfig {
            interval: Duration::from_secs(5),
            history_retention: DEFAULT_HISTORY_RETENTION,
            batch_size: 500,
            clock: Clock::default(),
        }
    }
}

/// Runs until `shutdown` turns true; store failures that pass (a full
/// disk) are reported to `writes`, once per interval.
pub async fn run(
    store: Arc<dyn Store>,
    config: SweeperConfig,
    writes: Arc<StoreWrites>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut events_cursor = 0;
    while !*shutdown.borrow() {
        sweep(&*store, &config, &writes, &mut events_cursor).await;
        tokio::select! {
            _ = tokio::time::sleep(config.interval) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// One full sweep: as many batches as there is work, yielding between them.
pub async fn sweep(
    store: &dyn Store,
    config: &SweeperConfig,
    writes: &StoreWrites,
    events_cursor: &mut i64,
) {
    loop {
        match store
            .expire_retention(config.clock.now(), config.batch_size)
            .await
        {
            Ok(expired) => {
                if expired > 0 {
                    crate::metrics::delivery_finished("failed", "retention_expired", expired);
                    tracing::info!(expired, "deliveries outlived their retention");
                }
                if expired < u64::from(config.batch_size) {
                    break;
                }
            }
            Err(err) => {
                writes.report(&err, "cannot expire deliveries past retention");
                break;
            }
        }
        tokio::task::yield_now().await;
    }
    loop {
        let now = config.clock.now();
        let Ok(before) = now.checked_sub(config.history_retention) else {
            break;
        };
        let request = PurgeRequest {
            before,
            limit: config.batch_size,
            events_after: *events_cursor,
        };
        match store.purge_history(request).await {
            Ok(outcome) => {
                *events_cursor = outcome.events_cursor;
                if outcome.deliveries + outcome.events > 0 {
                    tracing::debug!(
                        deliveries = outcome.deliveries,
                        attempts = outcome.attempts,
                        events = outcome.events,
                        "purged finished history"
                    );
                }
                if !outcome.more {
                    break;
                }
            }
            Err(err) => {
                writes.report(&err, "cannot purge finished history");
                break;
            }
        }
        tokio::task::yield_now().await;
    }
}

//! Wake-ups on SQLite: one process owns the database, so a wake-up is the
//! store's in-process `Notify`, which the dispatcher waits on between polls
//! (`DeliveryStore::wakeups`). A write that makes work due fires it once
//! committed: a publish or a completion that fanned out, a rescue and a
//! retry (`deliveries.rs`), a health change and a pause or resume
//! (`health.rs`), a redrive, and an expiry or cancel that dead-lettered
//! (`lifecycle.rs`).
//! No other process needs telling: none can open the same directory.

use std::sync::Arc;

use tokio::sync::Notify;

use super::SqliteStore;

/// The store's wake-up signal, before any write could fire it.
pub(super) fn signal() -> Arc<Notify> {
    Arc::new(Notify::new())
}

impl SqliteStore {
    /// Wakes the dispatcher: committed work is due now.
    pub(super) fn wake(&self) {
        self.wakeups.notify_one();
    }
}

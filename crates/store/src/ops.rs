//! Parameters and answers of the operational methods: queue statistics for
//! metrics, readiness, releasing claims at shutdown, backups.

use jiff::Timestamp;

/// The delivery backlog of one subscription at one instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueStats {
    pub subscription: String,
    /// Scheduled deliveries whose next attempt is due now.
    pub due: u64,
    /// When the longest-waiting due delivery became due.
    pub oldest_due_at: Option<Timestamp>,
    /// Scheduled deliveries that already had an attempt (waiting to retry).
    pub retries_scheduled: u64,
    /// Deliveries claimed and being pushed (by any process).
    pub in_flight: u64,
}

/// What a readiness probe learns from the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreReadiness {
    /// The schema version the database is at.
    pub schema_version: u64,
    /// The schema version this build migrates to.
    pub latest_schema_version: u64,
}

impl StoreReadiness {
    pub fn migrated(&self) -> bool {
        self.schema_version == self.latest_schema_version
    }
}

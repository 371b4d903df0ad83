//! Parameters and answers of the failure-lifecycle operations: retention
//! expiry, redrive, the journal and the history purge.

use jiff::Timestamp;
use redrive_core::{CloudEvent, Delivery, DeliveryState, FailureReason};

/// Which deliveries of a subscription a redrive moves.
#[derive(Clone, Debug)]
pub struct RedriveFilter {
    pub subscription: String,
    /// `failed` and/or `scheduled`; in-flight and delivered ones are never
    /// redriven, so redriving twice delivers nothing twice.
    pub states: Vec<DeliveryState>,
    /// Only failures with one of these reasons (empty: any).
    pub reasons: Vec<FailureReason>,
    /// Only deliveries of events published at or after this time.
    pub since: Option<Timestamp>,
    /// Only deliveries of events published before this time.
    pub until: Option<Timestamp>,
    /// Only events of this type.
    pub event_type: Option<String>,
}

impl RedriveFilter {
    /// The states a redrive may move.
    pub const REDRIVABLE: [DeliveryState; 2] = [DeliveryState::Failed, DeliveryState::Scheduled];

    /// Refuses a filter naming no state or a state a redrive may not move.
    pub(crate) fn check(&self) -> crate::Result<()> {
        if self.states.is_empty() {
            return Err(crate::StoreError::Invalid(
                "states: name at least one state".into(),
            ));
        }
        if let Some(state) = self
            .states
            .iter()
            .find(|s| !RedriveFilter::REDRIVABLE.contains(s))
        {
            return Err(crate::StoreError::Invalid(format!(
                "states: {} deliveries can't be redriven (only failed and scheduled)",
                state.as_str()
            )));
        }
        Ok(())
    }

    pub fn new(subscription: impl Into<String>) -> Self {
        RedriveFilter {
            subscription: subscription.into(),
            states: vec![DeliveryState::Failed],
            reasons: Vec::new(),
            since: None,
            until: None,
            event_type: None,
        }
    }
}

/// One batch of a redrive: matching deliveries with an id after `after`,
/// at most `limit` of them, in id order.
#[derive(Clone, Debug)]
pub struct RedriveBatchRequest {
    pub filter: RedriveFilter,
    pub after: Option<String>,
    pub limit: u32,
    pub now: Timestamp,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RedriveBatch {
    /// Deliveries put back to `scheduled` with a fresh attempt budget.
    pub moved: u64,
    /// Pass as `after` for the next batch; `None` when nothing was left.
    pub last_id: Option<String>,
}

/// A page of the events that matched a subscription, oldest first.
#[derive(Clone, Debug)]
pub struct JournalQuery {
    pub subscription: String,
    /// The position of the last entry already read (exclusive).
    pub since: Option<i64>,
    pub limit: u32,
}

#[derive(Clone, Debug)]
pub struct JournalEntry {
    /// Increasing along the journal; pass the last one read as `since`.
    pub position: i64,
    pub delivery: Delivery,
    pub event: CloudEvent,
}

#[derive(Clone, Debug, Default)]
pub struct JournalPage {
    pub entries: Vec<JournalEntry>,
    /// Entries at or below this position were purged: reading from a
    /// `since` below it would miss some.
    pub purged_through: i64,
}

/// One incremental step of the history purge.
#[derive(Clone, Copy, Debug)]
pub struct PurgeRequest {
    /// Purge deliveries that finished before this time, and events
    /// published before it that no delivery references.
    pub before: Timestamp,
    /// At most this many deliveries, and this many events examined.
    pub limit: u32,
    /// Where the scan for unreferenced events resumes (0 to start over).
    pub events_after: i64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PurgeOutcome {
    pub deliveries: u64,
    pub attempts: u64,
    pub events: u64,
    /// Pass as `events_after` next time.
    pub events_cursor: i64,
    /// Whether a full batch was found: call again soon.
    pub more: bool,
}

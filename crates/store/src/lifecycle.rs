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

/// A cancel is kept in the attempts table, beside the HTTP tries, so that
/// it is purged, moved and dropped with them. HTTP tries are numbered 1,
/// 2, …; cancels are numbered -1, -2, … in the order they happened, which
/// no try can take. The attempt log puts each cancel after the tries that
/// started before it (see [`order_attempt_log`]).
pub(crate) fn attempt_number(stored: i64) -> Option<(u32, redrive_core::AttemptKind)> {
    if stored < 0 {
        let index = u32::try_from(stored.checked_neg()?).ok()?;
        Some((index, redrive_core::AttemptKind::Cancel))
    } else {
        Some((u32::try_from(stored).ok()?, redrive_core::AttemptKind::Push))
    }
}

/// The stored number of a delivery's next cancel, given how many it had.
pub(crate) fn cancel_number(cancels_before: i64) -> i64 {
    -(cancels_before + 1)
}

/// The attempt number can't be read back.
#[derive(Debug)]
pub(crate) struct BadAttemptNumber;

impl std::fmt::Display for BadAttemptNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a stored attempt number is out of range")
    }
}

impl std::error::Error for BadAttemptNumber {}

/// The attempt log in order: HTTP tries by number, each cancel after the
/// tries that started before it, numbered with the try it came after (0
/// when none). A delivery is cancelled only while scheduled, so every try
/// that started before a cancel had ended by then.
pub(crate) fn order_attempt_log(entries: Vec<redrive_core::Attempt>) -> Vec<redrive_core::Attempt> {
    use redrive_core::AttemptKind;
    let (mut cancels, mut pushes): (Vec<_>, Vec<_>) = entries
        .into_iter()
        .partition(|entry| entry.kind == AttemptKind::Cancel);
    pushes.sort_by_key(|entry| entry.number);
    cancels.sort_by_key(|entry| entry.number);
    let mut cancels = cancels.into_iter().peekable();
    let mut log = Vec::with_capacity(pushes.len() + cancels.len());
    let mut last_push = 0;
    for push in pushes {
        while let Some(mut cancel) = cancels.next_if(|c| c.started_at < push.started_at) {
            cancel.number = last_push;
            log.push(cancel);
        }
        last_push = push.number;
        log.push(push);
    }
    for mut cancel in cancels {
        cancel.number = last_push;
        log.push(cancel);
    }
    log
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;
    use redrive_core::{Attempt, AttemptKind, Decision, FailureReason};

    use super::*;

    fn entry(stored: i64, second: i64) -> Attempt {
        let (number, kind) = attempt_number(stored).unwrap();
        Attempt {
            number,
            kind,
            started_at: Timestamp::from_second(second).unwrap(),
            duration_ms: 0,
            status: None,
            error: None,
            error_message: None,
            response_snippet: None,
            decision: Decision::Failed {
                reason: FailureReason::Cancelled,
            },
        }
    }

    #[test]
    fn cancels_sit_after_the_tries_before_them() {
        // Try 1, cancel, redrive, tries 2 and 3, cancel, redrive, cancel.
        let stored = vec![
            entry(cancel_number(2), 90),
            entry(3, 50),
            entry(cancel_number(0), 20),
            entry(1, 10),
            entry(cancel_number(1), 60),
            entry(2, 40),
        ];
        let log: Vec<_> = order_attempt_log(stored)
            .iter()
            .map(|a| (a.kind, a.number))
            .collect();
        assert_eq!(
            log,
            [
                (AttemptKind::Push, 1),
                (AttemptKind::Cancel, 1),
                (AttemptKind::Push, 2),
                (AttemptKind::Push, 3),
                (AttemptKind::Cancel, 3),
                (AttemptKind::Cancel, 3),
            ]
        );
    }

    #[test]
    fn a_cancel_before_any_try_follows_attempt_zero() {
        let log = order_attempt_log(vec![entry(cancel_number(0), 5)]);
        assert_eq!((log[0].kind, log[0].number), (AttemptKind::Cancel, 0));
        assert_eq!(attempt_number(i64::MIN), None);
        assert_eq!(attempt_number(i64::from(u32::MAX) + 1), None);
    }
}

//! Stored forms both backends share: times as milliseconds since the
//! epoch (so both compare and order them the same way) and the column
//! lists their row readers expect.

use jiff::Timestamp;

pub(crate) fn millis(ts: Timestamp) -> i64 {
    ts.as_millisecond()
}

/// Columns read by each backend's `rows::delivery`, in order; `d` is
/// deliveries, `e` events.
pub(crate) const DELIVERY_COLUMNS: &str = "d.id, d.subscription, e.id, e.source, e.type, d.state, \
     d.attempts, d.next_attempt_at, d.first_attempt_at, d.last_attempt_at, d.last_status, \
     d.last_error, d.failure_reason, d.created_at, d.updated_at, d.dead_letter_event, \
     d.attempts_before_redrive, d.retention_from";
pub(crate) const DELIVERY_COLUMN_COUNT: usize = 18;

/// Columns read by each backend's `rows::attempt`, in order.
pub(crate) const ATTEMPT_COLUMNS: &str = "number, started_at, duration_ms, status, error, \
     error_message, response_snippet, decision";

/// The status columns of `subscriptions`, read by each backend's
/// `health::status` at the end of a row.
pub(crate) const STATUS_COLUMNS: &str =
    "health, health_reason, COALESCE(health_changed_at, created_at), paused";

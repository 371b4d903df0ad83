//! Claims on SQLite beyond the claim itself (which is `deliveries.rs`'s, in
//! the writer's transaction): what happens to a lease no completion ended.
//!
//! One process owns the database, so a claim left in flight belongs to a
//! process that is gone (at open) or to an attempt whose lease ran out (the
//! dispatcher's periodic rescue); either way it is made due again here.
//! Rate limits need no shared state: the one process that claims keeps the
//! bucket itself (the dispatcher does), so `ClaimWant::rate` is left to it
//! and `Capabilities::shared_rate_buckets` is false.

use jiff::Timestamp;
use rusqlite::{Connection, params};

use super::rows::millis;
use crate::Result;

// In-flight rows are found one subscription at a time on
// `deliveries_recent_by_state` (a delivery lives only as long as its
// subscription): a lease index would cost every claim and outcome a write.

/// Makes in-flight deliveries due again, recording their lost attempt as
/// interrupted. `lease_before`: only those whose lease ended before it.
pub(super) fn rescue(
    conn: &Connection,
    now: Timestamp,
    lease_before: Option<Timestamp>,
) -> Result<u64> {
    let now_ms = millis(now);
    let cutoff = lease_before.map(millis).unwrap_or(i64::MAX);
    conn.execute(
        "INSERT OR IGNORE INTO attempts
           (delivery_id, number, started_at, duration_ms, error, error_message, decision)
         SELECT id, attempts, COALESCE(last_attempt_at, ?1), MAX(?1 - COALESCE(last_attempt_at, ?1), 0),
                'interrupted', 'the attempt did not finish: its process stopped or its lease ran out',
                json_object('kind', 'retry', 'at', ?2, 'retry', attempts)
         FROM deliveries
         WHERE subscription IN (SELECT name FROM subscriptions)
           AND state = 'in_flight' AND lease_until < ?3",
        params![now_ms, now.to_string(), cutoff],
    )?;
    let moved = conn.execute(
        "UPDATE deliveries SET state = 'scheduled', next_attempt_at = ?1, lease_until = NULL,
                last_error = 'interrupted', last_status = NULL, updated_at = ?1
         WHERE subscription IN (SELECT name FROM subscriptions)
           AND state = 'in_flight' AND lease_until < ?2",
        params![now_ms, cutoff],
    )?;
    Ok(moved as u64)
}

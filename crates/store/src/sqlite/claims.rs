//! Claims on SQLite beyond the claim itself (which is `deliveries.rs`'s, in
//! the writer's transaction), the `ClaimStore`: leases no completion ended,
//! claims released at shutdown, and claims handed back whole.
//!
//! One process owns the database, so a claim left in flight belongs to a
//! process that is gone (at open) or to an attempt whose lease ran out (the
//! dispatcher's periodic rescue); either way it is made due again here.
//! Rate limits need no shared state: the one process that claims keeps the
//! bucket itself (the dispatcher does), so `ClaimWant::rate` is left to it
//! and `Capabilities::shared_rate_buckets` is false.

use async_trait::async_trait;
use jiff::Timestamp;
use rusqlite::{Connection, params};

use super::SqliteStore;
use super::rows::millis;
use crate::Result;
use crate::store::{ClaimStore, Unclaim};

#[async_trait]
impl ClaimStore for SqliteStore {
    async fn unclaim(&self, claims: Vec<Unclaim>, now: Timestamp) -> Result<u64> {
        if claims.is_empty() {
            return Ok(0);
        }
        let moved = self
            .writer
            .write_bookkeeping(move |conn| unclaim(conn, &claims, now))
            .await?;
        if moved > 0 {
            self.wake();
        }
        Ok(moved)
    }

    async fn rescue_expired(&self, now: Timestamp) -> Result<u64> {
        let moved = self
            .writer
            .write_bookkeeping(move |conn| rescue(conn, now, Some(now)))
            .await?;
        if moved > 0 {
            self.wake();
        }
        Ok(moved)
    }

    async fn release_claims(&self, delivery_ids: Vec<String>, now: Timestamp) -> Result<u64> {
        self.writer
            .write_bookkeeping(move |conn| release_claims(conn, &delivery_ids, now))
            .await
    }
}

/// Puts each delivery back as it was before the claim: the claim counted
/// an attempt and set the first (on the first attempt) and last attempt
/// times, which the attempt before it, if any, had set.
fn unclaim(conn: &Connection, claims: &[Unclaim], now: Timestamp) -> Result<u64> {
    let mut undo = conn.prepare_cached(
        "UPDATE deliveries SET state = 'scheduled', attempts = attempts - 1,
                next_attempt_at = ?3, lease_until = NULL, updated_at = ?4,
                first_attempt_at = CASE WHEN attempts = 1 THEN NULL ELSE first_attempt_at END,
                last_attempt_at = CASE WHEN attempts = 1 THEN NULL ELSE COALESCE(
                    (SELECT started_at FROM attempts
                     WHERE delivery_id = deliveries.id AND number = deliveries.attempts - 1),
                    last_attempt_at) END
         WHERE id = ?1 AND state = 'in_flight' AND attempts = ?2",
    )?;
    let mut moved = 0;
    for claim in claims {
        moved += undo.execute(params![
            claim.delivery_id,
            claim.attempt,
            millis(claim.due_at),
            millis(now)
        ])? as u64;
    }
    Ok(moved)
}

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

/// Releases claims at shutdown: see `ClaimStore::release_claims`.
fn release_claims(conn: &Connection, ids: &[String], now: Timestamp) -> Result<u64> {
    let now_ms = millis(now);
    let mut record = conn.prepare_cached(
        "INSERT OR IGNORE INTO attempts
           (delivery_id, number, started_at, duration_ms, error, error_message, decision)
         SELECT id, attempts, COALESCE(last_attempt_at, ?1), MAX(?1 - COALESCE(last_attempt_at, ?1), 0),
                'interrupted', 'the attempt did not finish before shutdown',
                json_object('kind', 'retry', 'at', ?2, 'retry', attempts)
         FROM deliveries WHERE id = ?3 AND state = 'in_flight'",
    )?;
    let mut release = conn.prepare_cached(
        "UPDATE deliveries SET state = 'scheduled', next_attempt_at = ?1, lease_until = NULL,
                last_error = 'interrupted', last_status = NULL, updated_at = ?1
         WHERE id = ?2 AND state = 'in_flight'",
    )?;
    let at = now.to_string();
    let mut moved = 0;
    for id in ids {
        record.execute(params![now_ms, at, id])?;
        moved += release.execute(params![now_ms, id])? as u64;
    }
    Ok(moved)
}

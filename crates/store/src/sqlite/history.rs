//! The history purge on SQLite: finished deliveries older than the cutoff
//! go row by row with their attempts, a batch per call, each subscription's
//! journal floor rising past what went; then events no delivery reads any
//! more, walked once in publish order. One file, one writer: the purge runs
//! in the writer's transaction like any other write, so it needs no lock.

use rusqlite::{Connection, params};

use super::rows::millis;
use crate::Result;
use crate::lifecycle::{PurgeOutcome, PurgeRequest};

pub(super) fn purge(conn: &Connection, request: &PurgeRequest) -> Result<PurgeOutcome> {
    let before = millis(request.before);
    let limit = i64::from(request.limit.max(1));
    let finished: Vec<(String, String, i64)> = conn
        .prepare_cached(
            "SELECT id, subscription, event_seq FROM deliveries
             WHERE state IN ('delivered', 'failed') AND updated_at < ?1
             ORDER BY updated_at LIMIT ?2",
        )?
        .query_map(params![before, limit], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut outcome = PurgeOutcome {
        more: finished.len() as i64 >= limit,
        events_cursor: request.events_after,
        ..PurgeOutcome::default()
    };
    let mut delete_attempts = conn.prepare_cached("DELETE FROM attempts WHERE delivery_id = ?1")?;
    let mut delete_delivery = conn.prepare_cached("DELETE FROM deliveries WHERE id = ?1")?;
    let mut raise_floor = conn.prepare_cached(
        "INSERT INTO journal_floors (subscription, purged_through) VALUES (?1, ?2)
         ON CONFLICT (subscription)
         DO UPDATE SET purged_through = MAX(purged_through, excluded.purged_through)",
    )?;
    // Deletes an event unless some delivery still reads it.
    let mut delete_unreferenced = conn.prepare_cached(
        "DELETE FROM events WHERE seq = ?1
           AND NOT EXISTS (SELECT 1 FROM deliveries WHERE event_seq = ?1)",
    )?;
    for (id, subscription, seq) in &finished {
        outcome.attempts += delete_attempts.execute([id])? as u64;
        outcome.deliveries += delete_delivery.execute([id])? as u64;
        raise_floor.execute(params![subscription, seq])?;
    }
    for (_, _, seq) in &finished {
        outcome.events += delete_unreferenced.execute([seq])? as u64;
    }
    // Events no delivery ever read (no subscription matched, or copies on a
    // topic nobody subscribes to), walked once in publish order.
    let candidates: Vec<(i64, i64)> = conn
        .prepare_cached(
            "SELECT seq, published_at FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )?
        .query_map(params![request.events_after, limit], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut examined = 0;
    for (seq, published_at) in candidates {
        if published_at >= before {
            break;
        }
        outcome.events += delete_unreferenced.execute([seq])? as u64;
        outcome.events_cursor = seq;
        examined += 1;
    }
    outcome.more |= examined >= limit;
    Ok(outcome)
}

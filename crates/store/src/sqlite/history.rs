//! The history purge on SQLite: finished deliveries older than the cutoff
//! go row by row with their attempts, a batch per call, each subscription's
//! journal floor rising past what went; then events no delivery reads any
//! more, walked once in publish order. One file, one writer: the purge runs
//! in the writer's transaction like any other write, so it needs no lock.
//!
//! Both reads go through indexes the hot path needs anyway (see
//! `migrations/sqlite/0011_fewer_history_indexes.sql`): ended deliveries one
//! subscription at a time, oldest first within each; an event's readers
//! among its topic's subscriptions only.

use rusqlite::{Connection, params};

use super::rows::millis;
use crate::Result;
use crate::lifecycle::{PurgeOutcome, PurgeRequest};

/// A batch of ended deliveries older than `?1`, at most `?2`. `CROSS JOIN`
/// keeps the subscriptions outside: the other way round walks every ended
/// delivery's entry.
const FINISHED_BEFORE: &str = "SELECT d.id, d.subscription, d.event_seq
     FROM subscriptions s CROSS JOIN deliveries d INDEXED BY deliveries_ended
       ON d.subscription = s.name
     WHERE d.state IN ('delivered', 'failed') AND d.updated_at < ?1
     LIMIT ?2";

/// Deletes event `?1` unless a delivery still reads it.
const DELETE_UNREFERENCED: &str = "DELETE FROM events WHERE seq = ?1
       AND NOT EXISTS (SELECT 1 FROM subscriptions s
                       JOIN deliveries d INDEXED BY deliveries_journal
                         ON d.subscription = s.name AND d.event_seq = events.seq
                       WHERE s.topic = events.topic)";

pub(super) fn purge(conn: &Connection, request: &PurgeRequest) -> Result<PurgeOutcome> {
    let before = millis(request.before);
    let limit = i64::from(request.limit.max(1));
    let finished: Vec<(String, String, i64)> = conn
        .prepare_cached(FINISHED_BEFORE)?
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
    let mut delete_unreferenced = conn.prepare_cached(DELETE_UNREFERENCED)?;
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

#[cfg(test)]
mod tests {
    use super::{DELETE_UNREFERENCED, FINISHED_BEFORE};
    use crate::sqlite::plan_on_fresh_schema;

    /// The purge reads index ranges, never every delivery: it runs in the
    /// writer's transaction, where a scan would hold up every publish.
    #[test]
    fn the_purge_reads_deliveries_through_indexes() {
        let finished = plan_on_fresh_schema(FINISHED_BEFORE);
        assert!(
            finished
                .iter()
                .any(|step| step.contains("SEARCH d USING INDEX deliveries_ended")),
            "{finished:?}"
        );
        let unreferenced = plan_on_fresh_schema(DELETE_UNREFERENCED);
        assert!(
            unreferenced
                .iter()
                .any(|step| step.contains("SEARCH d USING COVERING INDEX deliveries_journal")),
            "{unreferenced:?}"
        );
        for step in finished.iter().chain(&unreferenced) {
            assert!(!step.starts_with("SCAN d"), "{step}");
        }
    }
}

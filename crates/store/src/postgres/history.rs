//! The history purge on PostgreSQL, run by one node at a time under a
//! transaction-scoped advisory lock (a node that finds it taken skips its
//! turn).
//!
//! First, whole days of history go as partitions (see `schema.rs` for the
//! layout). A range partition can go once every id in it was made before
//! the purge's cutoff; its finished rows are then exactly what a row-by-row
//! purge would delete, and the few others (still scheduled or in flight,
//! finished after the cutoff) move to the default partition first. Then
//! the default partition is purged row by row, a batch per call, raising
//! each subscription's journal floor, and events no delivery reads any
//! more are deleted, walked once in publish order.
//!
//! Every read goes through indexes the hot path needs anyway (see
//! `migrations/postgres/0012_fewer_delivery_indexes.sql`): ended deliveries
//! one subscription at a time (`deliveries_ended`), an event's readers
//! among its topic's subscriptions only (`deliveries_journal`).

use jiff::Timestamp;
use tokio_postgres::Client;

use super::rows::{get, millis};
use super::schema::{
    self, ATTEMPT_TABLE_COLUMNS, DELIVERY_TABLE_COLUMNS, LOCK_TIMEOUT, PARTITION_LOCK,
    bound_millis, lock_timed_out,
};
use super::{pg_error, try_xact_lock};
use crate::lifecycle::{PurgeOutcome, PurgeRequest};
use crate::{Result, StoreError};

/// The purge's advisory lock key, per schema.
const PURGE_LOCK: &str = "hashtext(current_schema() || '.redrive.purge')";

pub(super) async fn purge(
    client: &mut deadpool_postgres::Object,
    request: &PurgeRequest,
) -> Result<PurgeOutcome> {
    let before = millis(request.before);
    let limit = i64::from(request.limit.max(1));
    let mut outcome = PurgeOutcome {
        events_cursor: request.events_after,
        ..PurgeOutcome::default()
    };
    let raw: &mut tokio_postgres::Client = client;
    // Partitions follow the ids, which follow the real clock.
    if let Err(err) = schema::ensure_ahead(raw, Timestamp::now()).await {
        tracing::warn!(error = %err, "cannot create the coming days' history partitions");
    }
    // A partition that can't go (say, an operator's view depends on it)
    // must not stop the rest of the purge: it is logged every turn instead.
    let dropped = match drop_expired(raw, before, PURGE_LOCK).await {
        Ok(dropped) => dropped,
        Err(err) => {
            tracing::error!(error = %err, "cannot drop expired history partitions");
            Dropped::default()
        }
    };
    if dropped.other_node {
        tracing::debug!("another node is purging history; skipping this turn");
        return Ok(outcome);
    }
    if let Some(first) = dropped.first_seq {
        // The walk over unreferenced events goes back to the first event
        // of the dropped deliveries and deletes their events on its way.
        outcome.events_cursor = outcome.events_cursor.min(first.saturating_sub(1));
    }
    let tx = client.transaction().await.map_err(pg_error)?;
    if !try_xact_lock(&*tx, PURGE_LOCK).await.map_err(pg_error)? {
        tracing::debug!("another node is purging history; skipping this turn");
        return Ok(outcome);
    }
    // One batch of finished deliveries with their attempts, raising each
    // subscription's journal floor to what went. Only the default partition
    // is purged row by row: day partitions go whole once their day passed
    // the cutoff.
    let row = tx
        .query_one(PURGE_FINISHED, &[&before, &limit])
        .await
        .map_err(pg_error)?;
    let deleted = u64::try_from(get::<i64>(&row, 0)?).unwrap_or(0);
    outcome.deliveries = dropped.deliveries + deleted;
    outcome.attempts = dropped.attempts + u64::try_from(get::<i64>(&row, 1)?).unwrap_or(0);
    let seqs: Vec<i64> = get(&row, 2)?;
    outcome.more = dropped.more || deleted >= u64::try_from(limit).unwrap_or(u64::MAX);
    let delete_unreferenced = tx
        .prepare_cached(DELETE_UNREFERENCED)
        .await
        .map_err(pg_error)?;
    if !seqs.is_empty() {
        outcome.events += tx
            .execute(&delete_unreferenced, &[&seqs])
            .await
            .map_err(pg_error)?;
    }
    // Events no delivery ever read (no subscription matched, or copies on a
    // topic nobody subscribes to), walked once in publish order.
    let candidates: Vec<(i64, i64)> = tx
        .query(
            "SELECT seq, published_at FROM events WHERE seq > $1 ORDER BY seq LIMIT $2",
            &[&outcome.events_cursor, &limit],
        )
        .await
        .map_err(pg_error)?
        .iter()
        .map(|row| Ok((get(row, 0)?, get(row, 1)?)))
        .collect::<Result<_>>()?;
    let examined: Vec<i64> = candidates
        .iter()
        .take_while(|(_, published_at)| *published_at < before)
        .map(|(seq, _)| *seq)
        .collect();
    if let Some(last) = examined.last() {
        outcome.events_cursor = *last;
        outcome.events += tx
            .execute(&delete_unreferenced, &[&examined])
            .await
            .map_err(pg_error)?;
    }
    outcome.more |= examined.len() as i64 >= limit;
    tx.commit().await.map_err(pg_error)?;
    Ok(outcome)
}

/// One batch (at most `$2`) of the default partition's deliveries that
/// ended before `$1`, deleted with their attempts, each subscription's
/// journal floor raised to what went; answers the deliveries and attempts
/// deleted and the events they read. Ended rows are found one
/// subscription at a time (`deliveries_ended`).
pub(super) const PURGE_FINISHED: &str = "WITH finished AS (
       SELECT f.id FROM subscriptions s CROSS JOIN LATERAL (
         SELECT id FROM deliveries_default
         WHERE subscription = s.name AND state IN ('delivered', 'failed')
           AND updated_at < $1
         ORDER BY updated_at LIMIT $2
         FOR UPDATE SKIP LOCKED
       ) f
       LIMIT $2
     ), gone_attempts AS (
       DELETE FROM attempts_default a USING finished f WHERE a.delivery_id = f.id
       RETURNING 1
     ), gone AS (
       DELETE FROM deliveries_default d USING finished f WHERE d.id = f.id
       RETURNING d.subscription, d.event_seq
     ), floors AS (
       INSERT INTO journal_floors (subscription, purged_through)
       SELECT subscription, max(event_seq) FROM gone GROUP BY subscription
       ON CONFLICT (subscription) DO UPDATE
         SET purged_through = GREATEST(journal_floors.purged_through,
                                       excluded.purged_through)
     )
     SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM gone_attempts),
            COALESCE((SELECT array_agg(DISTINCT event_seq) FROM gone), '{}')";

/// Deletes the events `$1` that no delivery reads any more. A delivery's
/// event is always on its subscription's topic, so its readers are looked
/// for among the topic's subscriptions, each through `deliveries_journal`:
/// the first of the subscription's deliveries from the event on, which
/// only that index gives in order (an equality alone would tie with
/// `deliveries_recent_by_state` on a day partition never analyzed).
pub(super) const DELETE_UNREFERENCED: &str = "DELETE FROM events e WHERE e.seq = ANY($1)
       AND NOT EXISTS (SELECT 1 FROM subscriptions s
                       CROSS JOIN LATERAL (
                         SELECT d.event_seq FROM deliveries d
                         WHERE d.subscription = s.name AND d.event_seq >= e.seq
                         ORDER BY d.event_seq LIMIT 1
                       ) first_read
                       WHERE s.topic = e.topic AND first_read.event_seq = e.seq)";

/// What dropping partitions did in one purge turn.
#[derive(Debug, Default)]
struct Dropped {
    pub deliveries: u64,
    pub attempts: u64,
    /// The lowest event position among purged deliveries: their events are
    /// deleted by the purge's walk over unreferenced events from there.
    pub first_seq: Option<i64>,
    /// Another partition with rows can go: call again soon.
    pub more: bool,
    /// Another node holds the purge lock: this node skips its turn.
    pub other_node: bool,
}

/// A range partition pair of the history tables.
#[derive(Debug)]
struct RangePartition {
    deliveries: String,
    attempts: String,
    /// The lowest id it holds ("" for the legacy partition, from MINVALUE).
    lower: String,
    upper: String,
}

enum Outcome {
    Dropped {
        deliveries: u64,
        attempts: u64,
        first_seq: Option<i64>,
    },
    LockTimeout,
    OtherNode,
}

/// Drops the partitions whose every id was made before `before_ms`,
/// oldest first. Empty ones go freely; of those holding rows, one per call,
/// so each exclusive lock on the tables stays short.
async fn drop_expired(client: &mut Client, before_ms: i64, purge_lock: &str) -> Result<Dropped> {
    let mut dropped = Dropped::default();
    let expired = expired_partitions(client, before_ms).await?;
    let mut dropped_rows = false;
    for partition in expired {
        if dropped_rows && !is_empty(client, &partition).await? {
            dropped.more = true;
            break;
        }
        // A lock wait past the timeout rolls the whole drop back.
        let outcome = match drop_one(client, &partition, before_ms, purge_lock).await {
            Err(err) if lock_timed_out(&err) => Outcome::LockTimeout,
            Err(err) => {
                return Err(StoreError::Backend(format!(
                    "cannot drop history partition {}: {}",
                    partition.deliveries,
                    pg_error(err)
                )));
            }
            Ok(outcome) => outcome,
        };
        match outcome {
            Outcome::Dropped {
                deliveries,
                attempts,
                first_seq,
            } => {
                tracing::info!(partition = %partition.deliveries, deliveries, attempts,
                    "dropped a history partition");
                dropped_rows |= deliveries > 0;
                dropped.deliveries += deliveries;
                dropped.attempts += attempts;
                dropped.first_seq = match (dropped.first_seq, first_seq) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            Outcome::LockTimeout => {
                tracing::debug!(partition = %partition.deliveries,
                    "the history tables stayed locked; the partition goes another turn");
                break;
            }
            Outcome::OtherNode => {
                dropped.other_node = true;
                break;
            }
        }
    }
    Ok(dropped)
}

/// The range partitions of `deliveries` whose upper bound, read as a time,
/// is at or before `before_ms`, oldest first, with their `attempts` twins.
async fn expired_partitions(client: &Client, before_ms: i64) -> Result<Vec<RangePartition>> {
    let rows = client
        .query(
            "SELECT c.relname::text, pg_get_expr(c.relpartbound, c.oid),
                    to_regclass('attempts' || substr(c.relname, length('deliveries') + 1))
                      IS NOT NULL
             FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = 'deliveries'::regclass",
            &[],
        )
        .await
        .map_err(pg_error)?;
    let mut expired = Vec::new();
    for row in &rows {
        let name: String = row.try_get(0).map_err(pg_error)?;
        let spec: String = row.try_get(1).map_err(pg_error)?;
        let twin: bool = row.try_get(2).map_err(pg_error)?;
        let Some((lower, upper)) = range_of(&spec) else {
            continue;
        };
        let Some(upper_ms) = bound_millis(&upper) else {
            continue;
        };
        if upper_ms > before_ms {
            continue;
        }
        let Some(suffix) = name.strip_prefix("deliveries") else {
            continue;
        };
        if !twin {
            tracing::warn!(partition = %name,
                "a history partition has no attempts partition beside it; it is kept");
            continue;
        }
        expired.push((
            upper_ms,
            RangePartition {
                attempts: format!("attempts{suffix}"),
                deliveries: name,
                lower,
                upper,
            },
        ));
    }
    expired.sort_by_key(|(upper_ms, _)| *upper_ms);
    Ok(expired.into_iter().map(|(_, p)| p).collect())
}

/// The bounds of `FOR VALUES FROM ('…') TO ('…')` as PostgreSQL prints
/// them; MINVALUE reads as "". `None` for the default partition and
/// anything not made here.
fn range_of(spec: &str) -> Option<(String, String)> {
    let rest = spec.strip_prefix("FOR VALUES FROM (")?;
    let (lower, upper) = rest.split_once(") TO (")?;
    let upper = upper.strip_suffix(')')?;
    let unquote = |text: &str| -> Option<String> {
        let inner = text.strip_prefix('\'')?.strip_suffix('\'')?;
        (!inner.contains('\'')).then(|| inner.to_owned())
    };
    let lower = if lower == "MINVALUE" {
        String::new()
    } else {
        unquote(lower)?
    };
    Some((lower, unquote(upper)?))
}

async fn is_empty(client: &Client, partition: &RangePartition) -> Result<bool> {
    let row = client
        .query_one(
            &format!(
                "SELECT NOT EXISTS (SELECT 1 FROM {})",
                quoted(&partition.deliveries)
            ),
            &[],
        )
        .await
        .map_err(pg_error)?;
    row.try_get(0).map_err(pg_error)
}

fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The rows of a partition that the purge keeps: unfinished, or finished
/// at or after the cutoff. Three parts so each reads an index range
/// instead of the whole partition (in-flight and ended rows one
/// subscription at a time: a delivery lives only as long as its
/// subscription).
fn stragglers(deliveries: &str, columns: &str) -> String {
    format!(
        "SELECT {columns} FROM {deliveries} WHERE state = 'scheduled'
         UNION ALL SELECT {columns} FROM {deliveries}
           WHERE subscription IN (SELECT name FROM subscriptions) AND state = 'in_flight'
         UNION ALL SELECT {columns} FROM {deliveries}
           WHERE subscription IN (SELECT name FROM subscriptions)
             AND state IN ('delivered', 'failed') AND updated_at >= $1"
    )
}

async fn drop_one(
    client: &mut Client,
    partition: &RangePartition,
    before_ms: i64,
    purge_lock: &str,
) -> std::result::Result<Outcome, tokio_postgres::Error> {
    let deliveries = quoted(&partition.deliveries);
    let attempts = quoted(&partition.attempts);
    let tx = client.transaction().await?;
    if !super::try_xact_lock(&tx, purge_lock).await? {
        return Ok(Outcome::OtherNode);
    }
    tx.batch_execute(LOCK_TIMEOUT).await?;
    tx.execute(
        &format!("SELECT pg_advisory_xact_lock({PARTITION_LOCK})"),
        &[],
    )
    .await?;
    // Counted before the exclusive lock, to keep it short: no new rows
    // arrive in a past day's range, so the totals hold (an attempt recorded
    // meanwhile for a row that stays only makes the count one low).
    let total_deliveries: i64 = tx
        .query_one(&format!("SELECT count(*) FROM {deliveries}"), &[])
        .await?
        .get(0);
    let total_attempts: i64 = tx
        .query_one(&format!("SELECT count(*) FROM {attempts}"), &[])
        .await?
        .get(0);
    // From here the parents are locked exclusively until commit.
    tx.batch_execute(&format!(
        "ALTER TABLE deliveries DETACH PARTITION {deliveries};
         ALTER TABLE attempts DETACH PARTITION {attempts};"
    ))
    .await?;
    // The range is no longer covered: what stays goes to the default
    // partitions through the parents.
    let kept_deliveries = tx
        .execute(
            &format!(
                "INSERT INTO deliveries ({DELIVERY_TABLE_COLUMNS}) {}",
                stragglers(&deliveries, DELIVERY_TABLE_COLUMNS)
            ),
            &[&before_ms],
        )
        .await?;
    let kept_attempts = tx
        .execute(
            &format!(
                "INSERT INTO attempts ({ATTEMPT_TABLE_COLUMNS})
                 SELECT {ATTEMPT_TABLE_COLUMNS} FROM {attempts}
                 WHERE delivery_id IN (SELECT id FROM deliveries_default
                                       WHERE id >= $1 AND id < $2)"
            ),
            &[&partition.lower, &partition.upper],
        )
        .await?;
    // Each subscription's journal floor from its own index range, and the
    // first event the dropped rows read, from the same ranges.
    let first_seq: Option<i64> = tx
        .query_one(
            &format!(
                "WITH purged AS (
                   SELECT s.name, m.first, m.last FROM subscriptions s
                   CROSS JOIN LATERAL (
                     SELECT min(event_seq) AS first, max(event_seq) AS last FROM {deliveries}
                     WHERE subscription = s.name AND state IN ('delivered', 'failed')
                       AND updated_at < $1
                   ) m
                   WHERE m.last IS NOT NULL
                 ), floors AS (
                   INSERT INTO journal_floors (subscription, purged_through)
                   SELECT name, last FROM purged
                   ON CONFLICT (subscription) DO UPDATE
                     SET purged_through = GREATEST(journal_floors.purged_through,
                                                   excluded.purged_through)
                 )
                 SELECT min(first) FROM purged"
            ),
            &[&before_ms],
        )
        .await?
        .get(0);
    tx.batch_execute(&format!("DROP TABLE {deliveries}, {attempts}"))
        .await?;
    tx.execute(
        "UPDATE partition_floor SET bound = GREATEST(bound, $1)",
        &[&partition.upper],
    )
    .await?;
    tx.commit().await?;
    let purged = |total: i64, kept: u64| u64::try_from(total).unwrap_or(0).saturating_sub(kept);
    Ok(Outcome::Dropped {
        deliveries: purged(total_deliveries, kept_deliveries),
        attempts: purged(total_attempts, kept_attempts),
        first_seq,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_range_bounds_as_postgresql_prints_them() {
        assert_eq!(
            range_of("FOR VALUES FROM (MINVALUE) TO ('01a20ada-2c00')"),
            Some((String::new(), "01a20ada-2c00".to_owned()))
        );
        assert_eq!(
            range_of("FOR VALUES FROM ('01a20ada-2c00') TO ('01a2101f-8800')"),
            Some(("01a20ada-2c00".to_owned(), "01a2101f-8800".to_owned()))
        );
        assert_eq!(range_of("DEFAULT"), None);
        assert_eq!(range_of("FOR VALUES FROM ('a') TO (MAXVALUE)"), None);
    }
}

#[cfg(test)]
mod plans;

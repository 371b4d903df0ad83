//! Deliveries on SQLite.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use jiff::Timestamp;
use redrive_core::{CloudEvent, Delivery};
use rusqlite::{Connection, params};
use tokio::sync::Notify;

use super::rows::{self, ATTEMPT_COLUMNS, DELIVERY_COLUMNS, millis, timestamp};
use super::{SqliteStore, health, lifecycle, read_delivery, topic_exists};
use crate::handoff::{Handoff, Taken};
use crate::plan::{self, CompletionRow, FanOut};
use crate::{
    ClaimBatch, ClaimRequest, ClaimedDelivery, Completion, DeliveryDetail, DeliveryStore,
    PublishOutcome, Result, StoreError,
};

#[async_trait]
impl DeliveryStore for SqliteStore {
    async fn publish(
        &self,
        topic: &str,
        events: Vec<CloudEvent>,
        now: Timestamp,
    ) -> Result<Vec<PublishOutcome>> {
        let outcomes = self.writer.publish(topic.to_owned(), events, now).await?;
        if outcomes.iter().any(PublishOutcome::left_due) {
            self.wakeups.notify_one();
        }
        Ok(outcomes)
    }

    async fn claim_due(&self, request: ClaimRequest) -> Result<ClaimBatch> {
        let handoff = self.handoff.clone();
        self.writer
            .write_bookkeeping(move |conn| claim_due(conn, &request, &handoff))
            .await
    }

    async fn complete_many(&self, completions: Vec<Completion>) -> Result<()> {
        if completions.is_empty() {
            return Ok(());
        }
        let fanned_out = self
            .writer
            .write_bookkeeping(move |conn| complete_many(conn, &completions))
            .await?;
        if fanned_out {
            self.wakeups.notify_one();
        }
        Ok(())
    }

    async fn get_delivery(&self, id: &str) -> Result<DeliveryDetail> {
        let id = id.to_owned();
        self.readers
            .read(move |conn| {
                let (delivery, event) = read_delivery(conn, &id)?;
                let sql = format!(
                    "SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE delivery_id = ?1 ORDER BY number"
                );
                let attempts = conn
                    .prepare_cached(&sql)?
                    .query_map([&id], rows::attempt)?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(DeliveryDetail {
                    delivery,
                    event,
                    attempts: crate::lifecycle::order_attempt_log(attempts),
                })
            })
            .await
    }

    async fn retry_now(&self, id: &str, now: Timestamp) -> Result<Delivery> {
        let id = id.to_owned();
        let delivery = self
            .writer
            .write(move |conn| {
                let changed = conn.execute(
                    "UPDATE deliveries SET state = 'scheduled', next_attempt_at = ?2,
                            failure_reason = NULL, updated_at = ?2,
                            -- Ended: a fresh budget, age and retention, as a
                            -- redrive gives. Scheduled: only due sooner.
                            attempts_before_redrive = CASE WHEN state IN ('failed', 'delivered')
                                THEN attempts ELSE attempts_before_redrive END,
                            retention_from = CASE WHEN state IN ('failed', 'delivered')
                                THEN ?2 ELSE retention_from END
                     WHERE id = ?1 AND state <> 'in_flight'",
                    params![id, millis(now)],
                )?;
                let (delivery, _) = read_delivery(conn, &id)?;
                if changed == 0 {
                    return Err(StoreError::Conflict(format!(
                        "delivery {id:?} is in flight; retry it once this attempt ends"
                    )));
                }
                Ok(delivery)
            })
            .await?;
        self.wakeups.notify_one();
        Ok(delivery)
    }

    fn wakeups(&self) -> Arc<Notify> {
        self.wakeups.clone()
    }

    fn handoff(&self) -> Option<Arc<crate::Handoff>> {
        Some(self.handoff.clone())
    }
}

/// Publishes `events` to `topic` at `now`, inside the caller's write (a
/// dead-letter copy, a health notice).
pub(super) fn publish(
    conn: &Connection,
    topic: &str,
    events: Vec<CloudEvent>,
    now: Timestamp,
) -> Result<Vec<PublishOutcome>> {
    let mut outcomes = publish_together(conn, topic, &[(&events, now)], &mut Taken::new(None))?;
    Ok(outcomes.pop().unwrap_or_default())
}

/// Publishes several requests' events to `topic`, each at its own time,
/// with one lookup of the topic, its subscriptions and the journal head:
/// the writer gathers the publishes of a group commit here. The outcomes
/// are each request's, in order; an event that repeats one stored before it,
/// in the same call or earlier, is a duplicate. A new delivery goes straight
/// into flight when `taken` gets a slot the dispatcher offered for it.
pub(super) fn publish_together(
    conn: &Connection,
    topic: &str,
    requests: &[(&[CloudEvent], Timestamp)],
    taken: &mut Taken<'_>,
) -> Result<Vec<Vec<PublishOutcome>>> {
    if !topic_exists(conn, topic)? {
        return Err(StoreError::not_found("topic", topic));
    }
    let rows = conn
        .prepare_cached("SELECT name, spec FROM subscriptions WHERE topic = ?1")?
        .query_map([topic], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let fan_out = FanOut::from_stored(rows)?;
    // Positions continue from the highest ever handed out, not from the
    // highest still stored (see `migrations/sqlite/0008_journal_head.sql`). The newest event is
    // also consulted so that a row inserted some other way cannot collide.
    let mut last_seq: i64 = conn
        .prepare_cached(
            "SELECT MAX(COALESCE((SELECT last_seq FROM journal_head), 0),
                        COALESCE((SELECT MAX(seq) FROM events), 0))",
        )?
        .query_row([], |row| row.get(0))?;
    let head_before = last_seq;
    // No `RETURNING`: SQLite gathers returned rows in a temporary B-tree,
    // a page cache made and freed for every event. The change count says
    // whether the event was new, and a new one has the position given.
    let mut insert_event = conn.prepare_cached(
        "INSERT INTO events (seq, topic, source, id, type, attributes, data, published_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (topic, source, id) DO NOTHING",
    )?;
    let mut insert_delivery = conn.prepare_cached(
        "INSERT INTO deliveries (id, subscription, event_seq, state, attempts, next_attempt_at,
                                 created_at, updated_at)
         VALUES (?1, ?2, ?3, 'scheduled', 0, ?4, ?4, ?4)",
    )?;
    // As `claim_due` would leave it (`plan::claimed_at_publish`).
    let mut insert_in_flight = conn.prepare_cached(
        "INSERT INTO deliveries (id, subscription, event_seq, state, attempts, lease_until,
                                 first_attempt_at, last_attempt_at, created_at, updated_at)
         VALUES (?1, ?2, ?3, 'in_flight', ?4, ?5, ?6, ?6, ?6, ?6)",
    )?;
    // Whether each subscription's pushes may go, asked once per call.
    let mut accepting = HashMap::new();
    let mut all = Vec::with_capacity(requests.len());
    for (events, now) in requests {
        let now_ms = millis(*now);
        let mut outcomes = Vec::with_capacity(events.len());
        for event in events.iter() {
            let attributes = serde_json::to_string(event)?;
            let inserted = insert_event.execute(params![
                last_seq + 1,
                topic,
                event.source,
                event.id,
                event.ty,
                attributes,
                event.data,
                now_ms
            ])?;
            let mut deliveries = 0;
            let mut in_flight = 0;
            if inserted > 0 {
                last_seq += 1;
                for (id, subscription) in fan_out.deliveries(event) {
                    deliveries += 1;
                    let accepts = || match accepting.get(subscription) {
                        Some(&yes) => Ok(yes),
                        None => {
                            let yes = health::accepts_pushes(conn, subscription)?;
                            accepting.insert(subscription, yes);
                            Ok(yes)
                        }
                    };
                    let Some(lease_until) = taken.lease_for(subscription, accepts, *now)? else {
                        insert_delivery.execute(params![id, subscription, last_seq, now_ms])?;
                        continue;
                    };
                    let claimed =
                        plan::claimed_at_publish(id, subscription, event, *now, lease_until)?;
                    insert_in_flight.execute(params![
                        claimed.delivery.id,
                        subscription,
                        last_seq,
                        claimed.delivery.attempts,
                        millis(lease_until),
                        now_ms
                    ])?;
                    taken.keep(claimed);
                    in_flight += 1;
                }
            }
            outcomes.push(PublishOutcome {
                duplicate: inserted == 0,
                id: event.id.clone(),
                source: event.source.clone(),
                deliveries,
                in_flight,
            });
        }
        all.push(outcomes);
    }
    if last_seq != head_before {
        conn.prepare_cached("UPDATE journal_head SET last_seq = ?1")?
            .execute([last_seq])?;
    }
    Ok(all)
}

/// Claims within the request's limits and what the dispatcher's open offer
/// has left (see `Handoff::reserve`). Run again after a rollback (as
/// bookkeeping may be), it takes what it claims out of the offer once
/// more: the offer is only ever smaller than it should be, and the
/// dispatcher replaces it after the claim.
fn claim_due(conn: &Connection, request: &ClaimRequest, handoff: &Handoff) -> Result<ClaimBatch> {
    let lease_until = request
        .now
        .checked_add(request.lease)
        .map_err(|err| StoreError::Invalid(format!("lease too long: {err}")))?;
    let mut pick = conn.prepare_cached(&PICK_DUE)?;
    // What the claim changes, as `plan::claimed` decides it.
    let mut claim = conn.prepare_cached(
        "UPDATE deliveries SET state = 'in_flight', attempts = ?1, lease_until = ?2,
                first_attempt_at = ?3, last_attempt_at = ?4, next_attempt_at = NULL,
                updated_at = ?5
         WHERE id = ?6 AND state = 'scheduled'",
    )?;
    let mut next_due = conn.prepare_cached(
        "SELECT MIN(next_attempt_at) FROM deliveries
         WHERE subscription = ?1 AND state = 'scheduled'",
    )?;
    let mut batch = ClaimBatch::default();
    let mut left = request.limit_total;
    for want in &request.wants {
        if !health::accepts_pushes(conn, &want.subscription)? {
            continue;
        }
        let limit = handoff.reserve(&want.subscription, want.limit.min(left));
        if limit > 0 {
            let due_by = request
                .now
                .checked_add(want.lookahead)
                .map_err(|err| StoreError::Invalid(format!("lookahead too long: {err}")))?;
            let picked = pick
                .query_map(
                    params![want.subscription, millis(due_by), limit],
                    rows::delivery_with_event,
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let took = u32::try_from(picked.len()).unwrap_or(limit).min(limit);
            left -= took;
            handoff.refund(&want.subscription, limit - took);
            for (delivery, event) in picked {
                let (delivery, due_at) = plan::claimed(delivery, request.now)?;
                let changed = claim.execute(params![
                    delivery.attempts,
                    millis(lease_until),
                    delivery.first_attempt_at.map(millis),
                    delivery.last_attempt_at.map(millis),
                    millis(delivery.updated_at),
                    delivery.id,
                ])?;
                if changed != 1 {
                    return Err(StoreError::Backend(format!(
                        "due delivery {:?} was not claimed",
                        delivery.id
                    )));
                }
                batch.claimed.push(ClaimedDelivery {
                    delivery,
                    event,
                    lease_until,
                    due_at,
                });
            }
        }
        let due: Option<i64> = next_due.query_row([&want.subscription], |row| row.get(0))?;
        if let Some(due) = due {
            let due = timestamp(due)?;
            batch.next_due_at = Some(batch.next_due_at.map_or(due, |known| known.min(due)));
        }
    }
    Ok(batch)
}

/// The due deliveries of subscription `?1` by `?2`, soonest first, at most
/// `?3`, with their events: what a claim hands out, read in the one
/// statement that picks them (the claim's own changes are `plan::claimed`'s).
static PICK_DUE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {DELIVERY_COLUMNS}, e.attributes, e.data
         FROM deliveries d JOIN events e ON e.seq = d.event_seq
         WHERE d.subscription = ?1 AND d.state = 'scheduled' AND d.next_attempt_at <= ?2
         ORDER BY d.next_attempt_at LIMIT ?3"
    )
});

/// Returns whether dead-lettering fanned out new deliveries.
fn complete_many(conn: &Connection, completions: &[Completion]) -> Result<bool> {
    let mut update = conn.prepare_cached(
        "UPDATE deliveries SET state = ?3, next_attempt_at = ?4, failure_reason = ?5,
                last_status = ?6, last_error = ?7, lease_until = NULL, updated_at = ?8
         WHERE id = ?1 AND state = 'in_flight' AND attempts = ?2",
    )?;
    // An attempt of a delivery the update found needs no check that the
    // delivery still exists; one whose update found nothing (the delivery
    // moved on, or is gone) is recorded only if it is still there.
    let mut record_updated = conn.prepare_cached(
        "INSERT OR IGNORE INTO attempts
           (delivery_id, number, started_at, duration_ms, status, error, error_message,
            response_snippet, decision)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    let mut record_if_present = conn.prepare_cached(
        "INSERT OR IGNORE INTO attempts
           (delivery_id, number, started_at, duration_ms, status, error, error_message,
            response_snippet, decision)
         SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9
         WHERE EXISTS (SELECT 1 FROM deliveries WHERE id = ?1)",
    )?;
    let mut fanned_out = false;
    let mut counted = Vec::with_capacity(completions.len());
    for completion in completions {
        let row = CompletionRow::plan(completion)?;
        let changed = update.execute(params![
            row.delivery_id,
            row.number,
            row.state.as_str(),
            row.next_attempt_at,
            row.failure_reason,
            row.status,
            row.error,
            row.ended_at,
        ])?;
        let record = if changed > 0 {
            &mut record_updated
        } else {
            &mut record_if_present
        };
        let recorded = record.execute(params![
            row.delivery_id,
            row.number,
            row.started_at,
            row.duration_ms,
            row.status,
            row.error,
            row.error_message,
            row.response_snippet,
            row.decision,
        ])?;
        if recorded > 0 {
            counted.push((row.subscription, row.bucket, row.succeeded));
        }
        if changed > 0 && row.failed {
            let now = timestamp(row.ended_at)?;
            fanned_out |= lifecycle::dead_letter(conn, row.delivery_id, now)?;
        }
    }
    health::count_attempts_of(conn, &counted)?;
    Ok(fanned_out)
}

#[cfg(test)]
mod tests {
    use super::PICK_DUE;
    use crate::sqlite::health::COUNT_ATTEMPTS;
    use crate::sqlite::plan_on_fresh_schema;

    /// A claim reads the due queue's index and each event by its key; it
    /// runs in the writer, where a scan would hold up every write.
    #[test]
    fn a_claim_reads_the_due_queue_and_events_by_key() {
        let steps = plan_on_fresh_schema(&PICK_DUE);
        assert!(
            steps
                .iter()
                .any(|step| step.starts_with("SEARCH d USING INDEX deliveries_due")),
            "{steps:?}"
        );
        assert!(
            steps
                .iter()
                .any(|step| step.starts_with("SEARCH e USING INTEGER PRIMARY KEY")),
            "{steps:?}"
        );
        assert!(
            !steps
                .iter()
                .any(|step| step.starts_with("SCAN") || step.contains("TEMP B-TREE")),
            "{steps:?}"
        );
    }

    /// Counting a batch's attempts reads each subscription by its key.
    #[test]
    fn counting_attempts_reads_the_subscription_by_key() {
        let steps = plan_on_fresh_schema(COUNT_ATTEMPTS);
        assert!(
            steps
                .iter()
                .any(|step| step.starts_with("SEARCH subscriptions USING PRIMARY KEY")),
            "{steps:?}"
        );
        assert!(
            !steps.iter().any(|step| step.starts_with("SCAN")),
            "{steps:?}"
        );
    }
}

//! The failure lifecycle on PostgreSQL: dead-lettering in the transaction
//! that fails a delivery, retention expiry, redrive and the journal (the
//! history purge is `history.rs`'s). The sweeper's work (expiry, purge) takes a
//! transaction-scoped advisory lock: with several nodes, one sweeps at a
//! time and the others skip their turn instead of contending for rows.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use jiff::Timestamp;
use redrive_core::lifecycle::SYSTEM_TOPIC;
use redrive_core::{Delivery, FailureReason};

use super::rows::{self, DELIVERY_COLUMN_COUNT, DELIVERY_COLUMNS, big, get, millis};
use super::{
    PostgresStore, history, pg_error, publish_in, read_delivery, read_subscription, topic_exists,
};
use crate::handoff::Taken;
use crate::lifecycle::*;
use crate::plan::{FailureEffects, cancel_decision, failure_topics};
use crate::{LifecycleStore, PublishOutcome, Result, StoreError};

/// The advisory lock key of retention expiry, per schema (the purge's is
/// `history.rs`'s).
const EXPIRE_LOCK: &str = "hashtext(current_schema() || '.redrive.expire')";

/// Creates the built-in operational topic if it is missing.
pub(super) async fn ensure_system_topic(
    client: &tokio_postgres::Client,
    now: Timestamp,
) -> Result<()> {
    client
        .execute(
            "INSERT INTO topics (name, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&SYSTEM_TOPIC, &millis(now)],
        )
        .await
        .map_err(pg_error)?;
    Ok(())
}

/// Why a topic can't be deleted, if it is built in or a dead-letter topic.
pub(super) async fn topic_in_use(
    client: &impl GenericClient,
    name: &str,
) -> Result<Option<String>> {
    if name == SYSTEM_TOPIC {
        return Ok(Some(format!("topic {name:?} is built in")));
    }
    let users: Vec<String> = client
        .query(
            "SELECT name FROM subscriptions WHERE dead_letter_topic = $1 ORDER BY name",
            &[&name],
        )
        .await
        .map_err(pg_error)?
        .iter()
        .map(|row| get(row, 0))
        .collect::<Result<_>>()?;
    if users.is_empty() {
        return Ok(None);
    }
    Ok(Some(format!(
        "topic {name:?} is the dead-letter topic of {}; change them first",
        users.join(", ")
    )))
}

/// Runs after a delivery was marked failed, in the same transaction:
/// publishes its event to the subscription's dead-letter topic (linking the
/// copy) and a `redrive.delivery.failed` event on the system topic.
/// Returns whether new deliveries were fanned out.
pub(super) async fn dead_letter_in(
    client: &impl GenericClient,
    delivery_id: &str,
    now: Timestamp,
) -> Result<bool> {
    let (delivery, event) = read_delivery(client, delivery_id).await?;
    let subscription = read_subscription(client, &delivery.subscription).await?;
    let mut exists = Vec::new();
    for topic in failure_topics(&subscription.spec) {
        if topic_exists(client, topic).await? {
            exists.push(topic.to_owned());
        }
    }
    let effects = FailureEffects::plan(
        &delivery,
        &event,
        &subscription.spec,
        |topic| exists.iter().any(|t| t == topic),
        now,
    );
    let mut fanned_out = false;
    if let Some((topic, copy)) = effects.dead_letter {
        let id = copy.id.clone();
        let outcomes = publish_in(client, &topic, &[&copy], now, &mut Taken::new(None)).await?;
        fanned_out |= outcomes.iter().any(PublishOutcome::left_due);
        client
            .execute(
                "UPDATE deliveries SET dead_letter_event = $2 WHERE id = $1",
                &[&delivery.id, &id],
            )
            .await
            .map_err(pg_error)?;
    }
    if let Some(notice) = effects.notice {
        let outcomes =
            publish_in(client, SYSTEM_TOPIC, &[&notice], now, &mut Taken::new(None)).await?;
        fanned_out |= outcomes.iter().any(PublishOutcome::left_due);
    }
    Ok(fanned_out)
}

/// Fails scheduled deliveries among `ids`, then dead-letters each.
/// Returns how many moved and whether anything was fanned out.
async fn fail_scheduled(
    client: &impl GenericClient,
    ids: &[String],
    reason: FailureReason,
    now: Timestamp,
) -> Result<(u64, bool)> {
    let moved = client
        .query(
            "UPDATE deliveries SET state = 'failed', failure_reason = $2, next_attempt_at = NULL,
                    lease_until = NULL, updated_at = $3
             WHERE id = ANY($1) AND state = 'scheduled'
             RETURNING id",
            &[&ids, &reason.as_str(), &millis(now)],
        )
        .await
        .map_err(pg_error)?;
    let mut fanned_out = false;
    for row in &moved {
        let id: String = get(row, 0)?;
        fanned_out |= dead_letter_in(client, &id, now).await?;
    }
    Ok((moved.len() as u64, fanned_out))
}

/// Returns how many expired and whether anything was fanned out.
pub(super) async fn expire(
    client: &mut deadpool_postgres::Object,
    now: Timestamp,
    limit: u32,
) -> Result<(u64, bool)> {
    let tx = client.transaction().await.map_err(pg_error)?;
    if !super::try_xact_lock(&*tx, EXPIRE_LOCK)
        .await
        .map_err(pg_error)?
    {
        tracing::debug!("another node is expiring deliveries; skipping this turn");
        return Ok((0, false));
    }
    let subscriptions: Vec<(String, String)> = tx
        .query("SELECT name, spec FROM subscriptions ORDER BY name", &[])
        .await
        .map_err(pg_error)?
        .iter()
        .map(|row| Ok((get(row, 0)?, get(row, 1)?)))
        .collect::<Result<_>>()?;
    let find = tx
        .prepare_cached(
            // `retention_from` is never earlier than `created_at`: the
            // cutoff bounds `created_at`, a range of
            // `deliveries_recent_by_state`.
            "SELECT id FROM deliveries
             WHERE subscription = $1 AND state = 'scheduled' AND created_at <= $2
               AND COALESCE(retention_from, created_at) <= $2
             LIMIT $3
             FOR UPDATE SKIP LOCKED",
        )
        .await
        .map_err(pg_error)?;
    let mut expired = 0u64;
    let mut fanned_out = false;
    for (name, spec) in subscriptions {
        let remaining = u64::from(limit).saturating_sub(expired);
        if remaining == 0 {
            break;
        }
        let spec = redrive_core::SubscriptionSpec::from_stored(&spec)?;
        let Ok(cutoff) = now.checked_sub(spec.message_retention.as_duration()) else {
            continue;
        };
        let ids: Vec<String> = tx
            .query(&find, &[&name, &millis(cutoff), &big(remaining)])
            .await
            .map_err(pg_error)?
            .iter()
            .map(|row| get(row, 0))
            .collect::<Result<_>>()?;
        if ids.is_empty() {
            continue;
        }
        let (moved, fanned) =
            fail_scheduled(&tx, &ids, FailureReason::RetentionExpired, now).await?;
        expired += moved;
        fanned_out |= fanned;
    }
    tx.commit().await.map_err(pg_error)?;
    Ok((expired, fanned_out))
}

pub(super) async fn cancel(
    client: &mut deadpool_postgres::Object,
    id: &str,
    now: Timestamp,
) -> Result<(Delivery, bool)> {
    let tx = client.transaction().await.map_err(pg_error)?;
    let (moved, fanned_out) =
        fail_scheduled(&tx, &[id.to_owned()], FailureReason::Cancelled, now).await?;
    if moved == 0 {
        let (delivery, _) = read_delivery(&tx, id).await?;
        return Err(StoreError::Conflict(format!(
            "delivery {id:?} is {}; only a scheduled delivery can be cancelled",
            delivery.state.as_str()
        )));
    }
    // The row lock taken by failing it keeps concurrent cancels apart.
    let cancels: i64 = tx
        .query_one(
            "SELECT count(*) FROM attempts WHERE delivery_id = $1 AND number < 0",
            &[&id],
        )
        .await
        .map_err(pg_error)
        .and_then(|row| get(&row, 0))?;
    let number = i32::try_from(crate::lifecycle::cancel_number(cancels))
        .map_err(|_| StoreError::Backend(format!("delivery {id:?} has too many cancels")))?;
    tx.execute(
        "INSERT INTO attempts (delivery_id, number, started_at, duration_ms, decision)
         VALUES ($1, $2, $3, 0, $4)",
        &[&id, &number, &millis(now), &cancel_decision()?],
    )
    .await
    .map_err(pg_error)?;
    let (delivery, _) = read_delivery(&tx, id).await?;
    tx.commit().await.map_err(pg_error)?;
    Ok((delivery, fanned_out))
}

/// The WHERE clause of a redrive filter over `deliveries d JOIN events e`,
/// as parameters `$1`..`$7`.
const REDRIVE_WHERE: &str = "d.subscription = $1 AND d.state = ANY($2::text[])
       AND (cardinality($3::text[]) = 0 OR d.failure_reason = ANY($3::text[]))
       AND ($4::bigint IS NULL OR d.created_at >= $4)
       AND ($5::bigint IS NULL OR d.created_at < $5)
       AND ($6::text IS NULL OR e.type = $6)";

struct RedriveArgs {
    states: Vec<&'static str>,
    reasons: Vec<&'static str>,
    since: Option<i64>,
    until: Option<i64>,
}

fn redrive_args(filter: &RedriveFilter) -> Result<RedriveArgs> {
    filter.check()?;
    Ok(RedriveArgs {
        states: filter.states.iter().map(|s| s.as_str()).collect(),
        reasons: filter.reasons.iter().map(|r| r.as_str()).collect(),
        since: filter.since.map(millis),
        until: filter.until.map(millis),
    })
}

pub(super) async fn count_redrivable(
    client: &impl GenericClient,
    filter: &RedriveFilter,
) -> Result<u64> {
    read_subscription(client, &filter.subscription).await?;
    let args = redrive_args(filter)?;
    let sql = format!(
        "SELECT count(*) FROM deliveries d JOIN events e ON e.seq = d.event_seq
         WHERE {REDRIVE_WHERE}"
    );
    let row = client
        .query_one(
            &sql,
            &[
                &filter.subscription,
                &args.states,
                &args.reasons,
                &args.since,
                &args.until,
                &filter.event_type,
            ],
        )
        .await
        .map_err(pg_error)?;
    Ok(u64::try_from(get::<i64>(&row, 0)?).unwrap_or(0))
}

pub(super) async fn redrive(
    client: &impl GenericClient,
    request: &RedriveBatchRequest,
) -> Result<RedriveBatch> {
    let filter = &request.filter;
    read_subscription(client, &filter.subscription).await?;
    let args = redrive_args(filter)?;
    // Rows being claimed or completed right now are skipped, not waited
    // for: they are in flight, which a redrive never moves anyway.
    let sql = format!(
        "WITH picked AS (
           SELECT d.id FROM deliveries d JOIN events e ON e.seq = d.event_seq
           WHERE {REDRIVE_WHERE} AND ($8::text IS NULL OR d.id > $8)
           ORDER BY d.id LIMIT $9
           FOR UPDATE OF d SKIP LOCKED
         )
         UPDATE deliveries d SET state = 'scheduled', next_attempt_at = $7,
                failure_reason = NULL, lease_until = NULL,
                attempts_before_redrive = d.attempts, retention_from = $7, updated_at = $7
         FROM picked WHERE d.id = picked.id
         RETURNING d.id"
    );
    let ids: Vec<String> = client
        .query(
            &sql,
            &[
                &filter.subscription,
                &args.states,
                &args.reasons,
                &args.since,
                &args.until,
                &filter.event_type,
                &millis(request.now),
                &request.after,
                &big(request.limit.max(1)),
            ],
        )
        .await
        .map_err(pg_error)?
        .iter()
        .map(|row| get(row, 0))
        .collect::<Result<_>>()?;
    Ok(RedriveBatch {
        moved: ids.len() as u64,
        last_id: ids.into_iter().max(),
    })
}

/// Journal positions come from a sequence, so concurrent publishes can
/// commit out of order: a reader that returned position 101 while 100 was
/// still uncommitted would never see 100. Every publish therefore holds, from
/// before it draws its first position until it commits, a shared advisory
/// lock (the guard) whose key carries the sequence's last value at that
/// moment in its low 48 bits; its positions are all above that value.
pub(super) fn journal_guard_key() -> String {
    format!(
        "(({JOURNAL_GUARD_TAG})::bigint << 48) | LEAST(COALESCE({LAST_POSITION}, 0), {})",
        (1_i64 << 48) - 1
    )
}

/// The top 16 bits of a guard's key: a tag of the schema, so that the
/// publishes of another redrive schema in the same database do not hold
/// this schema's readers back. Never 0, so a guard can't share its key with
/// a lock taken with a 32-bit key (the run-once work's) and make it skip a
/// turn.
const JOURNAL_GUARD_TAG: &str =
    "(hashtext(current_schema() || '.redrive.journal') & 32767) % 32767 + 1";

/// The last position the sequence handed out (NULL before the first).
const LAST_POSITION: &str =
    "pg_sequence_last_value(pg_get_serial_sequence('events', 'seq')::regclass)";

/// The highest position below which every publish has committed or given
/// up. Read in two statements, each with a fresh view, in this order: the
/// sequence first, then the guards. A publish that drew a position at or
/// below the sequence value read first is either visible to the next
/// statement or still holds a guard whose key is below its positions.
async fn journal_horizon(client: &impl GenericClient) -> Result<i64> {
    let last: i64 = client
        .query_one(&format!("SELECT COALESCE({LAST_POSITION}, 0)"), &[])
        .await
        .map_err(pg_error)
        .and_then(|row| get(&row, 0))?;
    let guarded: Option<i64> = client
        .query_one(
            &format!(
                "SELECT min(((classid::bigint & 65535) << 32) | objid::bigint) FROM pg_locks
                 WHERE locktype = 'advisory' AND objsubid = 1
                   AND (classid::bigint >> 16) = ({JOURNAL_GUARD_TAG})
                   AND database = (SELECT oid FROM pg_database
                                   WHERE datname = current_database())"
            ),
            &[],
        )
        .await
        .map_err(pg_error)
        .and_then(|row| get(&row, 0))?;
    Ok(guarded.map_or(last, |guarded| guarded.min(last)))
}

pub(super) async fn journal(
    client: &impl GenericClient,
    query: &JournalQuery,
) -> Result<JournalPage> {
    read_subscription(client, &query.subscription).await?;
    let horizon = journal_horizon(client).await?;
    let purged_through: i64 = client
        .query_opt(
            "SELECT purged_through FROM journal_floors WHERE subscription = $1",
            &[&query.subscription],
        )
        .await
        .map_err(pg_error)?
        .map(|row| get(&row, 0))
        .transpose()?
        .unwrap_or(0);
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS}, e.attributes, e.data, e.seq FROM deliveries d
         JOIN events e ON e.seq = d.event_seq
         WHERE d.subscription = $1 AND d.event_seq > $2 AND d.event_seq <= $4
         ORDER BY d.event_seq LIMIT $3"
    );
    let stmt = client.prepare_cached(&sql).await.map_err(pg_error)?;
    let entries = client
        .query(
            &stmt,
            &[
                &query.subscription,
                &query.since.unwrap_or(0),
                &big(query.limit.max(1)),
                &horizon,
            ],
        )
        .await
        .map_err(pg_error)?
        .iter()
        .map(|row| {
            Ok(JournalEntry {
                delivery: rows::delivery(row)?,
                event: rows::event(row, DELIVERY_COLUMN_COUNT)?,
                position: get(row, DELIVERY_COLUMN_COUNT + 2)?,
            })
        })
        .collect::<Result<_>>()?;
    Ok(JournalPage {
        entries,
        purged_through,
    })
}

#[async_trait]
impl LifecycleStore for PostgresStore {
    async fn expire_retention(&self, now: Timestamp, limit: u32) -> Result<u64> {
        let mut client = self.client().await?;
        let (expired, fanned_out) = expire(&mut client, now, limit).await?;
        if fanned_out {
            self.wake();
        }
        Ok(expired)
    }

    async fn cancel_delivery(&self, id: &str, now: Timestamp) -> Result<Delivery> {
        let mut client = self.client().await?;
        let (delivery, fanned_out) = cancel(&mut client, id, now).await?;
        if fanned_out {
            self.wake();
        }
        Ok(delivery)
    }

    async fn count_redrivable(&self, filter: RedriveFilter) -> Result<u64> {
        let client = self.client().await?;
        count_redrivable(&client, &filter).await
    }

    async fn redrive_batch(&self, request: RedriveBatchRequest) -> Result<RedriveBatch> {
        let client = self.client().await?;
        let batch = redrive(&client, &request).await?;
        if batch.moved > 0 {
            self.wake();
        }
        Ok(batch)
    }

    async fn journal(&self, query: JournalQuery) -> Result<JournalPage> {
        let client = self.client().await?;
        journal(&client, &query).await
    }

    async fn purge_history(&self, request: PurgeRequest) -> Result<PurgeOutcome> {
        // A bookkeeping connection: its plans, made once, reach history
        // only through indexes (the purge's batch of deletes would scan a
        // table planned while it was empty).
        let mut client = self.bookkeeping_client().await?;
        history::purge(&mut client, &request).await
    }
}

//! The failure lifecycle on SQLite: dead-lettering in the transaction that
//! fails a delivery, retention expiry, redrive and the journal. The history
//! purge is `history.rs`'s.

use async_trait::async_trait;
use jiff::Timestamp;
use redrive_core::lifecycle::SYSTEM_TOPIC;
use redrive_core::{Delivery, FailureReason};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params};

use super::rows::{self, DELIVERY_COLUMN_COUNT, DELIVERY_COLUMNS, millis};
use super::{SqliteStore, history, publish, read_delivery, read_subscription, topic_exists};
use crate::lifecycle::*;
use crate::plan::{FailureEffects, cancel_decision, failure_topics};
use crate::{LifecycleStore, PublishOutcome, Result, StoreError};

/// Creates the built-in operational topic if it is missing.
pub(super) fn ensure_system_topic(conn: &Connection, now: Timestamp) -> Result<()> {
    conn.execute(
        "INSERT INTO topics (name, created_at) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
        params![SYSTEM_TOPIC, millis(now)],
    )?;
    Ok(())
}

/// Why a topic can't be deleted, if it is built in or a dead-letter topic.
pub(super) fn topic_in_use(conn: &Connection, name: &str) -> Result<Option<String>> {
    if name == SYSTEM_TOPIC {
        return Ok(Some(format!("topic {name:?} is built in")));
    }
    let users: Vec<String> = conn
        .prepare_cached(
            "SELECT name FROM subscriptions
             WHERE json_extract(spec, '$.dead_letter_topic') = ?1 ORDER BY name",
        )?
        .query_map([name], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
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
/// copy) and a `redrive.delivery.failed` event on the system topic. Nothing
/// is lost on a crash: all of it commits with the failure or not at all.
/// Returns whether new deliveries were fanned out.
pub(super) fn dead_letter(conn: &Connection, delivery_id: &str, now: Timestamp) -> Result<bool> {
    let (delivery, event) = read_delivery(conn, delivery_id)?;
    let subscription = read_subscription(conn, &delivery.subscription)?;
    let mut exists = Vec::new();
    for topic in failure_topics(&subscription.spec) {
        if topic_exists(conn, topic)? {
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
        let outcomes = publish(conn, &topic, vec![copy], now)?;
        fanned_out |= outcomes.iter().any(PublishOutcome::left_due);
        conn.prepare_cached("UPDATE deliveries SET dead_letter_event = ?2 WHERE id = ?1")?
            .execute(params![delivery.id, id])?;
    }
    if let Some(notice) = effects.notice {
        let outcomes = publish(conn, SYSTEM_TOPIC, vec![notice], now)?;
        fanned_out |= outcomes.iter().any(PublishOutcome::left_due);
    }
    Ok(fanned_out)
}

/// Fails one delivery that is in one of `from` states, then dead-letters
/// it. Returns whether it moved and whether anything was fanned out.
fn fail_one(
    conn: &Connection,
    id: &str,
    from: &str,
    reason: FailureReason,
    now: Timestamp,
) -> Result<(bool, bool)> {
    let sql = format!(
        "UPDATE deliveries SET state = 'failed', failure_reason = ?2, next_attempt_at = NULL,
                lease_until = NULL, updated_at = ?3
         WHERE id = ?1 AND state IN ({from})"
    );
    let changed = conn
        .prepare_cached(&sql)?
        .execute(params![id, reason.as_str(), millis(now)])?;
    if changed == 0 {
        return Ok((false, false));
    }
    Ok((true, dead_letter(conn, id, now)?))
}

/// Returns how many expired and whether anything was fanned out.
pub(super) fn expire_retention(
    conn: &Connection,
    now: Timestamp,
    limit: u32,
) -> Result<(u64, bool)> {
    let subscriptions: Vec<(String, String)> = conn
        .prepare_cached("SELECT name, spec FROM subscriptions ORDER BY name")?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut find = conn.prepare_cached(
        // `retention_from` is never earlier than `created_at`: the cutoff
        // bounds `created_at`, a range of `deliveries_recent_by_state`.
        "SELECT id FROM deliveries
         WHERE subscription = ?1 AND state = 'scheduled' AND created_at <= ?2
           AND COALESCE(retention_from, created_at) <= ?2
         LIMIT ?3",
    )?;
    let mut expired = 0u64;
    let mut fanned_out = false;
    for (name, spec) in subscriptions {
        let remaining = u64::from(limit).saturating_sub(expired);
        if remaining == 0 {
            break;
        }
        let spec = redrive_core::SubscriptionSpec::from_stored(&spec)?;
        let retention = spec.message_retention.as_duration();
        let Ok(cutoff) = now.checked_sub(retention) else {
            continue;
        };
        let ids: Vec<String> = find
            .query_map(
                params![
                    name,
                    millis(cutoff),
                    i64::try_from(remaining).unwrap_or(i64::MAX)
                ],
                |row| row.get(0),
            )?
            .collect::<rusqlite::Result<_>>()?;
        for id in ids {
            let (moved, fanned) = fail_one(
                conn,
                &id,
                "'scheduled'",
                FailureReason::RetentionExpired,
                now,
            )?;
            expired += u64::from(moved);
            fanned_out |= fanned;
        }
    }
    Ok((expired, fanned_out))
}

pub(super) fn cancel_delivery(
    conn: &Connection,
    id: &str,
    now: Timestamp,
) -> Result<(Delivery, bool)> {
    let (moved, fanned_out) = fail_one(conn, id, "'scheduled'", FailureReason::Cancelled, now)?;
    if !moved {
        let (delivery, _) = read_delivery(conn, id)?;
        return Err(StoreError::Conflict(format!(
            "delivery {id:?} is {}; only a scheduled delivery can be cancelled",
            delivery.state.as_str()
        )));
    }
    let cancels: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM attempts WHERE delivery_id = ?1 AND number < 0")?
        .query_row([id], |row| row.get(0))?;
    conn.prepare_cached(
        "INSERT INTO attempts (delivery_id, number, started_at, duration_ms, decision)
         VALUES (?1, ?2, ?3, 0, ?4)",
    )?
    .execute(params![
        id,
        crate::lifecycle::cancel_number(cancels),
        millis(now),
        cancel_decision()?
    ])?;
    let (delivery, _) = read_delivery(conn, id)?;
    Ok((delivery, fanned_out))
}

/// The WHERE clause of a redrive filter over `deliveries d JOIN events e`,
/// with its arguments.
fn redrive_where(filter: &RedriveFilter) -> Result<(String, Vec<Value>)> {
    filter.check()?;
    let mut args: Vec<Value> = vec![filter.subscription.clone().into()];
    let mut sql = String::from("d.subscription = ?1");
    let list = |args: &mut Vec<Value>, values: Vec<String>| {
        let marks: Vec<String> = values
            .into_iter()
            .map(|v| {
                args.push(v.into());
                format!("?{}", args.len())
            })
            .collect();
        marks.join(", ")
    };
    let states = list(
        &mut args,
        filter
            .states
            .iter()
            .map(|s| s.as_str().to_owned())
            .collect(),
    );
    sql.push_str(&format!(" AND d.state IN ({states})"));
    if !filter.reasons.is_empty() {
        let reasons = list(
            &mut args,
            filter
                .reasons
                .iter()
                .map(|r| r.as_str().to_owned())
                .collect(),
        );
        sql.push_str(&format!(" AND d.failure_reason IN ({reasons})"));
    }
    if let Some(since) = filter.since {
        args.push(millis(since).into());
        sql.push_str(&format!(" AND d.created_at >= ?{}", args.len()));
    }
    if let Some(until) = filter.until {
        args.push(millis(until).into());
        sql.push_str(&format!(" AND d.created_at < ?{}", args.len()));
    }
    if let Some(ty) = &filter.event_type {
        args.push(ty.clone().into());
        sql.push_str(&format!(" AND e.type = ?{}", args.len()));
    }
    Ok((sql, args))
}

pub(super) fn count_redrivable(conn: &Connection, filter: &RedriveFilter) -> Result<u64> {
    read_subscription(conn, &filter.subscription)?;
    let (clause, args) = redrive_where(filter)?;
    let sql = format!(
        "SELECT COUNT(*) FROM deliveries d JOIN events e ON e.seq = d.event_seq WHERE {clause}"
    );
    let count: i64 = conn
        .prepare(&sql)?
        .query_row(rusqlite::params_from_iter(args), |row| row.get(0))?;
    Ok(u64::try_from(count).unwrap_or(0))
}

pub(super) fn redrive_batch(
    conn: &Connection,
    request: &RedriveBatchRequest,
) -> Result<RedriveBatch> {
    read_subscription(conn, &request.filter.subscription)?;
    let (clause, mut args) = redrive_where(&request.filter)?;
    let mut sql = format!(
        "UPDATE deliveries SET state = 'scheduled', next_attempt_at = ?{now},
                failure_reason = NULL, lease_until = NULL,
                attempts_before_redrive = attempts, retention_from = ?{now}, updated_at = ?{now}
         WHERE id IN (SELECT d.id FROM deliveries d JOIN events e ON e.seq = d.event_seq
                      WHERE {clause}",
        now = args.len() + 1
    );
    args.push(millis(request.now).into());
    if let Some(after) = &request.after {
        args.push(after.clone().into());
        sql.push_str(&format!(" AND d.id > ?{}", args.len()));
    }
    args.push(i64::from(request.limit.max(1)).into());
    sql.push_str(&format!(
        " ORDER BY d.id LIMIT ?{}) RETURNING id",
        args.len()
    ));
    let ids: Vec<String> = conn
        .prepare(&sql)?
        .query_map(rusqlite::params_from_iter(args), |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(RedriveBatch {
        moved: ids.len() as u64,
        last_id: ids.into_iter().max(),
    })
}

pub(super) fn journal(conn: &Connection, query: &JournalQuery) -> Result<JournalPage> {
    read_subscription(conn, &query.subscription)?;
    let purged_through: i64 = conn
        .prepare_cached("SELECT purged_through FROM journal_floors WHERE subscription = ?1")?
        .query_row([&query.subscription], |row| row.get(0))
        .optional()?
        .unwrap_or(0);
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS}, e.attributes, e.data, e.seq FROM deliveries d
         JOIN events e ON e.seq = d.event_seq
         WHERE d.subscription = ?1 AND d.event_seq > ?2
         ORDER BY d.event_seq LIMIT ?3"
    );
    let entries = conn
        .prepare_cached(&sql)?
        .query_map(
            params![
                query.subscription,
                query.since.unwrap_or(0),
                i64::from(query.limit.max(1))
            ],
            |row| {
                let (delivery, event) = rows::delivery_with_event(row)?;
                Ok(JournalEntry {
                    position: row.get(DELIVERY_COLUMN_COUNT + 2)?,
                    delivery,
                    event,
                })
            },
        )?
        .collect::<rusqlite::Result<_>>()?;
    Ok(JournalPage {
        entries,
        purged_through,
    })
}

#[async_trait]
impl LifecycleStore for SqliteStore {
    async fn expire_retention(&self, now: Timestamp, limit: u32) -> Result<u64> {
        let (expired, fanned_out) = self
            .writer
            .write(move |conn| expire_retention(conn, now, limit))
            .await?;
        if fanned_out {
            self.wake();
        }
        Ok(expired)
    }

    async fn cancel_delivery(&self, id: &str, now: Timestamp) -> Result<Delivery> {
        let id = id.to_owned();
        let (delivery, fanned_out) = self
            .writer
            .write(move |conn| cancel_delivery(conn, &id, now))
            .await?;
        if fanned_out {
            self.wake();
        }
        Ok(delivery)
    }

    async fn count_redrivable(&self, filter: RedriveFilter) -> Result<u64> {
        self.readers
            .read(move |conn| count_redrivable(conn, &filter))
            .await
    }

    async fn redrive_batch(&self, request: RedriveBatchRequest) -> Result<RedriveBatch> {
        let batch = self
            .writer
            .write(move |conn| redrive_batch(conn, &request))
            .await?;
        if batch.moved > 0 {
            self.wake();
        }
        Ok(batch)
    }

    async fn journal(&self, query: JournalQuery) -> Result<JournalPage> {
        self.readers.read(move |conn| journal(conn, &query)).await
    }

    async fn purge_history(&self, request: PurgeRequest) -> Result<PurgeOutcome> {
        self.writer
            .write(move |conn| history::purge(conn, &request))
            .await
    }
}

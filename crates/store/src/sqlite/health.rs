//! Endpoint health on SQLite: per-minute attempt counts bumped in the write
//! that records each attempt, health changes as compare-and-set with their
//! operational event in the same transaction, and pause.
//!
//! Counts are keyed by the subscription's health epoch, which every change
//! of health increments: "attempts since the health last changed" is then
//! exact, not rounded to the minute of the change.

use async_trait::async_trait;
use jiff::Timestamp;
use redrive_core::health::{AttemptCounts, SubscriptionStatus};
use redrive_core::lifecycle::SYSTEM_TOPIC;
use redrive_core::{Health, Subscription};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::rows::{millis, timestamp};
use super::{SqliteStore, publish, read_subscription, topic_exists};
use crate::plan::{counted_from, health_change_notice};
use crate::{HealthChange, HealthStore, PublishOutcome, Result, StoreError};

pub(super) use crate::stored::STATUS_COLUMNS;

/// Reads [`STATUS_COLUMNS`] starting at column `first`.
pub(super) fn status(row: &Row<'_>, first: usize) -> rusqlite::Result<SubscriptionStatus> {
    let health: String = row.get(first)?;
    let health = Health::parse(&health).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            first,
            rusqlite::types::Type::Text,
            format!("unknown health {health:?}").into(),
        )
    })?;
    Ok(SubscriptionStatus {
        health,
        health_reason: row.get(first + 1)?,
        health_changed_at: timestamp(row.get(first + 2)?)?,
        paused: row.get(first + 3)?,
    })
}

/// Adds `?3` succeeded and `?4` failed attempts to minute `?2` of
/// subscription `?1`'s current health epoch (nothing if it is gone).
pub(super) const COUNT_ATTEMPTS: &str =
    "INSERT INTO attempt_counts (subscription, epoch, bucket, succeeded, failed)
     SELECT name, health_epoch, ?2, ?3, ?4 FROM subscriptions WHERE name = ?1
     ON CONFLICT (subscription, epoch, bucket) DO UPDATE
        SET succeeded = succeeded + excluded.succeeded,
            failed = failed + excluded.failed";

/// Counts recorded attempts in their subscriptions' current health epochs:
/// `ended[i]` is one attempt's subscription, the minute `bucket` it ended
/// in, and whether it succeeded. One statement per subscription and minute
/// for a whole batch of outcomes.
pub(super) fn count_attempts_of(conn: &Connection, ended: &[(&str, i64, bool)]) -> Result<()> {
    let groups = super::grouped_in_order(
        ended
            .iter()
            .map(|(subscription, bucket, succeeded)| ((*subscription, *bucket), *succeeded)),
    );
    let mut count = conn.prepare_cached(COUNT_ATTEMPTS)?;
    for ((subscription, bucket), outcomes) in groups {
        let succeeded = outcomes.iter().filter(|succeeded| **succeeded).count();
        let failed = outcomes.len() - succeeded;
        count.execute(params![
            subscription,
            bucket,
            i64::try_from(succeeded).unwrap_or(i64::MAX),
            i64::try_from(failed).unwrap_or(i64::MAX),
        ])?;
    }
    Ok(())
}

/// Whether claims may take deliveries of `subscription`: not paused, not
/// disabled. A subscription that is gone takes none either.
pub(super) fn accepts_pushes(conn: &Connection, subscription: &str) -> Result<bool> {
    let blocked: Option<bool> = conn
        .prepare_cached("SELECT paused OR health = 'disabled' FROM subscriptions WHERE name = ?1")?
        .query_row([subscription], |row| row.get(0))
        .optional()?;
    Ok(blocked == Some(false))
}

pub(super) fn count_attempts(
    conn: &Connection,
    subscription: &str,
    since: Timestamp,
) -> Result<AttemptCounts> {
    let (succeeded, failed): (i64, i64) = conn
        .prepare_cached(
            "SELECT COALESCE(SUM(c.succeeded), 0), COALESCE(SUM(c.failed), 0)
             FROM subscriptions s JOIN attempt_counts c
               ON c.subscription = s.name AND c.epoch = s.health_epoch
             WHERE s.name = ?1 AND c.bucket >= ?2",
        )?
        .query_row(params![subscription, counted_from(since)], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?;
    if succeeded == 0 && failed == 0 && !subscription_exists(conn, subscription)? {
        return Err(StoreError::not_found("subscription", subscription));
    }
    Ok(AttemptCounts {
        succeeded: u64::try_from(succeeded).unwrap_or(0),
        failed: u64::try_from(failed).unwrap_or(0),
    })
}

fn subscription_exists(conn: &Connection, name: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM subscriptions WHERE name = ?1")?
        .exists([name])?)
}

pub(super) fn prune_attempt_counts(
    conn: &Connection,
    before: Timestamp,
    limit: u32,
) -> Result<u64> {
    let deleted = conn
        .prepare_cached(
            "DELETE FROM attempt_counts WHERE (subscription, epoch, bucket) IN
               (SELECT subscription, epoch, bucket FROM attempt_counts
                WHERE bucket < ?1 LIMIT ?2)",
        )?
        .execute(params![millis(before), limit])?;
    Ok(deleted as u64)
}

/// Returns the changed subscription (if it changed) and whether the
/// operational event fanned out new deliveries.
pub(super) fn change_health(
    conn: &Connection,
    change: &HealthChange,
) -> Result<(Option<Subscription>, bool)> {
    let changed = conn
        .prepare_cached(
            "UPDATE subscriptions SET health = ?3, health_reason = ?4, health_changed_at = ?5,
                    health_epoch = health_epoch + 1
             WHERE name = ?1 AND health = ?2",
        )?
        .execute(params![
            change.subscription,
            change.from.as_str(),
            change.to.as_str(),
            change.reason,
            millis(change.now),
        ])?;
    if changed == 0 {
        if !subscription_exists(conn, &change.subscription)? {
            return Err(StoreError::not_found("subscription", &change.subscription));
        }
        return Ok((None, false));
    }
    let mut fanned_out = false;
    if let Some(event) = health_change_notice(change, topic_exists(conn, SYSTEM_TOPIC)?) {
        let outcomes = publish(conn, SYSTEM_TOPIC, vec![event], change.now)?;
        fanned_out = outcomes.iter().any(PublishOutcome::left_due);
    }
    Ok((
        Some(read_subscription(conn, &change.subscription)?),
        fanned_out,
    ))
}

pub(super) fn set_paused(conn: &Connection, name: &str, paused: bool) -> Result<Subscription> {
    let changed = conn
        .prepare_cached("UPDATE subscriptions SET paused = ?2 WHERE name = ?1")?
        .execute(params![name, paused])?;
    if changed == 0 {
        return Err(StoreError::not_found("subscription", name));
    }
    read_subscription(conn, name)
}

/// Forgets a deleted subscription's counts, so a new one of the same name
/// starts clean.
pub(super) fn forget_attempt_counts(conn: &Connection, name: &str) -> Result<()> {
    conn.prepare_cached("DELETE FROM attempt_counts WHERE subscription = ?1")?
        .execute([name])?;
    Ok(())
}

#[async_trait]
impl HealthStore for SqliteStore {
    async fn count_attempts(&self, subscription: &str, since: Timestamp) -> Result<AttemptCounts> {
        let subscription = subscription.to_owned();
        self.readers
            .read(move |conn| count_attempts(conn, &subscription, since))
            .await
    }

    async fn prune_attempt_counts(&self, before: Timestamp, limit: u32) -> Result<u64> {
        self.writer
            .write(move |conn| prune_attempt_counts(conn, before, limit))
            .await
    }

    async fn change_health(&self, change: crate::HealthChange) -> Result<Option<Subscription>> {
        let (changed, fanned_out) = self
            .writer
            .write(move |conn| change_health(conn, &change))
            .await?;
        // Also for a subscription made healthy again: its backlog is due.
        if fanned_out || changed.is_some() {
            self.wake();
        }
        Ok(changed)
    }

    async fn set_paused(&self, name: &str, paused: bool) -> Result<Subscription> {
        let name = name.to_owned();
        let subscription = self
            .writer
            .write(move |conn| set_paused(conn, &name, paused))
            .await?;
        self.wake();
        Ok(subscription)
    }
}

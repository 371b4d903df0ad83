//! Endpoint health on PostgreSQL, as on SQLite: per-minute attempt counts
//! keyed by the subscription's health epoch and bumped in the statement
//! that records each attempt, health changes as compare-and-set with their
//! operational event in the same transaction, and pause.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use jiff::Timestamp;
use redrive_core::health::{AttemptCounts, SubscriptionStatus};
use redrive_core::lifecycle::SYSTEM_TOPIC;
use redrive_core::{Health, Subscription};
use tokio_postgres::Row;

use super::rows::{get, millis, timestamp};
use super::{PostgresStore, pg_error, publish_in, read_subscription, topic_exists};
use crate::handoff::Taken;
use crate::plan::{counted_from, health_change_notice};
use crate::{HealthStore, Result, StoreError};

pub(super) use crate::stored::STATUS_COLUMNS;

/// Reads [`STATUS_COLUMNS`] starting at column `first`.
pub(super) fn status(row: &Row, first: usize) -> Result<SubscriptionStatus> {
    let health: String = get(row, first)?;
    let health = Health::parse(&health)
        .ok_or_else(|| StoreError::Backend(format!("stored health {health:?} is unknown")))?;
    Ok(SubscriptionStatus {
        health,
        health_reason: get(row, first + 1)?,
        health_changed_at: timestamp(get(row, first + 2)?)?,
        paused: get(row, first + 3)?,
    })
}

/// The part of a completion statement that counts the attempts it
/// recorded: `recorded` holds `(delivery_id, number)` of the new attempt
/// rows and `input` their subscription, outcome (`state`) and health
/// bucket (`bucket`). Each recorded attempt finds its input row by
/// grouping the two on `(id, number)` rather than by a join: bookkeeping
/// plans make no hash joins (see `connection::bookkeeping_pool`), and a
/// nested loop would compare every pair of the batch. Grouped and ordered
/// so one statement updates each counter once, and concurrent statements
/// lock counters in the same order.
pub(super) const COUNT_RECORDED: &str = "counted AS (
           INSERT INTO attempt_counts (subscription, epoch, bucket, succeeded, failed)
           SELECT c.subscription, s.health_epoch, c.bucket,
                  count(*) FILTER (WHERE c.succeeded),
                  count(*) FILTER (WHERE NOT c.succeeded)
           FROM (
             SELECT max(u.subscription) AS subscription, max(u.bucket) AS bucket,
                    bool_or(u.succeeded) AS succeeded
             FROM (
               SELECT i.id, i.number, i.subscription, i.bucket,
                      i.state = 'delivered' AS succeeded, false AS recorded
               FROM input i
               UNION ALL
               SELECT r.delivery_id, r.number, NULL, NULL, NULL, true FROM recorded r
             ) u
             GROUP BY u.id, u.number
             HAVING bool_or(u.recorded)
           ) c
           JOIN subscriptions s ON s.name = c.subscription
           GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
           ON CONFLICT (subscription, epoch, bucket) DO UPDATE
              SET succeeded = attempt_counts.succeeded + EXCLUDED.succeeded,
                  failed = attempt_counts.failed + EXCLUDED.failed
         )";

async fn subscription_exists(client: &impl GenericClient, name: &str) -> Result<bool> {
    Ok(client
        .query_opt("SELECT 1 FROM subscriptions WHERE name = $1", &[&name])
        .await
        .map_err(pg_error)?
        .is_some())
}

#[async_trait]
impl HealthStore for PostgresStore {
    async fn count_attempts(&self, subscription: &str, since: Timestamp) -> Result<AttemptCounts> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT COALESCE(SUM(c.succeeded), 0)::bigint, COALESCE(SUM(c.failed), 0)::bigint
                 FROM subscriptions s JOIN attempt_counts c
                   ON c.subscription = s.name AND c.epoch = s.health_epoch
                 WHERE s.name = $1 AND c.bucket >= $2",
                &[&subscription, &counted_from(since)],
            )
            .await
            .map_err(pg_error)?;
        let succeeded: i64 = get(&row, 0)?;
        let failed: i64 = get(&row, 1)?;
        if succeeded == 0 && failed == 0 && !subscription_exists(&client, subscription).await? {
            return Err(StoreError::not_found("subscription", subscription));
        }
        Ok(AttemptCounts {
            succeeded: u64::try_from(succeeded).unwrap_or(0),
            failed: u64::try_from(failed).unwrap_or(0),
        })
    }

    async fn prune_attempt_counts(&self, before: Timestamp, limit: u32) -> Result<u64> {
        let client = self.client().await?;
        client
            .execute(
                "DELETE FROM attempt_counts WHERE (subscription, epoch, bucket) IN
                   (SELECT subscription, epoch, bucket FROM attempt_counts
                    WHERE bucket < $1 LIMIT $2)",
                &[&millis(before), &i64::from(limit)],
            )
            .await
            .map_err(pg_error)
    }

    async fn change_health(&self, change: crate::HealthChange) -> Result<Option<Subscription>> {
        let change = &change;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let changed = tx
            .execute(
                "UPDATE subscriptions SET health = $3, health_reason = $4, health_changed_at = $5,
                        health_epoch = health_epoch + 1
                 WHERE name = $1 AND health = $2",
                &[
                    &change.subscription,
                    &change.from.as_str(),
                    &change.to.as_str(),
                    &change.reason,
                    &millis(change.now),
                ],
            )
            .await
            .map_err(pg_error)?;
        if changed == 0 {
            if !subscription_exists(&tx, &change.subscription).await? {
                return Err(StoreError::not_found("subscription", &change.subscription));
            }
            return Ok(None);
        }
        if let Some(event) = health_change_notice(change, topic_exists(&tx, SYSTEM_TOPIC).await?) {
            publish_in(
                &tx,
                SYSTEM_TOPIC,
                &[&event],
                change.now,
                &mut Taken::new(None),
            )
            .await?;
        }
        let subscription = read_subscription(&tx, &change.subscription).await?;
        tx.commit().await.map_err(pg_error)?;
        // Also for a subscription made healthy again: its backlog is due.
        self.wake();
        Ok(Some(subscription))
    }

    async fn set_paused(&self, name: &str, paused: bool) -> Result<Subscription> {
        let client = self.client().await?;
        let changed = client
            .execute(
                "UPDATE subscriptions SET paused = $2 WHERE name = $1",
                &[&name, &paused],
            )
            .await
            .map_err(pg_error)?;
        if changed == 0 {
            return Err(StoreError::not_found("subscription", name));
        }
        let subscription = read_subscription(&client, name).await?;
        self.wake();
        Ok(subscription)
    }
}

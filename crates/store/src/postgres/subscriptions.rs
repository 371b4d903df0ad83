//! Subscriptions on PostgreSQL.

use async_trait::async_trait;
use jiff::Timestamp;
use redrive_core::{Subscription, SubscriptionSpec};

use super::rows::{get, millis};
use super::{PostgresStore, health, pg_error, read_subscription, subscription_from};
use crate::{Result, StoreError, SubscriptionStore};

#[async_trait]
impl SubscriptionStore for PostgresStore {
    async fn create_subscription(
        &self,
        spec: SubscriptionSpec,
        now: Timestamp,
    ) -> Result<Subscription> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        // A shared lock on the topic: deleting it waits for this insert.
        if tx
            .query_opt(
                "SELECT 1 FROM topics WHERE name = $1 FOR SHARE",
                &[&spec.topic],
            )
            .await
            .map_err(pg_error)?
            .is_none()
        {
            return Err(StoreError::not_found("topic", &spec.topic));
        }
        let json = serde_json::to_string(&spec)?;
        let inserted = tx
            .execute(
                "INSERT INTO subscriptions
                   (name, topic, spec, dead_letter_topic, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT DO NOTHING",
                &[
                    &spec.name,
                    &spec.topic,
                    &json,
                    &spec.dead_letter_topic,
                    &millis(now),
                ],
            )
            .await
            .map_err(pg_error)?;
        if inserted == 0 {
            return Err(StoreError::Conflict(format!(
                "subscription {:?} already exists",
                spec.name
            )));
        }
        tx.commit().await.map_err(pg_error)?;
        Ok(Subscription {
            spec,
            status: redrive_core::SubscriptionStatus::new(now),
            created_at: now,
            updated_at: now,
        })
    }

    async fn update_subscription(
        &self,
        spec: SubscriptionSpec,
        now: Timestamp,
    ) -> Result<Subscription> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let row = tx
            .query_opt(
                "SELECT topic FROM subscriptions WHERE name = $1 FOR UPDATE",
                &[&spec.name],
            )
            .await
            .map_err(pg_error)?
            .ok_or_else(|| StoreError::not_found("subscription", &spec.name))?;
        let topic: String = get(&row, 0)?;
        if topic != spec.topic {
            return Err(StoreError::Invalid(format!(
                "the topic of subscription {:?} can't change (it is {topic:?})",
                spec.name
            )));
        }
        let json = serde_json::to_string(&spec)?;
        tx.execute(
            "UPDATE subscriptions SET spec = $2, dead_letter_topic = $3, updated_at = $4
             WHERE name = $1",
            &[&spec.name, &json, &spec.dead_letter_topic, &millis(now)],
        )
        .await
        .map_err(pg_error)?;
        let subscription = read_subscription(&tx, &spec.name).await?;
        tx.commit().await.map_err(pg_error)?;
        Ok(subscription)
    }

    async fn get_subscription(&self, name: &str) -> Result<Subscription> {
        let client = self.client().await?;
        read_subscription(&client, name).await
    }

    async fn list_subscriptions(&self) -> Result<Vec<Subscription>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT spec, created_at, updated_at, {} FROM subscriptions ORDER BY name",
                health::STATUS_COLUMNS
            ))
            .await
            .map_err(pg_error)?;
        client
            .query(&stmt, &[])
            .await
            .map_err(pg_error)?
            .iter()
            .map(subscription_from)
            .collect()
    }

    async fn delete_subscription(&self, name: &str) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let deleted = tx
            .execute("DELETE FROM subscriptions WHERE name = $1", &[&name])
            .await
            .map_err(pg_error)?;
        if deleted == 0 {
            return Err(StoreError::not_found("subscription", name));
        }
        tx.execute(
            "DELETE FROM attempts WHERE delivery_id IN
               (SELECT id FROM deliveries WHERE subscription = $1)",
            &[&name],
        )
        .await
        .map_err(pg_error)?;
        tx.execute("DELETE FROM deliveries WHERE subscription = $1", &[&name])
            .await
            .map_err(pg_error)?;
        tx.execute(
            "DELETE FROM journal_floors WHERE subscription = $1",
            &[&name],
        )
        .await
        .map_err(pg_error)?;
        // A new subscription of the same name starts with clean counts.
        tx.execute(
            "DELETE FROM attempt_counts WHERE subscription = $1",
            &[&name],
        )
        .await
        .map_err(pg_error)?;
        tx.commit().await.map_err(pg_error)?;
        Ok(())
    }
}

//! Subscriptions on SQLite.

use async_trait::async_trait;
use jiff::Timestamp;
use redrive_core::{Subscription, SubscriptionSpec};
use rusqlite::params;

use super::rows::{millis, timestamp};
use super::{SqliteStore, health, read_subscription, topic_exists};
use crate::{Result, StoreError, SubscriptionStore};

#[async_trait]
impl SubscriptionStore for SqliteStore {
    async fn create_subscription(
        &self,
        spec: SubscriptionSpec,
        now: Timestamp,
    ) -> Result<Subscription> {
        self.writer
            .write(move |conn| {
                if !topic_exists(conn, &spec.topic)? {
                    return Err(StoreError::not_found("topic", &spec.topic));
                }
                let inserted = conn.execute(
                    "INSERT INTO subscriptions (name, topic, spec, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?4) ON CONFLICT DO NOTHING",
                    params![
                        spec.name,
                        spec.topic,
                        serde_json::to_string(&spec)?,
                        millis(now)
                    ],
                )?;
                if inserted == 0 {
                    return Err(StoreError::Conflict(format!(
                        "subscription {:?} already exists",
                        spec.name
                    )));
                }
                Ok(Subscription {
                    spec,
                    status: redrive_core::SubscriptionStatus::new(now),
                    created_at: now,
                    updated_at: now,
                })
            })
            .await
    }

    async fn update_subscription(
        &self,
        spec: SubscriptionSpec,
        now: Timestamp,
    ) -> Result<Subscription> {
        self.writer
            .write(move |conn| {
                let current = read_subscription(conn, &spec.name)?;
                if current.spec.topic != spec.topic {
                    return Err(StoreError::Invalid(format!(
                        "the topic of subscription {:?} can't change (it is {:?})",
                        spec.name, current.spec.topic
                    )));
                }
                conn.execute(
                    "UPDATE subscriptions SET spec = ?2, updated_at = ?3 WHERE name = ?1",
                    params![spec.name, serde_json::to_string(&spec)?, millis(now)],
                )?;
                Ok(Subscription {
                    spec,
                    status: current.status,
                    created_at: current.created_at,
                    updated_at: now,
                })
            })
            .await
    }

    async fn get_subscription(&self, name: &str) -> Result<Subscription> {
        let name = name.to_owned();
        self.readers
            .read(move |conn| read_subscription(conn, &name))
            .await
    }

    async fn list_subscriptions(&self) -> Result<Vec<Subscription>> {
        self.readers
            .read(|conn| {
                let sql = format!(
                    "SELECT spec, created_at, updated_at, {} FROM subscriptions ORDER BY name",
                    health::STATUS_COLUMNS
                );
                let mut stmt = conn.prepare_cached(&sql)?;
                let rows = stmt
                    .query_map([], |row| {
                        Ok((
                            row.get::<_, String>(0)?,
                            row.get::<_, i64>(1)?,
                            row.get::<_, i64>(2)?,
                            health::status(row, 3)?,
                        ))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                rows.into_iter()
                    .map(|(spec, created, updated, status)| {
                        Ok(Subscription {
                            spec: SubscriptionSpec::from_stored(&spec)?,
                            status,
                            created_at: timestamp(created)?,
                            updated_at: timestamp(updated)?,
                        })
                    })
                    .collect()
            })
            .await
    }

    async fn delete_subscription(&self, name: &str) -> Result<()> {
        let name = name.to_owned();
        self.writer
            .write(move |conn| {
                conn.execute(
                    "DELETE FROM attempts WHERE delivery_id IN
                       (SELECT id FROM deliveries WHERE subscription = ?1)",
                    [&name],
                )?;
                conn.execute("DELETE FROM deliveries WHERE subscription = ?1", [&name])?;
                conn.execute(
                    "DELETE FROM journal_floors WHERE subscription = ?1",
                    [&name],
                )?;
                health::forget_attempt_counts(conn, &name)?;
                if conn.execute("DELETE FROM subscriptions WHERE name = ?1", [&name])? == 0 {
                    return Err(StoreError::not_found("subscription", &name));
                }
                Ok(())
            })
            .await
    }
}

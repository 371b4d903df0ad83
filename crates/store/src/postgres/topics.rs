//! Topics on PostgreSQL.

use async_trait::async_trait;
use jiff::Timestamp;
use redrive_core::Topic;

use super::rows::{get, millis, timestamp};
use super::{PostgresStore, lifecycle, pg_error};
use crate::{Result, StoreError, TopicStore};

#[async_trait]
impl TopicStore for PostgresStore {
    async fn create_topic(&self, name: &str, now: Timestamp) -> Result<Topic> {
        let client = self.client().await?;
        let inserted = client
            .execute(
                "INSERT INTO topics (name, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&name, &millis(now)],
            )
            .await
            .map_err(pg_error)?;
        if inserted == 0 {
            return Err(StoreError::Conflict(format!(
                "topic {name:?} already exists"
            )));
        }
        Ok(Topic {
            name: name.to_owned(),
            created_at: now,
        })
    }

    async fn get_topic(&self, name: &str) -> Result<Topic> {
        let client = self.client().await?;
        let row = client
            .query_opt("SELECT created_at FROM topics WHERE name = $1", &[&name])
            .await
            .map_err(pg_error)?
            .ok_or_else(|| StoreError::not_found("topic", name))?;
        Ok(Topic {
            name: name.to_owned(),
            created_at: timestamp(get(&row, 0)?)?,
        })
    }

    async fn list_topics(&self) -> Result<Vec<Topic>> {
        let client = self.client().await?;
        client
            .query("SELECT name, created_at FROM topics ORDER BY name", &[])
            .await
            .map_err(pg_error)?
            .iter()
            .map(|row| {
                Ok(Topic {
                    name: get(row, 0)?,
                    created_at: timestamp(get(row, 1)?)?,
                })
            })
            .collect()
    }

    async fn delete_topic(&self, name: &str) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        // Locks the topic row so a subscription can't be added meanwhile.
        if tx
            .query_opt("SELECT 1 FROM topics WHERE name = $1 FOR UPDATE", &[&name])
            .await
            .map_err(pg_error)?
            .is_none()
        {
            return Err(StoreError::not_found("topic", name));
        }
        if let Some(why) = lifecycle::topic_in_use(&tx, name).await? {
            return Err(StoreError::Conflict(why));
        }
        let subscriptions: Vec<String> = tx
            .query(
                "SELECT name FROM subscriptions WHERE topic = $1 ORDER BY name",
                &[&name],
            )
            .await
            .map_err(pg_error)?
            .iter()
            .map(|row| get(row, 0))
            .collect::<Result<_>>()?;
        if !subscriptions.is_empty() {
            return Err(StoreError::Conflict(format!(
                "topic {name:?} still has subscriptions ({}); delete them first",
                subscriptions.join(", ")
            )));
        }
        tx.execute("DELETE FROM events WHERE topic = $1", &[&name])
            .await
            .map_err(pg_error)?;
        tx.execute("DELETE FROM topics WHERE name = $1", &[&name])
            .await
            .map_err(pg_error)?;
        tx.commit().await.map_err(pg_error)?;
        Ok(())
    }
}

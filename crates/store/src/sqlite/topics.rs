//! Topics on SQLite.

use async_trait::async_trait;
use jiff::Timestamp;
use redrive_core::Topic;
use rusqlite::{OptionalExtension, params};

use super::rows::{millis, timestamp};
use super::{SqliteStore, lifecycle, topic_exists};
use crate::{Result, StoreError, TopicStore};

#[async_trait]
impl TopicStore for SqliteStore {
    async fn create_topic(&self, name: &str, now: Timestamp) -> Result<Topic> {
        let name = name.to_owned();
        self.writer
            .write(move |conn| {
                let inserted = conn.execute(
                    "INSERT INTO topics (name, created_at) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                    params![name, millis(now)],
                )?;
                if inserted == 0 {
                    return Err(StoreError::Conflict(format!(
                        "topic {name:?} already exists"
                    )));
                }
                Ok(Topic {
                    name,
                    created_at: now,
                })
            })
            .await
    }

    async fn get_topic(&self, name: &str) -> Result<Topic> {
        let name = name.to_owned();
        self.readers
            .read(move |conn| {
                conn.prepare_cached("SELECT created_at FROM topics WHERE name = ?1")?
                    .query_row([&name], |row| row.get::<_, i64>(0))
                    .optional()?
                    .ok_or_else(|| StoreError::not_found("topic", &name))
                    .and_then(|created| {
                        Ok(Topic {
                            name,
                            created_at: timestamp(created)?,
                        })
                    })
            })
            .await
    }

    async fn list_topics(&self) -> Result<Vec<Topic>> {
        self.readers
            .read(|conn| {
                let mut stmt =
                    conn.prepare_cached("SELECT name, created_at FROM topics ORDER BY name")?;
                let topics = stmt
                    .query_map([], |row| {
                        Ok(Topic {
                            name: row.get(0)?,
                            created_at: timestamp(row.get(1)?)?,
                        })
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(topics)
            })
            .await
    }

    async fn delete_topic(&self, name: &str) -> Result<()> {
        let name = name.to_owned();
        self.writer
            .write(move |conn| {
                if !topic_exists(conn, &name)? {
                    return Err(StoreError::not_found("topic", &name));
                }
                if let Some(why) = lifecycle::topic_in_use(conn, &name)? {
                    return Err(StoreError::Conflict(why));
                }
                let subscriptions: Vec<String> = conn
                    .prepare_cached(
                        "SELECT name FROM subscriptions WHERE topic = ?1 ORDER BY name",
                    )?
                    .query_map([&name], |row| row.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                if !subscriptions.is_empty() {
                    return Err(StoreError::Conflict(format!(
                        "topic {name:?} still has subscriptions ({}); delete them first",
                        subscriptions.join(", ")
                    )));
                }
                conn.execute("DELETE FROM events WHERE topic = ?1", [&name])?;
                conn.execute("DELETE FROM topics WHERE name = ?1", [&name])?;
                Ok(())
            })
            .await
    }
}

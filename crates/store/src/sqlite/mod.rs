//! The embedded store: SQLite in WAL mode in a data directory owned by one
//! process. Writes go through a single writer thread that group-commits
//! (synchronous = FULL, so a commit is on disk when it returns); reads use a
//! small pool of connections on the blocking thread pool.

mod console;
mod health;
mod lifecycle;
mod ops;
mod readers;
pub(crate) mod rows;
mod schema;
mod security;
mod writer;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use jiff::Timestamp;
use redrive_core::{
    CloudEvent, Decision, Delivery, DeliveryState, Subscription, SubscriptionSpec, Topic,
};
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::Notify;

use crate::console::*;
use crate::lifecycle::*;
use crate::security::*;
use crate::store::*;
use crate::{Result, StoreError};
use readers::Readers;
use rows::{
    ATTEMPT_COLUMNS, DELIVERY_COLUMN_COUNT, DELIVERY_COLUMNS, enum_name, millis, timestamp,
};
use writer::Writer;

pub(crate) const DATABASE_FILE: &str = "redrive.db";
const LOCK_FILE: &str = "redrive.lock";

pub struct SqliteStore {
    writer: Writer,
    readers: Arc<Readers>,
    wakeups: Arc<Notify>,
    // Held for the store's lifetime: the OS releases the lock if we die.
    _lock: File,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `dir`. Fails if another
    /// process holds the directory. Whatever a previous process left in
    /// flight is made due again at once: nobody else can be pushing it.
    pub fn open(dir: &Path, now: Timestamp) -> Result<SqliteStore> {
        std::fs::create_dir_all(dir).map_err(|err| {
            StoreError::Unavailable(format!(
                "cannot create data directory {}: {err}",
                dir.display()
            ))
        })?;
        let lock = lock_dir(dir)?;
        let path = dir.join(DATABASE_FILE);
        let conn = Connection::open(&path).map_err(|err| {
            StoreError::Unavailable(format!("cannot open {}: {err}", path.display()))
        })?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA busy_timeout = 5000;
             PRAGMA cache_size = -32000;",
        )?;
        schema::migrate(&conn)?;
        lifecycle::ensure_system_topic(&conn, now)?;
        let recovered = rescue(&conn, now, None)?;
        if recovered > 0 {
            tracing::info!(
                recovered,
                "deliveries left in flight by a previous process are due again"
            );
        }
        Ok(SqliteStore {
            writer: Writer::start(conn)?,
            readers: Arc::new(Readers::new(path.clone())),
            wakeups: Arc::new(Notify::new()),
            _lock: lock,
            path,
        })
    }

    /// The database file, for backups and diagnostics.
    pub fn database_path(&self) -> &Path {
        &self.path
    }
}

fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|err| StoreError::Unavailable(format!("cannot open {}: {err}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Unavailable(format!(
            "data directory {} is in use by another redrive process",
            dir.display()
        ))),
        Err(std::fs::TryLockError::Error(err)) => Err(StoreError::Unavailable(format!(
            "cannot lock {}: {err}",
            path.display()
        ))),
    }
}

/// Makes in-flight deliveries due again, recording their lost attempt as
/// interrupted. `lease_before`: only those whose lease ended before it.
fn rescue(conn: &Connection, now: Timestamp, lease_before: Option<Timestamp>) -> Result<u64> {
    let now_ms = millis(now);
    let cutoff = lease_before.map(millis).unwrap_or(i64::MAX);
    conn.execute(
        "INSERT OR IGNORE INTO attempts
           (delivery_id, number, started_at, duration_ms, error, error_message, decision)
         SELECT id, attempts, COALESCE(last_attempt_at, ?1), MAX(?1 - COALESCE(last_attempt_at, ?1), 0),
                'interrupted', 'the attempt did not finish: its process stopped or its lease ran out',
                json_object('kind', 'retry', 'at', ?2, 'retry', attempts)
         FROM deliveries WHERE state = 'in_flight' AND lease_until < ?3",
        params![now_ms, now.to_string(), cutoff],
    )?;
    let moved = conn.execute(
        "UPDATE deliveries SET state = 'scheduled', next_attempt_at = ?1, lease_until = NULL,
                last_error = 'interrupted', last_status = NULL, updated_at = ?1
         WHERE state = 'in_flight' AND lease_until < ?2",
        params![now_ms, cutoff],
    )?;
    Ok(moved as u64)
}

fn topic_exists(conn: &Connection, name: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM topics WHERE name = ?1")?
        .exists([name])?)
}

fn read_subscription(conn: &Connection, name: &str) -> Result<Subscription> {
    let sql = format!(
        "SELECT spec, created_at, updated_at, {} FROM subscriptions WHERE name = ?1",
        health::STATUS_COLUMNS
    );
    conn.prepare_cached(&sql)?
        .query_row([name], |row| {
            let spec: String = row.get(0)?;
            Ok((
                spec,
                row.get::<_, i64>(1)?,
                row.get::<_, i64>(2)?,
                health::status(row, 3)?,
            ))
        })
        .optional()?
        .ok_or_else(|| StoreError::not_found("subscription", name))
        .and_then(|(spec, created, updated, status)| {
            Ok(Subscription {
                spec: SubscriptionSpec::from_stored(&spec)?,
                status,
                created_at: timestamp(created)?,
                updated_at: timestamp(updated)?,
            })
        })
}

fn read_delivery(conn: &Connection, id: &str) -> Result<(Delivery, CloudEvent)> {
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS}, e.attributes, e.data FROM deliveries d
         JOIN events e ON e.seq = d.event_seq WHERE d.id = ?1"
    );
    conn.prepare_cached(&sql)?
        .query_row([id], |row| {
            let delivery = rows::delivery(row)?;
            let attributes: String = row.get(DELIVERY_COLUMN_COUNT)?;
            let event = rows::event(&attributes, row.get(DELIVERY_COLUMN_COUNT + 1)?)?;
            Ok((delivery, event))
        })
        .optional()?
        .ok_or_else(|| StoreError::not_found("delivery", id))
}

#[async_trait]
impl Store for SqliteStore {
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
                health::forget_in(conn, &name)?;
                if conn.execute("DELETE FROM subscriptions WHERE name = ?1", [&name])? == 0 {
                    return Err(StoreError::not_found("subscription", &name));
                }
                Ok(())
            })
            .await
    }

    async fn publish(
        &self,
        topic: &str,
        events: Vec<CloudEvent>,
        now: Timestamp,
    ) -> Result<Vec<PublishOutcome>> {
        let topic = topic.to_owned();
        let outcomes = self
            .writer
            .write(move |conn| publish_in(conn, &topic, events, now))
            .await?;
        if outcomes.iter().any(|o| o.deliveries > 0) {
            self.wakeups.notify_one();
        }
        Ok(outcomes)
    }

    async fn claim_due(&self, request: ClaimRequest) -> Result<ClaimBatch> {
        self.writer
            .write(move |conn| claim_in(conn, &request))
            .await
    }

    async fn complete_many(&self, completions: Vec<Completion>) -> Result<()> {
        if completions.is_empty() {
            return Ok(());
        }
        let fanned_out = self
            .writer
            .write(move |conn| complete_in(conn, &completions))
            .await?;
        if fanned_out {
            self.wakeups.notify_one();
        }
        Ok(())
    }

    async fn rescue_expired(&self, now: Timestamp) -> Result<u64> {
        let moved = self
            .writer
            .write(move |conn| rescue(conn, now, Some(now)))
            .await?;
        if moved > 0 {
            self.wakeups.notify_one();
        }
        Ok(moved)
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

    async fn list_deliveries(&self, query: DeliveryQuery) -> Result<DeliveryPage> {
        self.readers.read(move |conn| list_in(conn, &query)).await
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

    async fn expire_retention(&self, now: Timestamp, limit: u32) -> Result<u64> {
        let (expired, fanned_out) = self
            .writer
            .write(move |conn| lifecycle::expire_in(conn, now, limit))
            .await?;
        if fanned_out {
            self.wakeups.notify_one();
        }
        Ok(expired)
    }

    async fn cancel_delivery(&self, id: &str, now: Timestamp) -> Result<Delivery> {
        let id = id.to_owned();
        let (delivery, fanned_out) = self
            .writer
            .write(move |conn| lifecycle::cancel_in(conn, &id, now))
            .await?;
        if fanned_out {
            self.wakeups.notify_one();
        }
        Ok(delivery)
    }

    async fn count_redrivable(&self, filter: RedriveFilter) -> Result<u64> {
        self.readers
            .read(move |conn| lifecycle::count_redrivable_in(conn, &filter))
            .await
    }

    async fn redrive_batch(&self, request: RedriveBatchRequest) -> Result<RedriveBatch> {
        let batch = self
            .writer
            .write(move |conn| lifecycle::redrive_in(conn, &request))
            .await?;
        if batch.moved > 0 {
            self.wakeups.notify_one();
        }
        Ok(batch)
    }

    async fn journal(&self, query: JournalQuery) -> Result<JournalPage> {
        self.readers
            .read(move |conn| lifecycle::journal_in(conn, &query))
            .await
    }

    async fn purge_history(&self, request: PurgeRequest) -> Result<PurgeOutcome> {
        self.writer
            .write(move |conn| lifecycle::purge_in(conn, &request))
            .await
    }

    fn wakeups(&self) -> Arc<Notify> {
        self.wakeups.clone()
    }

    // --- endpoint health ---
    async fn count_attempts(
        &self,
        subscription: &str,
        since: Timestamp,
    ) -> Result<redrive_core::health::AttemptCounts> {
        let subscription = subscription.to_owned();
        self.readers
            .read(move |conn| health::count_in(conn, &subscription, since))
            .await
    }

    async fn prune_attempt_counts(&self, before: Timestamp, limit: u32) -> Result<u64> {
        self.writer
            .write(move |conn| health::prune_in(conn, before, limit))
            .await
    }

    async fn change_health(&self, change: crate::HealthChange) -> Result<Option<Subscription>> {
        let (changed, fanned_out) = self
            .writer
            .write(move |conn| health::change_in(conn, &change))
            .await?;
        // Also for a subscription made healthy again: its backlog is due.
        if fanned_out || changed.is_some() {
            self.wakeups.notify_one();
        }
        Ok(changed)
    }

    async fn set_paused(&self, name: &str, paused: bool) -> Result<Subscription> {
        let name = name.to_owned();
        let subscription = self
            .writer
            .write(move |conn| health::set_paused_in(conn, &name, paused))
            .await?;
        self.wakeups.notify_one();
        Ok(subscription)
    }
    // --- console ---
    async fn search_deliveries(&self, query: DeliverySearch) -> Result<DeliverySearchPage> {
        self.readers
            .read(move |conn| console::search_in(conn, &query))
            .await
    }

    async fn count_deliveries_by_state(
        &self,
        subscription: &str,
        since: Timestamp,
    ) -> Result<StateCounts> {
        let subscription = subscription.to_owned();
        self.readers
            .read(move |conn| console::count_by_state_in(conn, &subscription, since))
            .await
    }

    async fn outcome_buckets(&self, query: OutcomeBucketsQuery) -> Result<Vec<OutcomeBucket>> {
        self.readers
            .read(move |conn| console::outcome_buckets_in(conn, &query))
            .await
    }

    // --- security ---
    async fn create_token(&self, token: TokenRecord) -> Result<()> {
        self.writer
            .write(move |conn| security::create_token_in(conn, &token))
            .await
    }

    async fn get_token(&self, id: &str) -> Result<TokenRecord> {
        let id = id.to_owned();
        self.readers
            .read(move |conn| security::get_token_in(conn, &id))
            .await
    }

    async fn list_tokens(&self) -> Result<Vec<TokenRecord>> {
        self.readers.read(security::list_tokens_in).await
    }

    async fn delete_token(&self, id: &str) -> Result<()> {
        let id = id.to_owned();
        self.writer
            .write(move |conn| security::delete_token_in(conn, &id))
            .await
    }

    async fn get_signing_secrets(&self, subscription: &str) -> Result<Option<SigningSecrets>> {
        let subscription = subscription.to_owned();
        self.readers
            .read(move |conn| security::get_secrets_in(conn, &subscription))
            .await
    }

    async fn ensure_signing_secret(
        &self,
        subscription: &str,
        current: String,
        now: Timestamp,
    ) -> Result<SigningSecrets> {
        let subscription = subscription.to_owned();
        self.writer
            .write(move |conn| security::ensure_secret_in(conn, &subscription, &current, now))
            .await
    }

    async fn rotate_signing_secret(&self, rotation: SecretRotation) -> Result<SigningSecrets> {
        self.writer
            .write(move |conn| security::rotate_secret_in(conn, &rotation))
            .await
    }

    // --- ops ---
    async fn release_claims(&self, delivery_ids: Vec<String>, now: Timestamp) -> Result<u64> {
        self.writer
            .write(move |conn| ops::release_in(conn, &delivery_ids, now))
            .await
    }

    async fn queue_stats(&self, now: Timestamp) -> Result<Vec<crate::QueueStats>> {
        self.readers
            .read(move |conn| ops::queue_stats_in(conn, now))
            .await
    }

    async fn readiness(&self) -> Result<crate::StoreReadiness> {
        self.readers.read(ops::readiness_in).await
    }

    async fn check_writes(&self) -> Result<()> {
        self.writer.write(ops::check_writes_in).await
    }

    async fn backup_into(&self, path: &Path) -> Result<()> {
        let (database, target) = (self.path.clone(), path.to_owned());
        tokio::task::spawn_blocking(move || ops::backup(&database, &target))
            .await
            .map_err(|err| StoreError::Backend(format!("the backup task failed: {err}")))?
    }

    async fn flush(&self) -> Result<()> {
        // An empty write first: the checkpoint then covers every write
        // queued before this call. It runs outside the writer's transaction.
        self.writer.write(|_| Ok(())).await?;
        let database = self.path.clone();
        tokio::task::spawn_blocking(move || ops::checkpoint(&database))
            .await
            .map_err(|err| StoreError::Backend(format!("the checkpoint task failed: {err}")))?
    }
}

fn publish_in(
    conn: &Connection,
    topic: &str,
    events: Vec<CloudEvent>,
    now: Timestamp,
) -> Result<Vec<PublishOutcome>> {
    if !topic_exists(conn, topic)? {
        return Err(StoreError::not_found("topic", topic));
    }
    let subscriptions: Vec<(String, redrive_core::Filter)> = conn
        .prepare_cached("SELECT name, spec FROM subscriptions WHERE topic = ?1")?
        .query_map([topic], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?
        .into_iter()
        .map(|(name, spec)| {
            let spec = SubscriptionSpec::from_stored(&spec)?;
            Ok((name, spec.filter))
        })
        .collect::<Result<_>>()?;
    let now_ms = millis(now);
    // Positions continue from the highest ever handed out, not from the
    // highest still stored (see `schema::JOURNAL_HEAD`). The newest event is
    // also consulted so that a row inserted some other way cannot collide.
    let mut last_seq: i64 = conn
        .prepare_cached(
            "SELECT MAX(COALESCE((SELECT last_seq FROM journal_head), 0),
                        COALESCE((SELECT MAX(seq) FROM events), 0))",
        )?
        .query_row([], |row| row.get(0))?;
    let head_before = last_seq;
    let mut insert_event = conn.prepare_cached(
        "INSERT INTO events (seq, topic, source, id, type, attributes, data, published_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (topic, source, id) DO NOTHING RETURNING seq",
    )?;
    let mut insert_delivery = conn.prepare_cached(
        "INSERT INTO deliveries (id, subscription, event_seq, state, attempts, next_attempt_at,
                                 created_at, updated_at)
         VALUES (?1, ?2, ?3, 'scheduled', 0, ?4, ?4, ?4)",
    )?;
    let mut outcomes = Vec::with_capacity(events.len());
    for event in events {
        let attributes = serde_json::to_string(&event)?;
        let seq: Option<i64> = insert_event
            .query_row(
                params![
                    last_seq + 1,
                    topic,
                    event.source,
                    event.id,
                    event.ty,
                    attributes,
                    event.data,
                    now_ms
                ],
                |row| row.get(0),
            )
            .optional()?;
        let mut deliveries = 0;
        if let Some(seq) = seq {
            last_seq = seq;
            for (subscription, filter) in &subscriptions {
                if filter.matches(&event) {
                    let id = uuid::Uuid::now_v7().to_string();
                    insert_delivery.execute(params![id, subscription, seq, now_ms])?;
                    deliveries += 1;
                }
            }
        }
        outcomes.push(PublishOutcome {
            duplicate: seq.is_none(),
            id: event.id,
            source: event.source,
            deliveries,
        });
    }
    if last_seq != head_before {
        conn.prepare_cached("UPDATE journal_head SET last_seq = ?1")?
            .execute([last_seq])?;
    }
    Ok(outcomes)
}

fn claim_in(conn: &Connection, request: &ClaimRequest) -> Result<ClaimBatch> {
    let now_ms = millis(request.now);
    let lease_until = request
        .now
        .checked_add(request.lease)
        .map_err(|err| StoreError::Invalid(format!("lease too long: {err}")))?;
    let mut pick = conn.prepare_cached(
        "SELECT id, next_attempt_at FROM deliveries
         WHERE subscription = ?1 AND state = 'scheduled' AND next_attempt_at <= ?2
         ORDER BY next_attempt_at LIMIT ?3",
    )?;
    // A delivery claimed ahead starts when it falls due: that is its
    // attempt's time.
    let mut claim = conn.prepare_cached(
        "UPDATE deliveries SET state = 'in_flight', attempts = attempts + 1, lease_until = ?1,
                last_attempt_at = MAX(?2, next_attempt_at),
                first_attempt_at = COALESCE(first_attempt_at, MAX(?2, next_attempt_at)),
                next_attempt_at = NULL, updated_at = ?2
         WHERE id = ?3",
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
        let limit = want.limit.min(left);
        if limit > 0 {
            let due_by = request
                .now
                .checked_add(want.lookahead)
                .map_err(|err| StoreError::Invalid(format!("lookahead too long: {err}")))?;
            let picked = pick
                .query_map(params![want.subscription, millis(due_by), limit], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            left -= u32::try_from(picked.len()).unwrap_or(limit).min(limit);
            for (id, due_at) in picked {
                claim.execute(params![millis(lease_until), now_ms, id])?;
                let (delivery, event) = read_delivery(conn, &id)?;
                batch.claimed.push(ClaimedDelivery {
                    delivery,
                    event,
                    lease_until,
                    due_at: timestamp(due_at)?,
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

/// Returns whether dead-lettering fanned out new deliveries.
fn complete_in(conn: &Connection, completions: &[Completion]) -> Result<bool> {
    let mut update = conn.prepare_cached(
        "UPDATE deliveries SET state = ?3, next_attempt_at = ?4, failure_reason = ?5,
                last_status = ?6, last_error = ?7, lease_until = NULL, updated_at = ?8
         WHERE id = ?1 AND state = 'in_flight' AND attempts = ?2",
    )?;
    let mut record = conn.prepare_cached(
        "INSERT OR IGNORE INTO attempts
           (delivery_id, number, started_at, duration_ms, status, error, error_message,
            response_snippet, decision)
         SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9
         WHERE EXISTS (SELECT 1 FROM deliveries WHERE id = ?1)",
    )?;
    let mut fanned_out = false;
    for completion in completions {
        let attempt = &completion.attempt;
        let (state, next_attempt_at, reason) = match attempt.decision {
            Decision::Delivered => (DeliveryState::Delivered, None, None),
            Decision::Retry { at, .. } => (DeliveryState::Scheduled, Some(millis(at)), None),
            Decision::Failed { reason } => (DeliveryState::Failed, None, Some(enum_name(&reason)?)),
        };
        let error = attempt.error.map(|class| class.as_str());
        let ended_at = millis(attempt.started_at)
            .saturating_add(i64::try_from(attempt.duration_ms).unwrap_or(i64::MAX));
        let changed = update.execute(params![
            completion.delivery_id,
            attempt.number,
            state.as_str(),
            next_attempt_at,
            reason,
            attempt.status,
            error,
            ended_at,
        ])?;
        let recorded = record.execute(params![
            completion.delivery_id,
            attempt.number,
            millis(attempt.started_at),
            i64::try_from(attempt.duration_ms).unwrap_or(i64::MAX),
            attempt.status,
            error,
            attempt.error_message,
            attempt.response_snippet,
            serde_json::to_string(&attempt.decision)?,
        ])?;
        if recorded > 0 {
            health::count_attempt(conn, &completion.delivery_id, attempt, ended_at)?;
        }
        if changed > 0 && matches!(attempt.decision, Decision::Failed { .. }) {
            let now = timestamp(ended_at)?;
            fanned_out |= lifecycle::dead_letter_in(conn, &completion.delivery_id, now)?;
        }
    }
    Ok(fanned_out)
}

fn list_in(conn: &Connection, query: &DeliveryQuery) -> Result<DeliveryPage> {
    let mut sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM deliveries d JOIN events e ON e.seq = d.event_seq
         WHERE d.subscription = ?1"
    );
    let mut args: Vec<rusqlite::types::Value> = vec![query.subscription.clone().into()];
    if let Some(state) = query.state {
        args.push(state.as_str().to_owned().into());
        sql.push_str(&format!(" AND d.state = ?{}", args.len()));
    }
    if let Some(reason) = query.reason {
        args.push(reason.as_str().to_owned().into());
        sql.push_str(&format!(" AND d.failure_reason = ?{}", args.len()));
    }
    if let Some(before) = &query.before {
        args.push(before.clone().into());
        sql.push_str(&format!(" AND d.id < ?{}", args.len()));
    }
    let limit = query.limit.max(1);
    args.push(i64::from(limit + 1).into());
    sql.push_str(&format!(" ORDER BY d.id DESC LIMIT ?{}", args.len()));
    let mut deliveries = conn
        .prepare_cached(&sql)?
        .query_map(rusqlite::params_from_iter(args), rows::delivery)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let next_cursor = if deliveries.len() > limit as usize {
        deliveries.truncate(limit as usize);
        deliveries.last().map(|d| d.id.clone())
    } else {
        None
    };
    Ok(DeliveryPage {
        deliveries,
        next_cursor,
    })
}

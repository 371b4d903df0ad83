//! The shared store: PostgreSQL, for several redrive nodes on one database.
//!
//! Every node accepts publishes and delivers. Claims take due rows with
//! `FOR UPDATE SKIP LOCKED` under a lease, so nodes never wait on each other
//! and a node that dies leaves leases any other node rescues. A publish
//! sends a `NOTIFY` in its own transaction; every node listens on a
//! dedicated connection and wakes its dispatcher, with polling as the
//! fallback. A subscription's rate limit is one token bucket row that
//! every node's claims of it lock in turn (`rate.rs`). Work that must
//! happen once (retention expiry, history purge) runs under a
//! transaction-scoped advisory lock; a node that can't take it skips its
//! turn.

mod console;
mod health;
mod lifecycle;
mod listen;
mod ops;
mod partition_drop;
mod partitions;
mod rate;
pub(crate) mod rows;
mod schema;
mod security;
mod stats;
pub mod testing;

pub use stats::{DatabaseActivity, database_activity};

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod};
use jiff::Timestamp;
use redrive_core::{CloudEvent, Decision, Delivery, Subscription, SubscriptionSpec, Topic};
use tokio::sync::Notify;
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

use crate::lifecycle::*;
use crate::store::*;
use crate::{Result, StoreError};
use rows::{ATTEMPT_COLUMNS, DELIVERY_COLUMN_COUNT, DELIVERY_COLUMNS, big, get, millis, timestamp};

/// The channel publishes notify and every node listens on.
pub(crate) const WAKEUP_CHANNEL: &str = "redrive_due";

/// Connections per node unless the URL's `pool_size` says otherwise.
pub const DEFAULT_POOL_SIZE: usize = 16;

/// Turns a driver error into a store error that says what PostgreSQL said.
pub(crate) fn pg_error(err: tokio_postgres::Error) -> StoreError {
    if let Some(db) = err.as_db_error() {
        let message = match db.detail() {
            Some(detail) => format!("{}: {} ({detail})", db.code().code(), db.message()),
            None => format!("{}: {}", db.code().code(), db.message()),
        };
        if *db.code() == SqlState::UNIQUE_VIOLATION {
            return StoreError::Conflict(message);
        }
        // Class 53 (disk full, out of memory, too many connections), 58
        // (I/O errors) and 57P (the server shutting down or starting up)
        // pass once the operator or PostgreSQL itself deals with them.
        let code = db.code().code();
        if code.starts_with("53") || code.starts_with("58") || code.starts_with("57P") {
            return StoreError::Unavailable(format!("postgres: {message}"));
        }
        return StoreError::Backend(format!("postgres: {message}"));
    }
    if err.is_closed() {
        return StoreError::Unavailable(format!("the PostgreSQL connection is closed: {err}"));
    }
    match std::error::Error::source(&err) {
        Some(source) => StoreError::Unavailable(format!("postgres: {err}: {source}")),
        None => StoreError::Unavailable(format!("postgres: {err}")),
    }
}

/// Takes the transaction-scoped advisory lock `key` (an SQL expression) if
/// no other session holds it: how work that must run on one node at a time
/// lets a node that finds it taken skip its turn instead of queueing.
pub(crate) async fn try_xact_lock(
    client: &impl tokio_postgres::GenericClient,
    key: &str,
) -> std::result::Result<bool, tokio_postgres::Error> {
    let row = client
        .query_one(&format!("SELECT pg_try_advisory_xact_lock({key})"), &[])
        .await?;
    row.try_get(0)
}

fn pool_error(err: deadpool_postgres::PoolError) -> StoreError {
    match err {
        deadpool_postgres::PoolError::Backend(err) => pg_error(err),
        other => StoreError::Unavailable(format!("no PostgreSQL connection: {other}")),
    }
}

pub struct PostgresStore {
    pool: Pool,
    wakeups: Arc<Notify>,
    /// Asks the announcer to tell the other nodes there is work.
    announce: Arc<Notify>,
    listener: tokio::task::JoinHandle<()>,
    announcer: tokio::task::JoinHandle<()>,
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.listener.abort();
        self.announcer.abort();
    }
}

impl PostgresStore {
    /// Connects to `url` (a `postgres://` URL; `pool_size=N` among its query
    /// parameters sets the pool size), migrates the schema and starts
    /// listening for wake-ups. Deliveries other nodes hold are left alone:
    /// only leases that ran out are rescued, by the dispatcher.
    pub async fn connect(url: &str, now: Timestamp) -> Result<PostgresStore> {
        let (url, pool_size) = split_pool_size(url)?;
        let config = tokio_postgres::Config::from_str(&url)
            .map_err(|err| StoreError::Invalid(format!("invalid database URL: {err}")))?;
        let mut config = config;
        if config.get_application_name().is_none() {
            config.application_name("redrive");
        }
        let (mut client, connection) = config.connect(NoTls).await.map_err(|err| {
            StoreError::Unavailable(format!("cannot connect to PostgreSQL: {}", pg_error(err)))
        })?;
        let driver = tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "the migration connection ended");
            }
        });
        schema::migrate(&mut client).await?;
        // Partitions follow the ids, which follow the real clock, not `now`.
        if partitions::ensure(&mut client, Timestamp::now())
            .await?
            .is_none()
        {
            tracing::warn!(
                "the history tables stayed locked: the coming days' partitions are created \
                 by the next purge"
            );
        }
        lifecycle::ensure_system_topic(&client, now).await?;
        drop(client);
        let _ = driver.await;

        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size)
            .build()
            .map_err(|err| {
                StoreError::Invalid(format!("cannot build the connection pool: {err}"))
            })?;
        let wakeups = Arc::new(Notify::new());
        let own = listen::Announcer::default();
        let listener = tokio::spawn(listen::run(config.clone(), wakeups.clone(), own.clone()));
        let announce = Arc::new(Notify::new());
        let announcer = tokio::spawn(listen::announce(config, announce.clone(), own));
        Ok(PostgresStore {
            pool,
            wakeups,
            announce,
            listener,
            announcer,
        })
    }

    async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.pool.get().await.map_err(pool_error)
    }

    /// Wakes this node's dispatcher now and the other nodes' shortly
    /// (after the work is committed).
    fn wake(&self) {
        self.wakeups.notify_one();
        self.announce.notify_one();
    }
}

/// Takes redrive's own `pool_size` parameter out of the URL, which the
/// driver would refuse.
fn split_pool_size(url: &str) -> Result<(String, usize)> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), DEFAULT_POOL_SIZE));
    };
    let mut pool_size = DEFAULT_POOL_SIZE;
    let mut kept = Vec::new();
    for pair in query.split('&') {
        match pair.strip_prefix("pool_size=") {
            Some(value) => {
                pool_size = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| {
                        StoreError::Invalid(format!(
                            "invalid database URL: pool_size={value} is not a positive number"
                        ))
                    })?;
            }
            None => kept.push(pair),
        }
    }
    if kept.is_empty() {
        Ok((base.to_owned(), pool_size))
    } else {
        Ok((format!("{base}?{}", kept.join("&")), pool_size))
    }
}

async fn topic_exists(client: &impl GenericClient, name: &str) -> Result<bool> {
    let stmt = client
        .prepare_cached("SELECT 1 FROM topics WHERE name = $1")
        .await
        .map_err(pg_error)?;
    Ok(client
        .query_opt(&stmt, &[&name])
        .await
        .map_err(pg_error)?
        .is_some())
}

/// A subscription from `spec, created_at, updated_at` and
/// [`health::STATUS_COLUMNS`].
fn subscription_from(row: &tokio_postgres::Row) -> Result<Subscription> {
    let spec: &str = get(row, 0)?;
    Ok(Subscription {
        spec: SubscriptionSpec::from_stored(spec)?,
        status: health::status(row, 3)?,
        created_at: timestamp(get(row, 1)?)?,
        updated_at: timestamp(get(row, 2)?)?,
    })
}

async fn read_subscription(client: &impl GenericClient, name: &str) -> Result<Subscription> {
    let stmt = client
        .prepare_cached(&format!(
            "SELECT spec, created_at, updated_at, {} FROM subscriptions WHERE name = $1",
            health::STATUS_COLUMNS
        ))
        .await
        .map_err(pg_error)?;
    let row = client
        .query_opt(&stmt, &[&name])
        .await
        .map_err(pg_error)?
        .ok_or_else(|| StoreError::not_found("subscription", name))?;
    subscription_from(&row)
}

async fn read_delivery(client: &impl GenericClient, id: &str) -> Result<(Delivery, CloudEvent)> {
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS}, e.attributes, e.data FROM deliveries d
         JOIN events e ON e.seq = d.event_seq WHERE d.id = $1"
    );
    let stmt = client.prepare_cached(&sql).await.map_err(pg_error)?;
    let row = client
        .query_opt(&stmt, &[&id])
        .await
        .map_err(pg_error)?
        .ok_or_else(|| StoreError::not_found("delivery", id))?;
    Ok((
        rows::delivery(&row)?,
        rows::event(&row, DELIVERY_COLUMN_COUNT)?,
    ))
}

#[async_trait]
impl Store for PostgresStore {
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

    async fn publish(
        &self,
        topic: &str,
        events: Vec<CloudEvent>,
        now: Timestamp,
    ) -> Result<Vec<PublishOutcome>> {
        let client = self.client().await?;
        // One statement: atomic without an explicit transaction.
        let outcomes = publish_in(&client, topic, events, now).await?;
        if outcomes.iter().any(|o| o.deliveries > 0) {
            self.wake();
        }
        Ok(outcomes)
    }

    async fn claim_due(&self, request: ClaimRequest) -> Result<ClaimBatch> {
        let mut client = self.client().await?;
        if request.wants.iter().any(|want| want.rate.is_some()) {
            return rate::claim_rated(&mut client, &request).await;
        }
        let limits: Vec<i64> = request.wants.iter().map(|w| i64::from(w.limit)).collect();
        claim_with(&client, &request, &limits).await
    }

    async fn complete_many(&self, completions: Vec<Completion>) -> Result<()> {
        if completions.is_empty() {
            return Ok(());
        }
        let mut client = self.client().await?;
        let fanned_out = complete_in(&mut client, &completions).await?;
        if fanned_out {
            self.wake();
        }
        Ok(())
    }

    async fn rescue_expired(&self, now: Timestamp) -> Result<u64> {
        let client = self.client().await?;
        // Rows another node is completing right now are skipped: their
        // completion wins, and the next rescue looks again.
        let moved = client
            .execute(
                "WITH expired AS (
                   SELECT id FROM deliveries
                   WHERE state = 'in_flight' AND lease_until < $1
                   FOR UPDATE SKIP LOCKED
                 ), recorded AS (
                   INSERT INTO attempts
                     (delivery_id, number, started_at, duration_ms, error, error_message, decision)
                   SELECT d.id, d.attempts, COALESCE(d.last_attempt_at, $1),
                          GREATEST($1 - COALESCE(d.last_attempt_at, $1), 0), 'interrupted',
                          'the attempt did not finish: its process stopped or its lease ran out',
                          json_build_object('kind', 'retry', 'at', $2::text, 'retry', d.attempts)::text
                   FROM deliveries d JOIN expired USING (id)
                   ON CONFLICT DO NOTHING
                 )
                 UPDATE deliveries d SET state = 'scheduled', next_attempt_at = $1,
                        lease_until = NULL, last_error = 'interrupted', last_status = NULL,
                        updated_at = $1
                 FROM expired WHERE d.id = expired.id",
                &[&millis(now), &now.to_string()],
            )
            .await
            .map_err(pg_error)?;
        if moved > 0 {
            self.wake();
        }
        Ok(moved)
    }

    async fn get_delivery(&self, id: &str) -> Result<DeliveryDetail> {
        let client = self.client().await?;
        let (delivery, event) = read_delivery(&client, id).await?;
        let sql = format!(
            "SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE delivery_id = $1 ORDER BY number"
        );
        let stmt = client.prepare_cached(&sql).await.map_err(pg_error)?;
        let attempts = client
            .query(&stmt, &[&id])
            .await
            .map_err(pg_error)?
            .iter()
            .map(rows::attempt)
            .collect::<Result<_>>()?;
        Ok(DeliveryDetail {
            delivery,
            event,
            attempts: crate::lifecycle::order_attempt_log(attempts),
        })
    }

    async fn list_deliveries(&self, query: DeliveryQuery) -> Result<DeliveryPage> {
        let client = self.client().await?;
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries d JOIN events e ON e.seq = d.event_seq
             WHERE d.subscription = $1
               AND ($2::text IS NULL OR d.state = $2)
               AND ($3::text IS NULL OR d.failure_reason = $3)
               AND ($4::text IS NULL OR d.id < $4)
             ORDER BY d.id DESC LIMIT $5"
        );
        let stmt = client.prepare_cached(&sql).await.map_err(pg_error)?;
        let limit = query.limit.max(1);
        let rows = client
            .query(
                &stmt,
                &[
                    &query.subscription,
                    &query.state.map(|s| s.as_str()),
                    &query.reason.map(|r| r.as_str()),
                    &query.before,
                    &big(limit + 1),
                ],
            )
            .await
            .map_err(pg_error)?;
        let mut deliveries = rows
            .iter()
            .map(rows::delivery)
            .collect::<Result<Vec<_>>>()?;
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

    async fn retry_now(&self, id: &str, now: Timestamp) -> Result<Delivery> {
        let client = self.client().await?;
        let changed = client
            .execute(
                "UPDATE deliveries SET state = 'scheduled', next_attempt_at = $2,
                        failure_reason = NULL, updated_at = $2,
                        -- Ended: a fresh budget, age and retention, as a
                        -- redrive gives. Scheduled: only due sooner.
                        attempts_before_redrive = CASE WHEN state IN ('failed', 'delivered')
                            THEN attempts ELSE attempts_before_redrive END,
                        retention_from = CASE WHEN state IN ('failed', 'delivered')
                            THEN $2 ELSE retention_from END
                 WHERE id = $1 AND state <> 'in_flight'",
                &[&id, &millis(now)],
            )
            .await
            .map_err(pg_error)?;
        let (delivery, _) = read_delivery(&client, id).await?;
        if changed == 0 {
            return Err(StoreError::Conflict(format!(
                "delivery {id:?} is in flight; retry it once this attempt ends"
            )));
        }
        self.wake();
        Ok(delivery)
    }

    async fn expire_retention(&self, now: Timestamp, limit: u32) -> Result<u64> {
        let mut client = self.client().await?;
        let (expired, fanned_out) = lifecycle::expire(&mut client, now, limit).await?;
        if fanned_out {
            self.wake();
        }
        Ok(expired)
    }

    async fn cancel_delivery(&self, id: &str, now: Timestamp) -> Result<Delivery> {
        let mut client = self.client().await?;
        let (delivery, fanned_out) = lifecycle::cancel(&mut client, id, now).await?;
        if fanned_out {
            self.wake();
        }
        Ok(delivery)
    }

    async fn count_redrivable(&self, filter: RedriveFilter) -> Result<u64> {
        let client = self.client().await?;
        lifecycle::count_redrivable(&client, &filter).await
    }

    async fn redrive_batch(&self, request: RedriveBatchRequest) -> Result<RedriveBatch> {
        let client = self.client().await?;
        let batch = lifecycle::redrive(&client, &request).await?;
        if batch.moved > 0 {
            self.wake();
        }
        Ok(batch)
    }

    async fn journal(&self, query: JournalQuery) -> Result<JournalPage> {
        let client = self.client().await?;
        lifecycle::journal(&client, &query).await
    }

    async fn purge_history(&self, request: PurgeRequest) -> Result<PurgeOutcome> {
        let mut client = self.client().await?;
        lifecycle::purge(&mut client, &request).await
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
        self.count_attempts_pg(subscription, since).await
    }

    async fn prune_attempt_counts(&self, before: Timestamp, limit: u32) -> Result<u64> {
        self.prune_attempt_counts_pg(before, limit).await
    }

    async fn change_health(&self, change: crate::HealthChange) -> Result<Option<Subscription>> {
        self.change_health_pg(&change).await
    }

    async fn set_paused(&self, name: &str, paused: bool) -> Result<Subscription> {
        self.set_paused_pg(name, paused).await
    }

    // --- console ---
    async fn search_deliveries(
        &self,
        query: crate::DeliverySearch,
    ) -> Result<crate::DeliverySearchPage> {
        let client = self.client().await?;
        console::search(&client, &query).await
    }

    async fn count_deliveries_by_state(
        &self,
        subscription: &str,
        since: Timestamp,
    ) -> Result<crate::StateCounts> {
        let client = self.client().await?;
        console::count_by_state(&client, subscription, since).await
    }

    async fn outcome_buckets(
        &self,
        query: crate::OutcomeBucketsQuery,
    ) -> Result<Vec<crate::OutcomeBucket>> {
        let client = self.client().await?;
        console::outcome_buckets(&client, &query).await
    }

    // --- security ---
    async fn create_token(&self, token: crate::TokenRecord) -> Result<()> {
        self.create_token_pg(token).await
    }

    async fn get_token(&self, id: &str) -> Result<crate::TokenRecord> {
        self.get_token_pg(id).await
    }

    async fn list_tokens(&self) -> Result<Vec<crate::TokenRecord>> {
        self.list_tokens_pg().await
    }

    async fn delete_token(&self, id: &str) -> Result<()> {
        self.delete_token_pg(id).await
    }

    async fn get_signing_secrets(
        &self,
        subscription: &str,
    ) -> Result<Option<crate::SigningSecrets>> {
        self.get_signing_secrets_pg(subscription).await
    }

    async fn ensure_signing_secret(
        &self,
        subscription: &str,
        current: String,
        now: Timestamp,
    ) -> Result<crate::SigningSecrets> {
        self.ensure_signing_secret_pg(subscription, current, now)
            .await
    }

    async fn rotate_signing_secret(
        &self,
        rotation: crate::SecretRotation,
    ) -> Result<crate::SigningSecrets> {
        self.rotate_signing_secret_pg(rotation).await
    }

    // --- ops ---
    async fn release_claims(&self, delivery_ids: Vec<String>, now: Timestamp) -> Result<u64> {
        self.release_claims_pg(&delivery_ids, now).await
    }

    async fn queue_stats(&self, now: Timestamp) -> Result<Vec<crate::QueueStats>> {
        self.queue_stats_pg(now).await
    }

    async fn readiness(&self) -> Result<crate::StoreReadiness> {
        self.readiness_pg().await
    }

    async fn check_writes(&self) -> Result<()> {
        // Taking a transaction id makes the commit write (and flush) a WAL
        // record, without touching any table.
        let client = self.client().await?;
        client
            .query_one("SELECT txid_current()", &[])
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    async fn backup_into(&self, _path: &std::path::Path) -> Result<()> {
        Err(StoreError::Invalid(
            "backups of a PostgreSQL store are taken with PostgreSQL's own tools (pg_dump, \
             base backups)"
                .into(),
        ))
    }

    async fn flush(&self) -> Result<()> {
        // Every write is committed (and so durable) when it returns.
        Ok(())
    }
}

/// Stores events and fans them out in one statement. The fan-out is decided
/// here (filters are Rust), and only the first occurrence of a `(source,
/// id)` in the batch can be new, as on SQLite.
pub(crate) async fn publish_in(
    client: &impl GenericClient,
    topic: &str,
    events: Vec<CloudEvent>,
    now: Timestamp,
) -> Result<Vec<PublishOutcome>> {
    let stmt = client
        .prepare_cached(
            "SELECT s.name, s.spec FROM topics t LEFT JOIN subscriptions s ON s.topic = t.name
             WHERE t.name = $1",
        )
        .await
        .map_err(pg_error)?;
    let rows = client.query(&stmt, &[&topic]).await.map_err(pg_error)?;
    if rows.is_empty() {
        return Err(StoreError::not_found("topic", topic));
    }
    let mut subscriptions = Vec::new();
    for row in &rows {
        let name: Option<String> = get(row, 0)?;
        let spec: Option<&str> = get(row, 1)?;
        if let (Some(name), Some(spec)) = (name, spec) {
            let spec = SubscriptionSpec::from_stored(spec)?;
            subscriptions.push((name, spec.filter));
        }
    }

    let mut sources = Vec::with_capacity(events.len());
    let mut ids = Vec::with_capacity(events.len());
    let mut types = Vec::with_capacity(events.len());
    let mut attributes = Vec::with_capacity(events.len());
    let mut data = Vec::with_capacity(events.len());
    let mut delivery_ids = Vec::new();
    let mut delivery_subscriptions = Vec::new();
    let mut delivery_sources = Vec::new();
    let mut delivery_event_ids = Vec::new();
    // Per event: how many deliveries it fans out to if it is new, and
    // whether it is the batch's first occurrence of its identity.
    let mut fan_out = Vec::with_capacity(events.len());
    let mut seen = std::collections::HashSet::new();
    for event in &events {
        let first = seen.insert((event.source.as_str(), event.id.as_str()));
        let mut count = 0;
        if first {
            sources.push(event.source.as_str());
            ids.push(event.id.as_str());
            types.push(event.ty.as_str());
            attributes.push(serde_json::to_string(event)?);
            data.push(event.data.as_deref());
            for (subscription, filter) in &subscriptions {
                if filter.matches(event) {
                    delivery_ids.push(uuid::Uuid::now_v7().to_string());
                    delivery_subscriptions.push(subscription.as_str());
                    delivery_sources.push(event.source.as_str());
                    delivery_event_ids.push(event.id.as_str());
                    count += 1;
                }
            }
        }
        fan_out.push((first, count));
    }
    // The guard is taken before any position is drawn and held until the
    // commit: journal readers stop below it (see `lifecycle::journal`).
    let stmt = client
        .prepare_cached(&format!(
            "WITH guard AS (
               SELECT pg_advisory_xact_lock_shared({guard}) AS held
             ), stored AS (
               INSERT INTO events (topic, source, id, type, attributes, data, published_at)
               SELECT $1, e.source, e.id, e.type, e.attributes, e.data, $7
               FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::bytea[])
                    AS e(source, id, type, attributes, data)
               CROSS JOIN guard
               ON CONFLICT (topic, source, id) DO NOTHING
               RETURNING seq, source, id
             ), fanned AS (
               INSERT INTO deliveries (id, subscription, event_seq, state, attempts,
                                       next_attempt_at, created_at, updated_at)
               SELECT f.id, f.subscription, stored.seq, 'scheduled', 0, $7, $7, $7
               FROM unnest($8::text[], $9::text[], $10::text[], $11::text[])
                    AS f(id, subscription, source, event_id)
               JOIN stored ON stored.source = f.source AND stored.id = f.event_id
               RETURNING 1
             )
             SELECT source, id FROM stored",
            guard = lifecycle::journal_guard_key()
        ))
        .await
        .map_err(pg_error)?;
    let stored = client
        .query(
            &stmt,
            &[
                &topic,
                &sources,
                &ids,
                &types,
                &attributes,
                &data,
                &millis(now),
                &delivery_ids,
                &delivery_subscriptions,
                &delivery_sources,
                &delivery_event_ids,
            ],
        )
        .await
        .map_err(pg_error)?;
    let mut new = std::collections::HashSet::with_capacity(stored.len());
    for row in &stored {
        let source: String = get(row, 0)?;
        let id: String = get(row, 1)?;
        new.insert((source, id));
    }
    Ok(events
        .into_iter()
        .zip(fan_out)
        .map(|(event, (first, count))| {
            let is_new = first && new.contains(&(event.source.clone(), event.id.clone()));
            PublishOutcome {
                duplicate: !is_new,
                deliveries: if is_new { count } else { 0 },
                id: event.id,
                source: event.source,
            }
        })
        .collect())
}

/// Claims with `limits` in place of the wants' own (one per want, in
/// order), in one statement.
async fn claim_with(
    client: &impl GenericClient,
    request: &ClaimRequest,
    limits: &[i64],
) -> Result<ClaimBatch> {
    let now_ms = millis(request.now);
    let lease_until = request
        .now
        .checked_add(request.lease)
        .map_err(|err| StoreError::Invalid(format!("lease too long: {err}")))?;
    let names: Vec<&str> = request
        .wants
        .iter()
        .map(|w| w.subscription.as_str())
        .collect();
    let due_by = request
        .wants
        .iter()
        .map(|w| {
            request
                .now
                .checked_add(w.lookahead)
                .map(millis)
                .map_err(|err| StoreError::Invalid(format!("lookahead too long: {err}")))
        })
        .collect::<Result<Vec<i64>>>()?;
    let mut batch = ClaimBatch::default();
    // The earliest due delivery of the wanted subscriptions, besides those
    // this statement claims; `{claimed}` names what to leave out.
    let next_due = |claimed: &str| {
        format!(
            "SELECT min(first_due.at) AS at FROM unnest($1::text[]) AS w(subscription)
             JOIN subscriptions s ON s.name = w.subscription
               AND NOT s.paused AND s.health <> 'disabled'
             CROSS JOIN LATERAL (
               SELECT next_attempt_at AS at FROM deliveries
               WHERE subscription = w.subscription AND state = 'scheduled' {claimed}
               ORDER BY next_attempt_at LIMIT 1
             ) first_due"
        )
    };
    let due: Option<i64> = if request.limit_total > 0 && limits.iter().any(|l| *l > 0) {
        // Each subscription's due rows, oldest first, skipping rows another
        // node is claiming: nodes never queue behind each other. The
        // subscriptions are walked in order and the walk stops at the
        // total, so rows past it are never locked. What is due next comes
        // back in the same statement (a row with no delivery when nothing
        // was claimed).
        let sql = format!(
            "WITH due AS (
               SELECT picked.id, picked.next_attempt_at AS due_at
               FROM unnest($1::text[], $2::bigint[], $6::bigint[])
                    WITH ORDINALITY AS w(subscription, lim, due_by, ord)
               -- Paused and disabled subscriptions get no claims.
               JOIN subscriptions s ON s.name = w.subscription
                 AND NOT s.paused AND s.health <> 'disabled'
               CROSS JOIN LATERAL (
                 SELECT id, next_attempt_at FROM deliveries
                 WHERE subscription = w.subscription AND state = 'scheduled'
                   AND next_attempt_at <= w.due_by
                 ORDER BY next_attempt_at LIMIT w.lim
                 FOR UPDATE SKIP LOCKED
               ) picked
               WHERE w.lim > 0
               LIMIT $5
             ), claimed AS (
               -- A delivery claimed ahead starts when it falls due: that
               -- is its attempt's time.
               UPDATE deliveries d SET state = 'in_flight', attempts = d.attempts + 1,
                      lease_until = $4, last_attempt_at = GREATEST($3, due.due_at),
                      first_attempt_at = COALESCE(d.first_attempt_at, GREATEST($3, due.due_at)),
                      next_attempt_at = NULL, updated_at = $3
               FROM due WHERE d.id = due.id
               RETURNING d.*, due.due_at
             ), next AS ({next})
             SELECT {DELIVERY_COLUMNS}, e.attributes, e.data, next.at, d.due_at
             FROM next LEFT JOIN (claimed d JOIN events e ON e.seq = d.event_seq) ON true
             ORDER BY d.due_at, d.id",
            next = next_due("AND id NOT IN (SELECT id FROM due)"),
        );
        let stmt = client.prepare_cached(&sql).await.map_err(pg_error)?;
        let rows = client
            .query(
                &stmt,
                &[
                    &names,
                    &limits,
                    &now_ms,
                    &millis(lease_until),
                    &i64::from(request.limit_total),
                    &due_by,
                ],
            )
            .await
            .map_err(pg_error)?;
        let mut due = None;
        for row in &rows {
            due = get(row, DELIVERY_COLUMN_COUNT + 2)?;
            if get::<Option<&str>>(row, 0)?.is_none() {
                continue;
            }
            batch.claimed.push(ClaimedDelivery {
                delivery: rows::delivery(row)?,
                event: rows::event(row, DELIVERY_COLUMN_COUNT)?,
                lease_until,
                due_at: timestamp(get(row, DELIVERY_COLUMN_COUNT + 3)?)?,
            });
        }
        due
    } else {
        let stmt = client
            .prepare_cached(&next_due(""))
            .await
            .map_err(pg_error)?;
        let row = client.query_one(&stmt, &[&names]).await.map_err(pg_error)?;
        get(&row, 0)?
    };
    batch.next_due_at = due.map(timestamp).transpose()?;
    Ok(batch)
}

/// Records attempts and applies their decisions in one statement; a
/// failure then dead-letters in the same transaction. Returns whether
/// dead-lettering fanned out new deliveries.
async fn complete_in(
    client: &mut deadpool_postgres::Object,
    completions: &[Completion],
) -> Result<bool> {
    let mut ids = Vec::with_capacity(completions.len());
    let mut numbers = Vec::with_capacity(completions.len());
    let mut states = Vec::with_capacity(completions.len());
    let mut next_at = Vec::with_capacity(completions.len());
    let mut reasons = Vec::with_capacity(completions.len());
    let mut statuses = Vec::with_capacity(completions.len());
    let mut errors = Vec::with_capacity(completions.len());
    let mut ended = Vec::with_capacity(completions.len());
    let mut started = Vec::with_capacity(completions.len());
    let mut durations = Vec::with_capacity(completions.len());
    let mut messages = Vec::with_capacity(completions.len());
    let mut snippets = Vec::with_capacity(completions.len());
    let mut decisions = Vec::with_capacity(completions.len());
    let mut any_failed = false;
    let mut ended_at_of = HashMap::new();
    for completion in completions {
        let attempt = &completion.attempt;
        let (state, next, reason) = match attempt.decision {
            Decision::Delivered => ("delivered", None, None),
            Decision::Retry { at, .. } => ("scheduled", Some(millis(at)), None),
            Decision::Failed { reason } => {
                any_failed = true;
                ("failed", None, Some(rows::enum_name(&reason)?))
            }
        };
        let duration = i64::try_from(attempt.duration_ms).unwrap_or(i64::MAX);
        let ended_at = millis(attempt.started_at).saturating_add(duration);
        ended_at_of.insert(completion.delivery_id.as_str(), ended_at);
        ids.push(completion.delivery_id.as_str());
        numbers.push(i32::try_from(attempt.number).unwrap_or(i32::MAX));
        states.push(state);
        next_at.push(next);
        reasons.push(reason);
        statuses.push(attempt.status.map(i32::from));
        errors.push(attempt.error.map(|class| class.as_str()));
        ended.push(ended_at);
        started.push(millis(attempt.started_at));
        durations.push(duration);
        messages.push(attempt.error_message.as_deref());
        snippets.push(attempt.response_snippet.as_deref());
        decisions.push(serde_json::to_string(&attempt.decision)?);
    }
    let sql = format!(
        "WITH input AS (
           SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::bigint[], $5::text[],
                                $6::int[], $7::text[], $8::bigint[], $9::bigint[], $10::bigint[],
                                $11::text[], $12::text[], $13::text[])
             AS i(id, number, state, next_at, reason, status, error, ended_at, started_at,
                  duration_ms, error_message, snippet, decision)
         ), updated AS (
           UPDATE deliveries d SET state = i.state, next_attempt_at = i.next_at,
                  failure_reason = i.reason, last_status = i.status, last_error = i.error,
                  lease_until = NULL, updated_at = i.ended_at
           FROM input i
           WHERE d.id = i.id AND d.state = 'in_flight' AND d.attempts = i.number
           RETURNING d.id, d.state
         ), recorded AS (
           INSERT INTO attempts (delivery_id, number, started_at, duration_ms, status, error,
                                 error_message, response_snippet, decision)
           SELECT i.id, i.number, i.started_at, i.duration_ms, i.status, i.error,
                  i.error_message, i.snippet, i.decision
           FROM input i WHERE EXISTS (SELECT 1 FROM deliveries d WHERE d.id = i.id)
           ON CONFLICT DO NOTHING
           RETURNING delivery_id, number
         ), {}
         SELECT id FROM updated WHERE state = 'failed'",
        health::COUNT_RECORDED
    );
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 13] = [
        &ids, &numbers, &states, &next_at, &reasons, &statuses, &errors, &ended, &started,
        &durations, &messages, &snippets, &decisions,
    ];
    if !any_failed {
        // The hot path: one statement, atomic on its own.
        let stmt = client.prepare_cached(&sql).await.map_err(pg_error)?;
        client.query(&stmt, &params).await.map_err(pg_error)?;
        return Ok(false);
    }
    let tx = client.transaction().await.map_err(pg_error)?;
    let stmt = tx.prepare_cached(&sql).await.map_err(pg_error)?;
    let failed = tx.query(&stmt, &params).await.map_err(pg_error)?;
    let mut fanned_out = false;
    for row in &failed {
        let id: String = get(row, 0)?;
        let ended_at = ended_at_of.get(id.as_str()).copied().unwrap_or_default();
        fanned_out |= lifecycle::dead_letter_in(&tx, &id, timestamp(ended_at)?).await?;
    }
    tx.commit().await.map_err(pg_error)?;
    Ok(fanned_out)
}

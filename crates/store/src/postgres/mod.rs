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
mod deliveries;
mod health;
mod lifecycle;
mod listen;
mod ops;
mod partition_drop;
mod partitions;
mod rate;
pub(crate) mod rows;
mod schema;
mod scratch;
mod security;
mod stats;
mod subscriptions;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

use deliveries::publish_in;
mod topics;

pub use scratch::ScratchSchema;
pub use stats::{DatabaseActivity, database_activity};

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod};
use jiff::Timestamp;
use redrive_core::{CloudEvent, Delivery, Subscription, SubscriptionSpec, Topic};
use tokio::sync::Notify;
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

use crate::plan::{CompletionRow, FanOut};
use crate::store::*;
use crate::{Result, StoreError};
use rows::{ATTEMPT_COLUMNS, DELIVERY_COLUMN_COUNT, DELIVERY_COLUMNS, get, millis, timestamp};

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
    /// Connections for claims and attempt outcomes, whose commits do not
    /// wait for the log to reach the disk (`synchronous_commit = off`): a
    /// database crash may undo the last of them, which at worst pushes
    /// again what was in flight, as at-least-once allows. A later durable
    /// commit (a publish) flushes them too: the log is one sequence.
    bookkeeping: Pool,
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

const GENERIC_PLANS: &str = "-c plan_cache_mode=force_generic_plan";
/// Connections for bookkeeping: one claim loop and one recorder per node
/// use one each at a time; lease rescues and releases are rare.
const BOOKKEEPING_POOL_SIZE: usize = 4;

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
        // Every statement is prepared once per connection and run many
        // times; on the partitioned history tables planning each run anew
        // (PostgreSQL's first five runs, and any whose generic plan looks
        // dearer) cost more than running it. The console's queries are
        // checked to stay index ranges under generic plans. Options in the
        // URL come after, so an operator's own setting wins.
        let options = match config.get_options() {
            Some(own) => format!("{GENERIC_PLANS} {own}"),
            None => GENERIC_PLANS.to_owned(),
        };
        config.options(&options);
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
        let mut unsynced = config.clone();
        unsynced.options(&format!("-c synchronous_commit=off {options}"));
        let bookkeeping = Pool::builder(Manager::from_config(
            unsynced,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        ))
        .max_size(BOOKKEEPING_POOL_SIZE)
        .build()
        .map_err(|err| StoreError::Invalid(format!("cannot build the connection pool: {err}")))?;
        let wakeups = Arc::new(Notify::new());
        let own = listen::Announcer::default();
        let listener = tokio::spawn(listen::run(config.clone(), wakeups.clone(), own.clone()));
        let announce = Arc::new(Notify::new());
        let announcer = tokio::spawn(listen::announce(config, announce.clone(), own));
        Ok(PostgresStore {
            pool,
            bookkeeping,
            wakeups,
            announce,
            listener,
            announcer,
        })
    }

    async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.pool.get().await.map_err(pool_error)
    }

    /// A connection for bookkeeping: see `PostgresStore::bookkeeping`.
    async fn bookkeeping_client(&self) -> Result<deadpool_postgres::Object> {
        self.bookkeeping.get().await.map_err(pool_error)
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

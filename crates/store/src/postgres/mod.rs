//! The shared store: PostgreSQL, for several redrive nodes on one database.
//!
//! Every node accepts publishes and delivers. Claims take due rows with
//! `FOR UPDATE SKIP LOCKED` under a lease, so nodes never wait on each other
//! and a node that dies leaves leases any other node rescues. Writes that
//! make work due wake the node's dispatcher and, through one announcing
//! connection, every other node's, which listen on a dedicated connection
//! (`wakeups.rs`), with polling as the fallback. A subscription's rate limit
//! is one token bucket row that every node's claims of it lock in turn
//! (`claims.rs`). Work that must happen once (retention expiry, history
//! purge) runs under a transaction-scoped advisory lock; a node that can't
//! take it skips its turn.
//!
//! Mirrored file for file by `sqlite/`: each file holds one job for this
//! backend — the store's nouns (`topics`, `subscriptions`, `deliveries`,
//! `lifecycle`, `health`, `console`, `security`, `ops`, one per sub-trait of
//! `Store`), `connection` (the pools, the publish writers and driver
//! errors), `claims` (the `ClaimStore`: leases rescued, released and handed
//! back; and rate buckets), `wakeups` (LISTEN/NOTIFY), `history` (the
//! purge, dropping day partitions), `schema` (migrations and day
//! partitions), `rows` (row decoding) and `testing` (test schemas, feature
//! `testing`).

mod claims;
mod connection;
mod console;
mod deliveries;
#[cfg(test)]
mod explain;
mod health;
mod history;
mod lifecycle;
mod ops;
pub(crate) mod rows;
mod schema;
mod security;
mod subscriptions;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod topics;
mod wakeups;

pub use connection::DEFAULT_POOL_SIZE;
pub use ops::{DatabaseActivity, ScratchSchema, database_activity};

use std::sync::Arc;

use deadpool_postgres::{GenericClient, Pool};
use jiff::Timestamp;
use redrive_core::{CloudEvent, Delivery, Subscription, SubscriptionSpec};
use tokio::sync::Notify;
use tokio_postgres::NoTls;

use crate::{Result, StoreError};
pub(crate) use connection::{pg_error, try_xact_lock};
use deliveries::publish_in;
use rows::{DELIVERY_COLUMN_COUNT, DELIVERY_COLUMNS, get, timestamp};

pub struct PostgresStore {
    pool: Pool,
    /// Connections for claims and attempt outcomes, whose commits do not
    /// wait for the log to reach the disk (`synchronous_commit = off`): a
    /// database crash may undo the last of them, which at worst pushes
    /// again what was in flight, as at-least-once allows. A later durable
    /// commit (a publish) flushes them too: the log is one sequence.
    bookkeeping: Pool,
    /// Publishes, written together when they arrive together.
    publisher: connection::Publisher,
    wakeups: Arc<Notify>,
    listening: wakeups::Listening,
    /// Slots the dispatcher offers this node's publishes.
    handoff: Arc<crate::Handoff>,
}

impl PostgresStore {
    /// Connects to `url` (a `postgres://` URL; `pool_size=N` among its query
    /// parameters sets the pool size), migrates the schema and starts
    /// listening for wake-ups. Deliveries other nodes hold are left alone:
    /// only leases that ran out are rescued, by the dispatcher.
    pub async fn connect(url: &str, now: Timestamp) -> Result<PostgresStore> {
        let (config, pool_size) = connection::config(url)?;
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
        if schema::ensure(&mut client, Timestamp::now())
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

        let pool = connection::pool(&config, pool_size)?;
        let bookkeeping = connection::bookkeeping_pool(&config)?;
        let handoff = crate::Handoff::new();
        let publisher =
            connection::Publisher::start(pool.clone(), publish_writers(pool_size), handoff.clone());
        let wakeups = Arc::new(Notify::new());
        let listening = wakeups::Listening::start(&config, wakeups.clone());
        Ok(PostgresStore {
            pool,
            bookkeeping,
            publisher,
            wakeups,
            listening,
            handoff,
        })
    }
}

/// Publish writers per node: a quarter of the pool, so that publishes
/// written together leave connections for everything else.
fn publish_writers(pool_size: usize) -> usize {
    (pool_size / 4).max(1)
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

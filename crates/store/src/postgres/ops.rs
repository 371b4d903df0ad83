//! Operations on PostgreSQL: backlog statistics, readiness and write
//! checks for the server; for benchmarks, the database's activity counters
//! and throw-away schemas (`redrive bench-console` runs in one, and so do
//! the tests, through `testing.rs`). Releasing claims at shutdown is one
//! statement in `deliveries.rs`; backups are PostgreSQL's own tools'.

use std::str::FromStr;

use async_trait::async_trait;
use jiff::Timestamp;
use tokio_postgres::NoTls;

use super::connection::split_pool_size;
use super::rows::{get, millis, timestamp};
use super::{PostgresStore, pg_error, schema};
use crate::ops::{QueueStats, StoreReadiness};
use crate::{Capabilities, OpsStore, Result, StoreError};

pub(super) fn count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

#[async_trait]
impl OpsStore for PostgresStore {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            online_backup: false,
            shared_rate_buckets: true,
            cross_process_wakeups: true,
        }
    }

    async fn queue_stats(&self, now: Timestamp) -> Result<Vec<crate::QueueStats>> {
        let client = self.client().await?;
        // Only scheduled and in-flight rows, on index ranges
        // (`deliveries_due`, and `deliveries_recent_by_state` per
        // subscription), so the cost follows the backlog, not the kept
        // history.
        let rows = client
            .query(
                "SELECT s.name, due.due, due.oldest, due.retries, flight.count
                 FROM subscriptions s
                 CROSS JOIN LATERAL (
                   SELECT count(*) AS scheduled,
                          count(*) FILTER (WHERE next_attempt_at <= $1) AS due,
                          min(next_attempt_at) FILTER (WHERE next_attempt_at <= $1) AS oldest,
                          count(*) FILTER (WHERE attempts > 0) AS retries
                   FROM deliveries WHERE subscription = s.name AND state = 'scheduled'
                 ) due
                 CROSS JOIN LATERAL (
                   SELECT count(*) FROM deliveries
                   WHERE subscription = s.name AND state = 'in_flight'
                 ) flight
                 WHERE due.scheduled > 0 OR flight.count > 0
                 ORDER BY s.name",
                &[&millis(now)],
            )
            .await
            .map_err(pg_error)?;
        rows.iter()
            .map(|row| {
                Ok(QueueStats {
                    subscription: get(row, 0)?,
                    due: count(get(row, 1)?),
                    oldest_due_at: get::<Option<i64>>(row, 2)?.map(timestamp).transpose()?,
                    retries_scheduled: count(get(row, 3)?),
                    in_flight: count(get(row, 4)?),
                })
            })
            .collect()
    }

    async fn readiness(&self) -> Result<crate::StoreReadiness> {
        let client = self.client().await?;
        let row = client
            .query_one("SELECT version FROM schema_version", &[])
            .await
            .map_err(pg_error)?;
        let version: i32 = get(&row, 0)?;
        Ok(StoreReadiness {
            schema_version: u64::try_from(version).unwrap_or(0),
            latest_schema_version: schema::latest_version() as u64,
        })
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

/// Cumulative counters of the current database (`pg_stat_database`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DatabaseActivity {
    /// Committed transactions; every statement outside an explicit
    /// transaction is one.
    pub commits: i64,
    pub rollbacks: i64,
    pub rows_inserted: i64,
    pub rows_updated: i64,
    pub rows_deleted: i64,
}

impl DatabaseActivity {
    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &DatabaseActivity) -> DatabaseActivity {
        DatabaseActivity {
            commits: self.commits - earlier.commits,
            rollbacks: self.rollbacks - earlier.rollbacks,
            rows_inserted: self.rows_inserted - earlier.rows_inserted,
            rows_updated: self.rows_updated - earlier.rows_updated,
            rows_deleted: self.rows_deleted - earlier.rows_deleted,
        }
    }
}

/// Reads the counters of the database `url` points at. Backends publish
/// their counters about once a second, so wait that long after the work.
pub async fn database_activity(url: &str) -> Result<DatabaseActivity> {
    let (url, _) = split_pool_size(url)?;
    let config = tokio_postgres::Config::from_str(&url)
        .map_err(|err| StoreError::Invalid(format!("invalid database URL: {err}")))?;
    let (client, connection) = config.connect(NoTls).await.map_err(pg_error)?;
    let driver = tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_deleted
             FROM pg_stat_database WHERE datname = current_database()",
            &[],
        )
        .await
        .map_err(pg_error)?;
    let activity = DatabaseActivity {
        commits: row.try_get(0).map_err(pg_error)?,
        rollbacks: row.try_get(1).map_err(pg_error)?,
        rows_inserted: row.try_get(2).map_err(pg_error)?,
        rows_updated: row.try_get(3).map_err(pg_error)?,
        rows_deleted: row.try_get(4).map_err(pg_error)?,
    };
    drop(client);
    let _ = driver.await;
    Ok(activity)
}

/// Throw-away schemas: a schema of its own, with a random name, for a run
/// that must not touch anything else in the database, dropped when the
/// guard drops.
/// A schema that exists until this guard drops.
pub struct ScratchSchema {
    base_url: String,
    pub name: String,
    /// The base URL with this schema as the search path.
    pub url: String,
}

impl ScratchSchema {
    /// Creates a fresh schema named `{prefix}_{random}` in the database at
    /// `base_url`.
    pub async fn create(base_url: &str, prefix: &str) -> Result<ScratchSchema, String> {
        let name = format!("{prefix}_{}", uuid::Uuid::now_v7().simple());
        // Connections of this run carry the schema's name, so the guard can
        // end them even while the run's runtime is no longer running them.
        let config = tokio_postgres::Config::from_str(base_url)
            .map_err(|err| format!("invalid database URL: {err}"))?;
        let (client, connection) = config
            .connect(NoTls)
            .await
            .map_err(|err| format!("cannot connect to {base_url}: {err}"))?;
        let driver = tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .await
            .map_err(|err| format!("cannot create schema {name}: {}", super::pg_error(err)))?;
        drop(client);
        let _ = driver.await;
        let separator = if base_url.contains('?') { '&' } else { '?' };
        let url = format!(
            "{base_url}{separator}options=-c%20search_path%3D{name}&application_name={name}"
        );
        Ok(ScratchSchema {
            base_url: base_url.to_owned(),
            name,
            url,
        })
    }
}

impl Drop for ScratchSchema {
    fn drop(&mut self) {
        let base_url = self.base_url.clone();
        let name = self.name.clone();
        // Drop may run inside a runtime, which must not block on
        // itself: the schema is dropped from a thread with its own runtime.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|err| err.to_string())?;
            runtime.block_on(async move {
                let config =
                    tokio_postgres::Config::from_str(&base_url).map_err(|err| err.to_string())?;
                let (client, connection) =
                    config.connect(NoTls).await.map_err(|err| err.to_string())?;
                tokio::spawn(connection);
                // A store of the run may still be open, mid-transaction,
                // on a runtime that is blocked on this very drop: end its
                // connections so their locks go, then drop the schema.
                client
                    .execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                         WHERE application_name = $1 AND pid <> pg_backend_pid()",
                        &[&name],
                    )
                    .await
                    .map_err(|err| super::pg_error(err).to_string())?;
                client
                    .batch_execute(&format!(
                        "SET lock_timeout = '10s'; DROP SCHEMA IF EXISTS {name} CASCADE"
                    ))
                    .await
                    .map_err(|err| super::pg_error(err).to_string())
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(err)) => eprintln!("cannot drop schema {}: {err}", self.name),
            Err(_) => eprintln!("cannot drop schema {}: the thread panicked", self.name),
        }
    }
}

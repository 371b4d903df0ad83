//! Database-wide activity counters, for benchmarks: how much work
//! PostgreSQL did per delivered event.

use std::str::FromStr;

use tokio_postgres::NoTls;

use super::{pg_error, split_pool_size};
use crate::{Result, StoreError};

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

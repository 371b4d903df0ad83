//! Connections to PostgreSQL: the URL (with redrive's own `pool_size`),
//! the pool every store method takes a connection from, and what a driver
//! error means for the caller. Writes need no writer of their own: each is
//! one statement or one short transaction on a pooled connection, durable
//! when it commits, and nodes coordinate through row locks and advisory
//! locks rather than in-process queues.

use std::str::FromStr;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

use super::PostgresStore;
use crate::{Result, StoreError};

/// Connections per node unless the URL's `pool_size` says otherwise.
pub const DEFAULT_POOL_SIZE: usize = 16;

/// Reads a `postgres://` URL; `pool_size=N` among its query parameters
/// sets the pool size. Names the connections `redrive` unless the URL
/// names them.
pub(super) fn config(url: &str) -> Result<(tokio_postgres::Config, usize)> {
    let (url, pool_size) = split_pool_size(url)?;
    let mut config = tokio_postgres::Config::from_str(&url)
        .map_err(|err| StoreError::Invalid(format!("invalid database URL: {err}")))?;
    if config.get_application_name().is_none() {
        config.application_name("redrive");
    }
    // Every statement is prepared once per connection and run many times;
    // on the partitioned history tables planning each run anew (PostgreSQL's
    // first five runs, and any whose generic plan looks dearer) cost more
    // than running it. The console's queries are checked to stay index
    // ranges under generic plans. Options in the URL come after, so an
    // operator's own setting wins.
    let options = match config.get_options() {
        Some(own) => format!("{GENERIC_PLANS} {own}"),
        None => GENERIC_PLANS.to_owned(),
    };
    config.options(&options);
    Ok((config, pool_size))
}

const GENERIC_PLANS: &str = "-c plan_cache_mode=force_generic_plan";

/// Connections for bookkeeping: one claim loop and one recorder per node
/// use one each at a time; lease rescues and releases are rare.
const BOOKKEEPING_POOL_SIZE: usize = 4;

/// The pool for claims and attempt outcomes (see `PostgresStore`'s
/// `bookkeeping`): commits that do not wait for the log flush.
pub(super) fn bookkeeping_pool(config: &tokio_postgres::Config) -> Result<Pool> {
    let mut unsynced = config.clone();
    let options = config.get_options().unwrap_or_default();
    unsynced.options(format!("-c synchronous_commit=off {options}"));
    pool(&unsynced, BOOKKEEPING_POOL_SIZE)
}

/// The pool of a store: connections are opened as methods need them.
pub(super) fn pool(config: &tokio_postgres::Config, size: usize) -> Result<Pool> {
    let manager = Manager::from_config(
        config.clone(),
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .build()
        .map_err(|err| StoreError::Invalid(format!("cannot build the connection pool: {err}")))
}

impl PostgresStore {
    /// A pooled connection, for one method's statements.
    pub(super) async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.pool.get().await.map_err(pool_error)
    }

    /// A connection for bookkeeping: see `PostgresStore::bookkeeping`.
    pub(super) async fn bookkeeping_client(&self) -> Result<deadpool_postgres::Object> {
        self.bookkeeping.get().await.map_err(pool_error)
    }
}

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

/// Takes redrive's own `pool_size` parameter out of the URL, which the
/// driver would refuse.
pub(super) fn split_pool_size(url: &str) -> Result<(String, usize)> {
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

//! The embedded store: SQLite in WAL mode in a data directory owned by one
//! process. Writes go through a single writer thread that group-commits
//! (synchronous = FULL, so a commit is on disk when it returns); reads use a
//! small pool of connections on the blocking thread pool.

mod console;
mod deliveries;
mod health;
mod lifecycle;
mod ops;
mod readers;
pub(crate) mod rows;
mod schema;
mod security;
mod subscriptions;
mod topics;
mod writer;

use deliveries::publish;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use jiff::Timestamp;
use redrive_core::{CloudEvent, Delivery, Subscription, SubscriptionSpec, Topic};
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::Notify;

use crate::plan::{CompletionRow, FanOut};
use crate::store::*;
use crate::{Result, StoreError};
use readers::Readers;
use rows::{ATTEMPT_COLUMNS, DELIVERY_COLUMN_COUNT, DELIVERY_COLUMNS, millis, timestamp};
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
        // Savepoints' and statements' undo journals in memory: on disk they
        // cost a write system call per page a write job first touches.
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA busy_timeout = 5000;
             PRAGMA cache_size = -32000;
             PRAGMA temp_store = MEMORY;",
        )?;
        fix_query_plans(&conn)?;
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

/// One plan per statement, made when it is first prepared. Otherwise SQLite
/// prepares a cached statement again whenever a parameter it compared with a
/// partial index's condition is bound anew — every run of the hot path's
/// statements, a tenth of the server's CPU. Every statement here names its
/// states as literals, so the plans need no parameter's value.
pub(crate) fn fix_query_plans(conn: &Connection) -> Result<()> {
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(())
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

//! The embedded store: SQLite in WAL mode in a data directory owned by one
//! process. Writes go through a single writer thread that group-commits:
//! publishes and API changes are on disk when they return (fsync'd), claims
//! and attempt outcomes are committed at once and fsync'd with the next
//! durable commit (see `connection.rs`); reads use a small pool of
//! connections on the blocking thread pool.
//!
//! Mirrored file for file by `postgres/`: each file holds one job for this
//! backend — the store's nouns (`topics`, `subscriptions`, `deliveries`,
//! `lifecycle`, `health`, `console`, `security`, `ops`, one per sub-trait of
//! `Store`), `connection` (the writer thread and the read pool), `claims`
//! (the `ClaimStore`: leases rescued, released and handed back),
//! `wakeups` (the in-process signal), `history` (the purge), `schema` (migrations), `rows` (row decoding) and
//! `testing` (a store in a temporary directory, feature `testing`).

mod checkpointer;
mod claims;
mod connection;
mod console;
mod deliveries;
#[cfg(test)]
mod handoff_tests;
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

use deliveries::publish;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use jiff::Timestamp;
use redrive_core::{CloudEvent, Delivery, Subscription, SubscriptionSpec};
use rusqlite::{Connection, OptionalExtension};
use tokio::sync::Notify;

use crate::{Result, StoreError};
use connection::{Readers, Writer};
use rows::{DELIVERY_COLUMNS, timestamp};

pub(crate) const DATABASE_FILE: &str = "redrive.db";
const LOCK_FILE: &str = "redrive.lock";

pub struct SqliteStore {
    writer: Writer,
    readers: Arc<Readers>,
    wakeups: Arc<Notify>,
    /// Slots the dispatcher offers the writer's publishes.
    handoff: Arc<crate::Handoff>,
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
        // Checkpoints: see `checkpointer`.
        // An 8 MiB page cache: the pages a commit rewrites are few and hot,
        // and when SQLite splits a B-tree page it parks one page on a high
        // number for a moment, after which the commit walks the whole
        // cache's hash table to drop it (1.4 % of the server's CPU with
        // 32 MiB; about 3 % less CPU per event with 8 MiB).
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA busy_timeout = 5000;
             PRAGMA cache_size = -8000;
             PRAGMA temp_store = MEMORY;",
        )?;
        connection::keep_prepared_statements(&conn)?;
        schema::migrate(&conn)?;
        lifecycle::ensure_system_topic(&conn, now)?;
        let recovered = claims::rescue(&conn, now, None)?;
        if recovered > 0 {
            tracing::info!(
                recovered,
                "deliveries left in flight by a previous process are due again"
            );
        }
        let handoff = crate::Handoff::new();
        Ok(SqliteStore {
            writer: Writer::start(conn, &path, handoff.clone())?,
            readers: Arc::new(Readers::new(path.clone())),
            wakeups: wakeups::signal(),
            handoff,
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
        .query_row([id], rows::delivery_with_event)
        .optional()?
        .ok_or_else(|| StoreError::not_found("delivery", id))
}

/// `items` grouped by key: keys in the order first seen, each group's items
/// in their order. The writer groups what one commit holds (publishes by
/// topic, attempt counts by minute and outcome): a few keys, so a list.
fn grouped_in_order<K: PartialEq, V>(items: impl IntoIterator<Item = (K, V)>) -> Vec<(K, Vec<V>)> {
    let mut groups: Vec<(K, Vec<V>)> = Vec::new();
    for (key, item) in items {
        match groups.iter_mut().find(|(known, _)| *known == key) {
            Some((_, group)) => group.push(item),
            None => groups.push((key, vec![item])),
        }
    }
    groups
}

/// The steps of `sql`'s query plan on a freshly migrated schema, each
/// parameter bound to 0: for tests that the writer's statements read
/// through indexes.
#[cfg(test)]
pub(crate) fn plan_on_fresh_schema(sql: &str) -> Vec<String> {
    let conn = Connection::open_in_memory().unwrap();
    schema::migrate(&conn).unwrap();
    let mut explain = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
    let zeros = vec![0; explain.parameter_count()];
    explain
        .query_map(rusqlite::params_from_iter(zeros), |row| row.get(3))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

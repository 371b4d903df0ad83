//! Operational queries of the embedded store: releasing claims at shutdown,
//! backlog statistics, readiness and online backups.

use std::collections::BTreeMap;
use std::path::Path;

use async_trait::async_trait;
use jiff::Timestamp;
use rusqlite::{Connection, OpenFlags};

use super::rows::{millis, timestamp};
use super::{SqliteStore, schema};
use crate::ops::{QueueStats, StoreReadiness};
use crate::{Capabilities, OpsStore, Result, StoreError};

pub(super) fn queue_stats(conn: &Connection, now: Timestamp) -> Result<Vec<QueueStats>> {
    let now_ms = millis(now);
    let mut stats: BTreeMap<String, QueueStats> = BTreeMap::new();
    // Both queries stay on index ranges of scheduled and in-flight rows
    // (`deliveries_due`, and `deliveries_recent_by_state` per
    // subscription), so their cost follows the backlog, not the kept
    // history.
    let mut scheduled = conn.prepare_cached(
        "SELECT subscription,
                SUM(next_attempt_at <= ?1),
                MIN(CASE WHEN next_attempt_at <= ?1 THEN next_attempt_at END),
                SUM(attempts > 0)
         FROM deliveries WHERE state = 'scheduled' GROUP BY subscription",
    )?;
    let rows = scheduled.query_map([now_ms], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, Option<i64>>(1)?.unwrap_or(0),
            row.get::<_, Option<i64>>(2)?,
            row.get::<_, Option<i64>>(3)?.unwrap_or(0),
        ))
    })?;
    for row in rows {
        let (subscription, due, oldest, retries) = row?;
        let entry = stats
            .entry(subscription.clone())
            .or_insert_with(|| empty(subscription));
        entry.due = u64::try_from(due).unwrap_or(0);
        entry.oldest_due_at = oldest.map(timestamp).transpose()?;
        entry.retries_scheduled = u64::try_from(retries).unwrap_or(0);
    }
    let mut in_flight = conn.prepare_cached(
        "SELECT subscription, COUNT(*) FROM deliveries
         WHERE subscription IN (SELECT name FROM subscriptions) AND state = 'in_flight'
         GROUP BY subscription",
    )?;
    let rows = in_flight.query_map([], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
    })?;
    for row in rows {
        let (subscription, count) = row?;
        stats
            .entry(subscription.clone())
            .or_insert_with(|| empty(subscription))
            .in_flight = u64::try_from(count).unwrap_or(0);
    }
    Ok(stats.into_values().collect())
}

fn empty(subscription: String) -> QueueStats {
    QueueStats {
        subscription,
        due: 0,
        oldest_due_at: None,
        retries_scheduled: 0,
        in_flight: 0,
    }
}

pub(super) fn readiness(conn: &Connection) -> Result<StoreReadiness> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    Ok(StoreReadiness {
        schema_version: u64::try_from(version).unwrap_or(0),
        latest_schema_version: schema::latest_version() as u64,
    })
}

/// Rewrites the database header's application id with its own value: the
/// header page is dirtied whatever the value, so the commit appends a frame
/// to the write-ahead log and fails as a real write would on a full disk.
pub(super) fn check_writes(conn: &Connection) -> Result<()> {
    let id: i64 = conn.query_row("PRAGMA application_id", [], |row| row.get(0))?;
    conn.execute_batch(&format!("PRAGMA application_id = {id}"))?;
    Ok(())
}

/// `VACUUM INTO` reads one snapshot of the database, so the copy is
/// consistent while writers go on; it runs on its own connection so a long
/// backup holds no pooled reader.
pub(super) fn backup(database: &Path, target: &Path) -> Result<()> {
    if target.exists() {
        return Err(StoreError::Conflict(format!(
            "backup target {} already exists",
            target.display()
        )));
    }
    let target_text = target.to_str().ok_or_else(|| {
        StoreError::Invalid(format!("backup path {} is not UTF-8", target.display()))
    })?;
    let conn = Connection::open_with_flags(
        database,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|err| StoreError::Unavailable(format!("cannot open {}: {err}", database.display())))?;
    conn.execute_batch("PRAGMA busy_timeout = 5000;")?;
    let written = conn
        .execute("VACUUM INTO ?1", [target_text])
        .map_err(|err| StoreError::Backend(format!("cannot write the backup: {err}")))
        .and_then(|_| {
            // VACUUM INTO does not sync its output; a backup must be on disk.
            std::fs::File::open(target)
                .and_then(|file| file.sync_all())
                .map_err(|err| {
                    StoreError::Backend(format!("cannot sync backup {}: {err}", target.display()))
                })
        });
    if written.is_err() {
        // A partial copy must not pass for a backup.
        let _ = std::fs::remove_file(target);
    }
    written
}

pub(super) fn checkpoint(database: &Path) -> Result<()> {
    let conn = Connection::open(database).map_err(|err| {
        StoreError::Unavailable(format!("cannot open {}: {err}", database.display()))
    })?;
    conn.execute_batch("PRAGMA busy_timeout = 5000;")?;
    // TRUNCATE moves every committed page into the main file and empties
    // the WAL, so the database file alone holds everything.
    let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))?;
    if busy != 0 {
        return Err(StoreError::Unavailable(
            "the checkpoint could not complete: readers are still active".into(),
        ));
    }
    Ok(())
}

#[async_trait]
impl OpsStore for SqliteStore {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            online_backup: true,
            shared_rate_buckets: false,
            cross_process_wakeups: false,
        }
    }

    async fn queue_stats(&self, now: Timestamp) -> Result<Vec<crate::QueueStats>> {
        self.readers.read(move |conn| queue_stats(conn, now)).await
    }

    async fn readiness(&self) -> Result<crate::StoreReadiness> {
        self.readers.read(readiness).await
    }

    async fn check_writes(&self) -> Result<()> {
        self.writer.write(check_writes).await
    }

    async fn backup_into(&self, path: &Path) -> Result<()> {
        let (database, target) = (self.path.clone(), path.to_owned());
        tokio::task::spawn_blocking(move || backup(&database, &target))
            .await
            .map_err(|err| StoreError::Backend(format!("the backup task failed: {err}")))?
    }

    async fn flush(&self) -> Result<()> {
        // An empty write first: the checkpoint then covers every write
        // queued before this call. It runs outside the writer's transaction.
        self.writer.write(|_| Ok(())).await?;
        let database = self.path.clone();
        tokio::task::spawn_blocking(move || checkpoint(&database))
            .await
            .map_err(|err| StoreError::Backend(format!("the checkpoint task failed: {err}")))?
    }
}

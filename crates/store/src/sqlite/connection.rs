//! The embedded store's connections: one writer and a pool of readers.
//!
//! The single writer: one thread owns the write connection and commits every
//! queued write in one transaction, so a burst of publishes pays one fsync.
//!
//! Two kinds of write share the thread. A *durable* write (a publish, an
//! API change) is fsync'd before it answers: it survives power loss. A
//! *bookkeeping* write (a claim, an attempt's outcome, a lease rescue) is
//! committed but not fsync'd: a crash of the process keeps it (the log is
//! in the OS's hands), and a power loss may undo it, which at worst pushes
//! again what was in flight — the at-least-once contract already allows
//! that, and a restart makes everything in flight due again anyway. A
//! durable commit, a checkpoint, or a sync at most `SYNC_WITHIN` after the
//! first unsynced commit makes every earlier commit durable too, since they
//! share the one log file.
//!
//! The readers: a small pool of read connections, used on the blocking
//! thread pool; WAL mode lets them read while the writer commits.

use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};
use tokio::sync::oneshot;

use crate::{Result, StoreError};

/// Most jobs folded into one transaction; bounds the latency of the first.
const MAX_JOBS_PER_COMMIT: usize = 512;
/// How long bookkeeping may stay unsynced: bounds what a power loss can undo
/// when no durable write comes to sync it. A busy writer syncs the batch
/// that comes after it; an idle one syncs on its own.
const SYNC_WITHIN: Duration = Duration::from_millis(200);

type Reply = Box<dyn FnOnce(Result<()>) + Send>;
type Job = Box<dyn QueuedWrite>;

/// Whether a write must be on disk before it answers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Durability {
    /// fsync'd before the caller hears of it.
    Synced,
    /// Committed at once, fsync'd with the next durable commit or when the
    /// writer falls idle; see the module's doc.
    Bookkeeping,
}

/// A write waiting for the next group commit.
trait QueuedWrite: Send {
    /// Runs the work; the returned reply is called with the commit's outcome.
    fn run(self: Box<Self>, conn: &Connection) -> Reply;
    /// Answers without running, when no transaction could be opened.
    fn fail(self: Box<Self>, err: StoreError);
    fn durability(&self) -> Durability;
}

struct PendingWrite<T, F> {
    work: F,
    durability: Durability,
    reply: oneshot::Sender<Result<T>>,
}

impl<T, F> QueuedWrite for PendingWrite<T, F>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<T> + Send + 'static,
{
    fn run(self: Box<Self>, conn: &Connection) -> Reply {
        let outcome = in_savepoint(conn, self.work);
        let reply = self.reply;
        Box::new(move |commit: Result<()>| {
            let _ = reply.send(commit.and(outcome));
        })
    }

    fn fail(self: Box<Self>, err: StoreError) {
        let _ = self.reply.send(Err(err));
    }

    fn durability(&self) -> Durability {
        self.durability
    }
}

pub(crate) struct Writer {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    pub(crate) fn start(conn: Connection) -> Result<Writer> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("redrive-sqlite-writer".into())
            .spawn(move || run(conn, queue))
            .map_err(|err| StoreError::Backend(format!("cannot start the writer thread: {err}")))?;
        Ok(Writer {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    /// Runs `work` inside the next group commit; answers once it is durable.
    /// A job that fails rolls back alone, the others in its commit stand.
    pub(crate) async fn write<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.queue(Durability::Synced, work).await
    }

    /// Like [`Writer::write`], for bookkeeping: answers once committed,
    /// before it is fsync'd (see the module's doc for why that is safe).
    pub(crate) async fn write_bookkeeping<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.queue(Durability::Bookkeeping, work).await
    }

    async fn queue<T, F>(&self, durability: Durability, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel::<Result<T>>();
        let job: Job = Box::new(PendingWrite {
            work,
            durability,
            reply,
        });
        let jobs = self
            .jobs
            .as_ref()
            .ok_or_else(|| StoreError::Unavailable("the store is closed".into()))?;
        jobs.send(job)
            .map_err(|_| StoreError::Unavailable("the writer thread has stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Unavailable("the writer thread has stopped".into()))?
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the channel lets the thread finish the queued jobs and exit.
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Runs `sql`, a statement without parameters, through the statement cache:
/// the writer sends the same few transaction statements thousands of times
/// a second, and parsing them each time shows in profiles.
fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

fn in_savepoint<T>(conn: &Connection, work: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    run_cached(conn, "SAVEPOINT job")?;
    match work(conn) {
        Ok(value) => {
            run_cached(conn, "RELEASE job")?;
            Ok(value)
        }
        Err(err) => {
            run_cached(conn, "ROLLBACK TO job")?;
            run_cached(conn, "RELEASE job")?;
            Err(err)
        }
    }
}

/// The connection's `synchronous` setting, changed only when a batch needs
/// the other one.
struct SyncMode {
    current: Durability,
}

impl SyncMode {
    fn set(&mut self, conn: &Connection, wanted: Durability) -> rusqlite::Result<()> {
        if self.current != wanted {
            // Not cached: SQLite prepares a pragma again at every run anyway.
            conn.execute_batch(match wanted {
                Durability::Synced => "PRAGMA synchronous = FULL",
                Durability::Bookkeeping => "PRAGMA synchronous = NORMAL",
            })?;
            self.current = wanted;
        }
        Ok(())
    }
}

fn run(conn: Connection, queue: mpsc::Receiver<Job>) {
    let mut mode = SyncMode {
        current: Durability::Synced,
    };
    // When the oldest commit not yet fsync'd was made.
    let mut unsynced_since: Option<Instant> = None;
    loop {
        let first = match unsynced_since {
            None => match queue.recv() {
                Ok(job) => job,
                Err(_) => break,
            },
            Some(since) => {
                let left = SYNC_WITHIN.saturating_sub(since.elapsed());
                match queue.recv_timeout(left) {
                    Ok(job) => job,
                    Err(RecvTimeoutError::Timeout) => {
                        // Failed (a full disk): try again after as long.
                        unsynced_since = if sync_log(&conn, &mut mode) {
                            None
                        } else {
                            Some(Instant::now())
                        };
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => {
                        sync_log(&conn, &mut mode);
                        break;
                    }
                }
            }
        };
        let mut batch = vec![first];
        while batch.len() < MAX_JOBS_PER_COMMIT {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let overdue = unsynced_since.is_some_and(|since| since.elapsed() >= SYNC_WITHIN);
        let durability = if overdue
            || batch
                .iter()
                .any(|job| job.durability() == Durability::Synced)
        {
            Durability::Synced
        } else {
            Durability::Bookkeeping
        };
        let size = batch.len();
        let started = Instant::now();
        if let Err(err) = mode.set(&conn, durability) {
            // Run it on the setting the connection has: at worst a
            // bookkeeping batch is fsync'd.
            tracing::debug!(error = %err, "cannot change the sync setting");
        }
        let committed = commit_batch(&conn, batch);
        match (committed, mode.current) {
            (true, Durability::Synced) => unsynced_since = None,
            (true, Durability::Bookkeeping) => {
                unsynced_since.get_or_insert(started);
            }
            (false, _) => {}
        }
        metrics::histogram!("redrive_store_commit_seconds").record(started.elapsed().as_secs_f64());
        metrics::histogram!("redrive_store_commit_batch_size").record(size as f64);
    }
    tracing::debug!("sqlite writer stopped");
}

/// Makes every commit so far durable with a durable commit of its own: it
/// rewrites the database header (see `ops::check_writes`), so there is a
/// frame to commit, and its fsync covers every frame before it.
fn sync_log(conn: &Connection, mode: &mut SyncMode) -> bool {
    let synced = mode
        .set(conn, Durability::Synced)
        .map_err(StoreError::from)
        .and_then(|()| transaction(conn, super::ops::check_writes));
    if let Err(err) = &synced {
        tracing::debug!(error = %err, "cannot sync the write-ahead log");
    }
    synced.is_ok()
}

/// Runs the batch in one transaction; whether it committed.
fn commit_batch(conn: &Connection, mut batch: Vec<Job>) -> bool {
    let mut replies: Vec<Reply> = Vec::with_capacity(batch.len());
    let commit = transaction(conn, |conn| {
        replies.extend(batch.drain(..).map(|job| job.run(conn)));
        Ok(())
    });
    if let Err(err) = &commit {
        // Every job's caller gets the error and reports it (once per
        // interval while the disk is full, not once per batch here).
        tracing::debug!(error = %err, "group commit failed");
        // Jobs still in the batch never ran: the transaction did not begin.
        for job in batch {
            job.fail(err.clone());
        }
    }
    let committed = commit.is_ok();
    for reply in replies {
        reply(commit.clone());
    }
    committed
}

/// `work` in one write transaction, rolled back if it or the commit fails.
fn transaction<T>(conn: &Connection, work: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    run_cached(conn, "BEGIN IMMEDIATE")?;
    let done = work(conn).and_then(|value| {
        run_cached(conn, "COMMIT")?;
        Ok(value)
    });
    if done.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    done
}

/// Statements prepared once per connection and kept. The cache holds every
/// statement a connection runs (rusqlite's default of 16 is fewer than the
/// writer's hot path uses, so statements were parsed again at every turn).
/// And one plan per statement, made when it is first prepared: otherwise
/// SQLite prepares a cached statement again whenever a parameter it
/// compared with a partial index's condition is bound anew — every run of
/// the hot path's statements, a tenth of the server's CPU. Every statement
/// here names its states as literals, so the plans need no parameter's value.
pub(super) fn keep_prepared_statements(conn: &Connection) -> Result<()> {
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(())
}

/// More than the distinct statements one connection runs.
const STATEMENT_CACHE_CAPACITY: usize = 256;

/// Idle connections kept; more may be opened under load and are then closed.
const MAX_IDLE: usize = 8;

pub(crate) struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    pub(crate) fn new(path: PathBuf) -> Readers {
        Readers {
            path,
            idle: Mutex::new(Vec::new()),
        }
    }

    pub(crate) async fn read<T, F>(self: &Arc<Self>, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let readers = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let conn = readers.take()?;
            let outcome = work(&conn);
            readers.give_back(conn);
            outcome
        })
        .await
        .map_err(|err| StoreError::Backend(format!("a read task failed: {err}")))?
    }

    fn take(&self) -> Result<Connection> {
        if let Some(conn) = self.idle.lock().ok().and_then(|mut idle| idle.pop()) {
            return Ok(conn);
        }
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|err| {
            StoreError::Unavailable(format!("cannot open {}: {err}", self.path.display()))
        })?;
        conn.execute_batch("PRAGMA busy_timeout = 5000; PRAGMA cache_size = -16000;")?;
        keep_prepared_statements(&conn)?;
        Ok(conn)
    }

    fn give_back(&self, conn: Connection) {
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < MAX_IDLE
        {
            idle.push(conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use redrive_core::Decision;

    use crate::conformance::{attempt_all, event, spec, t0};
    use crate::prelude::*;
    use crate::sqlite::SqliteStore;

    /// Every statement the writer ran, with how often it ran and how often
    /// SQLite prepared it again.
    fn writer_statements(conn: &rusqlite::Connection) -> Vec<(String, i32, i32)> {
        let mut found = Vec::new();
        // SAFETY: the handle is the writer's own open connection, used on
        // its thread; `sqlite3_next_stmt` walks that connection's prepared
        // statements, which stay alive while it is borrowed here.
        unsafe {
            let db = conn.handle();
            let mut stmt = rusqlite::ffi::sqlite3_next_stmt(db, std::ptr::null_mut());
            while !stmt.is_null() {
                let sql = std::ffi::CStr::from_ptr(rusqlite::ffi::sqlite3_sql(stmt))
                    .to_string_lossy()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ");
                let status = |op| rusqlite::ffi::sqlite3_stmt_status(stmt, op, 0);
                found.push((
                    sql,
                    status(rusqlite::ffi::SQLITE_STMTSTATUS_RUN),
                    status(rusqlite::ffi::SQLITE_STMTSTATUS_REPREPARE),
                ));
                stmt = rusqlite::ffi::sqlite3_next_stmt(db, stmt);
            }
        }
        found
    }

    #[tokio::test]
    async fn the_hot_path_prepares_each_statement_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path(), t0()).unwrap();
        store.create_topic("orders", t0()).await.unwrap();
        store
            .create_subscription(spec("s", "orders"), t0())
            .await
            .unwrap();
        for round in 0..5 {
            let events = (0..10)
                .map(|i| event(&format!("e{round}-{i}"), "t"))
                .collect();
            store.publish("orders", events, t0()).await.unwrap();
            attempt_all(&store, "s", t0(), 200, Decision::Delivered).await;
        }
        let statements = store
            .writer
            .write(|conn| Ok(writer_statements(conn)))
            .await
            .unwrap();
        // The delivery row's statements ran once per delivery: 50 times.
        assert!(
            statements.iter().filter(|(_, runs, _)| *runs >= 50).count() >= 4,
            "{statements:#?}"
        );
        let prepared_again: Vec<_> = statements
            .iter()
            .filter(|(_, _, again)| *again > 0)
            .collect();
        assert!(prepared_again.is_empty(), "{prepared_again:#?}");
    }
}

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
//! Publishes are not closures but requests the writer knows: those of one
//! commit to the same topic are stored together, with one lookup of the
//! topic, its subscriptions and the journal head instead of one each (with
//! single-event publishes, the publish share of the server's CPU fell from
//! 12 % to 7 %). Publishes and bookkeeping can run again, so a commit runs
//! them without savepoints, and again with them only when one fails (see
//! [`commit_batch`]).
//!
//! The readers: a small pool of read connections, used on the blocking
//! thread pool; WAL mode lets them read while the writer commits.

use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use redrive_core::CloudEvent;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::oneshot;

use super::checkpointer::Checkpointer;
use crate::handoff::{Handoff, Mark, Taken};
use crate::{PublishOutcome, Result, StoreError};

/// Most jobs folded into one transaction; bounds the latency of the first.
const MAX_JOBS_PER_COMMIT: usize = 512;
/// How long bookkeeping may stay unsynced: bounds what a power loss can undo
/// when no durable write comes to sync it. A busy writer syncs the batch
/// that comes after it; an idle one syncs on its own.
const SYNC_WITHIN: Duration = Duration::from_millis(200);

type Reply = Box<dyn FnOnce(Result<()>) + Send>;

/// What the writer thread is asked to do.
enum Job {
    Write(Box<dyn QueuedWrite>),
    /// Bookkeeping, run with the commit's other bookkeeping (see
    /// [`commit_batch`]).
    Bookkeeping(Box<dyn RepeatableWrite>),
    /// Publishes are gathered: those of one commit to the same topic are
    /// stored together (see [`commit_batch`]).
    Publish(PublishRequest),
}

impl Job {
    fn durability(&self) -> Durability {
        match self {
            Job::Write(_) | Job::Publish(_) => Durability::Synced,
            Job::Bookkeeping(_) => Durability::Bookkeeping,
        }
    }
}

/// A publish request waiting for the next group commit.
struct PublishRequest {
    topic: String,
    events: Vec<CloudEvent>,
    now: Timestamp,
    reply: oneshot::Sender<Result<Vec<PublishOutcome>>>,
}

/// Whether a write must be on disk before it answers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Durability {
    /// fsync'd before the caller hears of it.
    Synced,
    /// Committed at once, fsync'd with the next durable commit or when the
    /// writer falls idle; see the module's doc.
    Bookkeeping,
}

/// A durable write waiting for the next group commit.
trait QueuedWrite: Send {
    /// Runs the work; the returned reply is called with the commit's outcome.
    fn run(self: Box<Self>, conn: &Connection) -> Reply;
    /// Answers without running, when no transaction could be opened.
    fn fail(self: Box<Self>, err: StoreError);
}

struct PendingWrite<T, F> {
    work: F,
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
}

/// A bookkeeping write waiting for the next group commit: work that can
/// run again after a rollback, keeping the outcome of its last run.
trait RepeatableWrite: Send {
    /// Runs the work (again, after a rollback); whether it succeeded.
    fn run(&mut self, conn: &Connection) -> Result<()>;
    /// The reply to call with the commit's outcome, with the last run's.
    fn finish(self: Box<Self>) -> Reply;
    /// Answers without running, when no transaction could be opened.
    fn fail(self: Box<Self>, err: StoreError);
}

struct PendingBookkeeping<T, F> {
    work: F,
    outcome: Option<Result<T>>,
    reply: oneshot::Sender<Result<T>>,
}

impl<T, F> RepeatableWrite for PendingBookkeeping<T, F>
where
    T: Send + 'static,
    F: Fn(&Connection) -> Result<T> + Send + 'static,
{
    fn run(&mut self, conn: &Connection) -> Result<()> {
        let outcome = (self.work)(conn);
        let ran = outcome.as_ref().map(|_| ()).map_err(StoreError::clone);
        self.outcome = Some(outcome);
        ran
    }

    fn finish(self: Box<Self>) -> Reply {
        let outcome = self
            .outcome
            .unwrap_or_else(|| Err(StoreError::Backend("a bookkeeping write never ran".into())));
        let reply = self.reply;
        Box::new(move |commit: Result<()>| {
            let _ = reply.send(commit.and(outcome));
        })
    }

    fn fail(self: Box<Self>, err: StoreError) {
        let _ = self.reply.send(Err(err));
    }
}

pub(crate) struct Writer {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// Starts the writer on `conn`, the database at `database`, with its
    /// checkpoints on a thread of their own; its publishes take the slots
    /// `handoff` offers.
    pub(crate) fn start(
        mut conn: Connection,
        database: &std::path::Path,
        handoff: Arc<Handoff>,
    ) -> Result<Writer> {
        let checkpointer = Checkpointer::attach(&mut conn, database)?;
        let (jobs, queue) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("redrive-sqlite-writer".into())
            .spawn(move || run(conn, queue, checkpointer, &handoff))
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
        let (reply, rx) = oneshot::channel::<Result<T>>();
        self.send(Job::Write(Box::new(PendingWrite { work, reply })))?;
        rx.await.map_err(|_| writer_stopped())?
    }

    /// Like [`Writer::write`], for bookkeeping: answers once committed,
    /// before it is fsync'd (see the module's doc for why that is safe).
    /// `work` may run more than once (only its last run is kept): it must
    /// do nothing but write through `conn`.
    pub(crate) async fn write_bookkeeping<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&Connection) -> Result<T> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel::<Result<T>>();
        self.send(Job::Bookkeeping(Box::new(PendingBookkeeping {
            work,
            outcome: None,
            reply,
        })))?;
        rx.await.map_err(|_| writer_stopped())?
    }

    /// Publishes `events` to `topic` in the next group commit, with the
    /// other publishes to that topic queued by then; answers once durable.
    pub(crate) async fn publish(
        &self,
        topic: String,
        events: Vec<CloudEvent>,
        now: Timestamp,
    ) -> Result<Vec<PublishOutcome>> {
        let (reply, rx) = oneshot::channel();
        self.send(Job::Publish(PublishRequest {
            topic,
            events,
            now,
            reply,
        }))?;
        rx.await.map_err(|_| writer_stopped())?
    }

    fn send(&self, job: Job) -> Result<()> {
        let jobs = self
            .jobs
            .as_ref()
            .ok_or_else(|| StoreError::Unavailable("the store is closed".into()))?;
        jobs.send(job).map_err(|_| writer_stopped())
    }
}

/// What a caller hears when the writer thread is gone (its queue closed or
/// its answer dropped).
fn writer_stopped() -> StoreError {
    StoreError::Unavailable("the writer thread has stopped".into())
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

fn run(
    conn: Connection,
    queue: mpsc::Receiver<Job>,
    checkpointer: Checkpointer,
    handoff: &Handoff,
) {
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
        let committed = commit_batch(&conn, batch, handoff);
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
    // Before the connection closes: the last connection to close copies
    // the log into the database and removes it.
    drop(checkpointer);
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
///
/// Bookkeeping and publishes can run again, so they run first, all of them
/// without a savepoint (a savepoint copies every page its job changes, 2 %
/// of the server's CPU when each group had one). Only if one of them fails
/// is the transaction rolled back and begun again, with each group in a
/// savepoint of its own and each job alone if its group fails, so that a
/// job fails only for its own sake. The other writes, which cannot run
/// again, come after them, each in a savepoint. All were waiting at once,
/// so no caller could count on an order among them. Deliveries the
/// publishes took into flight are handed over once committed.
fn commit_batch(conn: &Connection, batch: Vec<Job>, handoff: &Handoff) -> bool {
    let mut writes = Vec::new();
    let mut bookkeeping = Vec::new();
    let mut publishes = Vec::new();
    for job in batch {
        match job {
            Job::Write(write) => writes.push(write),
            Job::Bookkeeping(write) => bookkeeping.push(write),
            Job::Publish(request) => publishes.push(request),
        }
    }
    let mut publishes = super::grouped_in_order(
        publishes
            .into_iter()
            .map(|request| (request.topic.clone(), request)),
    );
    let mut replies: Vec<Reply> = Vec::with_capacity(writes.len() + bookkeeping.len());
    let mut taken = Taken::new(Some(handoff));
    let commit = (|| {
        run_cached(conn, "BEGIN IMMEDIATE")?;
        let outcomes = match run_at_once(conn, &mut bookkeeping, &publishes, &mut taken) {
            Ok(outcomes) => outcomes,
            Err(err) => {
                taken.give_up_since(Mark::START);
                tracing::debug!(error = %err, "a job failed among others; running each group apart");
                // An I/O error may have ended the transaction already:
                // then there is nothing to roll back, and BEGIN says if
                // something is wrong.
                let _ = run_cached(conn, "ROLLBACK");
                run_cached(conn, "BEGIN IMMEDIATE")?;
                run_bookkeeping_apart(conn, &mut bookkeeping);
                publishes
                    .iter()
                    .map(|(topic, group)| publish_apart(conn, topic, group, &mut taken))
                    .collect()
            }
        };
        replies.extend(bookkeeping.drain(..).map(|write| write.finish()));
        for ((_, group), outcomes) in publishes.iter_mut().zip(outcomes) {
            for (request, outcome) in group.drain(..).zip(outcomes) {
                let reply = request.reply;
                replies.push(Box::new(move |commit: Result<()>| {
                    let _ = reply.send(commit.and(outcome));
                }));
            }
        }
        replies.extend(writes.drain(..).map(|write| write.run(conn)));
        run_cached(conn, "COMMIT")
    })()
    .map_err(StoreError::from);
    if let Err(err) = &commit {
        let _ = conn.execute_batch("ROLLBACK");
        // Every job's caller gets the error and reports it (once per
        // interval while the disk is full, not once per batch here).
        tracing::debug!(error = %err, "group commit failed");
        // Jobs still here never ran: no transaction could begin.
        for write in writes {
            write.fail(err.clone());
        }
        for write in bookkeeping {
            write.fail(err.clone());
        }
        for request in publishes.into_iter().flat_map(|(_, group)| group) {
            let _ = request.reply.send(Err(err.clone()));
        }
    }
    let committed = commit.is_ok();
    if committed {
        taken.hand_over();
    }
    for reply in replies {
        reply(commit.clone());
    }
    committed
}

/// The outcomes of a group of publishes to one topic, each request's own.
type GroupOutcomes = Vec<Result<Vec<PublishOutcome>>>;

/// Runs the bookkeeping and the publishes with no savepoint; the publishes'
/// outcomes by group, or the first failure, after which the transaction
/// must be rolled back.
fn run_at_once(
    conn: &Connection,
    bookkeeping: &mut [Box<dyn RepeatableWrite>],
    publishes: &[(String, Vec<PublishRequest>)],
    taken: &mut Taken<'_>,
) -> Result<Vec<GroupOutcomes>> {
    for write in bookkeeping.iter_mut() {
        write.run(conn)?;
    }
    publishes
        .iter()
        .map(|(topic, group)| publish_group(conn, topic, group, taken))
        .collect()
}

/// Stores a group of publishes to one topic together (one lookup of the
/// topic, its subscriptions and the journal head). A topic that does not
/// exist is each request's outcome, not a failure: nothing was written.
fn publish_group(
    conn: &Connection,
    topic: &str,
    group: &[PublishRequest],
    taken: &mut Taken<'_>,
) -> Result<GroupOutcomes> {
    match super::deliveries::publish_together(conn, topic, &publish_inputs(group), taken) {
        Ok(outcomes) => Ok(outcomes.into_iter().map(Ok).collect()),
        Err(err @ StoreError::NotFound { .. }) => {
            Ok(group.iter().map(|_| Err(err.clone())).collect())
        }
        Err(err) => Err(err),
    }
}

fn publish_inputs(group: &[PublishRequest]) -> Vec<(&[CloudEvent], Timestamp)> {
    group
        .iter()
        .map(|request| (request.events.as_slice(), request.now))
        .collect()
}

/// Runs the bookkeeping in one savepoint; if one of them fails, that
/// savepoint is rolled back and each runs again in its own. Each keeps the
/// outcome of its last run for its reply.
fn run_bookkeeping_apart(conn: &Connection, writes: &mut [Box<dyn RepeatableWrite>]) {
    if writes.is_empty() {
        return;
    }
    let together = in_savepoint(conn, |conn| {
        writes.iter_mut().try_for_each(|write| write.run(conn))
    });
    if together.is_err() && writes.len() > 1 {
        for write in writes.iter_mut() {
            let _ = in_savepoint(conn, |conn| write.run(conn));
        }
    }
}

/// Stores a group of publishes to one topic together in one savepoint; if
/// that fails, each is stored alone, so a request fails only for its own
/// sake. What a rolled-back savepoint took into flight is given up.
fn publish_apart(
    conn: &Connection,
    topic: &str,
    group: &[PublishRequest],
    taken: &mut Taken<'_>,
) -> GroupOutcomes {
    match taking_in_savepoint(conn, taken, |conn, taken| {
        publish_group(conn, topic, group, taken)
    }) {
        Ok(outcomes) => outcomes,
        Err(err) if group.len() == 1 => vec![Err(err)],
        Err(_) => publish_inputs(group)
            .iter()
            .map(|input| {
                taking_in_savepoint(conn, taken, |conn, taken| {
                    super::deliveries::publish_together(conn, topic, &[*input], taken)
                })
                .map(|mut outcomes| outcomes.pop().unwrap_or_default())
            })
            .collect(),
    }
}

/// [`in_savepoint`] for publishes: what `work` took into flight is given
/// up if its savepoint is rolled back.
fn taking_in_savepoint<T>(
    conn: &Connection,
    taken: &mut Taken<'_>,
    work: impl FnOnce(&Connection, &mut Taken<'_>) -> Result<T>,
) -> Result<T> {
    let mark = taken.mark();
    let done = in_savepoint(conn, |conn| work(conn, taken));
    if done.is_err() {
        taken.give_up_since(mark);
    }
    done
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

    use std::sync::Arc;
    use std::time::Duration;

    use redrive_core::CloudEvent;

    use crate::StoreError;
    use crate::conformance::handoff::{arrived, handoff_of, offer};
    use crate::conformance::{attempt_all, claim_at, event, setup, spec, t0, want};
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

    /// How often the writer ran the statement whose text is `sql`.
    async fn runs_of(store: &SqliteStore, sql: &'static str) -> i32 {
        store
            .writer
            .write(move |conn| {
                Ok(writer_statements(conn)
                    .into_iter()
                    .find(|(text, _, _)| text == sql)
                    .map_or(0, |(_, runs, _)| runs))
            })
            .await
            .unwrap()
    }

    /// Runs each job on its own task while the writer is kept busy, so that
    /// all of them wait for the same commit; their answers in order.
    async fn while_the_writer_is_busy<T, F, Fut>(store: &Arc<SqliteStore>, jobs: Vec<F>) -> Vec<T>
    where
        F: FnOnce(Arc<SqliteStore>) -> Fut,
        Fut: std::future::Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let busy = {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .writer
                    .write(|_| {
                        std::thread::sleep(Duration::from_millis(500));
                        Ok(())
                    })
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let tasks: Vec<_> = jobs
            .into_iter()
            .map(|job| tokio::spawn(job(store.clone())))
            .collect();
        busy.await.unwrap().unwrap();
        let mut answers = Vec::new();
        for task in tasks {
            answers.push(task.await.unwrap());
        }
        answers
    }

    /// Publishes each request while the writer is busy: all in one commit.
    async fn publish_while_the_writer_is_busy(
        store: &Arc<SqliteStore>,
        requests: Vec<Vec<CloudEvent>>,
    ) -> Vec<crate::Result<Vec<crate::PublishOutcome>>> {
        let jobs =
            requests
                .into_iter()
                .map(|events| {
                    move |store: Arc<SqliteStore>| async move {
                        store.publish("orders", events, t0()).await
                    }
                })
                .collect();
        while_the_writer_is_busy(store, jobs).await
    }

    async fn store_with_topic(dir: &std::path::Path) -> Arc<SqliteStore> {
        let store = Arc::new(SqliteStore::open(dir, t0()).unwrap());
        setup(store.as_ref(), &["s"]).await;
        store
    }

    #[tokio::test]
    async fn publishes_waiting_for_one_commit_are_stored_together() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_topic(dir.path()).await;
        let lookup = "SELECT 1 FROM topics WHERE name = ?1";
        let before = runs_of(&store, lookup).await;
        let requests = (0..10)
            .map(|i| vec![event(&format!("e{i}"), "t"), event("shared", "t")])
            .collect();
        let answers = publish_while_the_writer_is_busy(&store, requests).await;
        // One look at the topic for the ten requests.
        assert_eq!(runs_of(&store, lookup).await - before, 1);
        let mut shared_stored = 0;
        for (i, answer) in answers.into_iter().enumerate() {
            let outcomes = answer.unwrap();
            assert_eq!(outcomes[0].id, format!("e{i}"));
            assert!(!outcomes[0].duplicate);
            assert_eq!(outcomes[0].deliveries, 1);
            assert_eq!(outcomes[1].id, "shared");
            if !outcomes[1].duplicate {
                shared_stored += 1;
            }
        }
        assert_eq!(shared_stored, 1, "the repeated event is stored once");
        let claimed = store
            .claim_due(claim_at(t0(), vec![want("s", 100)]))
            .await
            .unwrap()
            .claimed;
        assert_eq!(claimed.len(), 11);
    }

    /// Five bookkeeping writes in one commit (queued while the writer is
    /// busy): each inserts its number into `scratch`, and the one numbered
    /// `failing` then fails. Their answers in order.
    async fn bookkeeping_while_the_writer_is_busy(
        store: &Arc<SqliteStore>,
        failing: Option<i64>,
    ) -> Vec<crate::Result<i64>> {
        let jobs = (0..5_i64)
            .map(|i| {
                move |store: Arc<SqliteStore>| async move {
                    store
                        .writer
                        .write_bookkeeping(move |conn| {
                            conn.execute("INSERT INTO scratch (n) VALUES (?1)", [i])?;
                            if Some(i) == failing {
                                return Err(StoreError::Invalid(format!("{i} refused")));
                            }
                            Ok(i)
                        })
                        .await
                }
            })
            .collect();
        while_the_writer_is_busy(store, jobs).await
    }

    async fn store_with_scratch_table(dir: &std::path::Path) -> Arc<SqliteStore> {
        let store = Arc::new(SqliteStore::open(dir, t0()).unwrap());
        store
            .writer
            .write(|conn| Ok(conn.execute_batch("CREATE TABLE scratch (n INTEGER)")?))
            .await
            .unwrap();
        store
    }

    async fn scratch_rows(store: &SqliteStore) -> Vec<i64> {
        store
            .writer
            .write(|conn| {
                Ok(conn
                    .prepare("SELECT n FROM scratch ORDER BY n")?
                    .query_map([], |row| row.get(0))?
                    .collect::<rusqlite::Result<Vec<i64>>>()?)
            })
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn bookkeeping_waiting_for_one_commit_runs_without_savepoints() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_scratch_table(dir.path()).await;
        let savepoint = "SAVEPOINT job";
        let before = runs_of(&store, savepoint).await;
        let answers = bookkeeping_while_the_writer_is_busy(&store, None).await;
        let answers: Vec<i64> = answers.into_iter().map(Result::unwrap).collect();
        assert_eq!(answers, [0, 1, 2, 3, 4]);
        // The busy write's and this count's own: none for the five.
        assert_eq!(runs_of(&store, savepoint).await - before, 2);
        assert_eq!(scratch_rows(&store).await, [0, 1, 2, 3, 4]);
    }

    #[tokio::test]
    async fn a_bookkeeping_write_that_fails_among_others_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_scratch_table(dir.path()).await;
        let answers = bookkeeping_while_the_writer_is_busy(&store, Some(2)).await;
        for (i, answer) in answers.iter().enumerate() {
            if i == 2 {
                assert!(
                    matches!(answer, Err(StoreError::Invalid(message)) if message == "2 refused"),
                    "{answer:?}"
                );
            } else {
                assert_eq!(answer.as_ref().ok(), Some(&(i as i64)), "{answer:?}");
            }
        }
        // The failed write's insert is undone; each other one is stored once.
        assert_eq!(scratch_rows(&store).await, [0, 1, 3, 4]);
    }

    /// Publishes of e0 to e4 with a request between e1 and e2 that the
    /// writer refuses, all in one group commit: the group runs again apart.
    async fn publish_with_one_too_big(
        store: &Arc<SqliteStore>,
    ) -> Vec<crate::Result<Vec<crate::PublishOutcome>>> {
        // Values longer than 4 KiB are refused on the writer's connection.
        store
            .writer
            .write(|conn| {
                // SAFETY: the writer's own open connection, on its thread.
                unsafe {
                    rusqlite::ffi::sqlite3_limit(
                        conn.handle(),
                        rusqlite::ffi::SQLITE_LIMIT_LENGTH,
                        4096,
                    );
                }
                Ok(())
            })
            .await
            .unwrap();
        let mut too_big = event("too-big", "t");
        too_big.data = Some(vec![b'x'; 8192]);
        let mut requests: Vec<Vec<CloudEvent>> =
            (0..5).map(|i| vec![event(&format!("e{i}"), "t")]).collect();
        requests.insert(2, vec![too_big]);
        publish_while_the_writer_is_busy(store, requests).await
    }

    #[tokio::test]
    async fn a_publish_that_fails_among_others_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_topic(dir.path()).await;
        let answers = publish_with_one_too_big(&store).await;
        for (i, answer) in answers.iter().enumerate() {
            if i == 2 {
                assert!(answer.is_err(), "{answer:?}");
            } else {
                let outcomes = answer.as_ref().unwrap();
                assert!(!outcomes[0].duplicate && outcomes[0].deliveries == 1);
            }
        }
        let claimed = store
            .claim_due(claim_at(t0(), vec![want("s", 100)]))
            .await
            .unwrap()
            .claimed;
        let mut ids: Vec<_> = claimed.iter().map(|c| c.event.id.clone()).collect();
        ids.sort();
        assert_eq!(ids, ["e0", "e1", "e2", "e3", "e4"]);
    }

    /// A group run again apart takes its deliveries into flight again:
    /// what the rolled-back runs took is given up, and each delivery is
    /// handed over once.
    #[tokio::test]
    async fn a_group_run_again_apart_hands_each_delivery_over_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_topic(dir.path()).await;
        let (handoff, mut arrivals) = handoff_of(store.as_ref());
        handoff.offer(offer(&[("s", 100)], 100));
        let answers = publish_with_one_too_big(&store).await;
        assert_eq!(answers.iter().filter(|a| a.is_err()).count(), 1);
        let mut handed: Vec<_> = arrived(&mut arrivals)
            .into_iter()
            .map(|c| c.event.id)
            .collect();
        handed.sort();
        assert_eq!(handed, ["e0", "e1", "e2", "e3", "e4"]);
        assert!(handoff.withdraw().is_empty(), "nothing left in transit");
        let due = store
            .claim_due(claim_at(t0(), vec![want("s", 100)]))
            .await
            .unwrap();
        assert!(due.claimed.is_empty(), "{:?}", due.claimed);
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

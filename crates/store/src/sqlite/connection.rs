//! The embedded store's connections: one writer and a pool of readers.
//!
//! The single writer: one thread owns the write connection and commits every
//! queued write in one transaction, so a burst of publishes pays one fsync.
//!
//! The readers: a small pool of read connections, used on the blocking
//! thread pool; WAL mode lets them read while the writer commits.

use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::oneshot;

use crate::{Result, StoreError};

/// Most jobs folded into one transaction; bounds the latency of the first.
const MAX_JOBS_PER_COMMIT: usize = 512;

type Reply = Box<dyn FnOnce(Result<()>) + Send>;
type Job = Box<dyn QueuedWrite>;

/// A write waiting for the next group commit.
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
        let (reply, rx) = oneshot::channel::<Result<T>>();
        let job: Job = Box::new(PendingWrite { work, reply });
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

fn in_savepoint<T>(conn: &Connection, work: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    conn.execute_batch("SAVEPOINT job")?;
    match work(conn) {
        Ok(value) => {
            conn.execute_batch("RELEASE job")?;
            Ok(value)
        }
        Err(err) => {
            conn.execute_batch("ROLLBACK TO job; RELEASE job")?;
            Err(err)
        }
    }
}

fn run(conn: Connection, queue: mpsc::Receiver<Job>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_JOBS_PER_COMMIT {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let size = batch.len();
        let started = std::time::Instant::now();
        commit_batch(&conn, batch);
        metrics::histogram!("redrive_store_commit_seconds").record(started.elapsed().as_secs_f64());
        metrics::histogram!("redrive_store_commit_batch_size").record(size as f64);
    }
    tracing::debug!("sqlite writer stopped");
}

fn commit_batch(conn: &Connection, batch: Vec<Job>) {
    if let Err(err) = conn.execute_batch("BEGIN IMMEDIATE") {
        let err = StoreError::from(err);
        // Every job's caller gets the error and reports it (once per
        // interval while the disk is full, not once per batch here).
        tracing::debug!(error = %err, "cannot begin a write transaction");
        for job in batch {
            job.fail(err.clone());
        }
        return;
    }
    let replies: Vec<Reply> = batch.into_iter().map(|job| job.run(conn)).collect();
    let commit = conn.execute_batch("COMMIT").map_err(StoreError::from);
    if let Err(err) = &commit {
        tracing::debug!(error = %err, "group commit failed");
        let _ = conn.execute_batch("ROLLBACK");
    }
    for reply in replies {
        reply(commit.clone());
    }
}

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

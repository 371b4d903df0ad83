//! Connections to PostgreSQL: the URL (with redrive's own `pool_size`),
//! the pool every store method takes a connection from, the publish
//! writers, and what a driver error means for the caller. Writes need no
//! writer of their own, except publishes (below): each is one statement or
//! one short transaction on a pooled connection, durable when it commits,
//! and nodes coordinate through row locks and advisory locks rather than
//! in-process queues.
//!
//! Publishes are written together: requests that arrive while earlier ones
//! are being written wait in one queue, and a few writers each take what
//! has gathered and store it with one statement per topic, one commit, one
//! wait for the log flush. Alone, a request is written at once; under load,
//! dozens of single-event requests share a commit instead of queueing for
//! connections and flushes one by one (SQLite's single writer does the same
//! for every write). Each request still answers only once its events are
//! durable. A statement that fails for several requests is run again for
//! each alone, so one request's bad input (or missing topic) fails that
//! request only.

use std::str::FromStr;
use std::sync::Arc;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use jiff::Timestamp;
use redrive_core::CloudEvent;
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

use super::PostgresStore;
use super::deliveries::publish_in;
use crate::handoff::{Handoff, Taken};
use crate::{PublishOutcome, Result, StoreError};

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
/// `bookkeeping`): commits that do not wait for the log flush, and generic
/// plans that can only read through indexes.
///
/// A generic plan is made once per connection, often while the tables (or
/// today's partition) are still nearly empty, where scanning a table, or
/// walking a whole index to hash or merge it, looks cheapest; such a
/// plan's cost then grows with the table at every run. Bookkeeping
/// statements each carry a batch of deliveries they reach by key or by a
/// subscription's due range, so an index probe is right at any size: with
/// sequential scans, hash joins and merge joins priced out, the plan made
/// on an empty table is the one a full table gets (`deliveries::plans`
/// checks that every read of history bounds an index's first column), and
/// no run pays for planning. Planning each run instead cost 1.3–1.7 ms a
/// statement, a quarter of PostgreSQL's CPU per delivered event with
/// batches.
pub(super) fn bookkeeping_pool(config: &tokio_postgres::Config) -> Result<Pool> {
    pool(&bookkeeping_config(config), BOOKKEEPING_POOL_SIZE)
}

/// The settings of bookkeeping connections (see `bookkeeping_pool`) over
/// a store's own, whose options stay last so an operator's win.
pub(super) fn bookkeeping_config(config: &tokio_postgres::Config) -> tokio_postgres::Config {
    let mut bookkeeping = config.clone();
    let options = config.get_options().unwrap_or_default();
    let own = options.strip_prefix(GENERIC_PLANS).unwrap_or(options);
    bookkeeping.options(format!(
        "-c synchronous_commit=off {GENERIC_PLANS} {INDEX_PLANS} {own}"
    ));
    bookkeeping
}

/// The planner settings of bookkeeping connections: see `bookkeeping_pool`.
const INDEX_PLANS: &str = "-c enable_seqscan=off -c enable_hashjoin=off -c enable_mergejoin=off";

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

/// Events past which a writer stops gathering requests for one statement.
/// Gathering pays for small requests, whose statement and commit cost more
/// than their rows; past this, a statement has work enough, and requests
/// written apart by several writers keep PostgreSQL's cores busy together.
const MAX_EVENTS_PER_STATEMENT: usize = 100;

/// The queue of publishes and the writers that empty it.
pub(super) struct Publisher {
    jobs: mpsc::UnboundedSender<Job>,
}

struct Job {
    topic: String,
    events: Vec<CloudEvent>,
    now: Timestamp,
    reply: oneshot::Sender<Result<Vec<PublishOutcome>>>,
}

type Queue = Arc<Mutex<mpsc::UnboundedReceiver<Job>>>;

impl Publisher {
    /// Starts `writers` writers on the current runtime, each using one of
    /// `pool`'s connections while it writes. They stop when the publisher
    /// is dropped.
    /// Their publishes take the slots `handoff` offers.
    pub(super) fn start(pool: Pool, writers: usize, handoff: Arc<Handoff>) -> Publisher {
        let (jobs, queue) = mpsc::unbounded_channel();
        let queue: Queue = Arc::new(Mutex::new(queue));
        for _ in 0..writers.max(1) {
            tokio::spawn(write_queued(pool.clone(), queue.clone(), handoff.clone()));
        }
        Publisher { jobs }
    }

    /// Stores `events` on `topic`, with the requests queued beside it;
    /// answers once they are durable.
    pub(super) async fn publish(
        &self,
        topic: &str,
        events: Vec<CloudEvent>,
        now: Timestamp,
    ) -> Result<Vec<PublishOutcome>> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            topic: topic.to_owned(),
            events,
            now,
            reply,
        };
        self.jobs
            .send(job)
            .map_err(|_| StoreError::Unavailable("the store is closing".into()))?;
        answer.await.map_err(|_| {
            StoreError::Unavailable("the store closed before the publish was written".into())
        })?
    }
}

/// One writer: takes the requests waiting (one at least, waiting for it),
/// writes them, and again, until the publisher is dropped.
async fn write_queued(pool: Pool, queue: Queue, handoff: Arc<Handoff>) {
    loop {
        let jobs = {
            let mut queue = queue.lock().await;
            let Some(first) = queue.recv().await else {
                return;
            };
            let mut events = first.events.len();
            let mut jobs = vec![first];
            while events < MAX_EVENTS_PER_STATEMENT {
                let Ok(job) = queue.try_recv() else { break };
                events += job.events.len();
                jobs.push(job);
            }
            jobs
        };
        for (topic, jobs) in by_topic(jobs) {
            write_together(&pool, &topic, jobs, &handoff).await;
        }
    }
}

/// The jobs per topic, each topic's in the order they came.
fn by_topic(jobs: Vec<Job>) -> Vec<(String, Vec<Job>)> {
    let mut topics: Vec<(String, Vec<Job>)> = Vec::new();
    for job in jobs {
        match topics.iter_mut().find(|(topic, _)| *topic == job.topic) {
            Some((_, same)) => same.push(job),
            None => topics.push((job.topic.clone(), vec![job])),
        }
    }
    topics
}

/// Writes one topic's jobs with one statement, its events published at
/// the latest of their requests' times (none was stored before it), and
/// answers each with its own outcomes. If that fails and there were
/// several, each is written alone for an answer of its own.
async fn write_together(pool: &Pool, topic: &str, jobs: Vec<Job>, handoff: &Handoff) {
    if jobs.len() == 1 {
        write_alone(pool, topic, jobs, handoff).await;
        return;
    }
    let now = jobs.iter().map(|job| job.now).max().unwrap_or_default();
    let events: Vec<&CloudEvent> = jobs.iter().flat_map(|job| &job.events).collect();
    match write(pool, topic, &events, now, handoff).await {
        Ok(outcomes) => {
            let mut outcomes = outcomes.into_iter();
            for job in jobs {
                let own = outcomes.by_ref().take(job.events.len()).collect();
                let _ = job.reply.send(Ok(own));
            }
        }
        Err(err) => {
            tracing::debug!(topic, requests = jobs.len(), error = %err,
                "a publish written for several requests failed; writing each alone");
            write_alone(pool, topic, jobs, handoff).await;
        }
    }
}

/// Writes each job with a statement of its own.
async fn write_alone(pool: &Pool, topic: &str, jobs: Vec<Job>, handoff: &Handoff) {
    for job in jobs {
        let events: Vec<&CloudEvent> = job.events.iter().collect();
        let outcome = write(pool, topic, &events, job.now, handoff).await;
        let _ = job.reply.send(outcome);
    }
}

/// One statement, atomic without an explicit transaction: what it took
/// into flight is handed over once it returns, committed.
async fn write(
    pool: &Pool,
    topic: &str,
    events: &[&CloudEvent],
    now: Timestamp,
    handoff: &Handoff,
) -> Result<Vec<PublishOutcome>> {
    let client = pool.get().await.map_err(pool_error)?;
    let mut taken = Taken::new(Some(handoff));
    let outcomes = publish_in(&client, topic, events, now, &mut taken).await?;
    taken.hand_over();
    Ok(outcomes)
}

//! Wake-ups on PostgreSQL: a write that made work due wakes this node's
//! dispatcher through the store's in-process `Notify` ([`PostgresStore::wake`])
//! and tells the other nodes with a NOTIFY.
//!
//! Across nodes: a dedicated connection LISTENs on the wake-up
//! channel and turns each notification into a local wake-up of the
//! dispatcher. If the connection drops it is re-opened; meanwhile the
//! dispatcher's polling keeps delivering, only a little later.
//!
//! NOTIFY is not sent by the writes themselves: a transaction that notifies
//! holds a database-wide lock from its commit until its WAL is flushed, so
//! notifying publishes would commit one at a time. Instead, writes that
//! made work due ask the announcer, which sends one NOTIFY for however many
//! asked meanwhile, on its own connection with asynchronous commit. The
//! listener skips the node's own notifications: the node woke its
//! dispatcher itself when it asked.

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::Notify;
use tokio_postgres::{AsyncMessage, NoTls};

use super::PostgresStore;

/// The channel the announcer notifies and every node listens on.
const WAKEUP_CHANNEL: &str = "redrive_due";

/// Pause before re-opening a lost listening connection.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// The node's listener and announcer, running until the store drops.
pub(super) struct Listening {
    /// Asks the announcer to tell the other nodes there is work.
    announce: Arc<Notify>,
    listener: tokio::task::JoinHandle<()>,
    announcer: tokio::task::JoinHandle<()>,
}

impl Listening {
    /// Starts listening on connections of `config` (outside the pool, which
    /// would hand a listening connection to other work): notifications wake
    /// `wakeups`.
    pub(super) fn start(config: &tokio_postgres::Config, wakeups: Arc<Notify>) -> Listening {
        let own = Announcer::default();
        let listener = tokio::spawn(run(config.clone(), wakeups, own.clone()));
        let announce = Arc::new(Notify::new());
        let announcer = tokio::spawn(self::announce(config.clone(), announce.clone(), own));
        Listening {
            announce,
            listener,
            announcer,
        }
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        self.listener.abort();
        self.announcer.abort();
    }
}

impl PostgresStore {
    /// Wakes this node's dispatcher now and the other nodes' shortly
    /// (after the work is committed).
    pub(super) fn wake(&self) {
        self.wakeups.notify_one();
        self.listening.announce.notify_one();
    }
}

/// The server process of this node's announcing connection, so the
/// listener can tell its own notifications from other nodes'. 0 while
/// unknown.
#[derive(Clone, Default)]
struct Announcer(Arc<AtomicI32>);

impl Announcer {
    fn is(&self, process_id: i32) -> bool {
        let own = self.0.load(Ordering::Relaxed);
        own != 0 && own == process_id
    }
}

/// Runs until the store drops it (the task is aborted).
async fn run(config: tokio_postgres::Config, wakeups: Arc<Notify>, own: Announcer) {
    loop {
        match listen(&config, &wakeups, &own).await {
            Ok(()) => tracing::warn!("the wake-up connection closed; reopening it"),
            Err(err) => tracing::warn!(error = %err, "the wake-up connection failed; reopening it"),
        }
        // Anything published while we were away is found by this wake-up.
        wakeups.notify_one();
        tokio::time::sleep(RECONNECT_DELAY).await;
    }
}

async fn listen(
    config: &tokio_postgres::Config,
    wakeups: &Notify,
    own: &Announcer,
) -> Result<(), String> {
    let (client, mut connection) = config
        .connect(NoTls)
        .await
        .map_err(|err| super::pg_error(err).to_string())?;
    let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
    // The connection is only driven by polling `messages`, so the LISTEN
    // runs concurrently with it.
    let sql = format!("LISTEN {WAKEUP_CHANNEL}");
    let listen = client.batch_execute(&sql);
    tokio::pin!(listen);
    let mut listening = false;
    loop {
        tokio::select! {
            done = &mut listen, if !listening => {
                done.map_err(|err| super::pg_error(err).to_string())?;
                listening = true;
                tracing::debug!(channel = WAKEUP_CHANNEL, "listening for wake-ups");
            }
            message = messages.next() => match message {
                Some(Ok(AsyncMessage::Notification(notification))) => {
                    if !own.is(notification.process_id()) {
                        wakeups.notify_one();
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(err)) => return Err(super::pg_error(err).to_string()),
                None => return Ok(()),
            }
        }
    }
}

/// Sends a NOTIFY each time it is asked, coalescing requests that arrive
/// while one is being sent. Runs until the store drops it.
async fn announce(config: tokio_postgres::Config, requests: Arc<Notify>, own: Announcer) {
    loop {
        own.0.store(0, Ordering::Relaxed);
        match announce_on(&config, &requests, &own).await {
            Ok(()) => tracing::warn!("the announcing connection closed; reopening it"),
            Err(err) => {
                tracing::warn!(error = %err, "the announcing connection failed; reopening it")
            }
        }
        tokio::time::sleep(RECONNECT_DELAY).await;
    }
}

async fn announce_on(
    config: &tokio_postgres::Config,
    requests: &Notify,
    own: &Announcer,
) -> Result<(), String> {
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|err| super::pg_error(err).to_string())?;
    let driver = tokio::spawn(connection);
    // Nothing durable is written here: a lost notification only means
    // another node finds the work by polling.
    client
        .batch_execute("SET synchronous_commit = off")
        .await
        .map_err(|err| super::pg_error(err).to_string())?;
    let process_id: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .map_err(|err| super::pg_error(err).to_string())?
        .get(0);
    own.0.store(process_id, Ordering::Relaxed);
    let statement = client
        .prepare("SELECT pg_notify($1, '')")
        .await
        .map_err(|err| super::pg_error(err).to_string())?;
    let outcome = loop {
        requests.notified().await;
        if let Err(err) = client.execute(&statement, &[&WAKEUP_CHANNEL]).await {
            break Err(super::pg_error(err).to_string());
        }
        if driver.is_finished() {
            break Ok(());
        }
    };
    driver.abort();
    outcome
}

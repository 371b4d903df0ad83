//! Records finished pushes in batches. Every push that ends hands its
//! completion to one recorder task, which writes whatever has queued up
//! while the previous write was under way in a single `complete_many`
//! call: under load the store commits many attempts per transaction
//! (group commit) instead of one each, and when idle a completion is
//! written at once, alone. A push's slot is free before its outcome is
//! written, so the recorder also tells the claim loop what it could not
//! see at its last look: a retry now scheduled, or the outcomes waiting
//! back under their limit (past it, claims wait).
//!
//! A write that fails for a reason that passes (a full disk) is tried
//! again, with the same completions, until it works: the pushes behind it
//! were made, and recording them late is better than leaving their
//! deliveries in flight until the lease ends and pushing them again.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use redrive_core::Decision;
use redrive_store::{Completion, Store};
use tokio::sync::{mpsc, oneshot};

use crate::ops::StoreWrites;

/// Most completions written in one call; bounds the statement's size.
const MAX_BATCH: usize = 512;
/// The first wait before a failed write is tried again; it doubles up to
/// `MAX_RETRY_WAIT`, kept short so a freed disk is used at once.
const FIRST_RETRY_WAIT: Duration = Duration::from_millis(50);
const MAX_RETRY_WAIT: Duration = Duration::from_millis(500);

type Ack = oneshot::Sender<Result<(), String>>;

/// Hands completions to the recorder task; cheap to clone, one per push.
#[derive(Clone)]
pub struct Recorder {
    queue: mpsc::UnboundedSender<(Completion, Ack)>,
    held: Arc<AtomicUsize>,
    unwritten: Arc<AtomicUsize>,
}

/// How far behind the recorder is, and where to say it has caught up or
/// written a retry.
struct Backlog {
    /// Completions handed over and not yet written (or given up on).
    unwritten: Arc<AtomicUsize>,
    /// Past this many, the dispatcher claims nothing more ...
    limit: usize,
    /// ... until the recorder wakes it here, below it again (and after
    /// writing a retry, which may be due before the loop next looks).
    wake: Arc<tokio::sync::Notify>,
}

impl Recorder {
    /// Starts the recorder task; it ends once every `Recorder` is dropped
    /// and what they queued is written (or, if writes fail then, tried
    /// once more). When the completions waiting to be written fall below
    /// `backlog_limit` from at or above it, or a write scheduled a retry,
    /// the recorder wakes the store's wake-up (the claim loop waits on it).
    pub fn start(
        store: Arc<dyn Store>,
        writes: Arc<StoreWrites>,
        backlog_limit: usize,
    ) -> (Recorder, tokio::task::JoinHandle<()>) {
        let (queue, pending) = mpsc::unbounded_channel();
        let held = Arc::new(AtomicUsize::new(0));
        let backlog = Backlog {
            unwritten: Arc::new(AtomicUsize::new(0)),
            limit: backlog_limit,
            wake: store.wakeups(),
        };
        let unwritten = backlog.unwritten.clone();
        let task = tokio::spawn(run(store, writes, held.clone(), backlog, pending));
        (
            Recorder {
                queue,
                held,
                unwritten,
            },
            task,
        )
    }

    /// Completions handed over and not yet written: the pushes behind them
    /// are over, but their deliveries stay claimed until then.
    pub fn unwritten(&self) -> usize {
        self.unwritten.load(Ordering::SeqCst)
    }

    /// Completions held after a failed write, waiting to be written again.
    /// While there are any, leases must not be rescued: those deliveries
    /// were pushed and their outcome is about to be recorded.
    pub fn holding(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }

    /// Writes `completion` (with whatever else is waiting) and returns once
    /// it is durable, or with what went wrong.
    pub async fn record(&self, completion: Completion) -> Result<(), String> {
        let (ack, written) = oneshot::channel();
        self.unwritten.fetch_add(1, Ordering::SeqCst);
        if self.queue.send((completion, ack)).is_err() {
            self.unwritten.fetch_sub(1, Ordering::SeqCst);
            return Err("the attempt recorder has stopped".to_owned());
        }
        written
            .await
            .map_err(|_| "the attempt recorder stopped before writing".to_owned())?
    }
}

async fn run(
    store: Arc<dyn Store>,
    writes: Arc<StoreWrites>,
    held: Arc<AtomicUsize>,
    backlog: Backlog,
    mut pending: mpsc::UnboundedReceiver<(Completion, Ack)>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while pending.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (completions, acks): (Vec<Completion>, Vec<Ack>) = batch.drain(..).unzip();
        let written = completions.len();
        let retries = completions
            .iter()
            .any(|c| matches!(c.attempt.decision, Decision::Retry { .. }));
        let result = write(&*store, &writes, &held, completions, &pending).await;
        if let Err(err) = &result {
            // Each push logs its own delivery; this says the batch went.
            tracing::debug!(error = %err, completions = written, "a batch of attempts was not recorded");
        }
        for ack in acks {
            // The push may have been aborted meanwhile: nobody to tell.
            let _ = ack.send(result.clone());
        }
        let before = backlog.unwritten.fetch_sub(written, Ordering::SeqCst);
        let caught_up = before >= backlog.limit && before - written < backlog.limit;
        // The loop may have looked for what is due next before these
        // retries were written (their pushes' slots were free before):
        // it looks again.
        if caught_up || (retries && result.is_ok()) {
            backlog.wake.notify_one();
        }
    }
}

/// Writes `completions`, trying again while the store's writes fail for a
/// reason that passes, until they work or the dispatcher stops (then the
/// deliveries' leases bring them back, as after a crash).
async fn write(
    store: &dyn Store,
    writes: &StoreWrites,
    held: &AtomicUsize,
    completions: Vec<Completion>,
    pending: &mpsc::UnboundedReceiver<(Completion, Ack)>,
) -> Result<(), String> {
    let mut wait = FIRST_RETRY_WAIT;
    let mut holding = false;
    let result = loop {
        match store.complete_many(completions.clone()).await {
            Ok(()) => {
                writes.succeeded();
                break Ok(());
            }
            Err(err) if err.is_transient() => {
                writes.failed(&err);
                if pending.is_closed() {
                    break Err(err.to_string());
                }
                if !holding {
                    holding = true;
                    held.fetch_add(completions.len(), Ordering::SeqCst);
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(MAX_RETRY_WAIT);
            }
            Err(err) => break Err(err.to_string()),
        }
    };
    if holding {
        held.fetch_sub(completions.len(), Ordering::SeqCst);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use redrive_core::{Attempt, Decision};
    use redrive_store::prelude::*;
    use redrive_store::{ClaimRequest, ClaimWant, SqliteStore};
    use std::time::Duration;

    async fn store_with_claimed(
        count: usize,
    ) -> (tempfile::TempDir, Arc<SqliteStore>, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        let now = crate::clock::Clock::default().now();
        let store = Arc::new(SqliteStore::open(dir.path(), now).unwrap());
        store.create_topic("t", now).await.unwrap();
        store
            .create_subscription(redrive_store::conformance::spec("s", "t"), now)
            .await
            .unwrap();
        let events = (0..count)
            .map(|i| redrive_store::conformance::event(&format!("e{i}"), "t"))
            .collect();
        store.publish("t", events, now).await.unwrap();
        let claimed = store
            .claim_due(ClaimRequest {
                now,
                lease: Duration::from_secs(60),
                limit_total: u32::MAX,
                wants: vec![ClaimWant {
                    subscription: "s".into(),
                    limit: u32::try_from(count).unwrap(),
                    rate: None,
                    lookahead: std::time::Duration::ZERO,
                }],
            })
            .await
            .unwrap()
            .claimed;
        let ids = claimed.into_iter().map(|c| c.delivery.id).collect();
        (dir, store, ids)
    }

    fn delivered(id: &str) -> Completion {
        Completion {
            delivery_id: id.to_owned(),
            subscription: "s1".into(),
            attempt: Attempt {
                number: 1,
                kind: redrive_core::AttemptKind::Push,
                started_at: crate::clock::Clock::default().now(),
                duration_ms: 1,
                status: Some(200),
                error: None,
                error_message: None,
                response_snippet: None,
                decision: Decision::Delivered,
            },
        }
    }

    #[tokio::test]
    async fn concurrent_completions_are_all_written_and_acknowledged() {
        let (_dir, store, ids) = store_with_claimed(300).await;
        let (recorder, task) = Recorder::start(store.clone(), Arc::default(), usize::MAX);
        let mut writes = tokio::task::JoinSet::new();
        for id in &ids {
            let recorder = recorder.clone();
            let completion = delivered(id);
            writes.spawn(async move { recorder.record(completion).await });
        }
        while let Some(written) = writes.join_next().await {
            assert_eq!(written.unwrap(), Ok(()));
        }
        for id in &ids {
            let detail = store.get_delivery(id).await.unwrap();
            assert_eq!(
                detail.delivery.state,
                redrive_core::DeliveryState::Delivered
            );
            assert_eq!(detail.attempts.len(), 1);
        }
        drop(recorder);
        task.await.unwrap();
    }

    /// Whether writing one completion with `decision`, with `limit` as the
    /// backlog limit, woke the claim loop; and that nothing is left
    /// counted as unwritten.
    async fn woke_after_one_write(limit: usize, decision: Decision) -> bool {
        use futures::FutureExt;
        let (_dir, store, ids) = store_with_claimed(1).await;
        let wakeups = store.wakeups();
        // The publish's own wake-up, taken first.
        let _ = wakeups.notified().now_or_never();
        let (recorder, task) = Recorder::start(store.clone(), Arc::default(), limit);
        let mut completion = delivered(&ids[0]);
        completion.attempt.decision = decision;
        assert_eq!(recorder.record(completion).await, Ok(()));
        assert_eq!(recorder.unwritten(), 0);
        drop(recorder);
        task.await.unwrap();
        wakeups.notified().now_or_never().is_some()
    }

    #[tokio::test]
    async fn catching_up_below_the_backlog_limit_wakes_the_claim_loop() {
        // One completion waiting reached a limit of one: written, the
        // backlog is below it again.
        assert!(woke_after_one_write(1, Decision::Delivered).await);
        // It never reached a limit of two: nothing to say.
        assert!(!woke_after_one_write(2, Decision::Delivered).await);
    }

    #[tokio::test]
    async fn a_written_retry_wakes_the_claim_loop() {
        let retry = Decision::Retry {
            at: crate::clock::Clock::default().now(),
            retry: 1,
        };
        assert!(woke_after_one_write(usize::MAX, retry).await);
    }
}

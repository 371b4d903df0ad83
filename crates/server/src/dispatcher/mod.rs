//! The dispatcher: claims due deliveries in batches, pushes them within the
//! global and per-subscription concurrency limits, and records each attempt
//! with the decision `redrive-core` takes for it.

pub mod push;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redrive_core::rate::TokenBucket;
use redrive_core::{Attempt, AttemptContext, Subscription};
use redrive_store::{ClaimRequest, ClaimWant, ClaimedDelivery, Completion, Store};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinSet;

use crate::clock::Clock;

#[derive(Clone, Debug)]
pub struct DispatcherConfig {
    /// Pushes in flight at once, over all subscriptions.
    pub max_in_flight: usize,
    /// Longest sleep without a wake-up; a safety net, not the fast path.
    pub poll_interval: Duration,
    /// How long a claim outlives the push timeout before others may take it.
    pub lease_margin: Duration,
    /// How long in-flight pushes may finish after shutdown begins.
    pub drain_timeout: Duration,
    /// The time claims and decisions read (tests move it forward).
    pub clock: Clock,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        DispatcherConfig {
            max_in_flight: 512,
            poll_interval: Duration::from_secs(1),
            lease_margin: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(30),
            clock: Clock::default(),
        }
    }
}

/// Most deliveries of one subscription claimed in one round.
const MAX_CLAIM_PER_SUBSCRIPTION: u32 = 256;
/// How often leases that ran out are looked for.
const RESCUE_INTERVAL: Duration = Duration::from_secs(5);
/// Subscriptions are re-read at least this often (other nodes may change them).
const SUBSCRIPTION_REFRESH: Duration = Duration::from_secs(5);

pub struct Dispatcher {
    store: Arc<dyn Store>,
    client: reqwest::Client,
    config: DispatcherConfig,
    subscriptions_changed: Arc<Notify>,
}

/// The dispatcher loop's view of the world between rounds.
struct Round {
    subscriptions: Vec<Arc<Subscription>>,
    by_name: HashMap<String, Arc<Subscription>>,
    loaded_at: Option<Instant>,
    in_flight: HashMap<String, u32>,
    total_in_flight: usize,
    rotation: usize,
    /// Token buckets of rate-limited subscriptions, on a monotonic clock
    /// counted from `started`: pacing is about real time, not the clock
    /// decisions read.
    buckets: HashMap<String, TokenBucket>,
    started: Instant,
}

impl Dispatcher {
    pub fn new(
        store: Arc<dyn Store>,
        client: reqwest::Client,
        config: DispatcherConfig,
        subscriptions_changed: Arc<Notify>,
    ) -> Self {
        Dispatcher {
            store,
            client,
            config,
            subscriptions_changed,
        }
    }

    /// Runs until `shutdown` turns true, then lets in-flight pushes finish
    /// for up to the drain timeout.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<String>();
        let wakeups = self.store.wakeups();
        let mut tasks = JoinSet::new();
        let mut round = Round {
            subscriptions: Vec::new(),
            by_name: HashMap::new(),
            loaded_at: None,
            in_flight: HashMap::new(),
            total_in_flight: 0,
            rotation: 0,
            buckets: HashMap::new(),
            started: Instant::now(),
        };
        let mut last_rescue = Instant::now();
        while !*shutdown.borrow() {
            while tasks.try_join_next().is_some() {}
            while let Ok(name) = done_rx.try_recv() {
                round.finished(&name);
            }
            if round
                .loaded_at
                .is_none_or(|at| at.elapsed() >= SUBSCRIPTION_REFRESH)
                && !self.reload(&mut round).await
            {
                tokio::time::sleep(self.config.poll_interval).await;
                continue;
            }
            if last_rescue.elapsed() >= RESCUE_INTERVAL {
                last_rescue = Instant::now();
                if let Err(err) = self.store.rescue_expired(self.config.clock.now()).await {
                    tracing::error!(error = %err, "cannot rescue expired leases");
                }
            }

            let wants = round.wants(self.config.max_in_flight);
            let mut next_due_at = None;
            let mut claimed_any = false;
            if !wants.is_empty() {
                let request = ClaimRequest {
                    now: self.config.clock.now(),
                    lease: self.lease(&round),
                    wants,
                };
                match self.store.claim_due(request).await {
                    Ok(batch) => {
                        next_due_at = batch.next_due_at;
                        claimed_any = !batch.claimed.is_empty();
                        round.spend_tokens(&batch.claimed);
                        for claimed in batch.claimed {
                            self.start_push(&mut round, &mut tasks, &done_tx, claimed);
                        }
                    }
                    Err(err) => {
                        tracing::error!(error = %err, "cannot claim due deliveries");
                        tokio::time::sleep(self.config.poll_interval).await;
                        continue;
                    }
                }
            }

            let now = self.config.clock.now();
            let more_due = next_due_at.is_some_and(|due| due <= now);
            if more_due && claimed_any && round.total_in_flight < self.config.max_in_flight {
                continue;
            }
            let mut wait = self.config.poll_interval;
            if let Some(refill) = round.next_refill() {
                wait = wait.min(refill);
            }
            if let Some(due) = next_due_at.filter(|due| *due > now) {
                let until_due = Duration::try_from(due.duration_since(now)).unwrap_or_default();
                wait = wait.min(until_due);
            }
            tokio::select! {
                _ = wakeups.notified() => {}
                _ = self.subscriptions_changed.notified() => round.loaded_at = None,
                Some(name) = done_rx.recv() => round.finished(&name),
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
            }
        }
        self.drain(tasks).await;
    }

    async fn reload(&self, round: &mut Round) -> bool {
        match self.store.list_subscriptions().await {
            Ok(subscriptions) => {
                round.subscriptions = subscriptions.into_iter().map(Arc::new).collect();
                round.by_name = round
                    .subscriptions
                    .iter()
                    .map(|s| (s.spec.name.clone(), s.clone()))
                    .collect();
                round.loaded_at = Some(Instant::now());
                round.sync_buckets();
                true
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot load subscriptions");
                false
            }
        }
    }

    /// Long enough for the slowest subscription's push to end on its own.
    fn lease(&self, round: &Round) -> Duration {
        let longest = round
            .subscriptions
            .iter()
            .map(|s| s.spec.timeout.as_duration())
            .max()
            .unwrap_or_default();
        longest + self.config.lease_margin
    }

    fn start_push(
        &self,
        round: &mut Round,
        tasks: &mut JoinSet<()>,
        done: &mpsc::UnboundedSender<String>,
        claimed: ClaimedDelivery,
    ) {
        let Some(subscription) = round.by_name.get(&claimed.delivery.subscription).cloned() else {
            // Deleted since the last reload: its deliveries are gone with it.
            return;
        };
        *round
            .in_flight
            .entry(subscription.spec.name.clone())
            .or_default() += 1;
        round.total_in_flight += 1;
        let store = self.store.clone();
        let client = self.client.clone();
        let clock = self.config.clock.clone();
        let done = done.clone();
        tasks.spawn(async move {
            let completion = attempt(&client, &subscription, &claimed, &clock).await;
            if let Err(err) = store.complete_many(vec![completion]).await {
                // The lease runs out and the delivery is tried again.
                tracing::error!(delivery = %claimed.delivery.id, error = %err,
                    "cannot record an attempt");
            }
            let _ = done.send(subscription.spec.name.clone());
        });
    }

    async fn drain(&self, mut tasks: JoinSet<()>) {
        if tasks.is_empty() {
            return;
        }
        tracing::info!(
            in_flight = tasks.len(),
            "waiting for in-flight pushes to finish"
        );
        let all_done = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(self.config.drain_timeout, all_done)
            .await
            .is_err()
        {
            tracing::warn!("drain timeout passed; unfinished pushes are retried at next start");
        }
    }
}

/// Pushes once and decides what follows.
async fn attempt(
    client: &reqwest::Client,
    subscription: &Subscription,
    claimed: &ClaimedDelivery,
    clock: &Clock,
) -> Completion {
    let spec = &subscription.spec;
    let delivery = &claimed.delivery;
    let result = push::push(client, spec, claimed).await;
    let context = AttemptContext {
        // The budget counts from the last redrive.
        attempt: delivery
            .attempts
            .saturating_sub(delivery.attempts_before_redrive),
        first_attempt_at: delivery.first_attempt_at.unwrap_or(result.started_at),
        now: clock.now(),
        jitter_sample: rand::random::<f64>(),
    };
    let decision = spec.decide(&result.outcome, &context);
    let (status, error) = match result.outcome {
        redrive_core::AttemptOutcome::Response { status, .. } => (Some(status), None),
        redrive_core::AttemptOutcome::Error(class) => (None, Some(class)),
    };
    tracing::debug!(delivery = %delivery.id, subscription = %spec.name, attempt = delivery.attempts,
        status, error = error.map(|e| e.as_str()), ?decision, "attempt finished");
    Completion {
        delivery_id: delivery.id.clone(),
        attempt: Attempt {
            number: delivery.attempts,
            started_at: result.started_at,
            duration_ms: u64::try_from(result.duration.as_millis()).unwrap_or(u64::MAX),
            status,
            error,
            error_message: result.error_message,
            response_snippet: result.response_snippet,
            decision,
        },
    }
}

impl Round {
    /// Keeps one bucket per rate-limited subscription, rebuilt (full) when
    /// its rate or bucket size changes, dropped when the limit goes.
    fn sync_buckets(&mut self) {
        let now = self.started.elapsed();
        let mut buckets = HashMap::new();
        for subscription in &self.subscriptions {
            let spec = &subscription.spec;
            let Some(rate) = spec.rate else { continue };
            let size = spec.effective_bucket_size();
            let bucket = match self.buckets.remove(&spec.name) {
                Some(bucket) if bucket.fits(rate, size) => bucket,
                _ => TokenBucket::new(rate, size, now),
            };
            buckets.insert(spec.name.clone(), bucket);
        }
        self.buckets = buckets;
    }

    /// Each claimed delivery takes a token of its subscription's bucket.
    fn spend_tokens(&mut self, claimed: &[ClaimedDelivery]) {
        let now = self.started.elapsed();
        for claimed in claimed {
            if let Some(bucket) = self.buckets.get_mut(&claimed.delivery.subscription) {
                bucket.take(1, now);
            }
        }
    }

    /// How long until a bucket that is not full gains its next token, so
    /// deliveries held back by a rate go as soon as they may.
    fn next_refill(&mut self) -> Option<Duration> {
        let now = self.started.elapsed();
        self.buckets
            .values_mut()
            .filter_map(|bucket| {
                if bucket.is_full(now) {
                    None
                } else {
                    bucket.next_token_in(now)
                }
            })
            .filter(|wait| !wait.is_zero())
            .min()
    }

    fn finished(&mut self, subscription: &str) {
        if let Some(count) = self.in_flight.get_mut(subscription) {
            *count = count.saturating_sub(1);
        }
        self.total_in_flight = self.total_in_flight.saturating_sub(1);
    }

    /// What to claim this round: each subscription up to its free
    /// concurrency, all within the global free slots. The starting point
    /// rotates so no subscription always goes last.
    fn wants(&mut self, max_in_flight: usize) -> Vec<ClaimWant> {
        let mut free = max_in_flight.saturating_sub(self.total_in_flight);
        let count = self.subscriptions.len();
        let mut wants = Vec::with_capacity(count);
        for i in 0..count {
            let subscription = &self.subscriptions[(self.rotation + i) % count];
            let busy = self
                .in_flight
                .get(&subscription.spec.name)
                .copied()
                .unwrap_or(0);
            let own_free = subscription.spec.max_concurrency.saturating_sub(busy);
            let now = self.started.elapsed();
            let tokens = self
                .buckets
                .get_mut(&subscription.spec.name)
                .map_or(u32::MAX, |bucket| bucket.available(now));
            let limit = own_free
                .min(tokens)
                .min(MAX_CLAIM_PER_SUBSCRIPTION)
                .min(u32::try_from(free).unwrap_or(u32::MAX));
            free -= limit as usize;
            wants.push(ClaimWant {
                subscription: subscription.spec.name.clone(),
                limit,
            });
        }
        self.rotation = self.rotation.wrapping_add(1);
        wants
    }
}

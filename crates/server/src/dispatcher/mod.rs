//! The dispatcher: claims due deliveries in batches, pushes them within the
//! global and per-subscription concurrency limits, and records each attempt
//! with the decision `redrive-core` takes for it. Each subscription's pushes
//! also follow its flow control ([`flow`]): without push backoff it only
//! limits how many pushes an endpoint that does not answer may hold, never
//! when a due delivery starts; with push backoff it is Pub/Sub's. A paused
//! or disabled subscription gets none.

pub mod flow;
pub mod push;
mod record;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use redrive_core::rate::TokenBucket;
use redrive_core::{
    Attempt, AttemptContext, AttemptOutcome, Decision, ErrorClass, RetryAfter, RetryPolicy,
    Subscription,
};
use redrive_store::{ClaimRate, ClaimRequest, ClaimWant, ClaimedDelivery, Completion, Store};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinSet;

use crate::clock::Clock;
use flow::{Flow, PushHolds, Signal, Ticket};

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
/// The shortest wait for a shared rate bucket to refill, so a very fast
/// rate contended by several nodes can't turn the loop into a spin.
const MIN_RATE_WAIT: Duration = Duration::from_millis(1);
/// How long before it falls due a delivery of a subscription without push
/// backoff or rate limit may be claimed; its push then waits for the exact
/// time. A claim waits its turn at the store behind the attempts being
/// recorded, tens of milliseconds under load: claimed ahead, a retry starts
/// on time anyway.
const LOOKAHEAD: Duration = Duration::from_millis(200);

pub struct Dispatcher {
    store: Arc<dyn Store>,
    client: reqwest::Client,
    config: DispatcherConfig,
    subscriptions_changed: Arc<Notify>,
    security: Option<crate::security::Security>,
    /// True while the claim loop runs (readiness reads it).
    running: Arc<AtomicBool>,
    /// Pushes under way (the in-flight gauge reads it).
    pushes: Arc<AtomicUsize>,
    /// Deliveries claimed and not yet recorded: released at shutdown.
    claimed: Arc<Mutex<HashSet<String>>>,
    /// Whether store writes work; failures are logged there, once per
    /// interval.
    writes: Arc<crate::ops::StoreWrites>,
    /// Where the pauses in force are noted for others to read.
    holds: Arc<PushHolds>,
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
    /// Push backoff and flow control, per subscription.
    flows: HashMap<String, Flow>,
    holds: Arc<PushHolds>,
}

/// A push that ended, for the dispatcher loop's bookkeeping.
struct Finished {
    subscription: String,
    ticket: Ticket,
    signal: Signal,
}

impl Dispatcher {
    pub fn new(
        store: Arc<dyn Store>,
        client: reqwest::Client,
        config: DispatcherConfig,
        subscriptions_changed: Arc<Notify>,
    ) -> Self {
        let holds = Arc::new(PushHolds::new(config.clock.clone()));
        Dispatcher {
            store,
            client,
            config,
            subscriptions_changed,
            security: None,
            running: Arc::default(),
            pushes: Arc::default(),
            claimed: Arc::default(),
            writes: Arc::default(),
            holds,
        }
    }

    /// Signs pushes and enforces the network policy on literal addresses.
    pub fn with_security(mut self, security: crate::security::Security) -> Self {
        self.security = Some(security);
        self
    }

    /// Reports liveness and in-flight pushes into `ops`.
    pub fn reporting_to(mut self, ops: &crate::ops::OpsState) -> Self {
        self.running = ops.dispatcher_running.clone();
        self.pushes = ops.pushes_in_flight.clone();
        self.writes = ops.store_writes.clone();
        self
    }

    /// The pushes this dispatcher holds back, for the API to show.
    pub fn push_holds(&self) -> Arc<PushHolds> {
        self.holds.clone()
    }

    /// Runs until `shutdown` turns true, then lets in-flight pushes finish
    /// for up to the drain timeout and releases the claims of the rest.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let running = RunningFlag::raise(self.running.clone());
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Finished>();
        let wakeups = self.store.wakeups();
        let mut tasks = JoinSet::new();
        let (recorder, recording) =
            record::Recorder::start(self.store.clone(), self.writes.clone());
        let mut round = Round {
            subscriptions: Vec::new(),
            by_name: HashMap::new(),
            loaded_at: None,
            in_flight: HashMap::new(),
            total_in_flight: 0,
            rotation: 0,
            flows: HashMap::new(),
            holds: self.holds.clone(),
            buckets: HashMap::new(),
            started: Instant::now(),
        };
        let mut last_rescue = Instant::now();
        while !*shutdown.borrow() {
            while tasks.try_join_next().is_some() {}
            while let Ok(finished) = done_rx.try_recv() {
                round.finished(finished);
            }
            // A change announced while the loop was busy elsewhere: reload
            // before claiming, so no push goes out on a stale endpoint.
            if self
                .subscriptions_changed
                .notified()
                .now_or_never()
                .is_some()
            {
                round.loaded_at = None;
            }
            if round
                .loaded_at
                .is_none_or(|at| at.elapsed() >= SUBSCRIPTION_REFRESH)
                && !self.reload(&mut round).await
            {
                tokio::time::sleep(self.config.poll_interval).await;
                continue;
            }
            // While the recorder holds outcomes it could not write, their
            // leases may have run out: rescuing them would push them again
            // just before their outcome is recorded.
            if last_rescue.elapsed() >= RESCUE_INTERVAL && recorder.holding() == 0 {
                last_rescue = Instant::now();
                if let Err(err) = self.store.rescue_expired(self.config.clock.now()).await {
                    self.writes.report(&err, "cannot rescue expired leases");
                }
            }

            let free = self
                .config
                .max_in_flight
                .saturating_sub(round.total_in_flight);
            let wants = round.wants(free, Instant::now());
            let lookahead = wants
                .iter()
                .map(|want| want.lookahead)
                .max()
                .unwrap_or_default();
            let mut next_due_at = None;
            let mut rate_refill_at = None;
            let mut claimed_any = false;
            // With no free slot anywhere there is nothing to ask the store:
            // a push that ends, a pause that ends or a token that refills
            // wakes the loop.
            if wants.iter().any(|want| want.limit > 0) {
                let request = ClaimRequest {
                    now: self.config.clock.now(),
                    lease: self.lease(&round),
                    wants,
                    limit_total: u32::try_from(free).unwrap_or(u32::MAX),
                };
                match self.store.claim_due(request).await {
                    Ok(batch) => {
                        next_due_at = batch.next_due_at;
                        rate_refill_at = batch.rate_refill_at;
                        claimed_any = !batch.claimed.is_empty();
                        round.spend_tokens(&batch.claimed);
                        for claimed in batch.claimed {
                            self.start_push(&mut round, &mut tasks, &done_tx, &recorder, claimed);
                        }
                    }
                    Err(err) => {
                        self.writes.report(&err, "cannot claim due deliveries");
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
            // Other nodes emptied the shared bucket while this node's own
            // still holds tokens: come back for the shared bucket's next
            // token, neither at once (a spin) nor only at the next poll.
            if let Some(refill) = rate_refill_at {
                let until = Duration::try_from(refill.duration_since(now)).unwrap_or_default();
                wait = wait.min(until.max(MIN_RATE_WAIT));
            }
            if let Some(due) = next_due_at.filter(|due| *due > now) {
                let until_due = Duration::try_from(due.duration_since(now)).unwrap_or_default();
                // Come back when it may be claimed ahead; if that is already
                // so and it was not claimed, limits held it: come back when
                // it is due (or a push ends) rather than spin.
                let until_claimable = until_due.saturating_sub(lookahead);
                wait = wait.min(if until_claimable.is_zero() {
                    until_due
                } else {
                    until_claimable
                });
            }
            if let Some(pause_ends) = round.next_pause_end(Instant::now()) {
                wait = wait.min(pause_ends.saturating_duration_since(Instant::now()));
            }
            tokio::select! {
                // Changes first: a publish right after a change must see it.
                biased;
                _ = self.subscriptions_changed.notified() => round.loaded_at = None,
                _ = wakeups.notified() => {}
                Some(finished) = done_rx.recv() => round.finished(finished),
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
            }
        }
        drop(running);
        self.drain(tasks).await;
        drop(recorder);
        let _ = recording.await;
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
                round.follow_subscriptions();
                round.sync_buckets();
                true
            }
            Err(err) => {
                self.writes.report(&err, "cannot load subscriptions");
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
        done: &mpsc::UnboundedSender<Finished>,
        recorder: &record::Recorder,
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
        let ticket = round
            .flows
            .entry(subscription.spec.name.clone())
            .or_insert_with(|| {
                Flow::new(
                    subscription.spec.max_concurrency,
                    subscription.spec.push_backoff,
                )
            })
            .ticket();
        if let Ok(mut set) = self.claimed.lock() {
            set.insert(claimed.delivery.id.clone());
        }
        self.pushes.fetch_add(1, Ordering::SeqCst);
        let client = self.client.clone();
        let clock = self.config.clock.clone();
        let done = done.clone();
        let security = self.security.clone();
        let claimed_set = self.claimed.clone();
        let pushes = self.pushes.clone();
        let recorder = recorder.clone();
        tasks.spawn(async move {
            // Claimed ahead: the push starts when the delivery falls due.
            if let Ok(early) = Duration::try_from(claimed.due_at.duration_since(clock.now()))
                && !early.is_zero()
            {
                tokio::time::sleep(early).await;
            }
            let (completion, signal) =
                attempt(&client, &subscription, &claimed, &clock, security.as_ref()).await;
            let recorded = completion.attempt.clone();
            match recorder.record(completion).await {
                Ok(()) => crate::metrics::attempt_recorded(&subscription.spec.name, &recorded),
                // The lease runs out and the delivery is tried again.
                Err(err) => tracing::error!(delivery = %claimed.delivery.id, error = %err,
                    "cannot record an attempt"),
            }
            if let Ok(mut set) = claimed_set.lock() {
                set.remove(&claimed.delivery.id);
            }
            pushes.fetch_sub(1, Ordering::SeqCst);
            let _ = done.send(Finished {
                subscription: subscription.spec.name.clone(),
                ticket,
                signal,
            });
        });
    }

    async fn drain(&self, mut tasks: JoinSet<()>) {
        if !tasks.is_empty() {
            tracing::info!(
                in_flight = tasks.len(),
                drain_timeout_seconds = self.config.drain_timeout.as_secs_f64(),
                "waiting for in-flight pushes to finish"
            );
            let all_done = async { while tasks.join_next().await.is_some() {} };
            if tokio::time::timeout(self.config.drain_timeout, all_done)
                .await
                .is_err()
            {
                tasks.abort_all();
                while tasks.join_next().await.is_some() {}
                // Aborted tasks never got to count themselves out.
                self.pushes.store(0, Ordering::SeqCst);
            }
        }
        let unfinished: Vec<String> = match self.claimed.lock() {
            Ok(mut set) => set.drain().collect(),
            Err(_) => Vec::new(),
        };
        if unfinished.is_empty() {
            return;
        }
        // Aborted pushes may have reached their endpoint; releasing them
        // makes them due at once on the next start instead of after their
        // lease, and at-least-once covers the possible repeat.
        match self
            .store
            .release_claims(unfinished.clone(), self.config.clock.now())
            .await
        {
            Ok(released) => tracing::warn!(
                released,
                "drain timeout passed; unfinished pushes are due again at once"
            ),
            Err(err) => tracing::error!(
                error = %err,
                unfinished = unfinished.len(),
                "cannot release unfinished claims; they are retried when their lease ends"
            ),
        }
    }
}

/// True while held; lowered on drop, so a panicking loop reads as stopped.
struct RunningFlag(Arc<AtomicBool>);

impl RunningFlag {
    fn raise(flag: Arc<AtomicBool>) -> Self {
        flag.store(true, Ordering::SeqCst);
        RunningFlag(flag)
    }
}

impl Drop for RunningFlag {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// Pushes once and decides what follows; also says what the push tells
/// the subscription's flow control.
async fn attempt(
    client: &reqwest::Client,
    subscription: &Subscription,
    claimed: &ClaimedDelivery,
    clock: &Clock,
    security: Option<&crate::security::Security>,
) -> (Completion, Signal) {
    let spec = &subscription.spec;
    let delivery = &claimed.delivery;
    let result = match security {
        None => {
            let guard = push::Guard {
                policy: &redrive_core::security::EndpointPolicy::default(),
                secrets: &[],
            };
            push::push(client, spec, claimed, guard, clock.now()).await
        }
        Some(security) => match security.secrets.keys(&spec.name, clock.now()).await {
            Ok(keys) => {
                let secrets = keys.signing_at(clock.now());
                let guard = push::Guard {
                    policy: &security.endpoint_policy,
                    secrets: &secrets,
                };
                push::push(client, spec, claimed, guard, clock.now()).await
            }
            // An unsigned push would be refused by careful receivers and
            // accepted by careless ones: neither is right, so none is sent.
            Err(err) => {
                tracing::error!(subscription = %spec.name, error = %format!("{err:#}"),
                    "cannot read the signing secret; the attempt is not sent");
                push::PushResult {
                    started_at: clock.now(),
                    duration: Duration::ZERO,
                    outcome: redrive_core::AttemptOutcome::Error(redrive_core::ErrorClass::Other),
                    error_message: Some(format!("cannot sign the push: {err:#}")),
                    response_snippet: None,
                }
            }
        },
    };
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
    let signal = flow_signal(&result.outcome, &decision, &spec.retry_policy, clock.now());
    let (status, error) = match result.outcome {
        redrive_core::AttemptOutcome::Response { status, .. } => (Some(status), None),
        redrive_core::AttemptOutcome::Error(class) => (None, Some(class)),
    };
    log_attempt(delivery, &spec.name, status, error, &decision);
    let completion = Completion {
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
    };
    (completion, signal)
}

/// A push the endpoint acknowledged is a success; anything else a failure,
/// carrying the wait a 429 or 503 asked for with `Retry-After` — capped as
/// the policy caps the retry it delays, so a pause never holds back a
/// retry longer than the policy lets that answer delay it — and whether
/// the push got no answer in time.
fn flow_signal(
    outcome: &AttemptOutcome,
    decision: &Decision,
    policy: &RetryPolicy,
    now: jiff::Timestamp,
) -> Signal {
    if matches!(decision, Decision::Delivered) {
        return Signal::Success;
    }
    let retry_after = match outcome {
        AttemptOutcome::Response {
            status: 429 | 503,
            retry_after: Some(retry_after),
        } => Some(match retry_after {
            RetryAfter::Delay(delay) => *delay,
            // An HTTP date is wall-clock time.
            RetryAfter::At(at) => Duration::try_from(at.duration_since(now)).unwrap_or_default(),
        }),
        _ => None,
    }
    .map(|wait| wait.min(policy.retry_after_cap()))
    .filter(|wait| !wait.is_zero());
    Signal::Failure {
        retry_after,
        timed_out: matches!(outcome, AttemptOutcome::Error(ErrorClass::Timeout)),
    }
}

/// One line per failed attempt at info, one more at warn when the delivery
/// fails for good. Ids, status and error class only: never the payload, the
/// endpoint URL (it may hold a token) or the response body.
fn log_attempt(
    delivery: &redrive_core::Delivery,
    subscription: &str,
    status: Option<u16>,
    error: Option<redrive_core::ErrorClass>,
    decision: &Decision,
) {
    let error = error.map(|e| e.as_str());
    match decision {
        Decision::Delivered => tracing::debug!(delivery = %delivery.id, subscription,
            attempt = delivery.attempts, status, "delivered"),
        Decision::Retry { at, retry } => tracing::info!(delivery = %delivery.id, subscription,
            attempt = delivery.attempts, status, error, retry, retry_at = %at,
            "attempt failed; retry scheduled"),
        Decision::Failed { reason } => {
            tracing::info!(delivery = %delivery.id, subscription, attempt = delivery.attempts,
                status, error, "attempt failed");
            tracing::warn!(delivery = %delivery.id, subscription, event = %delivery.event_id,
                attempts = delivery.attempts, reason = reason.as_str(), "delivery failed");
        }
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

    fn finished(&mut self, finished: Finished) {
        if let Some(count) = self.in_flight.get_mut(&finished.subscription) {
            *count = count.saturating_sub(1);
        }
        self.total_in_flight = self.total_in_flight.saturating_sub(1);
        if let Some(flow) = self.flows.get_mut(&finished.subscription) {
            let now = Instant::now();
            let before = flow.hold(now);
            flow.record(finished.ticket, finished.signal, now);
            let after = flow.hold(now);
            if after != before {
                if let Some(hold) = after {
                    tracing::debug!(subscription = %finished.subscription,
                        pause_ms = hold.until.saturating_duration_since(now).as_millis() as u64,
                        reason = ?hold.reason, "pushes paused");
                }
                self.holds.note(&finished.subscription, after);
            }
        }
    }

    /// Keeps one flow per subscription, following their limits; flows of
    /// subscriptions that are gone go too.
    fn follow_subscriptions(&mut self) {
        self.flows.retain(|name, _| self.by_name.contains_key(name));
        self.holds.retain(|name| self.by_name.contains_key(name));
        let now = Instant::now();
        for subscription in &self.subscriptions {
            let spec = &subscription.spec;
            let max = spec.max_concurrency;
            let flow = self
                .flows
                .entry(spec.name.clone())
                .or_insert_with(|| Flow::new(max, spec.push_backoff));
            let before = flow.hold(now);
            flow.follow(max, spec.push_backoff);
            let after = flow.hold(now);
            if after != before {
                self.holds.note(&spec.name, after);
            }
        }
    }

    /// When the earliest flow pause ends, to claim again then.
    fn next_pause_end(&self, now: Instant) -> Option<Instant> {
        self.flows
            .values()
            .filter_map(|flow| flow.paused_until(now))
            .min()
    }

    /// What to claim this round: each subscription up to its free
    /// concurrency (its flow window, none while paused, disabled or paused
    /// by hand) and the `free` global slots. The claim caps the total at
    /// `free`, so a subscription with nothing due costs the others
    /// nothing. The starting point rotates so no subscription always goes
    /// first.
    fn wants(&mut self, free: usize, now: Instant) -> Vec<ClaimWant> {
        let count = self.subscriptions.len();
        let mut wants = Vec::with_capacity(count);
        for i in 0..count {
            let subscription = &self.subscriptions[(self.rotation + i) % count];
            if !subscription.status.accepts_pushes() {
                continue;
            }
            let busy = self
                .in_flight
                .get(&subscription.spec.name)
                .copied()
                .unwrap_or(0);
            let window = self
                .flows
                .get(&subscription.spec.name)
                .map_or(subscription.spec.max_concurrency, |flow| flow.allowed(now));
            let own_free = window
                .min(subscription.spec.max_concurrency)
                .saturating_sub(busy);
            let elapsed = self.started.elapsed();
            let tokens = self
                .buckets
                .get_mut(&subscription.spec.name)
                .map_or(u32::MAX, |bucket| bucket.available(elapsed));
            let limit = own_free
                .min(tokens)
                .min(MAX_CLAIM_PER_SUBSCRIPTION)
                .min(u32::try_from(free).unwrap_or(u32::MAX));
            // The store enforces the rate across every node sharing it;
            // the local bucket above keeps this node from asking for more
            // than the rate alone, and tells it when to wake up.
            let rate = subscription.spec.rate.map(|rate| ClaimRate {
                per_second: rate.per_second(),
                burst: subscription.spec.effective_bucket_size(),
            });
            // Pub/Sub's push backoff decides when pushes go, and a rate
            // limit spends its tokens at the claim: neither claims ahead.
            let lookahead = if subscription.spec.push_backoff || rate.is_some() {
                Duration::ZERO
            } else {
                LOOKAHEAD
            };
            wants.push(ClaimWant {
                subscription: subscription.spec.name.clone(),
                limit,
                rate,
                lookahead,
            });
        }
        self.rotation = self.rotation.wrapping_add(1);
        wants
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redrive_core::policy::Backoff;
    use redrive_core::{FailureReason, HumanDuration};

    fn now() -> jiff::Timestamp {
        Clock::default().now()
    }

    fn fixed(seconds: u64) -> RetryPolicy {
        RetryPolicy {
            backoff: Backoff::Fixed {
                interval: HumanDuration::from_secs(seconds),
            },
            ..RetryPolicy::default()
        }
    }

    fn answered(status: u16, wait: Option<u64>) -> AttemptOutcome {
        AttemptOutcome::Response {
            status,
            retry_after: wait.map(|s| RetryAfter::Delay(Duration::from_secs(s))),
        }
    }

    fn retry() -> Decision {
        Decision::Retry {
            at: jiff::Timestamp::UNIX_EPOCH,
            retry: 1,
        }
    }

    #[test]
    fn retry_after_pauses_at_most_as_long_as_the_policy_lets_it_delay_a_retry() {
        let signal = |outcome, policy: &RetryPolicy| flow_signal(&outcome, &retry(), policy, now());
        let pause = |outcome, policy: &RetryPolicy| match signal(outcome, policy) {
            Signal::Failure { retry_after, .. } => retry_after,
            Signal::Success => panic!("not a failure"),
        };
        let secs = |s| Some(Duration::from_secs(s));
        assert_eq!(pause(answered(503, Some(5)), &fixed(60)), secs(5));
        assert_eq!(pause(answered(429, Some(30)), &fixed(1)), secs(1));
        // Only 429 and 503 ask to slow down; an immediate policy never waits.
        assert_eq!(pause(answered(500, Some(5)), &fixed(60)), None);
        let immediate = RetryPolicy {
            backoff: Backoff::Immediate,
            ..RetryPolicy::default()
        };
        assert_eq!(pause(answered(503, Some(5)), &immediate), None);
    }

    #[test]
    fn only_a_timeout_counts_as_holding_the_slot() {
        let policy = fixed(1);
        let timed_out = |outcome| match flow_signal(&outcome, &retry(), &policy, now()) {
            Signal::Failure { timed_out, .. } => timed_out,
            Signal::Success => panic!("not a failure"),
        };
        assert!(timed_out(AttemptOutcome::Error(ErrorClass::Timeout)));
        assert!(!timed_out(AttemptOutcome::Error(ErrorClass::Connect)));
        assert!(!timed_out(answered(503, None)));
        let failed = Decision::Failed {
            reason: FailureReason::RetriesExhausted,
        };
        assert!(matches!(
            flow_signal(&answered(500, None), &failed, &policy, now()),
            Signal::Failure { .. }
        ));
        assert_eq!(
            flow_signal(&answered(200, None), &Decision::Delivered, &policy, now()),
            Signal::Success
        );
    }
}

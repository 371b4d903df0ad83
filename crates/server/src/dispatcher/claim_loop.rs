//! The claim loop: wakes on publishes, due retries and pauses ending,
//! claims what admission lets through, starts each push, and drains at
//! shutdown.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::FutureExt;
use redrive_store::{ClaimRequest, ClaimedDelivery, Store, Unclaim};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::flow::Flow;
use super::offers::Offers;

use super::admission::{Admission, Target};
use super::attempt::attempt;
use super::{Dispatcher, Ended, Finished, record, signing};

/// How often leases that ran out are looked for.
const RESCUE_INTERVAL: Duration = Duration::from_secs(5);
/// Subscriptions are re-read at least this often (other nodes may change them).
const SUBSCRIPTION_REFRESH: Duration = Duration::from_secs(5);
/// The shortest wait for a shared rate bucket to refill, so a very fast
/// rate contended by several nodes can't turn the loop into a spin.
const MIN_RATE_WAIT: Duration = Duration::from_millis(1);

impl Dispatcher {
    /// Runs until `shutdown` turns true, then lets in-flight pushes finish
    /// for up to the drain timeout and releases the claims of the rest.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let running = RunningFlag::raise(self.running.clone());
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Finished>();
        let wakeups = self.store.wakeups();
        let mut tasks = JoinSet::new();
        let (recorder, recording) = record::Recorder::start(
            self.store.clone(),
            self.writes.clone(),
            self.config.max_in_flight,
        );
        let mut admission = Admission {
            subscriptions: Vec::new(),
            by_name: HashMap::new(),
            loaded_at: None,
            in_flight: HashMap::new(),
            total_in_flight: 0,
            in_transit: HashMap::new(),
            rotation: 0,
            flows: HashMap::new(),
            holds: self.holds.clone(),
            buckets: HashMap::new(),
            started: Instant::now(),
        };
        let mut offers = Offers::new(self.store.as_ref());
        // The earliest due time the last claim saw, kept while the loop
        // claims nothing (every queue with room known to be empty).
        let mut next_due_at = None;
        let mut last_rescue = Instant::now();
        while !*shutdown.borrow() {
            while tasks.try_join_next().is_some() {}
            while let Ok(finished) = done_rx.try_recv() {
                admission.finished(finished);
            }
            let withdrawn = offers.withdraw();
            admission.in_transit = withdrawn.in_transit;
            // A change announced while the loop was busy elsewhere: reload
            // before claiming, so no push goes out on a stale endpoint.
            if self.change_announced() {
                admission.loaded_at = None;
            }
            if admission
                .loaded_at
                .is_none_or(|at| at.elapsed() >= SUBSCRIPTION_REFRESH)
            {
                offers.forget();
                if !self.reload(&mut admission).await {
                    // Claimed by their publishes: handed back for a claim
                    // once subscriptions load.
                    for claimed in &withdrawn.arrived {
                        hand_back(self.store.as_ref(), claimed, self.config.clock.now()).await;
                    }
                    tokio::time::sleep(self.config.poll_interval).await;
                    continue;
                }
            }
            admission.spend_tokens(&withdrawn.arrived);
            crate::metrics::attempts_started(
                true,
                &redrive_store::count_per_subscription(&withdrawn.arrived),
            );
            for claimed in withdrawn.arrived {
                self.start_push(&mut admission, &mut tasks, &done_tx, &recorder, claimed);
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

            // A push's slot is free when its endpoint answers, before its
            // outcome is written; past `max_in_flight` outcomes waiting,
            // claims wait for the store to catch up (the recorder wakes
            // the loop), so a slow store cannot gather outcomes until
            // their leases run out and their deliveries go out again.
            let free = self
                .config
                .max_in_flight
                .saturating_sub(admission.busy())
                .min(
                    self.config
                        .max_in_flight
                        .saturating_sub(recorder.unwritten()),
                );
            let wants = admission.wants(free, Instant::now());
            let lookahead = wants
                .iter()
                .map(|want| want.lookahead)
                .max()
                .unwrap_or_default();
            // A due time the last claim saw has come: claim, even when
            // other wake-ups kept the timer set for it from firing.
            if next_due_at.is_some_and(|due: jiff::Timestamp| {
                due.checked_sub(lookahead)
                    .is_ok_and(|claimable| claimable <= self.config.clock.now())
            }) {
                offers.forget();
            }
            let limit_total = u32::try_from(free).unwrap_or(u32::MAX);
            let lease = self.lease(&admission);
            let mut rate_refill_at = None;
            let mut claimed_any = false;
            // Publishes may take what the loop would claim of a quiet
            // subscription, until the loop's counts change.
            offers.open(&wants, limit_total, lease, |name| {
                admission.offers_at_publish(name)
            });
            // With no free slot anywhere there is nothing to ask the store:
            // a push that ends, a pause that ends, a token that refills or
            // the recorder catching up wakes the loop. Nor is there for a
            // subscription whose queue the last claim found empty.
            if let Some(to_claim) = offers.to_claim(&wants) {
                let request = ClaimRequest {
                    now: self.config.clock.now(),
                    lease,
                    wants: to_claim,
                    limit_total,
                };
                match self.store.claim_due(request.clone()).await {
                    Ok(batch) => {
                        next_due_at = batch.next_due_at;
                        rate_refill_at = batch.rate_refill_at;
                        claimed_any = !batch.claimed.is_empty();
                        let took = redrive_store::count_per_subscription(&batch.claimed);
                        offers.claimed(&request.wants, limit_total, &took);
                        crate::metrics::attempts_started(false, &took);
                        admission.spend_tokens(&batch.claimed);
                        // A change that committed while the claim ran (a
                        // PATCH just before the publish it claimed) must be
                        // what these pushes use, not what was loaded before.
                        if claimed_any
                            && self.change_announced()
                            && !self.reload(&mut admission).await
                        {
                            admission.loaded_at = None;
                        }
                        for claimed in batch.claimed {
                            self.start_push(
                                &mut admission,
                                &mut tasks,
                                &done_tx,
                                &recorder,
                                claimed,
                            );
                        }
                    }
                    Err(err) => {
                        self.writes.report(&err, "cannot claim due deliveries");
                        // Nothing is taken while the loop sleeps on it.
                        offers.withdraw_offer();
                        offers.forget();
                        tokio::time::sleep(self.config.poll_interval).await;
                        continue;
                    }
                }
            }

            let now = self.config.clock.now();
            let more_due = next_due_at.is_some_and(|due| due <= now);
            if more_due && claimed_any && admission.busy() < self.config.max_in_flight {
                continue;
            }
            let mut wait = self.config.poll_interval;
            if let Some(refill) = admission.next_refill() {
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
            if let Some(pause_ends) = admission.next_pause_end(Instant::now()) {
                wait = wait.min(pause_ends.saturating_duration_since(Instant::now()));
            }
            tokio::select! {
                // Changes first: a publish right after a change must see it.
                biased;
                _ = self.subscriptions_changed.notified() => admission.loaded_at = None,
                _ = wakeups.notified() => offers.forget(),
                Some(finished) = done_rx.recv() => admission.finished(finished),
                Some(arrived) = offers.arrival() => offers.arrived(arrived),
                _ = tokio::time::sleep(wait) => offers.forget(),
                _ = shutdown.changed() => {}
            }
        }
        drop(running);
        // Handed over but never started: handed back, no attempt spent.
        for claimed in offers.withdraw().arrived {
            hand_back(self.store.as_ref(), &claimed, self.config.clock.now()).await;
        }
        self.drain(tasks).await;
        drop(recorder);
        let _ = recording.await;
    }

    /// Whether a subscription change was announced since the last look
    /// (taking the announcement).
    fn change_announced(&self) -> bool {
        self.subscriptions_changed
            .notified()
            .now_or_never()
            .is_some()
    }

    async fn reload(&self, admission: &mut Admission) -> bool {
        match self.store.list_subscriptions().await {
            Ok(subscriptions) => {
                admission.subscriptions = subscriptions.into_iter().map(Arc::new).collect();
                admission.by_name = admission
                    .subscriptions
                    .iter()
                    .map(|s| (s.spec.name.clone(), Arc::new(Target::new(s.clone()))))
                    .collect();
                admission.loaded_at = Some(Instant::now());
                admission.follow_subscriptions();
                admission.sync_buckets();
                true
            }
            Err(err) => {
                self.writes.report(&err, "cannot load subscriptions");
                false
            }
        }
    }

    /// Long enough for the slowest subscription's push to end on its own.
    fn lease(&self, admission: &Admission) -> Duration {
        let longest = admission
            .subscriptions
            .iter()
            .map(|s| s.spec.timeout.as_duration())
            .max()
            .unwrap_or_default();
        longest + self.config.lease_margin
    }

    fn start_push(
        &self,
        admission: &mut Admission,
        tasks: &mut JoinSet<()>,
        done: &mpsc::UnboundedSender<Finished>,
        recorder: &record::Recorder,
        claimed: ClaimedDelivery,
    ) {
        let Some(target) = admission
            .by_name
            .get(&claimed.delivery.subscription)
            .cloned()
        else {
            // Deleted since the last reload: its deliveries are gone with it.
            return;
        };
        let subscription = &target.subscription;
        *admission
            .in_flight
            .entry(subscription.spec.name.clone())
            .or_default() += 1;
        admission.total_in_flight += 1;
        let ticket = admission
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
        let store = self.store.clone();
        tasks.spawn(async move {
            let name = target.subscription.spec.name.clone();
            match signing::keys(security.as_ref(), &name, clock.now()).await {
                Ok(keys) => {
                    // Claimed ahead: the push starts when the delivery falls due.
                    if let Ok(early) =
                        Duration::try_from(claimed.due_at.duration_since(clock.now()))
                        && !early.is_zero()
                    {
                        tokio::time::sleep(early).await;
                    }
                    let (completion, signal) = attempt(
                        &client,
                        &target,
                        &claimed,
                        &clock,
                        security.as_ref(),
                        keys.as_ref(),
                    )
                    .await;
                    // The endpoint is done with it: its slot goes back now,
                    // not once the outcome is written, so the next claim and
                    // this outcome are written together (one commit on
                    // SQLite, two connections at once on PostgreSQL)
                    // instead of one after the other. The delivery stays
                    // claimed in the store until its outcome is written, so
                    // nothing claims it again meanwhile.
                    let _ = done.send(Finished {
                        subscription: name,
                        ended: Ended::Pushed { ticket, signal },
                    });
                    let recorded = completion.attempt.clone();
                    match recorder.record(completion).await {
                        Ok(()) => crate::metrics::attempt_recorded(&target.metrics, &recorded),
                        // The lease runs out and the delivery is tried again.
                        Err(err) => tracing::error!(delivery = %claimed.delivery.id, error = %err,
                            "cannot record an attempt"),
                    }
                }
                Err(unsigned) => {
                    // The pause first, so this node does not claim again
                    // what it is about to hand back.
                    let _ = done.send(Finished {
                        subscription: name,
                        ended: Ended::Unsigned(unsigned),
                    });
                    hand_back(store.as_ref(), &claimed, clock.now()).await;
                }
            }
            if let Ok(mut set) = claimed_set.lock() {
                set.remove(&claimed.delivery.id);
            }
            pushes.fetch_sub(1, Ordering::SeqCst);
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

/// Hands back a claim whose push never started: scheduled as it was, no
/// attempt spent, for any node to take.
async fn hand_back(store: &dyn Store, claimed: &ClaimedDelivery, now: jiff::Timestamp) {
    if let Err(err) = store.unclaim(vec![Unclaim::from(claimed)], now).await {
        tracing::warn!(delivery = %claimed.delivery.id, error = %err,
            "cannot hand back a claim that was not pushed; it is due again when its lease ends");
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

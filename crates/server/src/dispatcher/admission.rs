//! Admission: which subscriptions may claim how many deliveries now —
//! concurrency limits, rate-limit token buckets, flow-control windows and
//! pauses, and a rotation so that no subscription starves the others.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redrive_core::Subscription;
use redrive_core::rate::TokenBucket;
use redrive_store::{ClaimRate, ClaimWant, ClaimedDelivery};

use super::flow::{Flow, PushHolds};
use super::{Ended, Finished};

/// Most deliveries of one subscription claimed in one round.
const MAX_CLAIM_PER_SUBSCRIPTION: u32 = 256;
/// How long before it falls due a delivery of a subscription without push
/// backoff or rate limit may be claimed; its push then waits for the exact
/// time. A claim waits its turn at the store behind the attempts being
/// recorded, tens of milliseconds under load: claimed ahead, a retry starts
/// on time anyway.
const LOOKAHEAD: Duration = Duration::from_millis(200);

/// What the claim loop admits: the subscriptions, what each has in
/// flight, their token buckets and flows.
pub(super) struct Admission {
    pub(super) subscriptions: Vec<Arc<Subscription>>,
    pub(super) by_name: HashMap<String, Arc<Target>>,
    pub(super) loaded_at: Option<Instant>,
    pub(super) in_flight: HashMap<String, u32>,
    pub(super) total_in_flight: usize,
    /// Taken into flight by publishes and not handed over yet: busy too.
    pub(super) in_transit: HashMap<String, u32>,
    pub(super) rotation: usize,
    /// Token buckets of rate-limited subscriptions, on a monotonic clock
    /// counted from `started`: pacing is about real time, not the clock
    /// decisions read.
    pub(super) buckets: HashMap<String, TokenBucket>,
    pub(super) started: Instant,
    /// Push backoff and flow control, per subscription.
    pub(super) flows: HashMap<String, Flow>,
    pub(super) holds: Arc<PushHolds>,
}

/// A subscription as its pushes use it, prepared once per load of the
/// subscriptions rather than at every push.
pub(super) struct Target {
    pub(super) subscription: Arc<Subscription>,
    /// Parsed, or why it does not parse (its pushes then fail with that).
    pub(super) endpoint: Result<super::client::Endpoint, String>,
    pub(super) metrics: crate::metrics::PushMetrics,
}

impl Target {
    pub(super) fn new(subscription: Arc<Subscription>) -> Target {
        Target {
            endpoint: super::client::Endpoint::parse(&subscription.spec.endpoint),
            metrics: crate::metrics::PushMetrics::new(&subscription.spec.name),
            subscription,
        }
    }
}

impl Admission {
    /// Keeps one bucket per rate-limited subscription, rebuilt (full) when
    /// its rate or bucket size changes, dropped when the limit goes.
    pub(super) fn sync_buckets(&mut self) {
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
    pub(super) fn spend_tokens(&mut self, claimed: &[ClaimedDelivery]) {
        let now = self.started.elapsed();
        for claimed in claimed {
            if let Some(bucket) = self.buckets.get_mut(&claimed.delivery.subscription) {
                bucket.take(1, now);
            }
        }
    }

    /// How long until a bucket that is not full gains its next token, so
    /// deliveries held back by a rate go as soon as they may.
    pub(super) fn next_refill(&mut self) -> Option<Duration> {
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

    pub(super) fn finished(&mut self, finished: Finished) {
        if let Some(count) = self.in_flight.get_mut(&finished.subscription) {
            *count = count.saturating_sub(1);
        }
        self.total_in_flight = self.total_in_flight.saturating_sub(1);
        if let Some(flow) = self.flows.get_mut(&finished.subscription) {
            let now = Instant::now();
            let before = flow.hold(now);
            match finished.ended {
                Ended::Pushed { ticket, signal } => flow.record(ticket, signal, now),
                // Every claim of the round finds the same: said once.
                Ended::Unsigned(unsigned) => {
                    if flow.secret_unreadable(unsigned.pause(), now) {
                        unsigned.log(&finished.subscription);
                    }
                }
            }
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
    pub(super) fn follow_subscriptions(&mut self) {
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
    pub(super) fn next_pause_end(&self, now: Instant) -> Option<Instant> {
        self.flows
            .values()
            .filter_map(|flow| flow.paused_until(now))
            .min()
    }

    /// Slots in use: pushes, and deliveries on their way from publishes.
    pub(super) fn busy(&self) -> usize {
        self.total_in_flight + self.in_transit.values().map(|&n| n as usize).sum::<usize>()
    }

    /// Whether publishes may take this subscription's deliveries straight
    /// into flight: not when Pub/Sub's push backoff or a rate limit decides
    /// when its pushes go, which only the claim loop may judge.
    pub(super) fn offers_at_publish(&self, name: &str) -> bool {
        self.by_name.get(name).is_some_and(|target| {
            let spec = &target.subscription.spec;
            !spec.push_backoff && spec.rate.is_none()
        })
    }

    /// What to claim this round: each subscription up to its free
    /// concurrency (its flow window, none while paused, disabled or paused
    /// by hand) and the `free` global slots. The claim caps the total at
    /// `free`, so a subscription with nothing due costs the others
    /// nothing. The starting point rotates so no subscription always goes
    /// first.
    pub(super) fn wants(&mut self, free: usize, now: Instant) -> Vec<ClaimWant> {
        let count = self.subscriptions.len();
        let mut wants = Vec::with_capacity(count);
        for i in 0..count {
            let subscription = &self.subscriptions[(self.rotation + i) % count];
            if !subscription.status.accepts_pushes() {
                continue;
            }
            let name = &subscription.spec.name;
            let busy = self.in_flight.get(name).copied().unwrap_or(0)
                + self.in_transit.get(name).copied().unwrap_or(0);
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

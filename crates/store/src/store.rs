use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use redrive_core::health::AttemptCounts;
use redrive_core::{Attempt, CloudEvent, Delivery, Subscription, SubscriptionSpec, Topic};
use serde::Serialize;
use tokio::sync::Notify;

use crate::console::*;
use crate::health::*;
use crate::lifecycle::*;
use crate::ops::*;
use crate::security::*;
use crate::{Handoff, Result};

/// The answer to one event of a publish.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PublishOutcome {
    pub id: String,
    pub source: String,
    /// `(topic, source, id)` was already stored: no delivery was created.
    pub duplicate: bool,
    /// How many deliveries the event fanned out to.
    #[serde(skip)]
    pub deliveries: usize,
    /// How many of them went straight into flight, handed to the
    /// dispatcher at the commit (see [`crate::Handoff`]).
    #[serde(skip)]
    pub in_flight: usize,
}

impl PublishOutcome {
    /// Whether the event left deliveries due for a claim to take.
    pub fn left_due(&self) -> bool {
        self.deliveries > self.in_flight
    }
}

/// Ask for due deliveries, per subscription, at most `limit` of each and
/// `limit_total` in all. Subscriptions are served in the order given; one
/// with nothing due takes nothing from the total, so idle subscriptions
/// never crowd out busy ones.
#[derive(Clone, Debug)]
pub struct ClaimRequest {
    pub now: Timestamp,
    /// How long the claim holds before another claimer may take it over.
    pub lease: Duration,
    pub wants: Vec<ClaimWant>,
    pub limit_total: u32,
}

#[derive(Clone, Debug)]
pub struct ClaimWant {
    pub subscription: String,
    pub limit: u32,
    /// The subscription's rate limit, when it has one. A backend shared by
    /// several processes enforces it across all of them: in any window, the
    /// claims of this subscription from every process together never exceed
    /// `burst + per_second * elapsed`, with time counted from each claim's
    /// `now`. A single-process backend may leave it to the caller, which
    /// keeps a bucket of its own anyway (the dispatcher does).
    pub rate: Option<ClaimRate>,
    /// Also claim deliveries that fall due within this long after `now`,
    /// for the caller to start each at its own [`ClaimedDelivery::due_at`]:
    /// the claim's own latency then delays no push. Zero claims only what
    /// is due at `now`.
    pub lookahead: Duration,
}

/// A token bucket shared by every claimer of one subscription: it holds up
/// to `burst` claims and gains `per_second` claims a second. A new bucket
/// starts full; a `per_second` of 0 (a paused rate) claims nothing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClaimRate {
    pub per_second: f64,
    pub burst: u32,
}

/// A delivery handed to the dispatcher, with everything a push needs.
#[derive(Clone, Debug)]
pub struct ClaimedDelivery {
    /// The delivery as it is now: `in_flight`, `attempts` counting this one;
    /// `last_attempt_at` is when this attempt starts, the later of the
    /// claim and `due_at`.
    pub delivery: Delivery,
    pub event: CloudEvent,
    pub lease_until: Timestamp,
    /// When the delivery fell due, or falls due when it was claimed ahead.
    pub due_at: Timestamp,
}

/// How many of `claimed` each subscription has.
pub fn count_per_subscription(claimed: &[ClaimedDelivery]) -> HashMap<&str, u32> {
    let mut counts = HashMap::new();
    for claimed in claimed {
        *counts
            .entry(claimed.delivery.subscription.as_str())
            .or_default() += 1;
    }
    counts
}

#[derive(Clone, Debug, Default)]
pub struct ClaimBatch {
    pub claimed: Vec<ClaimedDelivery>,
    /// The earliest `next_attempt_at` still scheduled among the wanted
    /// subscriptions after this claim (may be ≤ now when limits cut it short).
    pub next_due_at: Option<Timestamp>,
    /// When a rate limit shared with other processes cut this claim short
    /// (see [`ClaimWant::rate`]): the earliest time one of those buckets
    /// holds a whole token again, for the caller to come back then rather
    /// than at once. Backends that leave rates to the caller say `None`.
    pub rate_refill_at: Option<Timestamp>,
}

/// A claim handed back whole: its push never started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unclaim {
    pub delivery_id: String,
    /// The attempt the claim counted ([`ClaimedDelivery::delivery`]'s
    /// `attempts`): a claim taken over since counts another, and is left
    /// alone.
    pub attempt: u32,
    /// When the delivery was due before the claim
    /// ([`ClaimedDelivery::due_at`]).
    pub due_at: Timestamp,
}

impl From<&ClaimedDelivery> for Unclaim {
    fn from(claimed: &ClaimedDelivery) -> Self {
        Unclaim {
            delivery_id: claimed.delivery.id.clone(),
            attempt: claimed.delivery.attempts,
            due_at: claimed.due_at,
        }
    }
}

/// The end of one attempt, to record.
#[derive(Clone, Debug)]
pub struct Completion {
    pub delivery_id: String,
    /// The delivery's subscription, whose health counts the attempt.
    pub subscription: String,
    pub attempt: Attempt,
}

/// A delivery with its event and every attempt, oldest first.
#[derive(Clone, Debug)]
pub struct DeliveryDetail {
    pub delivery: Delivery,
    pub event: CloudEvent,
    pub attempts: Vec<Attempt>,
}

/// Topics: named streams events are published to.
#[async_trait]
pub trait TopicStore: Send + Sync {
    async fn create_topic(&self, name: &str, now: Timestamp) -> Result<Topic>;
    async fn get_topic(&self, name: &str) -> Result<Topic>;
    async fn list_topics(&self) -> Result<Vec<Topic>>;
    /// Refuses (conflict) while subscriptions still read from the topic.
    async fn delete_topic(&self, name: &str) -> Result<()>;
}

/// Subscriptions: a topic's push endpoints with their settings.
#[async_trait]
pub trait SubscriptionStore: Send + Sync {
    async fn create_subscription(
        &self,
        spec: SubscriptionSpec,
        now: Timestamp,
    ) -> Result<Subscription>;
    /// Replaces the spec of an existing subscription (its topic can't change).
    async fn update_subscription(
        &self,
        spec: SubscriptionSpec,
        now: Timestamp,
    ) -> Result<Subscription>;
    async fn get_subscription(&self, name: &str) -> Result<Subscription>;
    async fn list_subscriptions(&self) -> Result<Vec<Subscription>>;
    /// Deletes the subscription with its deliveries and attempts.
    async fn delete_subscription(&self, name: &str) -> Result<()>;
}

/// Deliveries: publishing (fan-out), the claim–complete hot path, lease
/// rescue and release, and reading or retrying one delivery.
#[async_trait]
pub trait DeliveryStore: Send + Sync {
    /// Stores the events and fans each new one out to the topic's matching
    /// subscriptions, all or nothing. Durable when it returns.
    async fn publish(
        &self,
        topic: &str,
        events: Vec<CloudEvent>,
        now: Timestamp,
    ) -> Result<Vec<PublishOutcome>>;
    /// Moves due deliveries to `in_flight` under a lease and counts the attempt.
    /// A backend several processes share enforces the wants' rates across
    /// all of them ([`ClaimWant::rate`]); one process's backend may leave
    /// them to the caller.
    async fn claim_due(&self, request: ClaimRequest) -> Result<ClaimBatch>;
    /// Records attempts and applies their decisions. A completion whose
    /// delivery is no longer in flight under that attempt keeps the attempt
    /// record but leaves the delivery alone. A delivery that fails is, in
    /// the same write, copied to its subscription's dead-letter topic and
    /// announced as `redrive.delivery.failed` on the system topic.
    async fn complete_many(&self, completions: Vec<Completion>) -> Result<()>;
    async fn get_delivery(&self, id: &str) -> Result<DeliveryDetail>;
    /// Schedules a delivery for now, also from `failed` or `delivered`;
    /// refuses (conflict) while it is in flight. An ended delivery gets a
    /// fresh attempt budget, age and retention, as a redrive gives it; a
    /// scheduled one keeps its own and only becomes due sooner.
    async fn retry_now(&self, id: &str, now: Timestamp) -> Result<Delivery>;
    /// Notified whenever work may have become due (a publish, a retry-now),
    /// so the dispatcher needs no polling for new work. A publish whose
    /// deliveries all went straight into flight (see [`Handoff`]) leaves
    /// nothing due and need not notify.
    fn wakeups(&self) -> Arc<Notify>;
    /// Where the dispatcher offers its free slots for publishes to take
    /// their new deliveries straight into flight ([`Handoff`]); `None` when
    /// this backend's publishes never do.
    fn handoff(&self) -> Option<Arc<Handoff>> {
        None
    }
}

/// Claims beyond taking and completing them (`DeliveryStore`'s): leases
/// that ran out, claims released at shutdown, claims handed back unused.
#[async_trait]
pub trait ClaimStore: Send + Sync {
    /// Makes in-flight deliveries whose lease ended before `now` due again,
    /// recording the lost attempt as interrupted. Returns how many.
    async fn rescue_expired(&self, now: Timestamp) -> Result<u64>;
    /// Makes these in-flight deliveries due at `now`, recording their
    /// unfinished attempt as interrupted, so a restart (or another node)
    /// retries them at once instead of waiting for their lease to end.
    /// Deliveries no longer in flight are left alone. Returns how many moved.
    async fn release_claims(&self, delivery_ids: Vec<String>, now: Timestamp) -> Result<u64>;
    /// Undoes claims whose push never started, as if they had not been
    /// made: each delivery is scheduled again at its old due time, with
    /// the attempt count and first and last attempt times it had before,
    /// and no attempt is recorded. Any claimer may take it again at once
    /// (on PostgreSQL the other nodes are woken). A delivery no longer in
    /// flight under that claim's attempt is left alone. Returns how many
    /// were handed back.
    async fn unclaim(&self, claims: Vec<Unclaim>, now: Timestamp) -> Result<u64>;
}

/// The failure lifecycle: retention expiry, cancel, redrive, the journal
/// and the history purge.
#[async_trait]
pub trait LifecycleStore: Send + Sync {
    /// Fails (`retention_expired`) scheduled deliveries whose event is older
    /// than their subscription's `message_retention` (counted from publish,
    /// or from the last redrive), at most `limit` of them. Returns how many.
    async fn expire_retention(&self, now: Timestamp, limit: u32) -> Result<u64>;
    /// Fails a scheduled delivery as `cancelled`; refuses (conflict) one in
    /// flight or already ended.
    async fn cancel_delivery(&self, id: &str, now: Timestamp) -> Result<Delivery>;
    /// How many deliveries a redrive with this filter would move now.
    async fn count_redrivable(&self, filter: RedriveFilter) -> Result<u64>;
    /// Puts one batch of matching deliveries back to `scheduled`, due now,
    /// with a fresh attempt budget.
    async fn redrive_batch(&self, request: RedriveBatchRequest) -> Result<RedriveBatch>;
    /// The events that matched a subscription, oldest first, whatever
    /// their delivery's state.
    async fn journal(&self, query: JournalQuery) -> Result<JournalPage>;
    /// Deletes one small batch of finished deliveries with their attempts,
    /// and the events nothing references any more.
    async fn purge_history(&self, request: PurgeRequest) -> Result<PurgeOutcome>;
}

/// Endpoint health: per-minute attempt counts, health changes and pause.
#[async_trait]
pub trait HealthStore: Send + Sync {
    /// Attempts of `subscription` that ended since its health last changed
    /// and not before `since` (to the minute: counts are kept per minute,
    /// bumped in the write that records each attempt).
    async fn count_attempts(&self, subscription: &str, since: Timestamp) -> Result<AttemptCounts>;
    /// Deletes at most `limit` per-minute attempt counts older than
    /// `before`. Returns how many.
    async fn prune_attempt_counts(&self, before: Timestamp, limit: u32) -> Result<u64>;
    /// Sets a subscription's health if it still is `change.from`, and in the
    /// same write publishes `redrive.subscription.<health>` on the system
    /// topic. `None` when its health was no longer `from` (nothing changed).
    /// The attempt counts start over with the new health.
    async fn change_health(&self, change: HealthChange) -> Result<Option<Subscription>>;
    /// Pauses or resumes pushes to a subscription. A paused (or disabled)
    /// subscription gets no claims; its deliveries keep their place.
    async fn set_paused(&self, name: &str, paused: bool) -> Result<Subscription>;
}

/// The console's reads: keyset-paged search, counts and outcome buckets.
#[async_trait]
pub trait ConsoleStore: Send + Sync {
    /// Deliveries matching every filter of `query`, newest first, keyset
    /// paged: fast at any depth on large subscriptions.
    async fn search_deliveries(&self, query: DeliverySearch) -> Result<DeliverySearchPage>;
    /// Deliveries of `subscription` created at or after `since`, counted by
    /// their state now.
    async fn count_deliveries_by_state(
        &self,
        subscription: &str,
        since: Timestamp,
    ) -> Result<StateCounts>;
    /// Delivered and failed deliveries per time bucket, by when they ended.
    async fn outcome_buckets(&self, query: OutcomeBucketsQuery) -> Result<Vec<OutcomeBucket>>;
}

/// API tokens and signing secrets.
#[async_trait]
pub trait SecurityStore: Send + Sync {
    /// Stores a new token; refuses (conflict) an id already taken.
    async fn create_token(&self, token: TokenRecord) -> Result<()>;
    async fn get_token(&self, id: &str) -> Result<TokenRecord>;
    /// Every token, oldest first.
    async fn list_tokens(&self) -> Result<Vec<TokenRecord>>;
    async fn delete_token(&self, id: &str) -> Result<()>;
    /// The subscription's signing secrets, if it has any yet.
    async fn get_signing_secrets(&self, subscription: &str) -> Result<Option<SigningSecrets>>;
    /// Stores `current` as the subscription's secret unless it already has
    /// one; returns what is stored either way. Not found for an unknown
    /// subscription. Deleting a subscription deletes its secrets.
    async fn ensure_signing_secret(
        &self,
        subscription: &str,
        current: String,
        now: Timestamp,
    ) -> Result<SigningSecrets>;
    /// Makes `new` current and keeps the current one as `previous` (a
    /// subscription without a secret just gets `new`).
    async fn rotate_signing_secret(&self, rotation: SecretRotation) -> Result<SigningSecrets>;
}

/// Operations: what the backend can do, metrics, readiness, write checks,
/// backups and flushing.
#[async_trait]
pub trait OpsStore: Send + Sync {
    /// What this backend can do, so callers and the conformance suite
    /// adapt to it instead of meeting an error at run time.
    fn capabilities(&self) -> Capabilities;
    /// The backlog of every subscription that has scheduled or in-flight
    /// deliveries, by subscription name.
    async fn queue_stats(&self, now: Timestamp) -> Result<Vec<QueueStats>>;
    /// Reaches the database and reads its schema version.
    async fn readiness(&self) -> Result<StoreReadiness>;
    /// Commits a small durable write that changes nothing a reader sees:
    /// after writes failed (a full disk), tells whether they work again.
    async fn check_writes(&self) -> Result<()>;
    /// Writes a consistent copy of the whole store to `path` (which must not
    /// exist), while the store keeps serving.
    async fn backup_into(&self, path: &Path) -> Result<()>;
    /// Makes everything written so far durable in the main database file,
    /// so a copy of the file alone is complete after shutdown.
    async fn flush(&self) -> Result<()>;
}

/// Everything redrive keeps: every operation the server needs is one
/// method of one of the sub-traits, grouped by noun; the hot ones are
/// batched (`publish`, `claim_due`, `complete_many`). Each backend
/// implements every sub-trait, one file per noun.
pub trait Store:
    TopicStore
    + SubscriptionStore
    + DeliveryStore
    + ClaimStore
    + LifecycleStore
    + HealthStore
    + ConsoleStore
    + SecurityStore
    + OpsStore
    + 'static
{
}

impl<T> Store for T where
    T: TopicStore
        + SubscriptionStore
        + DeliveryStore
        + ClaimStore
        + LifecycleStore
        + HealthStore
        + ConsoleStore
        + SecurityStore
        + OpsStore
        + 'static
{
}

/// What a backend can do beyond what every backend does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// `backup_into` writes a consistent copy while the store serves.
    pub online_backup: bool,
    /// Claims hold each want's rate across every process sharing the
    /// store ([`ClaimWant::rate`]); otherwise the caller enforces it.
    pub shared_rate_buckets: bool,
    /// Wake-ups reach other processes sharing the store (LISTEN/NOTIFY);
    /// otherwise only this process's.
    pub cross_process_wakeups: bool,
}

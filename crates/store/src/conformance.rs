//! The conformance suite: the behaviour every [`Store`] backend must have.
//!
//! Each backend's test runs every check of [`CHECKS`] as a test of its own,
//! on a fresh store.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use redrive_core::{
    Attempt, CloudEvent, Decision, DeliveryState, ErrorClass, FailureReason, SubscriptionSpec,
};

use crate::{
    ClaimRequest, ClaimWant, ClaimedDelivery, Completion, DeliverySearch, Store, StoreError,
};

mod health;
mod journal;
mod lifecycle;
pub use health::*;
pub use journal::*;
mod console;
pub use console::*;
mod security;
pub use lifecycle::*;
pub use security::*;
mod ops;
pub use ops::*;
mod claims;
pub use claims::*;
mod deliveries;
pub use deliveries::*;
mod retry;
pub use retry::*;
pub(crate) mod handoff;
pub use handoff::*;

/// One conformance check: runs against a store and panics on a failure.
pub type Check = for<'a> fn(&'a dyn Store) -> Pin<Box<dyn Future<Output = ()> + 'a>>;

/// Lists the checks once, as [`CHECKS`], boxing each one's future.
macro_rules! checks {
    ($($name:ident),* $(,)?) => {
        mod boxed {
            use super::*;
            $(
                pub fn $name(store: &dyn Store) -> Pin<Box<dyn Future<Output = ()> + '_>> {
                    Box::pin(super::$name(store))
                }
            )*
        }

        /// Every conformance check, by name: the one list each backend's
        /// test runs whole. A check left out of it fails the store's own
        /// tests (`every_check_is_listed`).
        pub const CHECKS: &[(&str, Check)] = &[$((stringify!($name), boxed::$name as Check)),*];
    };
}

checks!(
    topics_are_created_listed_and_deleted,
    topic_with_subscriptions_cannot_be_deleted,
    subscriptions_are_created_updated_and_deleted,
    publish_fans_out_to_matching_subscriptions,
    duplicate_events_are_reported_and_not_fanned_out,
    publish_to_unknown_topic_is_not_found,
    concurrent_publishes_each_get_their_own_outcomes,
    claims_take_only_due_deliveries_up_to_each_limit,
    completions_apply_retry_delivered_and_failed,
    stale_completion_keeps_attempt_but_not_state,
    expired_leases_are_rescued_as_interrupted,
    deliveries_page_newest_first_with_filters,
    retry_now_schedules_failed_deliveries_but_not_in_flight,
    deleting_a_subscription_removes_its_deliveries,
    a_failed_delivery_is_dead_lettered_in_the_same_write,
    a_subscription_without_dead_letter_topic_only_announces,
    topics_built_in_or_dead_lettered_to_cannot_be_deleted,
    retention_fails_deliveries_still_undelivered,
    cancel_fails_only_a_scheduled_delivery,
    redrive_moves_matching_deliveries_with_a_fresh_budget,
    journal_pages_oldest_first_and_reports_purges,
    journal_positions_never_go_back_after_a_purge,
    purge_removes_finished_history_and_unreferenced_events,
    purge_keeps_events_another_subscription_still_reads,
    new_subscriptions_are_healthy_and_not_paused,
    completions_count_attempts_by_outcome_per_minute,
    one_batch_counts_each_subscription_apart,
    one_batch_naming_an_attempt_twice_counts_it_once,
    health_changes_compare_and_set_and_announce_on_the_system_topic,
    paused_and_disabled_subscriptions_get_no_claims,
    old_attempt_counts_are_pruned_and_forgotten_with_their_subscription,
    retention_still_ends_deliveries_of_paused_and_disabled_subscriptions,
    console_search_filters_newest_first,
    console_search_pages_without_gaps_or_repeats,
    console_search_pages_across_interleaved_states,
    console_counts_deliveries_by_state_since,
    console_buckets_delivered_and_failed_by_end_time,
    tokens_are_created_read_listed_and_deleted,
    signing_secrets_are_kept_rotated_and_deleted_with_their_subscription,
    released_claims_are_due_at_once_with_the_attempt_interrupted,
    queue_stats_count_due_retries_and_in_flight,
    readiness_reports_a_fully_migrated_schema,
    claims_stop_at_the_total_and_idle_subscriptions_take_none,
    retry_now_gives_an_ended_delivery_a_fresh_budget_but_not_a_scheduled_one,
    a_rated_want_within_its_burst_is_served_whole,
    a_claim_ahead_takes_what_falls_due_within_the_lookahead,
    an_unclaimed_delivery_is_as_before_the_claim,
    a_write_check_commits_and_changes_nothing_a_reader_sees,
    rotations_within_the_grace_period_keep_every_earlier_secret_up_to_a_bound,
    backups_follow_the_declared_capability,
    a_publish_takes_what_is_offered_into_flight_as_a_claim_leaves_it,
    an_offer_caps_the_total_and_a_duplicate_takes_no_slot,
    a_claim_takes_from_the_open_offer,
    a_paused_subscription_takes_no_slot_and_a_withdrawn_offer_none,
);

/// A fixed instant, so every backend sees the same times.
pub fn t0() -> Timestamp {
    Timestamp::from_second(1_800_000_000).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn at(seconds: i64) -> Timestamp {
    t0() + SignedDuration::from_secs(seconds)
}

pub fn spec(name: &str, topic: &str) -> SubscriptionSpec {
    SubscriptionSpec {
        max_concurrency: 8,
        ..SubscriptionSpec::new(name, topic, "http://127.0.0.1:9/hook")
    }
}

pub fn event(id: &str, ty: &str) -> CloudEvent {
    CloudEvent {
        id: id.into(),
        source: "/tests".into(),
        ty: ty.into(),
        specversion: "1.0".into(),
        subject: None,
        time: None,
        datacontenttype: Some("application/json".into()),
        dataschema: None,
        extensions: BTreeMap::new(),
        data: Some(br#"{"n":1}"#.to_vec()),
    }
}

pub(crate) fn want(subscription: &str, limit: u32) -> ClaimWant {
    ClaimWant {
        subscription: subscription.into(),
        limit,
        rate: None,
        lookahead: std::time::Duration::ZERO,
    }
}

pub(crate) fn claim_at(now: Timestamp, wants: Vec<ClaimWant>) -> ClaimRequest {
    ClaimRequest {
        now,
        lease: Duration::from_secs(60),
        wants,
        limit_total: u32::MAX,
    }
}

pub(crate) fn attempt(
    number: u32,
    started_at: Timestamp,
    status: u16,
    decision: Decision,
) -> Attempt {
    Attempt {
        number,
        kind: redrive_core::AttemptKind::Push,
        started_at,
        duration_ms: 5,
        status: Some(status),
        error: None,
        error_message: None,
        response_snippet: Some("ok".into()),
        decision,
    }
}

/// Claims every due delivery of `subscription` at `now` and ends each with
/// `status` and `decision`; returns their ids by event id.
pub(crate) async fn attempt_all(
    store: &dyn Store,
    subscription: &str,
    now: Timestamp,
    status: u16,
    decision: Decision,
) -> BTreeMap<String, String> {
    let claimed = store
        .claim_due(claim_at(now, vec![want(subscription, 100)]))
        .await
        .unwrap()
        .claimed;
    let ids = claimed
        .iter()
        .map(|c| (c.event.id.clone(), c.delivery.id.clone()))
        .collect();
    let completions = claimed
        .iter()
        .map(|c| Completion {
            delivery_id: c.delivery.id.clone(),
            subscription: c.delivery.subscription.clone(),
            attempt: attempt(c.delivery.attempts, now, status, decision),
        })
        .collect();
    store.complete_many(completions).await.unwrap();
    ids
}

/// Topic `orders` with these subscriptions to it.
pub(crate) async fn setup(store: &dyn Store, subscriptions: &[&str]) {
    store.create_topic("orders", t0()).await.unwrap();
    for name in subscriptions {
        store
            .create_subscription(spec(name, "orders"), t0())
            .await
            .unwrap();
    }
}

/// Subscription `s1` on `orders`, event `e1` published at `t0()` and its
/// one delivery claimed then: the opening of the checks about a single
/// delivery in flight.
pub(crate) async fn one_claimed(store: &dyn Store) -> ClaimedDelivery {
    setup(store, &["s1"]).await;
    store
        .publish("orders", vec![event("e1", "t")], t0())
        .await
        .unwrap();
    let mut claimed = store
        .claim_due(claim_at(t0(), vec![want("s1", 10)]))
        .await
        .unwrap()
        .claimed;
    assert_eq!(claimed.len(), 1);
    claimed.remove(0)
}

pub async fn topics_are_created_listed_and_deleted(store: &dyn Store) {
    store.create_topic("b", t0()).await.unwrap();
    store.create_topic("a", at(1)).await.unwrap();
    assert!(matches!(
        store.create_topic("a", at(2)).await,
        Err(StoreError::Conflict(_))
    ));
    let names: Vec<_> = store
        .list_topics()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    // The built-in operational topic is always there.
    assert_eq!(names, ["a", "b", redrive_core::lifecycle::SYSTEM_TOPIC]);
    assert_eq!(store.get_topic("a").await.unwrap().created_at, at(1));
    store.delete_topic("a").await.unwrap();
    assert!(matches!(
        store.get_topic("a").await,
        Err(StoreError::NotFound { kind: "topic", .. })
    ));
    assert!(matches!(
        store.delete_topic("a").await,
        Err(StoreError::NotFound { .. })
    ));
}

pub async fn topic_with_subscriptions_cannot_be_deleted(store: &dyn Store) {
    setup(store, &["s1"]).await;
    match store.delete_topic("orders").await {
        Err(StoreError::Conflict(message)) => assert!(message.contains("s1"), "{message}"),
        other => panic!("expected a conflict, got {other:?}"),
    }
}

pub async fn subscriptions_are_created_updated_and_deleted(store: &dyn Store) {
    assert!(matches!(
        store.create_subscription(spec("s1", "orders"), t0()).await,
        Err(StoreError::NotFound { kind: "topic", .. })
    ));
    setup(store, &["s1"]).await;
    assert!(matches!(
        store.create_subscription(spec("s1", "orders"), t0()).await,
        Err(StoreError::Conflict(_))
    ));
    let mut changed = spec("s1", "orders");
    changed.endpoint = "http://127.0.0.1:9/other".into();
    changed.max_concurrency = 3;
    let updated = store
        .update_subscription(changed.clone(), at(5))
        .await
        .unwrap();
    assert_eq!(updated.created_at, t0());
    assert_eq!(updated.updated_at, at(5));
    assert_eq!(store.get_subscription("s1").await.unwrap().spec, changed);

    store.create_topic("other", t0()).await.unwrap();
    let mut moved = changed.clone();
    moved.topic = "other".into();
    assert!(matches!(
        store.update_subscription(moved, at(6)).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store
            .update_subscription(spec("nope", "orders"), at(6))
            .await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(store.list_subscriptions().await.unwrap().len(), 1);
    store.delete_subscription("s1").await.unwrap();
    assert!(store.list_subscriptions().await.unwrap().is_empty());
    assert!(matches!(
        store.get_subscription("s1").await,
        Err(StoreError::NotFound { .. })
    ));
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// Every `pub async fn NAME(store: &dyn Store)` of the suite's files.
    fn defined() -> BTreeSet<String> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = vec![root.join("conformance.rs")];
        let dir = std::fs::read_dir(root.join("conformance")).expect("the suite's directory");
        files.extend(dir.map(|entry| entry.expect("a directory entry").path()));
        let mut names = BTreeSet::new();
        for file in files {
            let text = std::fs::read_to_string(&file).expect("a source file");
            for (i, _) in text.match_indices("pub async fn ") {
                let rest = &text[i + "pub async fn ".len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                let signature: String = rest[name.len()..rest.find('{').unwrap_or(rest.len())]
                    .chars()
                    .filter(|c| !c.is_whitespace())
                    .collect();
                if signature.starts_with("(store:&dynStore") && !signature.contains("->") {
                    names.insert(name);
                }
            }
        }
        names
    }

    #[test]
    fn every_check_is_listed() {
        let listed: BTreeSet<String> = super::CHECKS
            .iter()
            .map(|(name, _)| name.to_string())
            .collect();
        assert_eq!(listed.len(), super::CHECKS.len(), "a check is listed twice");
        let defined = defined();
        assert!(
            defined.len() > 30,
            "the scan found too few checks: {defined:?}"
        );
        let missing: Vec<_> = defined.difference(&listed).collect();
        assert!(
            missing.is_empty(),
            "checks missing from CHECKS: {missing:?}"
        );
    }
}

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
    Attempt, CloudEvent, Decision, DeliveryState, ErrorClass, FailureReason, Filter,
    SubscriptionSpec,
};

use crate::{ClaimRequest, ClaimWant, Completion, DeliveryQuery, Store, StoreError};

mod health;
mod lifecycle;
pub use health::*;
mod console;
pub use console::*;
mod security;
pub use lifecycle::*;
pub use security::*;
mod ops;
pub use ops::*;
mod claims;
pub use claims::*;
mod retry;
pub use retry::*;

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
    new_subscriptions_are_healthy_and_not_paused,
    completions_count_attempts_by_outcome_per_minute,
    health_changes_compare_and_set_and_announce_on_the_system_topic,
    paused_and_disabled_subscriptions_get_no_claims,
    old_attempt_counts_are_pruned_and_forgotten_with_their_subscription,
    retention_still_ends_deliveries_of_paused_and_disabled_subscriptions,
    console_search_filters_newest_first,
    console_search_pages_without_gaps_or_repeats,
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
    a_write_check_commits_and_changes_nothing_a_reader_sees,
    rotations_within_the_grace_period_keep_every_earlier_secret_up_to_a_bound,
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
        name: name.into(),
        topic: topic.into(),
        endpoint: "http://127.0.0.1:9/hook".into(),
        filter: Filter::default(),
        retry_policy: Default::default(),
        timeout: redrive_core::HumanDuration::from_secs(30),
        max_concurrency: 8,
        dead_letter_topic: None,
        max_delivery_attempts: None,
        message_retention: redrive_core::lifecycle::default_message_retention(),
        rate: None,
        bucket_size: None,
        headers_profile: Default::default(),
        payload_format: Default::default(),
        health_policy: Default::default(),
        push_backoff: false,
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

fn want(subscription: &str, limit: u32) -> ClaimWant {
    ClaimWant {
        subscription: subscription.into(),
        limit,
        rate: None,
        lookahead: std::time::Duration::ZERO,
    }
}

fn claim_at(now: Timestamp, wants: Vec<ClaimWant>) -> ClaimRequest {
    ClaimRequest {
        now,
        lease: Duration::from_secs(60),
        wants,
        limit_total: u32::MAX,
    }
}

fn attempt(number: u32, started_at: Timestamp, status: u16, decision: Decision) -> Attempt {
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

async fn setup(store: &dyn Store, subscriptions: &[&str]) {
    store.create_topic("orders", t0()).await.unwrap();
    for name in subscriptions {
        store
            .create_subscription(spec(name, "orders"), t0())
            .await
            .unwrap();
    }
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

pub async fn publish_fans_out_to_matching_subscriptions(store: &dyn Store) {
    setup(store, &["all"]).await;
    let mut only_created = spec("created", "orders");
    only_created.filter.ty = Some("order.created".into());
    store.create_subscription(only_created, t0()).await.unwrap();

    let outcomes = store
        .publish(
            "orders",
            vec![event("e1", "order.created"), event("e2", "order.paid")],
            t0(),
        )
        .await
        .unwrap();
    assert_eq!(outcomes.len(), 2);
    assert_eq!((outcomes[0].duplicate, outcomes[0].deliveries), (false, 2));
    assert_eq!((outcomes[1].duplicate, outcomes[1].deliveries), (false, 1));

    let page = |sub: &str| DeliveryQuery {
        subscription: sub.into(),
        limit: 10,
        ..Default::default()
    };
    let all = store.list_deliveries(page("all")).await.unwrap().deliveries;
    let created = store
        .list_deliveries(page("created"))
        .await
        .unwrap()
        .deliveries;
    assert_eq!(all.len(), 2);
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].event_id, "e1");
    assert_eq!(created[0].event_type, "order.created");
    assert_eq!(created[0].state, DeliveryState::Scheduled);
    assert_eq!(created[0].next_attempt_at, Some(t0()));

    let detail = store.get_delivery(&created[0].id).await.unwrap();
    assert_eq!(detail.event, event("e1", "order.created"));
    assert!(detail.attempts.is_empty());
}

pub async fn duplicate_events_are_reported_and_not_fanned_out(store: &dyn Store) {
    setup(store, &["s1"]).await;
    let first = store
        .publish("orders", vec![event("e1", "t"), event("e1", "t")], t0())
        .await
        .unwrap();
    assert_eq!(
        first.iter().map(|o| o.duplicate).collect::<Vec<_>>(),
        [false, true]
    );
    let again = store
        .publish("orders", vec![event("e1", "t")], at(1))
        .await
        .unwrap();
    assert!(again[0].duplicate);
    assert_eq!(again[0].deliveries, 0);
    let mut other_source = event("e1", "t");
    other_source.source = "/elsewhere".into();
    let distinct = store
        .publish("orders", vec![other_source], at(2))
        .await
        .unwrap();
    assert!(!distinct[0].duplicate);
    let page = store
        .list_deliveries(DeliveryQuery {
            subscription: "s1".into(),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.deliveries.len(), 2);
}

pub async fn publish_to_unknown_topic_is_not_found(store: &dyn Store) {
    assert!(matches!(
        store.publish("missing", vec![event("e1", "t")], t0()).await,
        Err(StoreError::NotFound { kind: "topic", .. })
    ));
}

pub async fn claims_take_only_due_deliveries_up_to_each_limit(store: &dyn Store) {
    setup(store, &["a", "b"]).await;
    for i in 0..5 {
        store
            .publish("orders", vec![event(&format!("e{i}"), "t")], at(i))
            .await
            .unwrap();
    }
    // At t0+2 three deliveries of each subscription are due.
    let batch = store
        .claim_due(claim_at(at(2), vec![want("a", 2), want("b", 10)]))
        .await
        .unwrap();
    let of = |sub: &str| {
        batch
            .claimed
            .iter()
            .filter(|c| c.delivery.subscription == sub)
            .count()
    };
    assert_eq!((of("a"), of("b")), (2, 3));
    for claimed in &batch.claimed {
        assert_eq!(claimed.delivery.state, DeliveryState::InFlight);
        assert_eq!(claimed.delivery.attempts, 1);
        assert_eq!(claimed.delivery.first_attempt_at, Some(at(2)));
        assert_eq!(claimed.lease_until, at(62));
        assert!(claimed.event.data.is_some());
    }
    // The oldest due go first.
    let mut a_events: Vec<_> = batch
        .claimed
        .iter()
        .filter(|c| c.delivery.subscription == "a")
        .map(|c| c.event.id.clone())
        .collect();
    a_events.sort();
    assert_eq!(a_events, ["e0", "e1"]);
    // "a" still has e2 due now; that is the earliest.
    assert_eq!(batch.next_due_at, Some(at(2)));

    let again = store
        .claim_due(claim_at(at(2), vec![want("a", 10), want("b", 10)]))
        .await
        .unwrap();
    assert_eq!(again.claimed.len(), 1);
    assert_eq!(again.next_due_at, Some(at(3)));
    let nothing = store
        .claim_due(claim_at(at(2), vec![want("a", 0)]))
        .await
        .unwrap();
    assert!(nothing.claimed.is_empty());
    assert_eq!(nothing.next_due_at, Some(at(3)));
}

pub async fn completions_apply_retry_delivered_and_failed(store: &dyn Store) {
    setup(store, &["s1"]).await;
    store
        .publish(
            "orders",
            vec![event("e1", "t"), event("e2", "t"), event("e3", "t")],
            t0(),
        )
        .await
        .unwrap();
    let batch = store
        .claim_due(claim_at(at(1), vec![want("s1", 10)]))
        .await
        .unwrap();
    assert_eq!(batch.claimed.len(), 3);
    let id_of = |event_id: &str| {
        batch
            .claimed
            .iter()
            .find(|c| c.event.id == event_id)
            .map(|c| c.delivery.id.clone())
            .unwrap()
    };
    let decisions = [
        ("e1", 200, Decision::Delivered),
        (
            "e2",
            503,
            Decision::Retry {
                at: at(11),
                retry: 1,
            },
        ),
        (
            "e3",
            404,
            Decision::Failed {
                reason: FailureReason::NonRetryable,
            },
        ),
    ];
    let completions = decisions
        .iter()
        .map(|(event_id, status, decision)| Completion {
            delivery_id: id_of(event_id),
            attempt: attempt(1, at(1), *status, *decision),
        })
        .collect();
    store.complete_many(completions).await.unwrap();

    let delivered = store.get_delivery(&id_of("e1")).await.unwrap();
    assert_eq!(delivered.delivery.state, DeliveryState::Delivered);
    assert_eq!(delivered.delivery.last_status, Some(200));
    assert_eq!(delivered.delivery.next_attempt_at, None);
    assert_eq!(
        delivered.attempts,
        vec![attempt(1, at(1), 200, Decision::Delivered)]
    );

    let retrying = store.get_delivery(&id_of("e2")).await.unwrap().delivery;
    assert_eq!(retrying.state, DeliveryState::Scheduled);
    assert_eq!(retrying.next_attempt_at, Some(at(11)));
    assert_eq!(retrying.last_status, Some(503));

    let failed = store.get_delivery(&id_of("e3")).await.unwrap().delivery;
    assert_eq!(failed.state, DeliveryState::Failed);
    assert_eq!(failed.failure_reason, Some(FailureReason::NonRetryable));

    // The retry is due at t0+11, not before; its second claim counts attempt 2.
    let early = store
        .claim_due(claim_at(at(10), vec![want("s1", 10)]))
        .await
        .unwrap();
    assert!(early.claimed.is_empty());
    assert_eq!(early.next_due_at, Some(at(11)));
    let second = store
        .claim_due(claim_at(at(11), vec![want("s1", 10)]))
        .await
        .unwrap();
    assert_eq!(second.claimed.len(), 1);
    assert_eq!(second.claimed[0].delivery.attempts, 2);
    assert_eq!(second.claimed[0].delivery.first_attempt_at, Some(at(1)));
    assert_eq!(second.claimed[0].delivery.last_attempt_at, Some(at(11)));
}

pub async fn stale_completion_keeps_attempt_but_not_state(store: &dyn Store) {
    setup(store, &["s1"]).await;
    store
        .publish("orders", vec![event("e1", "t")], t0())
        .await
        .unwrap();
    let claimed = store
        .claim_due(claim_at(t0(), vec![want("s1", 1)]))
        .await
        .unwrap()
        .claimed;
    let id = claimed[0].delivery.id.clone();
    // The lease runs out and the delivery is claimed again (attempt 2)...
    assert_eq!(store.rescue_expired(at(61)).await.unwrap(), 1);
    let reclaimed = store
        .claim_due(claim_at(at(61), vec![want("s1", 1)]))
        .await
        .unwrap()
        .claimed;
    assert_eq!(reclaimed[0].delivery.attempts, 2);
    // ...so the late answer of attempt 1 must not move it.
    store
        .complete_many(vec![Completion {
            delivery_id: id.clone(),
            attempt: attempt(1, t0(), 200, Decision::Delivered),
        }])
        .await
        .unwrap();
    let detail = store.get_delivery(&id).await.unwrap();
    assert_eq!(detail.delivery.state, DeliveryState::InFlight);
    assert_eq!(detail.attempts.len(), 1);
    assert_eq!(detail.attempts[0].error, Some(ErrorClass::Interrupted));
}

pub async fn expired_leases_are_rescued_as_interrupted(store: &dyn Store) {
    setup(store, &["s1"]).await;
    store
        .publish("orders", vec![event("e1", "t"), event("e2", "t")], t0())
        .await
        .unwrap();
    let mut request = claim_at(t0(), vec![want("s1", 1)]);
    request.lease = Duration::from_secs(10);
    let first = store.claim_due(request).await.unwrap().claimed;
    let second = store
        .claim_due(claim_at(at(5), vec![want("s1", 1)]))
        .await
        .unwrap()
        .claimed;
    // Only the first lease (t0+10) has ended at t0+20; the second runs to t0+65.
    assert_eq!(store.rescue_expired(at(20)).await.unwrap(), 1);
    let rescued = store.get_delivery(&first[0].delivery.id).await.unwrap();
    assert_eq!(rescued.delivery.state, DeliveryState::Scheduled);
    assert_eq!(rescued.delivery.next_attempt_at, Some(at(20)));
    assert_eq!(rescued.delivery.last_error, Some(ErrorClass::Interrupted));
    assert_eq!(rescued.attempts.len(), 1);
    assert_eq!(rescued.attempts[0].number, 1);
    assert_eq!(
        rescued.attempts[0].decision,
        Decision::Retry {
            at: at(20),
            retry: 1
        }
    );
    let untouched = store.get_delivery(&second[0].delivery.id).await.unwrap();
    assert_eq!(untouched.delivery.state, DeliveryState::InFlight);
    assert_eq!(store.rescue_expired(at(20)).await.unwrap(), 0);
}

pub async fn deliveries_page_newest_first_with_filters(store: &dyn Store) {
    setup(store, &["s1"]).await;
    for i in 0..5 {
        store
            .publish("orders", vec![event(&format!("e{i}"), "t")], at(i))
            .await
            .unwrap();
    }
    let query = |before: Option<String>| DeliveryQuery {
        subscription: "s1".into(),
        limit: 2,
        before,
        ..Default::default()
    };
    let first = store.list_deliveries(query(None)).await.unwrap();
    let ids = |page: &crate::DeliveryPage| {
        page.deliveries
            .iter()
            .map(|d| d.event_id.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&first), ["e4", "e3"]);
    let second = store
        .list_deliveries(query(first.next_cursor.clone()))
        .await
        .unwrap();
    assert_eq!(ids(&second), ["e2", "e1"]);
    let last = store
        .list_deliveries(query(second.next_cursor.clone()))
        .await
        .unwrap();
    assert_eq!(ids(&last), ["e0"]);
    assert_eq!(last.next_cursor, None);

    let claimed = store
        .claim_due(claim_at(at(10), vec![want("s1", 2)]))
        .await
        .unwrap()
        .claimed;
    store
        .complete_many(vec![Completion {
            delivery_id: claimed[0].delivery.id.clone(),
            attempt: attempt(
                1,
                at(10),
                410,
                Decision::Failed {
                    reason: FailureReason::NonRetryable,
                },
            ),
        }])
        .await
        .unwrap();
    let filtered = |state, reason| DeliveryQuery {
        subscription: "s1".into(),
        state,
        reason,
        limit: 10,
        before: None,
    };
    let in_flight = store
        .list_deliveries(filtered(Some(DeliveryState::InFlight), None))
        .await
        .unwrap();
    assert_eq!(in_flight.deliveries.len(), 1);
    let failed = store
        .list_deliveries(filtered(
            Some(DeliveryState::Failed),
            Some(FailureReason::NonRetryable),
        ))
        .await
        .unwrap();
    assert_eq!(failed.deliveries.len(), 1);
    assert_eq!(failed.deliveries[0].id, claimed[0].delivery.id);
    let none = store
        .list_deliveries(filtered(
            Some(DeliveryState::Failed),
            Some(FailureReason::AgeExhausted),
        ))
        .await
        .unwrap();
    assert!(none.deliveries.is_empty());
    let scheduled = store
        .list_deliveries(filtered(Some(DeliveryState::Scheduled), None))
        .await
        .unwrap();
    assert_eq!(scheduled.deliveries.len(), 3);
}

pub async fn retry_now_schedules_failed_deliveries_but_not_in_flight(store: &dyn Store) {
    setup(store, &["s1"]).await;
    store
        .publish("orders", vec![event("e1", "t")], t0())
        .await
        .unwrap();
    let claimed = store
        .claim_due(claim_at(t0(), vec![want("s1", 1)]))
        .await
        .unwrap()
        .claimed;
    let id = claimed[0].delivery.id.clone();
    assert!(matches!(
        store.retry_now(&id, at(1)).await,
        Err(StoreError::Conflict(_))
    ));
    store
        .complete_many(vec![Completion {
            delivery_id: id.clone(),
            attempt: attempt(
                1,
                t0(),
                500,
                Decision::Failed {
                    reason: FailureReason::RetriesExhausted,
                },
            ),
        }])
        .await
        .unwrap();
    let retried = store.retry_now(&id, at(30)).await.unwrap();
    assert_eq!(retried.state, DeliveryState::Scheduled);
    assert_eq!(retried.next_attempt_at, Some(at(30)));
    assert_eq!(retried.failure_reason, None);
    assert_eq!(retried.attempts, 1);
    assert!(matches!(
        store.retry_now("no-such-delivery", at(30)).await,
        Err(StoreError::NotFound { .. })
    ));
}

pub async fn deleting_a_subscription_removes_its_deliveries(store: &dyn Store) {
    setup(store, &["s1", "s2"]).await;
    store
        .publish("orders", vec![event("e1", "t")], t0())
        .await
        .unwrap();
    let page = store
        .list_deliveries(DeliveryQuery {
            subscription: "s1".into(),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let id = page.deliveries[0].id.clone();
    store.delete_subscription("s1").await.unwrap();
    assert!(matches!(
        store.get_delivery(&id).await,
        Err(StoreError::NotFound { .. })
    ));
    let batch = store
        .claim_due(claim_at(at(1), vec![want("s2", 10)]))
        .await
        .unwrap();
    assert_eq!(batch.claimed.len(), 1);
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

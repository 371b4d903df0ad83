//! Conformance checks of endpoint health: attempt counts, their prune,
//! health changes as compare-and-set with their operational event, pause,
//! and claims that skip paused and disabled subscriptions.

use redrive_core::Health;
use redrive_core::health::AttemptCounts;
use redrive_core::lifecycle::SYSTEM_TOPIC;
use redrive_core::{Decision, DeliveryState};
use serde_json::Value;

use super::{at, attempt, claim_at, event, one_claimed, setup, spec, t0, want};
use crate::{Completion, DeliverySearch, HealthChange, Store, StoreError};

/// Publishes `count` events to `orders` at `now`, claims every due
/// delivery of `subscription` and ends each with `status`: 200 delivers,
/// anything else schedules a retry.
async fn attempt_round(
    store: &dyn Store,
    subscription: &str,
    first_id: usize,
    count: usize,
    now: jiff::Timestamp,
    status: u16,
) {
    let events = (first_id..first_id + count)
        .map(|i| event(&format!("e{i}"), "t"))
        .collect();
    store.publish("orders", events, now).await.unwrap();
    let claimed = store
        .claim_due(claim_at(now, vec![want(subscription, 1000)]))
        .await
        .unwrap()
        .claimed;
    let decision = if status == 200 {
        Decision::Delivered
    } else {
        Decision::Retry {
            at: at(100_000),
            retry: 1,
        }
    };
    let completions = claimed
        .iter()
        .map(|c| Completion {
            delivery_id: c.delivery.id.clone(),
            subscription: c.delivery.subscription.clone(),
            attempt: attempt(c.delivery.attempts, now, status, decision),
        })
        .collect();
    store.complete_many(completions).await.unwrap();
}

fn counts(succeeded: u64, failed: u64) -> AttemptCounts {
    AttemptCounts { succeeded, failed }
}

fn change(name: &str, from: Health, to: Health, seconds: i64) -> HealthChange {
    HealthChange {
        subscription: name.into(),
        from,
        to,
        reason: format!("{} to {}", from.as_str(), to.as_str()),
        now: at(seconds),
    }
}

pub async fn new_subscriptions_are_healthy_and_not_paused(store: &dyn Store) {
    setup(store, &["s1"]).await;
    for subscription in [
        store.get_subscription("s1").await.unwrap(),
        store.list_subscriptions().await.unwrap().remove(0),
    ] {
        assert_eq!(subscription.status.health, Health::Healthy);
        assert_eq!(subscription.status.health_reason, None);
        assert_eq!(subscription.status.health_changed_at, t0());
        assert!(!subscription.status.paused);
    }
    // Changing the spec keeps the status.
    store.set_paused("s1", true).await.unwrap();
    let mut s1 = spec("s1", "orders");
    s1.max_concurrency = 3;
    let updated = store.update_subscription(s1, at(5)).await.unwrap();
    assert!(updated.status.paused);
    assert!(store.get_subscription("s1").await.unwrap().status.paused);
}

pub async fn completions_count_attempts_by_outcome_per_minute(store: &dyn Store) {
    setup(store, &["s1", "s2"]).await;
    // Minute 0: three failures; minute 2: two successes (and three of the
    // failed ones again, still failing).
    attempt_round(store, "s1", 0, 3, at(10), 503).await;
    assert_eq!(
        store.count_attempts("s1", t0()).await.unwrap(),
        counts(0, 3)
    );
    let claimed = store
        .claim_due(claim_at(at(100_000), vec![want("s1", 10)]))
        .await
        .unwrap()
        .claimed;
    assert_eq!(claimed.len(), 3);
    let completions = claimed
        .iter()
        .map(|c| Completion {
            delivery_id: c.delivery.id.clone(),
            subscription: c.delivery.subscription.clone(),
            attempt: attempt(c.delivery.attempts, at(130), 200, Decision::Delivered),
        })
        .collect();
    store.complete_many(completions).await.unwrap();
    assert_eq!(
        store.count_attempts("s1", t0()).await.unwrap(),
        counts(3, 3)
    );
    // Counts from the minute `since` falls in.
    assert_eq!(
        store.count_attempts("s1", at(59)).await.unwrap(),
        counts(3, 3)
    );
    assert_eq!(
        store.count_attempts("s1", at(60)).await.unwrap(),
        counts(3, 0)
    );
    // The same completion again adds nothing.
    let detail = store.get_delivery(&claimed[0].delivery.id).await.unwrap();
    store
        .complete_many(vec![Completion {
            delivery_id: detail.delivery.id.clone(),
            subscription: detail.delivery.subscription.clone(),
            attempt: detail.attempts[1].clone(),
        }])
        .await
        .unwrap();
    assert_eq!(
        store.count_attempts("s1", t0()).await.unwrap(),
        counts(3, 3)
    );
    // Other subscriptions count their own (their deliveries weren't tried).
    assert_eq!(
        store.count_attempts("s2", t0()).await.unwrap(),
        counts(0, 0)
    );
    assert!(matches!(
        store.count_attempts("nope", t0()).await,
        Err(StoreError::NotFound { .. })
    ));
}

/// One batch of outcomes from several subscriptions, minutes and results
/// counts each attempt with its own subscription.
pub async fn one_batch_counts_each_subscription_apart(store: &dyn Store) {
    setup(store, &["s1", "s2"]).await;
    store
        .publish("orders", vec![event("e1", "t"), event("e2", "t")], t0())
        .await
        .unwrap();
    let claimed = store
        .claim_due(claim_at(t0(), vec![want("s1", 10), want("s2", 10)]))
        .await
        .unwrap()
        .claimed;
    assert_eq!(claimed.len(), 4);
    let retry = Decision::Retry {
        at: at(100_000),
        retry: 1,
    };
    let completions = claimed
        .iter()
        .map(|c| {
            // s1: e1 delivered in minute 0, e2 failed in minute 1;
            // s2: both delivered in minute 1.
            let (ended, status, decision) =
                match (c.delivery.subscription.as_str(), c.event.id.as_str()) {
                    ("s1", "e1") => (at(10), 200, Decision::Delivered),
                    ("s1", _) => (at(70), 503, retry),
                    _ => (at(70), 200, Decision::Delivered),
                };
            Completion {
                delivery_id: c.delivery.id.clone(),
                subscription: c.delivery.subscription.clone(),
                attempt: attempt(c.delivery.attempts, ended, status, decision),
            }
        })
        .collect();
    store.complete_many(completions).await.unwrap();
    assert_eq!(
        store.count_attempts("s1", t0()).await.unwrap(),
        counts(1, 1)
    );
    assert_eq!(
        store.count_attempts("s1", at(60)).await.unwrap(),
        counts(0, 1)
    );
    assert_eq!(
        store.count_attempts("s2", t0()).await.unwrap(),
        counts(2, 0)
    );
    assert_eq!(
        store.count_attempts("s2", at(60)).await.unwrap(),
        counts(2, 0)
    );
}

/// A batch that names the same attempt twice records and counts it once:
/// a completion sent again (say, by a recorder that could not tell whether
/// its last write landed) must not make an endpoint look busier.
pub async fn one_batch_naming_an_attempt_twice_counts_it_once(store: &dyn Store) {
    let claimed = one_claimed(store).await;
    let completion = Completion {
        delivery_id: claimed.delivery.id.clone(),
        subscription: claimed.delivery.subscription.clone(),
        attempt: attempt(claimed.delivery.attempts, at(10), 200, Decision::Delivered),
    };
    store
        .complete_many(vec![completion.clone(), completion])
        .await
        .unwrap();
    assert_eq!(
        store.count_attempts("s1", t0()).await.unwrap(),
        counts(1, 0)
    );
    let detail = store.get_delivery(&claimed.delivery.id).await.unwrap();
    assert_eq!(detail.attempts.len(), 1);
    assert_eq!(detail.delivery.state, DeliveryState::Delivered);
}

pub async fn health_changes_compare_and_set_and_announce_on_the_system_topic(store: &dyn Store) {
    setup(store, &["s1"]).await;
    store
        .create_subscription(spec("ops", SYSTEM_TOPIC), t0())
        .await
        .unwrap();
    attempt_round(store, "s1", 0, 4, at(10), 503).await;
    assert_eq!(
        store.count_attempts("s1", t0()).await.unwrap(),
        counts(0, 4)
    );

    let unstable = store
        .change_health(change("s1", Health::Healthy, Health::Unstable, 20))
        .await
        .unwrap()
        .expect("healthy to unstable applies");
    assert_eq!(unstable.status.health, Health::Unstable);
    assert_eq!(
        unstable.status.health_reason.as_deref(),
        Some("healthy to unstable")
    );
    assert_eq!(unstable.status.health_changed_at, at(20));
    assert_eq!(store.get_subscription("s1").await.unwrap(), unstable);
    // Counts start over with the new health, even within the same minute.
    assert_eq!(
        store.count_attempts("s1", t0()).await.unwrap(),
        counts(0, 0)
    );
    attempt_round(store, "s1", 4, 1, at(30), 503).await;
    assert_eq!(
        store.count_attempts("s1", t0()).await.unwrap(),
        counts(0, 1)
    );

    // A stale change (the caller thought it was still healthy) does nothing.
    assert_eq!(
        store
            .change_health(change("s1", Health::Healthy, Health::Disabled, 40))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store.get_subscription("s1").await.unwrap().status.health,
        Health::Unstable
    );
    assert!(matches!(
        store
            .change_health(change("nope", Health::Healthy, Health::Unstable, 40))
            .await,
        Err(StoreError::NotFound { .. })
    ));

    store
        .change_health(change("s1", Health::Unstable, Health::Disabled, 50))
        .await
        .unwrap()
        .expect("unstable to disabled applies");
    store
        .change_health(change("s1", Health::Disabled, Health::Healthy, 60))
        .await
        .unwrap()
        .expect("disabled to healthy applies");

    // One operational event per applied change, in order.
    let ops = store
        .search_deliveries(DeliverySearch {
            subscription: "ops".into(),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .deliveries;
    let types: Vec<&str> = ops.iter().rev().map(|d| d.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "redrive.subscription.unstable",
            "redrive.subscription.disabled",
            "redrive.subscription.healthy"
        ]
    );
    let detail = store.get_delivery(&ops[2].id).await.unwrap();
    let data: Value = serde_json::from_slice(detail.event.data.as_deref().unwrap()).unwrap();
    assert_eq!(data["subscription"], "s1");
    assert_eq!(data["health"], "unstable");
    assert_eq!(data["previous_health"], "healthy");
    assert_eq!(data["reason"], "healthy to unstable");
}

pub async fn paused_and_disabled_subscriptions_get_no_claims(store: &dyn Store) {
    setup(store, &["s1", "s2"]).await;
    let events = (0..3).map(|i| event(&format!("e{i}"), "t")).collect();
    store.publish("orders", events, t0()).await.unwrap();

    let paused = store.set_paused("s1", true).await.unwrap();
    assert!(paused.status.paused);
    store
        .change_health(change("s2", Health::Healthy, Health::Disabled, 1))
        .await
        .unwrap()
        .expect("applies");
    let batch = store
        .claim_due(claim_at(at(2), vec![want("s1", 10), want("s2", 10)]))
        .await
        .unwrap();
    assert!(batch.claimed.is_empty());
    // Their deliveries are not announced as due either.
    assert_eq!(batch.next_due_at, None);
    assert!(matches!(
        store.set_paused("nope", true).await,
        Err(StoreError::NotFound { .. })
    ));

    // Resumed and enabled, the backlog is claimed, oldest first as always.
    assert!(!store.set_paused("s1", false).await.unwrap().status.paused);
    store
        .change_health(change("s2", Health::Disabled, Health::Healthy, 3))
        .await
        .unwrap()
        .expect("applies");
    let batch = store
        .claim_due(claim_at(at(4), vec![want("s1", 10), want("s2", 10)]))
        .await
        .unwrap();
    assert_eq!(batch.claimed.len(), 6);
    for claimed in &batch.claimed {
        assert_eq!(claimed.delivery.attempts, 1);
    }
}

pub async fn old_attempt_counts_are_pruned_and_forgotten_with_their_subscription(
    store: &dyn Store,
) {
    setup(store, &["s1"]).await;
    attempt_round(store, "s1", 0, 2, at(10), 503).await;
    attempt_round(store, "s1", 2, 2, at(200), 200).await;
    // Nothing older than minute 0.
    assert_eq!(store.prune_attempt_counts(t0(), 100).await.unwrap(), 0);
    // The minute-0 bucket goes, in batches of `limit`.
    assert_eq!(store.prune_attempt_counts(at(180), 100).await.unwrap(), 1);
    assert_eq!(
        store.count_attempts("s1", t0()).await.unwrap(),
        counts(2, 0)
    );
    assert_eq!(store.prune_attempt_counts(at(180), 100).await.unwrap(), 0);

    // A subscription deleted and created again starts from nothing.
    store.delete_subscription("s1").await.unwrap();
    store
        .create_subscription(spec("s1", "orders"), at(300))
        .await
        .unwrap();
    assert_eq!(
        store.count_attempts("s1", t0()).await.unwrap(),
        counts(0, 0)
    );
}

pub async fn retention_still_ends_deliveries_of_paused_and_disabled_subscriptions(
    store: &dyn Store,
) {
    setup(store, &["s1", "s2"]).await;
    store
        .publish("orders", vec![event("e1", "t")], t0())
        .await
        .unwrap();
    store.set_paused("s1", true).await.unwrap();
    store
        .change_health(change("s2", Health::Healthy, Health::Disabled, 1))
        .await
        .unwrap()
        .expect("applies");
    // The default retention is 7 days.
    let expired = store
        .expire_retention(at(7 * 24 * 3600 + 1), 100)
        .await
        .unwrap();
    assert_eq!(expired, 2);
    for name in ["s1", "s2"] {
        let deliveries = store
            .search_deliveries(DeliverySearch {
                subscription: name.into(),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap()
            .deliveries;
        assert_eq!(
            deliveries[0].failure_reason,
            Some(redrive_core::FailureReason::RetentionExpired),
            "{name}"
        );
    }
}

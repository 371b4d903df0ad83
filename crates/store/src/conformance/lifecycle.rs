//! Conformance checks of the failure lifecycle: dead-lettering, retention
//! expiry, cancel, redrive, the journal and the history purge.

use std::collections::BTreeMap;

use redrive_core::lifecycle::{DELIVERY_FAILED_TYPE, SYSTEM_TOPIC};
use redrive_core::{AttemptKind, Decision, Delivery, DeliveryState, FailureReason, HumanDuration};
use serde_json::json;

use super::{at, attempt, attempt_all, claim_at, event, spec, t0, want};
use crate::{Completion, DeliverySearch, RedriveBatchRequest, RedriveFilter, Store, StoreError};

pub(super) async fn deliveries_of(store: &dyn Store, subscription: &str) -> Vec<Delivery> {
    store
        .search_deliveries(DeliverySearch {
            subscription: subscription.into(),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .deliveries
}

fn fail(reason: FailureReason) -> Decision {
    Decision::Failed { reason }
}

/// `orders` → `s1` (dead-lettering to `orders-dead`), `orders-dead` →
/// `dead-reader`, and `ops` on the system topic.
async fn dead_letter_setup(store: &dyn Store) {
    store.create_topic("orders", t0()).await.unwrap();
    store.create_topic("orders-dead", t0()).await.unwrap();
    let mut s1 = spec("s1", "orders");
    s1.dead_letter_topic = Some("orders-dead".into());
    store.create_subscription(s1, t0()).await.unwrap();
    store
        .create_subscription(spec("dead-reader", "orders-dead"), t0())
        .await
        .unwrap();
    store
        .create_subscription(spec("ops", SYSTEM_TOPIC), t0())
        .await
        .unwrap();
}

pub async fn a_failed_delivery_is_dead_lettered_in_the_same_write(store: &dyn Store) {
    dead_letter_setup(store).await;
    let mut original = event("e1", "order.created");
    original.extensions.insert("tenant".into(), json!("acme"));
    store
        .publish("orders", vec![original.clone()], t0())
        .await
        .unwrap();
    let ids = attempt_all(
        store,
        "s1",
        at(1),
        503,
        fail(FailureReason::RetriesExhausted),
    )
    .await;

    let failed = store.get_delivery(&ids["e1"]).await.unwrap().delivery;
    assert_eq!(failed.state, DeliveryState::Failed);
    assert_eq!(failed.failure_reason, Some(FailureReason::RetriesExhausted));
    let copy_id = failed
        .dead_letter_event
        .clone()
        .expect("a dead-letter link");

    let dead = deliveries_of(store, "dead-reader").await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].state, DeliveryState::Scheduled);
    assert_eq!(dead[0].event_id, copy_id);
    let copy = store.get_delivery(&dead[0].id).await.unwrap().event;
    assert_eq!(copy.source, original.source);
    assert_eq!(copy.ty, original.ty);
    assert_eq!(copy.data, original.data);
    assert_eq!(copy.extensions["tenant"], json!("acme"));
    assert_eq!(copy.extensions["deadletterid"], json!("e1"));
    assert_eq!(
        copy.extensions["deadletterreason"],
        json!("retries_exhausted")
    );
    assert_eq!(copy.extensions["deadlettersubscription"], json!("s1"));
    assert_eq!(copy.extensions["deadletterattempts"], json!(1));
    assert_eq!(copy.extensions["deadletterlaststatus"], json!(503));
    assert_eq!(
        copy.extensions["deadletterfirstattempt"],
        json!(at(1).to_string())
    );

    let notices = deliveries_of(store, "ops").await;
    assert_eq!(notices.len(), 1);
    assert_eq!(notices[0].event_type, DELIVERY_FAILED_TYPE);
    let notice = store.get_delivery(&notices[0].id).await.unwrap().event;
    let data: serde_json::Value = serde_json::from_slice(notice.data.as_deref().unwrap()).unwrap();
    assert_eq!(data["delivery_id"], json!(ids["e1"]));
    assert_eq!(data["reason"], json!("retries_exhausted"));
    assert_eq!(data["dead_letter_event"], json!(copy_id));

    // A failure of the system topic's own subscription is not announced
    // there again (no feedback loop).
    attempt_all(store, "ops", at(2), 500, fail(FailureReason::NonRetryable)).await;
    assert_eq!(deliveries_of(store, "ops").await.len(), 1);
}

pub async fn a_subscription_without_dead_letter_topic_only_announces(store: &dyn Store) {
    store.create_topic("orders", t0()).await.unwrap();
    store
        .create_subscription(spec("s1", "orders"), t0())
        .await
        .unwrap();
    store
        .create_subscription(spec("ops", SYSTEM_TOPIC), t0())
        .await
        .unwrap();
    store
        .publish("orders", vec![event("e1", "t")], t0())
        .await
        .unwrap();
    let ids = attempt_all(store, "s1", at(1), 404, fail(FailureReason::NonRetryable)).await;
    let failed = store.get_delivery(&ids["e1"]).await.unwrap().delivery;
    assert_eq!(failed.dead_letter_event, None);
    assert_eq!(deliveries_of(store, "ops").await.len(), 1);
}

pub async fn topics_built_in_or_dead_lettered_to_cannot_be_deleted(store: &dyn Store) {
    dead_letter_setup(store).await;
    store.delete_subscription("dead-reader").await.unwrap();
    match store.delete_topic("orders-dead").await {
        Err(StoreError::Conflict(message)) => assert!(message.contains("s1"), "{message}"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    store.delete_subscription("ops").await.unwrap();
    assert!(matches!(
        store.delete_topic(SYSTEM_TOPIC).await,
        Err(StoreError::Conflict(_))
    ));
}

pub async fn retention_fails_deliveries_still_undelivered(store: &dyn Store) {
    dead_letter_setup(store).await;
    let mut plain = spec("s2", "orders");
    plain.message_retention = HumanDuration::from_secs(3600);
    store.create_subscription(plain, t0()).await.unwrap();
    let mut s1 = store.get_subscription("s1").await.unwrap().spec;
    s1.message_retention = HumanDuration::from_secs(600);
    store.update_subscription(s1, t0()).await.unwrap();
    store
        .publish("orders", vec![event("e1", "t"), event("e2", "t")], t0())
        .await
        .unwrap();
    // e2 is delivered in time: retention only ends undelivered events.
    let claimed = store
        .claim_due(claim_at(at(1), vec![want("s1", 100)]))
        .await
        .unwrap()
        .claimed;
    let e2 = claimed.iter().find(|c| c.event.id == "e2").unwrap();
    let e1 = claimed.iter().find(|c| c.event.id == "e1").unwrap();
    store
        .complete_many(vec![
            Completion {
                delivery_id: e2.delivery.id.clone(),
                subscription: e2.delivery.subscription.clone(),
                attempt: attempt(1, at(1), 200, Decision::Delivered),
            },
            Completion {
                delivery_id: e1.delivery.id.clone(),
                subscription: e1.delivery.subscription.clone(),
                attempt: attempt(
                    1,
                    at(1),
                    503,
                    Decision::Retry {
                        at: at(5000),
                        retry: 1,
                    },
                ),
            },
        ])
        .await
        .unwrap();

    assert_eq!(store.expire_retention(at(599), 100).await.unwrap(), 0);
    assert_eq!(store.expire_retention(at(600), 100).await.unwrap(), 1);
    let expired = store.get_delivery(&e1.delivery.id).await.unwrap().delivery;
    assert_eq!(expired.state, DeliveryState::Failed);
    assert_eq!(
        expired.failure_reason,
        Some(FailureReason::RetentionExpired)
    );
    assert!(expired.dead_letter_event.is_some());
    assert_eq!(deliveries_of(store, "dead-reader").await.len(), 1);
    let delivered = store.get_delivery(&e2.delivery.id).await.unwrap().delivery;
    assert_eq!(delivered.state, DeliveryState::Delivered);
    // s2 keeps its events an hour; the limit caps one sweep step.
    assert_eq!(store.expire_retention(at(3600), 1).await.unwrap(), 1);
    assert_eq!(store.expire_retention(at(3600), 1).await.unwrap(), 1);
    assert_eq!(store.expire_retention(at(3600), 1).await.unwrap(), 0);
}

pub async fn cancel_fails_only_a_scheduled_delivery(store: &dyn Store) {
    dead_letter_setup(store).await;
    store
        .publish("orders", vec![event("e1", "t"), event("e2", "t")], t0())
        .await
        .unwrap();
    let ids: Vec<String> = deliveries_of(store, "s1")
        .await
        .into_iter()
        .map(|d| d.id)
        .collect();
    let cancelled = store.cancel_delivery(&ids[0], at(1)).await.unwrap();
    assert_eq!(cancelled.state, DeliveryState::Failed);
    assert_eq!(cancelled.failure_reason, Some(FailureReason::Cancelled));
    assert!(cancelled.dead_letter_event.is_some());
    assert!(matches!(
        store.cancel_delivery(&ids[0], at(2)).await,
        Err(StoreError::Conflict(_))
    ));
    store
        .claim_due(claim_at(at(3), vec![want("s1", 10)]))
        .await
        .unwrap();
    assert!(matches!(
        store.cancel_delivery(&ids[1], at(4)).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.cancel_delivery("nope", at(4)).await,
        Err(StoreError::NotFound { .. })
    ));

    // The attempt log records each cancel as an entry of its own, after
    // the attempts before it; a redrive keeps the first attempt's time.
    let log = |detail: crate::DeliveryDetail| {
        detail
            .attempts
            .iter()
            .map(|a| (a.kind, a.number, a.started_at, a.decision))
            .collect::<Vec<_>>()
    };
    let cancelled = Decision::Failed {
        reason: FailureReason::Cancelled,
    };
    assert_eq!(
        log(store.get_delivery(&ids[0]).await.unwrap()),
        [(AttemptKind::Cancel, 0, at(1), cancelled)]
    );
    let retry = |secs| Decision::Retry {
        at: at(secs),
        retry: 1,
    };
    store
        .complete_many(vec![Completion {
            delivery_id: ids[1].clone(),
            subscription: "s1".into(),
            attempt: attempt(1, at(3), 503, retry(4)),
        }])
        .await
        .unwrap();
    store.cancel_delivery(&ids[1], at(5)).await.unwrap();
    let moved = store
        .redrive_batch(RedriveBatchRequest {
            filter: RedriveFilter::new("s1"),
            after: None,
            limit: 100,
            now: at(6),
        })
        .await
        .unwrap();
    assert_eq!(moved.moved, 2);
    let claimed = store
        .claim_due(claim_at(at(7), vec![want("s1", 10)]))
        .await
        .unwrap()
        .claimed;
    let again = claimed.iter().find(|c| c.delivery.id == ids[1]).unwrap();
    assert_eq!(again.delivery.first_attempt_at, Some(at(3)));
    assert_eq!(again.delivery.redriven_at, Some(at(6)));
    store
        .complete_many(vec![Completion {
            delivery_id: ids[1].clone(),
            subscription: "s1".into(),
            attempt: attempt(2, at(7), 503, retry(9)),
        }])
        .await
        .unwrap();
    store.cancel_delivery(&ids[1], at(8)).await.unwrap();
    let detail = store.get_delivery(&ids[1]).await.unwrap();
    assert_eq!(detail.delivery.first_attempt_at, Some(at(3)));
    assert_eq!(detail.delivery.attempts, 2);
    assert_eq!(
        log(detail),
        [
            (AttemptKind::Push, 1, at(3), retry(4)),
            (AttemptKind::Cancel, 1, at(5), cancelled),
            (AttemptKind::Push, 2, at(7), retry(9)),
            (AttemptKind::Cancel, 2, at(8), cancelled),
        ]
    );
}

pub async fn redrive_moves_matching_deliveries_with_a_fresh_budget(store: &dyn Store) {
    store.create_topic("orders", t0()).await.unwrap();
    store
        .create_subscription(spec("s1", "orders"), t0())
        .await
        .unwrap();
    store
        .publish(
            "orders",
            vec![
                event("a", "order.created"),
                event("b", "order.created"),
                event("c", "order.paid"),
            ],
            t0(),
        )
        .await
        .unwrap();
    store
        .publish("orders", vec![event("d", "order.created")], at(100))
        .await
        .unwrap();
    let claimed = store
        .claim_due(claim_at(at(200), vec![want("s1", 100)]))
        .await
        .unwrap()
        .claimed;
    let outcome = |id: &str| match id {
        "a" | "c" => (503, fail(FailureReason::RetriesExhausted)),
        "b" => (404, fail(FailureReason::NonRetryable)),
        _ => (200, Decision::Delivered),
    };
    let mut ids = BTreeMap::new();
    let completions = claimed
        .iter()
        .map(|c| {
            ids.insert(c.event.id.clone(), c.delivery.id.clone());
            let (status, decision) = outcome(&c.event.id);
            Completion {
                delivery_id: c.delivery.id.clone(),
                subscription: c.delivery.subscription.clone(),
                attempt: attempt(1, at(200), status, decision),
            }
        })
        .collect();
    store.complete_many(completions).await.unwrap();

    let filter = RedriveFilter::new("s1");
    assert_eq!(store.count_redrivable(filter.clone()).await.unwrap(), 3);
    let by_reason = RedriveFilter {
        reasons: vec![FailureReason::RetriesExhausted],
        ..filter.clone()
    };
    assert_eq!(store.count_redrivable(by_reason.clone()).await.unwrap(), 2);
    let by_type = RedriveFilter {
        event_type: Some("order.paid".into()),
        ..filter.clone()
    };
    assert_eq!(store.count_redrivable(by_type).await.unwrap(), 1);
    let by_time = RedriveFilter {
        until: Some(at(1)),
        ..filter.clone()
    };
    assert_eq!(store.count_redrivable(by_time).await.unwrap(), 3);
    let later = RedriveFilter {
        since: Some(at(1)),
        ..filter.clone()
    };
    assert_eq!(store.count_redrivable(later).await.unwrap(), 0);
    let delivered = RedriveFilter {
        states: vec![DeliveryState::Delivered],
        ..filter.clone()
    };
    assert!(matches!(
        store.count_redrivable(delivered).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.count_redrivable(RedriveFilter::new("nope")).await,
        Err(StoreError::NotFound { .. })
    ));

    // Two batches of one: a and c, in id order.
    let mut after = None;
    let mut moved = 0;
    loop {
        let batch = store
            .redrive_batch(RedriveBatchRequest {
                filter: by_reason.clone(),
                after: after.clone(),
                limit: 1,
                now: at(300),
            })
            .await
            .unwrap();
        if batch.moved == 0 {
            break;
        }
        moved += batch.moved;
        after = batch.last_id;
    }
    assert_eq!(moved, 2);
    let redriven = store.get_delivery(&ids["a"]).await.unwrap().delivery;
    assert_eq!(redriven.state, DeliveryState::Scheduled);
    assert_eq!(redriven.failure_reason, None);
    assert_eq!(redriven.next_attempt_at, Some(at(300)));
    assert_eq!(redriven.attempts, 1);
    assert_eq!(redriven.attempts_before_redrive, 1);
    assert_eq!(
        redriven.first_attempt_at,
        Some(at(200)),
        "the first attempt is kept"
    );
    assert_eq!(redriven.redriven_at, Some(at(300)));
    let untouched = store.get_delivery(&ids["b"]).await.unwrap().delivery;
    assert_eq!(untouched.state, DeliveryState::Failed);

    // Redriving again moves nothing that is no longer failed.
    assert_eq!(store.count_redrivable(by_reason.clone()).await.unwrap(), 0);
    let again = store
        .redrive_batch(RedriveBatchRequest {
            filter: by_reason,
            after: None,
            limit: 100,
            now: at(301),
        })
        .await
        .unwrap();
    assert_eq!(again.moved, 0);

    // The next attempt is number 2 overall; the age counts afresh from
    // `redriven_at`.
    let next = store
        .claim_due(claim_at(at(300), vec![want("s1", 100)]))
        .await
        .unwrap()
        .claimed;
    assert_eq!(next.len(), 2);
    assert!(next.iter().all(|c| c.delivery.attempts == 2));
    assert!(
        next.iter()
            .all(|c| c.delivery.first_attempt_at == Some(at(200))
                && c.delivery.redriven_at == Some(at(300)))
    );
    // Retention counts from the redrive: a day-old redrive is not expired
    // by a week's retention even for an old event.
    assert_eq!(store.expire_retention(at(300), 100).await.unwrap(), 0);
}

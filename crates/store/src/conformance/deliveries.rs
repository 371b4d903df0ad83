//! Conformance checks of deliveries: publish and fan-out, claims,
//! completions, lease rescue, listing, retry-now and deletion.

use super::*;

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

    let page = |sub: &str| DeliverySearch {
        subscription: sub.into(),
        limit: 10,
        ..Default::default()
    };
    let all = store
        .search_deliveries(page("all"))
        .await
        .unwrap()
        .deliveries;
    let created = store
        .search_deliveries(page("created"))
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
        .search_deliveries(DeliverySearch {
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

/// Publishes that arrive together are written together (one group commit
/// on SQLite, one statement per topic on PostgreSQL); each still gets its
/// own answer: its events' outcomes in its order, a duplicate of an event
/// another request stored reported as such, a missing topic its own error.
pub async fn concurrent_publishes_each_get_their_own_outcomes(store: &dyn Store) {
    setup(store, &["a", "b"]).await;
    let mut requests: Vec<(&str, Vec<CloudEvent>)> = (0..40)
        .map(|i| ("orders", vec![event(&format!("e{}", i % 30), "t")]))
        .collect();
    requests.push((
        "orders",
        vec![
            event("batch-1", "t"),
            event("e3", "t"),
            event("batch-1", "t"),
        ],
    ));
    requests.push(("missing", vec![event("lost", "t")]));
    let answers = futures::future::join_all(
        requests
            .iter()
            .map(|(topic, events)| store.publish(topic, events.clone(), t0())),
    )
    .await;

    let mut stored = std::collections::BTreeMap::<String, usize>::new();
    for ((topic, events), answer) in requests.iter().zip(answers) {
        if *topic == "missing" {
            assert!(
                matches!(answer, Err(StoreError::NotFound { kind: "topic", .. })),
                "{answer:?}"
            );
            continue;
        }
        let outcomes = answer.unwrap();
        let ids: Vec<&str> = outcomes.iter().map(|o| o.id.as_str()).collect();
        let sent: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, sent);
        for outcome in outcomes {
            let expected = if outcome.duplicate { 0 } else { 2 };
            assert_eq!(outcome.deliveries, expected, "{outcome:?}");
            if !outcome.duplicate {
                *stored.entry(outcome.id).or_default() += 1;
            }
        }
    }
    // Each identity stored once: e0..e29 and batch-1.
    assert_eq!(stored.len(), 31, "{stored:?}");
    assert!(stored.values().all(|&n| n == 1), "{stored:?}");
    for subscription in ["a", "b"] {
        let page = store
            .search_deliveries(DeliverySearch {
                subscription: subscription.into(),
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(page.deliveries.len(), 31, "{subscription}");
    }
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
            subscription: "s1".into(),
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
    let id = one_claimed(store).await.delivery.id;
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
            subscription: "s1".into(),
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
    let query = |cursor: Option<String>| DeliverySearch {
        subscription: "s1".into(),
        limit: 2,
        cursor,
        ..Default::default()
    };
    let first = store.search_deliveries(query(None)).await.unwrap();
    let ids = |page: &crate::DeliverySearchPage| {
        page.deliveries
            .iter()
            .map(|d| d.event_id.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&first), ["e4", "e3"]);
    let second = store
        .search_deliveries(query(first.next_cursor.clone()))
        .await
        .unwrap();
    assert_eq!(ids(&second), ["e2", "e1"]);
    let last = store
        .search_deliveries(query(second.next_cursor.clone()))
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
            subscription: claimed[0].delivery.subscription.clone(),
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
    let filtered = |state, reason| DeliverySearch {
        subscription: "s1".into(),
        state,
        reason,
        limit: 10,
        ..Default::default()
    };
    let in_flight = store
        .search_deliveries(filtered(Some(DeliveryState::InFlight), None))
        .await
        .unwrap();
    assert_eq!(in_flight.deliveries.len(), 1);
    let failed = store
        .search_deliveries(filtered(
            Some(DeliveryState::Failed),
            Some(FailureReason::NonRetryable),
        ))
        .await
        .unwrap();
    assert_eq!(failed.deliveries.len(), 1);
    assert_eq!(failed.deliveries[0].id, claimed[0].delivery.id);
    let none = store
        .search_deliveries(filtered(
            Some(DeliveryState::Failed),
            Some(FailureReason::AgeExhausted),
        ))
        .await
        .unwrap();
    assert!(none.deliveries.is_empty());
    let scheduled = store
        .search_deliveries(filtered(Some(DeliveryState::Scheduled), None))
        .await
        .unwrap();
    assert_eq!(scheduled.deliveries.len(), 3);
}

pub async fn retry_now_schedules_failed_deliveries_but_not_in_flight(store: &dyn Store) {
    let id = one_claimed(store).await.delivery.id;
    assert!(matches!(
        store.retry_now(&id, at(1)).await,
        Err(StoreError::Conflict(_))
    ));
    store
        .complete_many(vec![Completion {
            delivery_id: id.clone(),
            subscription: "s1".into(),
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
        .search_deliveries(DeliverySearch {
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

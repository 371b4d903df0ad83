//! Conformance checks of retrying a delivery by hand.

use redrive_core::{Decision, DeliveryState, FailureReason, HumanDuration};

use super::{at, attempt, claim_at, event, spec, t0, want};
use crate::{Completion, Store};

/// An ended delivery retried by hand starts afresh, as a redrive does: its
/// attempt budget, age limit and retention count from the retry, or its
/// first new failure would end it again at once. A scheduled delivery
/// retried early only becomes due sooner.
pub async fn retry_now_gives_an_ended_delivery_a_fresh_budget_but_not_a_scheduled_one(
    store: &dyn Store,
) {
    store.create_topic("orders", t0()).await.unwrap();
    let mut s1 = spec("s1", "orders");
    s1.message_retention = HumanDuration::from_secs(600);
    store.create_subscription(s1, t0()).await.unwrap();
    store
        .publish(
            "orders",
            vec![
                event("failed", "t"),
                event("delivered", "t"),
                event("waiting", "t"),
            ],
            t0(),
        )
        .await
        .unwrap();
    let claimed = store
        .claim_due(claim_at(at(1), vec![want("s1", 100)]))
        .await
        .unwrap()
        .claimed;
    assert_eq!(claimed.len(), 3);
    let id_of = |event_id: &str| {
        claimed
            .iter()
            .find(|c| c.event.id == event_id)
            .unwrap()
            .delivery
            .id
            .clone()
    };
    let (failed, delivered, waiting) = (id_of("failed"), id_of("delivered"), id_of("waiting"));
    let retries_exhausted = Decision::Failed {
        reason: FailureReason::RetriesExhausted,
    };
    let retry_later = Decision::Retry {
        at: at(5000),
        retry: 1,
    };
    store
        .complete_many(vec![
            Completion {
                delivery_id: failed.clone(),
                subscription: "s1".into(),
                attempt: attempt(1, at(1), 500, retries_exhausted),
            },
            Completion {
                delivery_id: delivered.clone(),
                subscription: "s1".into(),
                attempt: attempt(1, at(1), 200, Decision::Delivered),
            },
            Completion {
                delivery_id: waiting.clone(),
                subscription: "s1".into(),
                attempt: attempt(1, at(1), 503, retry_later),
            },
        ])
        .await
        .unwrap();

    // An hour later: long past the event's ten minutes of retention.
    let later = at(3600);
    for id in [&failed, &delivered] {
        let retried = store.retry_now(id, later).await.unwrap();
        assert_eq!(retried.state, DeliveryState::Scheduled);
        assert_eq!(retried.next_attempt_at, Some(later));
        assert_eq!(retried.failure_reason, None);
        assert_eq!(retried.attempts, 1);
        assert_eq!(retried.attempts_before_redrive, 1, "budget from the retry");
        assert_eq!(
            retried.first_attempt_at,
            Some(at(1)),
            "the first attempt is kept"
        );
        assert_eq!(retried.redriven_at, Some(later), "age from the retry");
    }
    let early = store.retry_now(&waiting, at(60)).await.unwrap();
    assert_eq!(early.state, DeliveryState::Scheduled);
    assert_eq!(early.next_attempt_at, Some(at(60)));
    assert_eq!(early.attempts_before_redrive, 0);
    assert_eq!(early.first_attempt_at, Some(at(1)));
    assert_eq!(early.redriven_at, None);

    // Retention still counts from publish for the one retried early, and
    // from the retry for the ended ones.
    assert_eq!(store.expire_retention(later, 100).await.unwrap(), 1);
    let expired = store.get_delivery(&waiting).await.unwrap().delivery;
    assert_eq!(
        expired.failure_reason,
        Some(FailureReason::RetentionExpired)
    );
    let next = store
        .claim_due(claim_at(later, vec![want("s1", 100)]))
        .await
        .unwrap()
        .claimed;
    let mut ids: Vec<String> = next.iter().map(|c| c.delivery.id.clone()).collect();
    ids.sort();
    let mut expected = vec![failed, delivered];
    expected.sort();
    assert_eq!(ids, expected);
    assert!(next.iter().all(|c| c.delivery.attempts == 2));
    assert!(next.iter().all(
        |c| c.delivery.first_attempt_at == Some(at(1)) && c.delivery.redriven_at == Some(later)
    ));
}

//! Conformance checks for how a claim shares its total among subscriptions,
//! and for claims handed back whole.

use jiff::Timestamp;
use redrive_core::{Decision, DeliveryState};

use super::{at, attempt, claim_at, event, setup, spec, t0, want};
use crate::{ClaimRate, Completion, Store, Unclaim};

pub async fn claims_stop_at_the_total_and_idle_subscriptions_take_none(store: &dyn Store) {
    setup(store, &["busy"]).await;
    store.create_topic("quiet", t0()).await.unwrap();
    store
        .create_subscription(spec("idle", "quiet"), t0())
        .await
        .unwrap();
    let events = (0..6).map(|i| event(&format!("e{i}"), "t")).collect();
    store.publish("orders", events, at(0)).await.unwrap();

    // The idle subscription comes first and asks for the whole total, yet
    // the busy one still gets all of it.
    let mut request = claim_at(at(1), vec![want("idle", 4), want("busy", 4)]);
    request.limit_total = 4;
    let batch = store.claim_due(request).await.unwrap();
    assert_eq!(batch.claimed.len(), 4);
    assert!(
        batch
            .claimed
            .iter()
            .all(|c| c.delivery.subscription == "busy")
    );

    // Two left; a total of 1 takes one.
    let mut request = claim_at(at(1), vec![want("busy", 10)]);
    request.limit_total = 1;
    assert_eq!(store.claim_due(request).await.unwrap().claimed.len(), 1);

    // A total of 0 claims nothing but still says what is due.
    let mut request = claim_at(at(1), vec![want("busy", 10)]);
    request.limit_total = 0;
    let nothing = store.claim_due(request).await.unwrap();
    assert!(nothing.claimed.is_empty());
    assert_eq!(nothing.next_due_at, Some(at(0)));
}

/// What every backend does with a rated want, shared or not: a claim
/// within the burst is served whole and says what is due next, as
/// without a rate. (How far a shared backend holds the rate across
/// processes is its own test's business.)
pub async fn a_rated_want_within_its_burst_is_served_whole(store: &dyn Store) {
    setup(store, &["rated"]).await;
    let events = (0..6).map(|i| event(&format!("e{i}"), "t")).collect();
    store.publish("orders", events, at(0)).await.unwrap();
    let mut rated = want("rated", 3);
    rated.rate = Some(ClaimRate {
        per_second: 10.0,
        burst: 5,
    });
    let batch = store
        .claim_due(claim_at(at(1), vec![rated.clone()]))
        .await
        .unwrap();
    assert_eq!(batch.claimed.len(), 3);
    assert!(
        batch
            .claimed
            .iter()
            .all(|c| c.delivery.subscription == "rated")
    );
    assert_eq!(batch.next_due_at, Some(at(0)));
    assert_eq!(batch.rate_refill_at, None, "the rate did not cut it short");
}

/// A claim with a lookahead also takes what falls due within it, in due
/// order, telling each delivery's due time; the attempt's time is the
/// later of the claim and the due time.
pub async fn a_claim_ahead_takes_what_falls_due_within_the_lookahead(store: &dyn Store) {
    setup(store, &["ahead"]).await;
    for (id, second) in [("e0", 0), ("e1", 5), ("e2", 20)] {
        store
            .publish("orders", vec![event(id, "t")], at(second))
            .await
            .unwrap();
    }
    let mut early = want("ahead", 10);
    early.lookahead = std::time::Duration::from_secs(2);
    let batch = store
        .claim_due(claim_at(at(4), vec![early.clone()]))
        .await
        .unwrap();
    let claimed: Vec<(&str, Timestamp, Option<Timestamp>)> = batch
        .claimed
        .iter()
        .map(|c| (c.event.id.as_str(), c.due_at, c.delivery.last_attempt_at))
        .collect();
    assert_eq!(
        claimed,
        [("e0", at(0), Some(at(4))), ("e1", at(5), Some(at(5)))]
    );
    let e1 = &batch.claimed[1].delivery;
    assert_eq!(e1.first_attempt_at, Some(at(5)));
    assert_eq!(batch.next_due_at, Some(at(20)));
    // Without lookahead only what is due: nothing is left.
    let none = store
        .claim_due(claim_at(at(4), vec![want("ahead", 10)]))
        .await
        .unwrap();
    assert!(none.claimed.is_empty());
}

pub async fn an_unclaimed_delivery_is_as_before_the_claim(store: &dyn Store) {
    setup(store, &["back"]).await;
    for (id, second) in [("first", 0), ("retry", 1), ("ahead", 5)] {
        store
            .publish("orders", vec![event(id, "t")], at(second))
            .await
            .unwrap();
    }
    // "retry" fails once and is due again at 10s.
    let first = store
        .claim_due(claim_at(at(0), vec![want("back", 1)]))
        .await
        .unwrap();
    let second = store
        .claim_due(claim_at(at(2), vec![want("back", 1)]))
        .await
        .unwrap();
    let retry = &second.claimed[0];
    assert_eq!(retry.event.id, "retry");
    store
        .complete_many(vec![Completion {
            delivery_id: retry.delivery.id.clone(),
            subscription: retry.delivery.subscription.clone(),
            attempt: attempt(
                1,
                at(2),
                503,
                Decision::Retry {
                    at: at(10),
                    retry: 1,
                },
            ),
        }])
        .await
        .unwrap();
    let before = |id: &str| {
        let id = id.to_owned();
        async move { store.get_delivery(&id).await.unwrap() }
    };
    let retry_before = before(&retry.delivery.id).await;

    let mut early = want("back", 10);
    early.lookahead = std::time::Duration::from_secs(20);
    let batch = store
        .claim_due(claim_at(at(11), vec![early.clone()]))
        .await
        .unwrap();
    let by_event = |id: &str| {
        batch
            .claimed
            .iter()
            .find(|c| c.event.id == id)
            .unwrap_or_else(|| panic!("{id} claimed"))
    };
    let (retried, ahead) = (by_event("retry"), by_event("ahead"));
    assert_eq!(retried.delivery.attempts, 2);
    assert_eq!(ahead.delivery.attempts, 1);
    // "first" is still in flight under its first claim: handing back a
    // claim it no longer is under (attempt 2) leaves it alone.
    let stale = Unclaim {
        attempt: 2,
        ..Unclaim::from(&first.claimed[0])
    };
    let handed = vec![Unclaim::from(retried), Unclaim::from(ahead), stale];
    assert_eq!(store.unclaim(handed.clone(), at(12)).await.unwrap(), 2);

    let retry_after = before(&retried.delivery.id).await;
    assert_eq!(retry_after.delivery.state, DeliveryState::Scheduled);
    assert_eq!(retry_after.delivery.attempts, 1);
    assert_eq!(retry_after.delivery.next_attempt_at, Some(at(10)));
    assert_eq!(
        retry_after.delivery.first_attempt_at,
        retry_before.delivery.first_attempt_at
    );
    assert_eq!(retry_after.delivery.last_attempt_at, Some(at(2)));
    assert_eq!(retry_after.delivery.last_status, Some(503));
    assert_eq!(retry_after.attempts.len(), 1, "no attempt is recorded");
    let ahead_after = before(&ahead.delivery.id).await;
    assert_eq!(ahead_after.delivery.state, DeliveryState::Scheduled);
    assert_eq!(ahead_after.delivery.attempts, 0);
    assert_eq!(ahead_after.delivery.next_attempt_at, Some(at(5)));
    assert_eq!(ahead_after.delivery.first_attempt_at, None);
    assert_eq!(ahead_after.delivery.last_attempt_at, None);
    assert!(ahead_after.attempts.is_empty());
    let first_after = before(&first.claimed[0].delivery.id).await;
    assert_eq!(first_after.delivery.state, DeliveryState::InFlight);
    assert_eq!(first_after.delivery.attempts, 1);

    // Claimable again at once, counting the same attempt as before.
    let again = store
        .claim_due(claim_at(at(12), vec![want("back", 10)]))
        .await
        .unwrap();
    let mut attempts: Vec<(&str, u32)> = again
        .claimed
        .iter()
        .map(|c| (c.event.id.as_str(), c.delivery.attempts))
        .collect();
    attempts.sort();
    assert_eq!(attempts, [("ahead", 1), ("retry", 2)]);
    // Ended since: nothing to hand back.
    let delivered: Vec<Completion> = again
        .claimed
        .iter()
        .map(|c| Completion {
            delivery_id: c.delivery.id.clone(),
            subscription: c.delivery.subscription.clone(),
            attempt: attempt(c.delivery.attempts, at(12), 200, Decision::Delivered),
        })
        .collect();
    store.complete_many(delivered).await.unwrap();
    assert_eq!(store.unclaim(handed, at(13)).await.unwrap(), 0);
    assert_eq!(store.unclaim(Vec::new(), at(13)).await.unwrap(), 0);
}

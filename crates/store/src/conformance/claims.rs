//! Conformance checks for how a claim shares its total among subscriptions.

use jiff::Timestamp;

use super::{at, claim_at, event, setup, spec, t0, want};
use crate::{ClaimRate, Store};

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

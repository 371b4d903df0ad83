//! Conformance checks for how a claim shares its total among subscriptions.

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

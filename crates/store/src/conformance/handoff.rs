//! Conformance checks for claims at publish (`crate::handoff`): what a
//! publish takes into flight is stored and handed over exactly as a claim
//! at the publish would leave it, within the dispatcher's offer, which
//! claims share.

use std::sync::Arc;
use std::time::Duration;

use redrive_core::DeliveryState;
use tokio::sync::mpsc::UnboundedReceiver;

use super::{claim_at, event, setup, t0, want};
use crate::{ClaimedDelivery, Handoff, Offer, Store};

const LEASE: Duration = Duration::from_secs(60);

pub(crate) fn offer(slots: &[(&str, u32)], total: u32) -> Offer {
    Offer {
        slots: slots.iter().map(|(s, n)| (s.to_string(), *n)).collect(),
        total,
        lease: LEASE,
    }
}

/// The store's hand-off and where its deliveries arrive.
pub(crate) fn handoff_of(
    store: &dyn Store,
) -> (Arc<Handoff>, UnboundedReceiver<Vec<ClaimedDelivery>>) {
    let handoff = store.handoff().expect("the backend hands deliveries over");
    let arrivals = handoff.receiver().expect("the first receiver");
    (handoff, arrivals)
}

/// A claim of what is due of `s1` and `s2`, up to 10 each.
async fn claim_both(store: &dyn Store) -> crate::ClaimBatch {
    store
        .claim_due(claim_at(t0(), vec![want("s1", 10), want("s2", 10)]))
        .await
        .unwrap()
}

/// Every delivery handed over so far.
pub(crate) fn arrived(
    arrivals: &mut UnboundedReceiver<Vec<ClaimedDelivery>>,
) -> Vec<ClaimedDelivery> {
    let mut all = Vec::new();
    while let Ok(claimed) = arrivals.try_recv() {
        all.extend(claimed);
    }
    all
}

pub async fn a_publish_takes_what_is_offered_into_flight_as_a_claim_leaves_it(store: &dyn Store) {
    setup(store, &["s1", "s2"]).await;
    let (handoff, mut arrivals) = handoff_of(store);
    // s1 may take two, s2 nothing.
    handoff.offer(offer(&[("s1", 2)], 10));
    let events: Vec<_> = ["e1", "e2", "e3"].iter().map(|id| event(id, "t")).collect();
    let outcomes = store.publish("orders", events.clone(), t0()).await.unwrap();
    let in_flight: Vec<_> = outcomes
        .iter()
        .map(|o| (o.deliveries, o.in_flight))
        .collect();
    assert_eq!(in_flight, [(2, 1), (2, 1), (2, 0)]);
    assert!(handoff.withdraw().is_empty(), "nothing left in transit");

    let handed = arrived(&mut arrivals);
    assert_eq!(handed.len(), 2);
    for (claimed, sent) in handed.iter().zip(&events) {
        assert_eq!(claimed.delivery.subscription, "s1");
        assert_eq!(claimed.delivery.state, DeliveryState::InFlight);
        assert_eq!(claimed.delivery.attempts, 1);
        assert_eq!(claimed.delivery.first_attempt_at, Some(t0()));
        assert_eq!(claimed.delivery.last_attempt_at, Some(t0()));
        assert_eq!(claimed.due_at, t0());
        assert_eq!(claimed.lease_until, t0() + LEASE);
        assert_eq!(&claimed.event, sent);
        // Stored as handed over: what the console and a restart read.
        let stored = store.get_delivery(&claimed.delivery.id).await.unwrap();
        assert_eq!(stored.delivery, claimed.delivery);
        assert_eq!(stored.event, claimed.event);
        assert!(stored.attempts.is_empty());
    }

    // What was not taken is due, for a claim, and claims as before.
    let batch = claim_both(store).await;
    let mut claimed: Vec<_> = batch
        .claimed
        .iter()
        .map(|c| (c.delivery.subscription.as_str(), c.event.id.as_str()))
        .collect();
    claimed.sort();
    assert_eq!(
        claimed,
        [("s1", "e3"), ("s2", "e1"), ("s2", "e2"), ("s2", "e3")]
    );
    // And a claim of a delivery taken at publish looks the same.
    let reference = &batch.claimed[0];
    let handed = &handed[0];
    assert_eq!(
        (
            reference.delivery.attempts,
            reference.delivery.first_attempt_at,
            reference.due_at,
            reference.lease_until
        ),
        (
            handed.delivery.attempts,
            handed.delivery.first_attempt_at,
            handed.due_at,
            handed.lease_until
        )
    );
}

/// The offer's total caps what publishes take; a duplicate is never handed
/// over and keeps no slot (a backend that fans out before it knows which
/// events are new gives the slot back after the write).
pub async fn an_offer_caps_the_total_and_a_duplicate_takes_no_slot(store: &dyn Store) {
    setup(store, &["s1", "s2"]).await;
    let (handoff, mut arrivals) = handoff_of(store);
    handoff.offer(offer(&[("s1", 5), ("s2", 5)], 3));
    let first = store
        .publish("orders", vec![event("e1", "t")], t0())
        .await
        .unwrap();
    assert_eq!(first[0].in_flight, 2);
    assert_eq!(arrived(&mut arrivals).len(), 2);
    let again = store
        .publish("orders", vec![event("e1", "t"), event("e2", "t")], t0())
        .await
        .unwrap();
    assert!(again[0].duplicate);
    assert_eq!(again[0].in_flight, 0);
    assert!(again[1].in_flight <= 1, "three slots in all: {again:?}");
    let handed = arrived(&mut arrivals);
    assert_eq!(handed.len(), again[1].in_flight);
    assert!(handed.iter().all(|c| c.event.id == "e2"), "{handed:?}");
    assert!(
        handoff.withdraw().is_empty(),
        "no slot held after the write"
    );
    let batch = claim_both(store).await;
    assert_eq!(
        batch.claimed.len(),
        2 - again[1].in_flight,
        "e2's other deliveries were left due"
    );
}

/// Claims take from the open offer as publishes do: the dispatcher keeps
/// it open while it claims, and no slot goes twice.
pub async fn a_claim_takes_from_the_open_offer(store: &dyn Store) {
    setup(store, &["s1", "s2"]).await;
    let events: Vec<_> = ["e1", "e2", "e3"].iter().map(|id| event(id, "t")).collect();
    store.publish("orders", events, t0()).await.unwrap();
    let (handoff, mut arrivals) = handoff_of(store);
    handoff.offer(offer(&[("s1", 1)], 2));
    let batch = claim_both(store).await;
    let mut claimed: Vec<_> = batch
        .claimed
        .iter()
        .map(|c| c.delivery.subscription.as_str())
        .collect();
    claimed.sort();
    assert_eq!(
        claimed,
        ["s1", "s2"],
        "s1's one slot, then the total's last"
    );
    let outcomes = store
        .publish("orders", vec![event("e4", "t")], t0())
        .await
        .unwrap();
    assert_eq!(outcomes[0].in_flight, 0, "the claim took every slot");
    assert!(arrived(&mut arrivals).is_empty());
    // Closed, the offer limits nothing.
    handoff.withdraw();
    let batch = claim_both(store).await;
    assert_eq!(batch.claimed.len(), 6);
}

pub async fn a_paused_subscription_takes_no_slot_and_a_withdrawn_offer_none(store: &dyn Store) {
    setup(store, &["s1"]).await;
    let (handoff, mut arrivals) = handoff_of(store);
    store.set_paused("s1", true).await.unwrap();
    handoff.offer(offer(&[("s1", 5)], 5));
    let outcomes = store
        .publish("orders", vec![event("e1", "t")], t0())
        .await
        .unwrap();
    assert_eq!(outcomes[0].in_flight, 0);
    assert!(
        handoff.withdraw().is_empty(),
        "a refused slot leaves no transit"
    );
    store.set_paused("s1", false).await.unwrap();
    store
        .publish("orders", vec![event("e2", "t")], t0())
        .await
        .unwrap();
    assert!(arrived(&mut arrivals).is_empty(), "withdrawn");
}

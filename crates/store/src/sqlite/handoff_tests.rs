//! Claims at publish on SQLite beyond the conformance checks
//! (`conformance::handoff`): a publish that leaves nothing due does not wake
//! the claims, and a restart makes what was taken into flight due again.

use std::time::Duration;

use redrive_core::DeliveryState;

use crate::SqliteStore;
use crate::conformance::handoff::{arrived, handoff_of, offer};
use crate::conformance::{claim_at, event, setup, spec, t0, want};
use crate::prelude::*;
use crate::sqlite::testing::TestStore;

#[tokio::test]
async fn a_publish_that_hands_everything_over_does_not_wake_the_claims() {
    let store = TestStore::open(t0()).unwrap();
    setup(&*store, &["s1"]).await;
    let (handoff, mut arrivals) = handoff_of(&*store);
    let wakeups = store.wakeups();
    handoff.offer(offer(&[("s1", 1)], 1));
    store
        .publish("orders", vec![event("e1", "t")], t0())
        .await
        .unwrap();
    assert_eq!(arrived(&mut arrivals).len(), 1);
    assert!(
        futures::FutureExt::now_or_never(wakeups.notified()).is_none(),
        "nothing was left due"
    );
    store
        .publish("orders", vec![event("e2", "t")], t0())
        .await
        .unwrap();
    assert!(
        futures::FutureExt::now_or_never(wakeups.notified()).is_some(),
        "e2 was left due"
    );
}

#[tokio::test]
async fn a_delivery_taken_at_publish_is_due_again_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let store = SqliteStore::open(dir.path(), t0()).unwrap();
        store.create_topic("orders", t0()).await.unwrap();
        store
            .create_subscription(spec("s1", "orders"), t0())
            .await
            .unwrap();
        let (handoff, mut arrivals) = handoff_of(&store);
        handoff.offer(offer(&[("s1", 1)], 1));
        store
            .publish("orders", vec![event("e1", "t")], t0())
            .await
            .unwrap();
        let handed = arrived(&mut arrivals);
        assert_eq!(handed.len(), 1);
        handed[0].delivery.id.clone()
        // The process stops with the push unfinished.
    };
    let later = t0() + Duration::from_secs(5);
    let store = SqliteStore::open(dir.path(), later).unwrap();
    let detail = store.get_delivery(&id).await.unwrap();
    assert_eq!(detail.delivery.state, DeliveryState::Scheduled);
    assert_eq!(detail.delivery.next_attempt_at, Some(later));
    assert_eq!(detail.attempts.len(), 1, "{:?}", detail.attempts);
    let batch = store
        .claim_due(claim_at(later, vec![want("s1", 10)]))
        .await
        .unwrap();
    assert_eq!(batch.claimed.len(), 1);
    assert_eq!(batch.claimed[0].delivery.attempts, 2);
}

//! Conformance checks of the journal and the history purge.

use super::attempt_all;
use super::lifecycle::deliveries_of;
use super::*;
use crate::{JournalQuery, PurgeRequest};

pub async fn journal_pages_oldest_first_and_reports_purges(store: &dyn Store) {
    store.create_topic("orders", t0()).await.unwrap();
    store
        .create_subscription(spec("s1", "orders"), t0())
        .await
        .unwrap();
    for i in 0..5 {
        store
            .publish("orders", vec![event(&format!("e{i}"), "t")], at(i))
            .await
            .unwrap();
    }
    let page = |since| JournalQuery {
        subscription: "s1".into(),
        since,
        limit: 2,
    };
    let first = store.journal(page(None)).await.unwrap();
    let ids = |p: &crate::JournalPage| {
        p.entries
            .iter()
            .map(|e| e.event.id.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&first), ["e0", "e1"]);
    assert!(first.entries[0].position < first.entries[1].position);
    let second = store
        .journal(page(Some(first.entries[1].position)))
        .await
        .unwrap();
    assert_eq!(ids(&second), ["e2", "e3"]);
    let third = store
        .journal(page(Some(second.entries[1].position)))
        .await
        .unwrap();
    assert_eq!(ids(&third), ["e4"]);
    let end = store
        .journal(page(Some(third.entries[0].position)))
        .await
        .unwrap();
    assert!(end.entries.is_empty());
    assert_eq!(end.purged_through, 0);
    assert!(matches!(
        store
            .journal(JournalQuery {
                subscription: "nope".into(),
                since: None,
                limit: 1
            })
            .await,
        Err(StoreError::NotFound { .. })
    ));

    // Deliver e0 and e1 and purge them: the journal starts at e2 and says
    // where the purge reached.
    let claimed = store
        .claim_due(claim_at(at(10), vec![want("s1", 2)]))
        .await
        .unwrap()
        .claimed;
    let completions = claimed
        .iter()
        .map(|c| Completion {
            delivery_id: c.delivery.id.clone(),
            subscription: c.delivery.subscription.clone(),
            attempt: attempt(1, at(10), 200, Decision::Delivered),
        })
        .collect();
    store.complete_many(completions).await.unwrap();
    store
        .purge_history(PurgeRequest {
            before: at(20),
            limit: 100,
            events_after: 0,
        })
        .await
        .unwrap();
    let after_purge = store.journal(page(None)).await.unwrap();
    assert_eq!(ids(&after_purge), ["e2", "e3"]);
    assert_eq!(after_purge.purged_through, first.entries[1].position);
}

/// Positions are never handed out twice: after a purge of everything, new
/// events land above every position read before, so a reader that kept its
/// last position sees each of them and is not told it fell behind.
pub async fn journal_positions_never_go_back_after_a_purge(store: &dyn Store) {
    store.create_topic("orders", t0()).await.unwrap();
    store
        .create_subscription(spec("s1", "orders"), t0())
        .await
        .unwrap();
    let read = |since| JournalQuery {
        subscription: "s1".into(),
        since,
        limit: 100,
    };
    let ids = |p: &crate::JournalPage| {
        p.entries
            .iter()
            .map(|e| e.event.id.clone())
            .collect::<Vec<_>>()
    };
    store
        .publish(
            "orders",
            vec![event("e0", "t"), event("e1", "t"), event("e2", "t")],
            at(0),
        )
        .await
        .unwrap();
    let before = store.journal(read(None)).await.unwrap();
    assert_eq!(ids(&before), ["e0", "e1", "e2"]);
    let reader_at = before.entries.last().unwrap().position;

    attempt_all(store, "s1", at(1), 200, Decision::Delivered).await;
    let mut events_after = 0;
    loop {
        let step = store
            .purge_history(PurgeRequest {
                before: at(100),
                limit: 100,
                events_after,
            })
            .await
            .unwrap();
        events_after = step.events_cursor;
        if !step.more {
            break;
        }
    }
    assert!(deliveries_of(store, "s1").await.is_empty());
    let emptied = store.journal(read(None)).await.unwrap();
    assert!(emptied.entries.is_empty());
    assert_eq!(emptied.purged_through, reader_at);

    // The same identities are free again; they get new positions too.
    store
        .publish(
            "orders",
            vec![event("e0", "t"), event("e3", "t"), event("e4", "t")],
            at(200),
        )
        .await
        .unwrap();
    let after = store.journal(read(Some(reader_at))).await.unwrap();
    assert_eq!(ids(&after), ["e0", "e3", "e4"]);
    assert!(
        after.entries.iter().all(|e| e.position > reader_at),
        "new positions {:?} must be above {reader_at}",
        after.entries.iter().map(|e| e.position).collect::<Vec<_>>()
    );
    assert!(after.purged_through <= reader_at);
    let fresh = store.journal(read(None)).await.unwrap();
    assert_eq!(ids(&fresh), ["e0", "e3", "e4"]);
}

pub async fn purge_removes_finished_history_and_unreferenced_events(store: &dyn Store) {
    store.create_topic("orders", t0()).await.unwrap();
    store.create_topic("unread", t0()).await.unwrap();
    store
        .create_subscription(spec("s1", "orders"), t0())
        .await
        .unwrap();
    store
        .publish("orders", vec![event("e1", "t"), event("e2", "t")], t0())
        .await
        .unwrap();
    store
        .publish("unread", vec![event("lonely", "t")], t0())
        .await
        .unwrap();
    let claimed = store
        .claim_due(claim_at(at(1), vec![want("s1", 1)]))
        .await
        .unwrap()
        .claimed;
    let done = claimed[0].delivery.id.clone();
    store
        .complete_many(vec![Completion {
            delivery_id: done.clone(),
            subscription: "s1".into(),
            attempt: attempt(1, at(1), 200, Decision::Delivered),
        }])
        .await
        .unwrap();

    // Nothing is old enough yet.
    let early = store
        .purge_history(PurgeRequest {
            before: t0(),
            limit: 100,
            events_after: 0,
        })
        .await
        .unwrap();
    assert_eq!((early.deliveries, early.attempts, early.events), (0, 0, 0));

    let purged = store
        .purge_history(PurgeRequest {
            before: at(100),
            limit: 100,
            events_after: 0,
        })
        .await
        .unwrap();
    assert_eq!(purged.deliveries, 1);
    assert_eq!(purged.attempts, 1);
    // The delivered event and the one nobody read; e2 is still scheduled.
    assert_eq!(purged.events, 2);
    assert!(!purged.more);
    assert!(matches!(
        store.get_delivery(&done).await,
        Err(StoreError::NotFound { .. })
    ));
    let left = deliveries_of(store, "s1").await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].state, DeliveryState::Scheduled);
    assert!(store.get_delivery(&left[0].id).await.is_ok());
    // The purged events' identities are free again.
    let again = store
        .publish("unread", vec![event("lonely", "t")], at(101))
        .await
        .unwrap();
    assert!(!again[0].duplicate);

    // A small limit purges in steps and says there is more.
    store
        .publish(
            "orders",
            vec![event("e3", "t"), event("e4", "t"), event("e5", "t")],
            at(102),
        )
        .await
        .unwrap();
    attempt_all(store, "s1", at(103), 200, Decision::Delivered).await;
    let step = store
        .purge_history(PurgeRequest {
            before: at(200),
            limit: 2,
            events_after: purged.events_cursor,
        })
        .await
        .unwrap();
    assert_eq!(step.deliveries, 2);
    assert!(step.more);
    let rest = store
        .purge_history(PurgeRequest {
            before: at(200),
            limit: 2,
            events_after: step.events_cursor,
        })
        .await
        .unwrap();
    assert_eq!(rest.deliveries, 2);
    assert!(deliveries_of(store, "s1").await.is_empty());
}

/// An event delivered to one subscription stays while another subscription
/// of its topic has yet to deliver it, and goes with the last reader.
pub async fn purge_keeps_events_another_subscription_still_reads(store: &dyn Store) {
    store.create_topic("orders", t0()).await.unwrap();
    store.create_topic("other", t0()).await.unwrap();
    for (name, topic) in [
        ("fast", "orders"),
        ("slow", "orders"),
        ("elsewhere", "other"),
    ] {
        store
            .create_subscription(spec(name, topic), t0())
            .await
            .unwrap();
    }
    store
        .publish("orders", vec![event("shared", "t")], t0())
        .await
        .unwrap();
    store
        .publish("other", vec![event("apart", "t")], t0())
        .await
        .unwrap();
    attempt_all(store, "fast", at(1), 200, Decision::Delivered).await;
    attempt_all(store, "elsewhere", at(1), 200, Decision::Delivered).await;
    let purge = |events_after| PurgeRequest {
        before: at(100),
        limit: 100,
        events_after,
    };

    let first = store.purge_history(purge(0)).await.unwrap();
    assert_eq!((first.deliveries, first.events), (2, 1), "{first:?}");
    let slow = deliveries_of(store, "slow").await;
    assert_eq!(slow.len(), 1);
    let detail = store.get_delivery(&slow[0].id).await.unwrap();
    assert_eq!(detail.event.id, "shared");
    assert!(deliveries_of(store, "fast").await.is_empty());

    attempt_all(store, "slow", at(2), 200, Decision::Delivered).await;
    let last = store.purge_history(purge(0)).await.unwrap();
    assert_eq!((last.deliveries, last.events), (1, 1), "{last:?}");
    let again = store
        .publish("orders", vec![event("shared", "t")], at(101))
        .await
        .unwrap();
    assert!(
        !again[0].duplicate,
        "the purged event's identity is free again"
    );
}

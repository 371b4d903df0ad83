//! Conformance checks of the operational methods: releasing claims at
//! shutdown, backlog statistics, readiness and backups as declared.

use redrive_core::{Decision, DeliveryState, ErrorClass};

use super::{at, attempt, claim_at, event, setup, t0, want};
use crate::{Completion, QueueStats, Store, StoreError};

pub async fn released_claims_are_due_at_once_with_the_attempt_interrupted(store: &dyn Store) {
    setup(store, &["s1"]).await;
    store
        .publish("orders", vec![event("e1", "t"), event("e2", "t")], t0())
        .await
        .unwrap();
    let batch = store
        .claim_due(claim_at(at(1), vec![want("s1", 10)]))
        .await
        .unwrap();
    assert_eq!(batch.claimed.len(), 2);
    let ids: Vec<String> = batch
        .claimed
        .iter()
        .map(|c| c.delivery.id.clone())
        .collect();
    // One finishes before the release: releasing it again changes nothing.
    store
        .complete_many(vec![Completion {
            delivery_id: ids[0].clone(),
            subscription: "s1".into(),
            attempt: attempt(1, at(1), 200, Decision::Delivered),
        }])
        .await
        .unwrap();

    let released = store.release_claims(ids.clone(), at(2)).await.unwrap();
    assert_eq!(released, 1);
    let delivered = store.get_delivery(&ids[0]).await.unwrap();
    assert_eq!(delivered.delivery.state, DeliveryState::Delivered);
    let detail = store.get_delivery(&ids[1]).await.unwrap();
    assert_eq!(detail.delivery.state, DeliveryState::Scheduled);
    assert_eq!(detail.delivery.next_attempt_at, Some(at(2)));
    assert_eq!(detail.attempts.len(), 1);
    assert_eq!(detail.attempts[0].error, Some(ErrorClass::Interrupted));

    // Due at once: a claim at the release instant takes it, no lease wait.
    let again = store
        .claim_due(claim_at(at(2), vec![want("s1", 10)]))
        .await
        .unwrap();
    assert_eq!(again.claimed.len(), 1);
    assert_eq!(again.claimed[0].delivery.id, ids[1]);
    assert_eq!(again.claimed[0].delivery.attempts, 2);
    assert_eq!(store.release_claims(Vec::new(), at(3)).await.unwrap(), 0);
}

pub async fn queue_stats_count_due_retries_and_in_flight(store: &dyn Store) {
    setup(store, &["a", "b"]).await;
    assert!(store.queue_stats(t0()).await.unwrap().is_empty());
    for i in 0..3 {
        store
            .publish("orders", vec![event(&format!("e{i}"), "t")], at(i))
            .await
            .unwrap();
    }
    // a: one claimed then scheduled to retry at +100s, one in flight.
    let batch = store
        .claim_due(claim_at(at(3), vec![want("a", 2)]))
        .await
        .unwrap();
    assert_eq!(batch.claimed.len(), 2);
    store
        .complete_many(vec![Completion {
            delivery_id: batch.claimed[0].delivery.id.clone(),
            subscription: batch.claimed[0].delivery.subscription.clone(),
            attempt: attempt(
                1,
                at(3),
                503,
                Decision::Retry {
                    at: at(100),
                    retry: 1,
                },
            ),
        }])
        .await
        .unwrap();

    let stats = store.queue_stats(at(10)).await.unwrap();
    assert_eq!(
        stats,
        [
            QueueStats {
                subscription: "a".into(),
                due: 1,
                oldest_due_at: Some(at(2)),
                retries_scheduled: 1,
                in_flight: 1,
            },
            QueueStats {
                subscription: "b".into(),
                due: 3,
                oldest_due_at: Some(t0()),
                retries_scheduled: 0,
                in_flight: 0,
            },
        ]
    );
    // Once the retry is due it counts as due and becomes the oldest.
    let later = store.queue_stats(at(200)).await.unwrap();
    assert_eq!(later[0].due, 2);
    assert_eq!(later[0].oldest_due_at, Some(at(2)));
}

pub async fn readiness_reports_a_fully_migrated_schema(store: &dyn Store) {
    let readiness = store.readiness().await.unwrap();
    assert!(readiness.migrated(), "{readiness:?}");
    assert!(readiness.schema_version > 0);
}

pub async fn a_write_check_commits_and_changes_nothing_a_reader_sees(store: &dyn Store) {
    setup(store, &["s1"]).await;
    store
        .publish("orders", vec![event("e1", "t")], t0())
        .await
        .unwrap();
    let before = store.queue_stats(at(2)).await.unwrap();
    assert_eq!(before[0].due, 1);
    let topics = store.list_topics().await.unwrap();
    store.check_writes().await.unwrap();
    store.check_writes().await.unwrap();
    assert_eq!(store.queue_stats(at(2)).await.unwrap(), before);
    assert_eq!(store.list_topics().await.unwrap(), topics);
    assert!(store.readiness().await.unwrap().migrated());
}

/// A backend that declares online backups writes a copy that refuses to be
/// overwritten; one that does not refuses the request as invalid (a 4xx
/// for the caller), never half-writes a file.
pub async fn backups_follow_the_declared_capability(store: &dyn Store) {
    store.create_topic("orders", t0()).await.unwrap();
    let dir = std::env::temp_dir().join(format!(
        "redrive-conformance-backup-{}",
        uuid::Uuid::now_v7().simple()
    ));
    std::fs::create_dir(&dir).unwrap();
    let copy = dir.join("copy.db");
    let made = store.backup_into(&copy).await;
    let exists = copy.exists();
    let again = store.backup_into(&copy).await;
    let _ = std::fs::remove_dir_all(&dir);
    if store.capabilities().online_backup {
        made.unwrap();
        assert!(exists, "the backup wrote no file");
        assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    } else {
        assert!(matches!(made, Err(StoreError::Invalid(_))), "{made:?}");
        assert!(!exists, "a refused backup left a file");
    }
}

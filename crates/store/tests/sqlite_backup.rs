//! Online backups and flushing of the embedded store, on real files.

use redrive_store::conformance::{event, spec, t0};
use redrive_store::prelude::*;
use redrive_store::sqlite::testing::TestStore;
use redrive_store::{DeliverySearch, SqliteStore, StoreError};

#[tokio::test]
async fn a_backup_is_a_store_that_opens_with_everything_scheduled() {
    let store = TestStore::open(t0()).expect("open");
    let restored_dir = tempfile::tempdir().expect("temp dir");
    store.create_topic("orders", t0()).await.expect("topic");
    store
        .create_subscription(spec("s1", "orders"), t0())
        .await
        .expect("subscription");
    store
        .publish("orders", vec![event("e1", "t"), event("e2", "t")], t0())
        .await
        .expect("publish");

    let copy = restored_dir.path().join("redrive.db");
    store.backup_into(&copy).await.expect("backup");
    // A second backup to the same path refuses rather than overwrite.
    assert!(matches!(
        store.backup_into(&copy).await,
        Err(StoreError::Conflict(_))
    ));
    // Writes after the backup are not in it.
    store
        .publish("orders", vec![event("e3", "t")], t0())
        .await
        .expect("publish");

    let restored = SqliteStore::open(restored_dir.path(), t0()).expect("open the copy");
    assert!(restored.readiness().await.expect("readiness").migrated());
    let page = restored
        .search_deliveries(DeliverySearch {
            subscription: "s1".into(),
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("list");
    let mut events: Vec<_> = page.deliveries.iter().map(|d| d.event_id.clone()).collect();
    events.sort();
    assert_eq!(events, ["e1", "e2"]);
    assert!(
        page.deliveries
            .iter()
            .all(|d| d.state == redrive_core::DeliveryState::Scheduled)
    );
}

#[tokio::test]
async fn flush_leaves_the_database_file_complete_without_its_wal() {
    let store = TestStore::open(t0()).expect("open");
    store.create_topic("orders", t0()).await.expect("topic");
    store.flush().await.expect("flush");
    let wal = store.dir().join("redrive.db-wal");
    let wal_len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert_eq!(wal_len, 0, "the WAL still holds pages after a flush");
    // A copy of the main file alone has the topic.
    let copy_dir = tempfile::tempdir().expect("temp dir");
    std::fs::copy(
        store.dir().join("redrive.db"),
        copy_dir.path().join("redrive.db"),
    )
    .expect("copy");
    let copy = SqliteStore::open(copy_dir.path(), t0()).expect("open copy");
    assert!(copy.get_topic("orders").await.is_ok());
}

//! Conformance checks of API tokens and signing secrets.

use jiff::SignedDuration;
use redrive_core::security::Scope;

use super::{at, spec, t0};
use crate::{SecretRotation, Store, StoreError, TokenRecord};

fn token(id: &str, scope: Scope) -> TokenRecord {
    TokenRecord {
        id: id.into(),
        name: format!("{id} for tests"),
        scope,
        secret_hash: vec![7; 32],
        created_at: t0(),
    }
}

pub async fn tokens_are_created_read_listed_and_deleted(store: &dyn Store) {
    let publish = token("t1", Scope::Publish("orders".into()));
    store.create_token(publish.clone()).await.unwrap();
    let mut read = token("t2", Scope::Read);
    read.created_at = at(5);
    store.create_token(read.clone()).await.unwrap();
    assert!(matches!(
        store.create_token(token("t1", Scope::Admin)).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.get_token("t1").await.unwrap(), publish);
    assert_eq!(store.list_tokens().await.unwrap(), vec![publish, read]);
    store.delete_token("t1").await.unwrap();
    assert!(matches!(
        store.get_token("t1").await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.delete_token("t1").await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(store.list_tokens().await.unwrap().len(), 1);
}

pub async fn signing_secrets_are_kept_rotated_and_deleted_with_their_subscription(
    store: &dyn Store,
) {
    assert!(matches!(
        store.ensure_signing_secret("nope", "c0".into(), t0()).await,
        Err(StoreError::NotFound { .. })
    ));
    store.create_topic("orders", t0()).await.unwrap();
    store
        .create_subscription(spec("s", "orders"), t0())
        .await
        .unwrap();
    assert_eq!(store.get_signing_secrets("s").await.unwrap(), None);
    let first = store
        .ensure_signing_secret("s", "c1".into(), t0())
        .await
        .unwrap();
    assert_eq!(first.current, "c1");
    // A second ensure keeps what is there.
    let again = store
        .ensure_signing_secret("s", "other".into(), at(1))
        .await
        .unwrap();
    assert_eq!(again, first);

    let until = at(10) + SignedDuration::from_hours(24);
    let rotated = store
        .rotate_signing_secret(SecretRotation {
            subscription: "s".into(),
            new: "c2".into(),
            previous_until: until,
            now: at(10),
        })
        .await
        .unwrap();
    assert_eq!(rotated.current, "c2");
    assert_eq!(rotated.previous.as_deref(), Some("c1"));
    assert_eq!(rotated.previous_until, Some(until));
    assert_eq!(rotated.rotated_at, at(10));
    assert_eq!(store.get_signing_secrets("s").await.unwrap(), Some(rotated));

    store.delete_subscription("s").await.unwrap();
    assert_eq!(store.get_signing_secrets("s").await.unwrap(), None);
    store
        .create_subscription(spec("s", "orders"), at(20))
        .await
        .unwrap();
    assert_eq!(store.get_signing_secrets("s").await.unwrap(), None);
    assert!(matches!(
        store
            .rotate_signing_secret(SecretRotation {
                subscription: "nope".into(),
                new: "x".into(),
                previous_until: until,
                now: at(30),
            })
            .await,
        Err(StoreError::NotFound { .. })
    ));
}

//! Conformance checks of API tokens and signing secrets.

use jiff::SignedDuration;
use redrive_core::security::Scope;

use super::{at, spec, t0};
use crate::{MAX_PREVIOUS_SECRETS, PreviousSecret, SecretRotation, Store, StoreError, TokenRecord};

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
    assert_eq!(
        rotated.previous,
        [PreviousSecret {
            secret: "c1".into(),
            until
        }]
    );
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

pub async fn rotations_within_the_grace_period_keep_every_earlier_secret_up_to_a_bound(
    store: &dyn Store,
) {
    store.create_topic("orders", t0()).await.unwrap();
    store
        .create_subscription(spec("s", "orders"), t0())
        .await
        .unwrap();
    let grace = SignedDuration::from_hours(24);
    let rotate = |new: &str, seconds: i64| SecretRotation {
        subscription: "s".into(),
        new: new.into(),
        previous_until: at(seconds) + grace,
        now: at(seconds),
    };
    // A rotation of a subscription without a secret has nothing to keep.
    let first = store.rotate_signing_secret(rotate("c1", 0)).await.unwrap();
    assert_eq!(first.current, "c1");
    assert!(first.previous.is_empty());
    // A second rotation within the grace keeps the first replaced secret.
    store.rotate_signing_secret(rotate("c2", 10)).await.unwrap();
    let third = store.rotate_signing_secret(rotate("c3", 20)).await.unwrap();
    let previous = |secrets: &crate::SigningSecrets| -> Vec<(String, jiff::Timestamp)> {
        secrets
            .previous
            .iter()
            .map(|p| (p.secret.clone(), p.until))
            .collect()
    };
    assert_eq!(
        previous(&third),
        [("c2".into(), at(20) + grace), ("c1".into(), at(10) + grace)]
    );
    assert_eq!(store.get_signing_secrets("s").await.unwrap(), Some(third));
    // The list is bounded: the oldest goes first.
    store.rotate_signing_secret(rotate("c4", 30)).await.unwrap();
    let fifth = store.rotate_signing_secret(rotate("c5", 40)).await.unwrap();
    assert_eq!(fifth.previous.len(), MAX_PREVIOUS_SECRETS);
    assert_eq!(
        previous(&fifth),
        [
            ("c4".into(), at(40) + grace),
            ("c3".into(), at(30) + grace),
            ("c2".into(), at(20) + grace),
        ]
    );
    // Secrets past their grace are dropped at the next rotation.
    let later = 30 + grace.as_secs() + 1;
    let sixth = store
        .rotate_signing_secret(rotate("c6", later))
        .await
        .unwrap();
    assert_eq!(
        previous(&sixth),
        [
            ("c5".into(), at(later) + grace),
            ("c4".into(), at(40) + grace),
        ]
    );
}

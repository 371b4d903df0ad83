//! The PostgreSQL upgrade of signing secrets from one previous secret to a
//! bounded list. Reads REDRIVE_TEST_DATABASE_URL; without it the test is
//! reported ignored.

use jiff::Timestamp;
use redrive_store::postgres::testing::{
    TestSchema, latest_version, migrate_to, version_before_previous_secrets,
};
use redrive_store::prelude::*;
use redrive_store::{PostgresStore, PreviousSecret};
use tokio_postgres::NoTls;

async fn the_migration_keeps_a_previous_secret_within_its_grace(url: String) {
    let schema = TestSchema::create(&url).await.expect("a test schema");
    migrate_to(&schema.url, version_before_previous_secrets())
        .await
        .unwrap();
    let config: tokio_postgres::Config = schema.url.parse().unwrap();
    let (client, connection) = config.connect(NoTls).await.unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(
            "INSERT INTO topics (name, created_at) VALUES ('t', 0);
             INSERT INTO subscriptions (name, topic, spec, created_at, updated_at)
                 VALUES ('a', 't', '{}', 0, 0), ('b', 't', '{}', 0, 0);
             INSERT INTO signing_secrets (subscription, current, previous, previous_until, rotated_at)
                 VALUES ('a', 'v1:new', 'v1:old', 86400000, 1000),
                        ('b', 'v1:only', NULL, NULL, 0);",
        )
        .await
        .unwrap();
    migrate_to(&schema.url, latest_version()).await.unwrap();
    let store = PostgresStore::connect(&schema.url, Timestamp::now())
        .await
        .unwrap();
    let a = store.get_signing_secrets("a").await.unwrap().unwrap();
    assert_eq!(a.current, "v1:new");
    assert_eq!(
        a.previous,
        [PreviousSecret {
            secret: "v1:old".into(),
            until: Timestamp::from_millisecond(86_400_000).unwrap(),
        }]
    );
    let b = store.get_signing_secrets("b").await.unwrap().unwrap();
    assert!(b.previous.is_empty());
}

fn main() -> std::process::ExitCode {
    redrive_testkit::run(vec![redrive_testkit::trial(
        "the_migration_keeps_a_previous_secret_within_its_grace",
        &redrive_testkit::postgres(),
        redrive_testkit::Runtime::CurrentThread,
        the_migration_keeps_a_previous_secret_within_its_grace,
    )])
}

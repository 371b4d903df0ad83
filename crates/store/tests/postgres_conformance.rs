//! The conformance suite against PostgreSQL: every check of
//! `conformance::CHECKS`, each in a schema of its own, and what only
//! PostgreSQL can show. Without REDRIVE_TEST_DATABASE_URL every test is
//! reported ignored, with the reason.

use std::process::ExitCode;

use redrive_store::conformance::{CHECKS, Check, event, spec, t0};
use redrive_store::postgres::testing::TestSchema;
use redrive_store::{DeliverySearch, PostgresStore, Store};
use redrive_testkit::{Runtime, trial};

fn main() -> ExitCode {
    let need = redrive_testkit::postgres();
    let own: [(&str, Check); 1] = [("a_publish_written_with_others_fails_alone", |store| {
        Box::pin(a_publish_written_with_others_fails_alone(store))
    })];
    let trials = CHECKS
        .iter()
        .chain(&own)
        .map(|&(name, check)| {
            trial(name, &need, Runtime::CurrentThread, move |url| async move {
                let schema = TestSchema::create(&url).await.expect("a test schema");
                let store = PostgresStore::connect(&format!("{}&pool_size=4", schema.url), t0())
                    .await
                    .expect("the store opens");
                check(&store).await;
                drop(store);
                drop(schema);
            })
        })
        .collect();
    redrive_testkit::run(trials)
}

/// Publishes that arrive together share one statement; one that
/// PostgreSQL refuses (a NUL in a text column: the API refuses control
/// characters, so only a store caller can send one) must fail alone, the
/// others stored and answered as if each had come alone.
async fn a_publish_written_with_others_fails_alone(store: &dyn Store) {
    store.create_topic("orders", t0()).await.unwrap();
    store
        .create_subscription(spec("s", "orders"), t0())
        .await
        .unwrap();
    let ids = ["good-1", "bad\0id", "good-2", "good-3"];
    let answers = futures::future::join_all(
        ids.iter()
            .map(|id| store.publish("orders", vec![event(id, "t")], t0())),
    )
    .await;
    for (id, answer) in ids.iter().zip(&answers) {
        if id.contains('\0') {
            assert!(answer.is_err(), "{answer:?}");
        } else {
            let outcomes = answer.as_ref().unwrap();
            assert_eq!(outcomes.len(), 1);
            assert_eq!((outcomes[0].id.as_str(), outcomes[0].deliveries), (*id, 1));
        }
    }
    let page = store
        .search_deliveries(DeliverySearch {
            subscription: "s".into(),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut stored: Vec<String> = page.deliveries.into_iter().map(|d| d.event_id).collect();
    stored.sort();
    assert_eq!(stored, ["good-1", "good-2", "good-3"]);
}

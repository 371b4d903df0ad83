//! Journal positions on PostgreSQL come from a sequence, so two publishes
//! can commit in the other order than they drew their positions. A reader
//! must never be handed the higher one first: it would carry on past the
//! lower one and never see it. Two stores on one schema stand for two
//! nodes. Reads REDRIVE_TEST_DATABASE_URL; without it the test is reported
//! ignored.

use std::time::Duration;

use redrive_store::conformance::{event, spec, t0};
use redrive_store::postgres::testing::TestSchema;
use redrive_store::{JournalPage, JournalQuery, PostgresStore, Store};
use tokio_postgres::NoTls;

async fn open(schema: &TestSchema) -> PostgresStore {
    PostgresStore::connect(&format!("{}&pool_size=4", schema.url), t0())
        .await
        .expect("the store opens")
}

async fn raw(schema: &TestSchema) -> tokio_postgres::Client {
    let config: tokio_postgres::Config = schema.url.parse().unwrap();
    let (client, connection) = config.connect(NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

async fn read(store: &PostgresStore, since: Option<i64>) -> JournalPage {
    store
        .journal(JournalQuery {
            subscription: "s1".into(),
            since,
            limit: 100,
        })
        .await
        .unwrap()
}

fn ids(page: &JournalPage) -> Vec<&str> {
    page.entries.iter().map(|e| e.event.id.as_str()).collect()
}

async fn a_reader_is_not_handed_a_position_above_one_still_committing(url: String) {
    let schema = TestSchema::create(&url).await.expect("a test schema");
    let (slow_node, fast_node) = (open(&schema).await, open(&schema).await);
    slow_node.create_topic("t", t0()).await.unwrap();
    slow_node
        .create_subscription(spec("s1", "t"), t0())
        .await
        .unwrap();
    slow_node
        .publish("t", vec![event("first", "x")], t0())
        .await
        .unwrap();
    let start = read(&fast_node, None).await;
    assert_eq!(ids(&start), ["first"]);
    let reader_at = start.entries[0].position;

    // An uncommitted row with the identity the slow publish is about to
    // store makes that publish wait after it drew its position.
    let blocker = raw(&schema).await;
    blocker
        .batch_execute(
            "BEGIN;
             INSERT INTO events (topic, source, id, type, attributes, published_at)
             VALUES ('t', '/tests', 'slow', 'x', '{}', 0);",
        )
        .await
        .unwrap();
    let slow = tokio::spawn(async move {
        slow_node
            .publish("t", vec![event("slow", "x")], t0())
            .await
            .unwrap();
        slow_node
    });
    let watcher = raw(&schema).await;
    let waiting = async {
        loop {
            let row = watcher
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity
                     WHERE application_name = $1 AND wait_event_type = 'Lock'",
                    &[&schema.name],
                )
                .await
                .unwrap();
            if row.get::<_, i64>(0) > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the slow publish waits on the uncommitted row");

    // A later publish on the other node commits a higher position first.
    fast_node
        .publish("t", vec![event("fast", "x")], t0())
        .await
        .unwrap();
    let meanwhile = read(&fast_node, Some(reader_at)).await;
    assert!(
        meanwhile.entries.is_empty(),
        "handed {:?} while a lower position was still committing",
        ids(&meanwhile)
    );

    blocker.batch_execute("ROLLBACK").await.unwrap();
    let slow_node = tokio::time::timeout(Duration::from_secs(10), slow)
        .await
        .expect("the slow publish finishes")
        .unwrap();
    let after = read(&slow_node, Some(reader_at)).await;
    assert_eq!(ids(&after), ["slow", "fast"]);
    assert!(after.entries[0].position < after.entries[1].position);
    assert!(after.entries[0].position > reader_at);
}

fn main() -> std::process::ExitCode {
    redrive_testkit::run(vec![redrive_testkit::trial(
        "a_reader_is_not_handed_a_position_above_one_still_committing",
        &redrive_testkit::postgres(),
        redrive_testkit::Runtime::CurrentThread,
        a_reader_is_not_handed_a_position_above_one_still_committing,
    )])
}

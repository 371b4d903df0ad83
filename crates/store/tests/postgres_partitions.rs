//! The PostgreSQL history partitioned by day: partitions made ahead at
//! start, whole days dropped by the purge with what is not finished kept,
//! concurrent starts, and the upgrade of a schema holding rows (also of
//! subscriptions made before push backoff was their own setting). Reads
//! REDRIVE_TEST_DATABASE_URL; without it every test is reported ignored.

use std::collections::HashMap;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use redrive_core::{Attempt, Decision, DeliveryState, FailureReason};
use redrive_store::conformance::{event, spec};
use redrive_store::postgres::testing::{
    TestSchema, latest_version, migrate_to, version_before_partitions, version_before_push_backoff,
};
use redrive_store::prelude::*;
use redrive_store::{
    ClaimRequest, ClaimWant, Completion, JournalQuery, PostgresStore, PurgeRequest, StoreError,
};
use redrive_testkit::{Runtime, trial};
use tokio_postgres::NoTls;

const DAY_MS: i64 = 86_400_000;

/// The id prefix of the UUIDv7s made at `ms`, as the partitions use it.
fn bound(ms: i64) -> String {
    let hex = format!("{ms:012x}");
    format!("{}-{}", &hex[..8], &hex[8..])
}

/// A UUIDv7-shaped id made at `ms`.
fn id_at(ms: i64, n: u64) -> String {
    format!("{}-7000-8000-{n:012x}", bound(ms))
}

fn today_start() -> i64 {
    Timestamp::now().as_millisecond().div_euclid(DAY_MS) * DAY_MS
}

fn suffix(day_start: i64) -> String {
    Timestamp::from_millisecond(day_start)
        .unwrap()
        .strftime("p%Y%m%d")
        .to_string()
}

fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap()
}

async fn schema(url: &str) -> TestSchema {
    TestSchema::create(url).await.expect("a test schema")
}

async fn raw(schema: &TestSchema) -> tokio_postgres::Client {
    let config: tokio_postgres::Config = schema.url.parse().unwrap();
    let (client, connection) = config.connect(NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

async fn open(schema: &TestSchema) -> PostgresStore {
    PostgresStore::connect(&format!("{}&pool_size=4", schema.url), Timestamp::now())
        .await
        .expect("the store opens")
}

/// The partitions of `deliveries`, by name.
async fn partitions(client: &tokio_postgres::Client) -> Vec<String> {
    client
        .query(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = 'deliveries'::regclass ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// Which partition holds the delivery.
async fn home(client: &tokio_postgres::Client, id: &str) -> String {
    client
        .query_one(
            "SELECT tableoid::regclass::text FROM deliveries WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0)
}

async fn exists(client: &tokio_postgres::Client, table: &str) -> bool {
    client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
        .await
        .unwrap()
        .get(0)
}

/// A schema as if it had been partitioned on an earlier day: the legacy
/// partition ends where today starts, so today gets a partition of its own.
async fn partitioned_yesterday(url: &str) -> (TestSchema, tokio_postgres::Client) {
    let schema = schema(url).await;
    migrate_to(&schema.url, latest_version()).await.unwrap();
    let client = raw(&schema).await;
    let today = bound(today_start());
    client
        .batch_execute(&format!(
            "DROP TABLE deliveries_legacy, attempts_legacy;
             CREATE TABLE deliveries_legacy PARTITION OF deliveries
               FOR VALUES FROM (MINVALUE) TO ('{today}');
             CREATE TABLE attempts_legacy PARTITION OF attempts
               FOR VALUES FROM (MINVALUE) TO ('{today}');
             UPDATE partition_floor SET bound = '{today}';"
        ))
        .await
        .unwrap();
    (schema, client)
}

fn attempt(number: u32, started_at: Timestamp, decision: Decision) -> Attempt {
    Attempt {
        number,
        kind: redrive_core::AttemptKind::Push,
        started_at,
        duration_ms: 5,
        status: Some(200),
        error: None,
        error_message: None,
        response_snippet: None,
        decision,
    }
}

fn claim(now: Timestamp) -> ClaimRequest {
    ClaimRequest {
        now,
        lease: Duration::from_secs(60),
        limit_total: u32::MAX,
        wants: vec![ClaimWant {
            subscription: "s1".into(),
            limit: 10,
            rate: None,
            lookahead: Duration::ZERO,
        }],
    }
}

fn purge(before: i64, events_after: i64) -> PurgeRequest {
    PurgeRequest {
        before: ts(before),
        limit: 100,
        events_after,
    }
}

/// Stores a finished delivery (and its event and attempt) the way an
/// earlier day would have left it, with the id `id`.
async fn insert_finished(client: &tokio_postgres::Client, id: &str, event_id: &str, at: i64) {
    let attributes = serde_json::to_string(&event(event_id, "t")).unwrap();
    let seq: i64 = client
        .query_one(
            "INSERT INTO events (topic, source, id, type, attributes, data, published_at)
             VALUES ('orders', '/tests', $1, 't', $2, NULL, $3) RETURNING seq",
            &[&event_id, &attributes, &at],
        )
        .await
        .unwrap()
        .get(0);
    client
        .execute(
            "INSERT INTO deliveries (id, subscription, event_seq, state, attempts, created_at,
                                     updated_at, first_attempt_at, last_attempt_at, last_status)
             VALUES ($1, 's1', $2, 'delivered', 1, $3, $3, $3, $3, 200)",
            &[&id, &seq, &at],
        )
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO attempts (delivery_id, number, started_at, duration_ms, status, decision)
             VALUES ($1, 1, $2, 5, 200, '{\"kind\":\"delivered\"}')",
            &[&id, &at],
        )
        .await
        .unwrap();
}

async fn a_fresh_schema_has_partitions_for_today_and_the_next_days(url: String) {
    let schema = schema(&url).await;
    let store = open(&schema).await;
    let client = raw(&schema).await;
    let today = today_start();
    assert_eq!(
        partitions(&client).await,
        [
            "deliveries_default".to_owned(),
            "deliveries_legacy".to_owned(),
            format!("deliveries_{}", suffix(today + DAY_MS)),
            format!("deliveries_{}", suffix(today + 2 * DAY_MS)),
        ]
    );
    // Today is the legacy partition's last day (the migration's SQL and
    // the Rust agree on bounds): no traffic of the upgrade day goes to the
    // default partition.
    let floor: String = client
        .query_one("SELECT bound FROM partition_floor", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(floor, bound(today + DAY_MS));
    store
        .create_topic("orders", Timestamp::now())
        .await
        .unwrap();
    store
        .create_subscription(spec("s1", "orders"), Timestamp::now())
        .await
        .unwrap();
    store
        .publish("orders", vec![event("e1", "t")], Timestamp::now())
        .await
        .unwrap();
    let claimed = store.claim_due(claim(Timestamp::now())).await.unwrap();
    assert_eq!(
        home(&client, &claimed.claimed[0].delivery.id).await,
        "deliveries_legacy"
    );
    // Every partition carries the storage parameters.
    let options: Vec<(String, Option<Vec<String>>)> = client
        .query(
            "SELECT c.relname::text, c.reloptions FROM pg_inherits i
             JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent IN ('deliveries'::regclass, 'attempts'::regclass)",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(options.len(), 8);
    for (name, options) in options {
        let options = options.unwrap_or_default();
        let wanted = if name.starts_with("deliveries") {
            "fillfactor=80"
        } else {
            "autovacuum_vacuum_insert_scale_factor=0.05"
        };
        assert!(options.iter().any(|o| o == wanted), "{name}: {options:?}");
    }
}

async fn connecting_creates_today_and_the_next_days(url: String) {
    let (schema, client) = partitioned_yesterday(&url).await;
    let _store = open(&schema).await;
    let today = today_start();
    let mut expected = vec![
        "deliveries_default".to_owned(),
        "deliveries_legacy".to_owned(),
    ];
    for day in 0..3 {
        expected.push(format!("deliveries_{}", suffix(today + day * DAY_MS)));
        assert!(
            exists(
                &client,
                &format!("attempts_{}", suffix(today + day * DAY_MS))
            )
            .await
        );
    }
    assert_eq!(partitions(&client).await, expected);
}

async fn a_purge_past_a_day_drops_its_partition_and_keeps_what_is_not_finished(url: String) {
    let (schema, client) = partitioned_yesterday(&url).await;
    let store = open(&schema).await;
    let now = Timestamp::now();
    let today = today_start();
    let today_table = format!("deliveries_{}", suffix(today));
    store.create_topic("orders", now).await.unwrap();
    store
        .create_subscription(spec("s1", "orders"), now)
        .await
        .unwrap();
    // One delivery of yesterday, in the legacy partition.
    let yesterday = today - DAY_MS / 2;
    let old_id = id_at(yesterday, 1);
    insert_finished(&client, &old_id, "old", yesterday).await;
    assert_eq!(home(&client, &old_id).await, "deliveries_legacy");

    let events: Vec<_> = ["e1", "e2", "e3", "e4"]
        .iter()
        .map(|id| event(id, "t"))
        .collect();
    store.publish("orders", events, now).await.unwrap();
    let claimed = store.claim_due(claim(now)).await.unwrap().claimed;
    assert_eq!(claimed.len(), 4);
    let ids: HashMap<String, String> = claimed
        .iter()
        .map(|c| (c.event.id.clone(), c.delivery.id.clone()))
        .collect();
    for id in ids.values() {
        assert_eq!(home(&client, id).await, today_table);
    }
    // Past the cutoff: tomorrow, plus an hour.
    let before = today + DAY_MS + 3_600_000;
    let later = ts(before) + SignedDuration::from_secs(60);
    let completions = vec![
        Completion {
            delivery_id: ids["e1"].clone(),
            subscription: "s1".into(),
            attempt: attempt(1, now, Decision::Delivered),
        },
        Completion {
            delivery_id: ids["e2"].clone(),
            subscription: "s1".into(),
            attempt: attempt(
                1,
                now,
                Decision::Failed {
                    reason: FailureReason::NonRetryable,
                },
            ),
        },
        // Retried later: still scheduled when its day goes.
        Completion {
            delivery_id: ids["e3"].clone(),
            subscription: "s1".into(),
            attempt: attempt(
                1,
                now,
                Decision::Retry {
                    at: now + SignedDuration::from_secs(60),
                    retry: 1,
                },
            ),
        },
        // Finished after the cutoff.
        Completion {
            delivery_id: ids["e4"].clone(),
            subscription: "s1".into(),
            attempt: attempt(1, later, Decision::Delivered),
        },
    ];
    store.complete_many(completions).await.unwrap();
    let journal = |since: Option<i64>| JournalQuery {
        subscription: "s1".into(),
        since,
        limit: 10,
    };
    let positions: HashMap<String, i64> = store
        .journal(journal(None))
        .await
        .unwrap()
        .entries
        .iter()
        .map(|e| (e.event.id.clone(), e.position))
        .collect();

    // First the legacy partition, which holds rows: today's waits.
    let first = store.purge_history(purge(before, 0)).await.unwrap();
    assert_eq!((first.deliveries, first.attempts), (1, 1));
    assert!(first.more, "today's partition is due too");
    assert!(!exists(&client, "deliveries_legacy").await);
    assert!(exists(&client, &today_table).await);
    let second = store
        .purge_history(purge(before, first.events_cursor))
        .await
        .unwrap();
    assert_eq!((second.deliveries, second.attempts), (2, 2));
    assert!(!second.more);
    assert!(!exists(&client, &today_table).await);
    assert!(!exists(&client, &format!("attempts_{}", suffix(today))).await);
    assert!(exists(&client, &format!("deliveries_{}", suffix(today + DAY_MS))).await);
    let floor: String = client
        .query_one("SELECT bound FROM partition_floor", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(floor, bound(today + DAY_MS));

    for gone in [&old_id, &ids["e1"], &ids["e2"]] {
        assert!(matches!(
            store.get_delivery(gone).await,
            Err(StoreError::NotFound { .. })
        ));
    }
    // What stays moved to the default partition, attempts included.
    let scheduled = store.get_delivery(&ids["e3"]).await.unwrap();
    assert_eq!(scheduled.delivery.state, DeliveryState::Scheduled);
    assert_eq!(scheduled.attempts.len(), 1);
    assert_eq!(home(&client, &ids["e3"]).await, "deliveries_default");
    let recent = store.get_delivery(&ids["e4"]).await.unwrap();
    assert_eq!(recent.delivery.state, DeliveryState::Delivered);
    assert_eq!(recent.attempts.len(), 1);
    assert_eq!(home(&client, &ids["e4"]).await, "deliveries_default");

    // The journal says how far it was purged.
    let page = store.journal(journal(None)).await.unwrap();
    assert_eq!(page.purged_through, positions["e1"].max(positions["e2"]));
    assert_eq!(
        page.entries
            .iter()
            .map(|e| e.event.id.as_str())
            .collect::<Vec<_>>(),
        ["e3", "e4"]
    );
    // The purged deliveries' events went; the kept ones' stayed.
    let again = store
        .publish(
            "orders",
            vec![event("e1", "t"), event("old", "t"), event("e3", "t")],
            later,
        )
        .await
        .unwrap();
    assert_eq!(
        again.iter().map(|o| o.duplicate).collect::<Vec<_>>(),
        [false, false, true]
    );

    // The straggler is claimed and completed from the default partition.
    let retry_at = now + SignedDuration::from_secs(61);
    let claimed = store.claim_due(claim(retry_at)).await.unwrap().claimed;
    let straggler = claimed
        .iter()
        .find(|c| c.delivery.id == ids["e3"])
        .expect("the straggler is claimed");
    assert_eq!(straggler.delivery.attempts, 2);
    store
        .complete_many(vec![Completion {
            delivery_id: ids["e3"].clone(),
            subscription: "s1".into(),
            attempt: attempt(2, retry_at, Decision::Delivered),
        }])
        .await
        .unwrap();
    assert_eq!(
        store.get_delivery(&ids["e3"]).await.unwrap().attempts.len(),
        2
    );
    // The default partition is purged row by row.
    let rows = store
        .purge_history(purge(before, second.events_cursor))
        .await
        .unwrap();
    assert_eq!((rows.deliveries, rows.attempts), (1, 2));
    assert!(store.get_delivery(&ids["e4"]).await.is_ok());
    // A dropped day is not created again.
    drop(store);
    let _store = open(&schema).await;
    assert!(!exists(&client, &today_table).await);
}

async fn stores_starting_together_on_one_schema_all_open(url: String) {
    let schema = schema(&url).await;
    let url = format!("{}&pool_size=2", schema.url);
    let (a, b, c) = tokio::join!(
        PostgresStore::connect(&url, Timestamp::now()),
        PostgresStore::connect(&url, Timestamp::now()),
        PostgresStore::connect(&url, Timestamp::now()),
    );
    for store in [a, b, c] {
        store.expect("every store opens");
    }
    let client = raw(&schema).await;
    assert_eq!(partitions(&client).await.len(), 4);
}

async fn partitioning_a_schema_keeps_every_row(url: String) {
    let schema = schema(&url).await;
    migrate_to(&schema.url, version_before_partitions())
        .await
        .unwrap();
    let client = raw(&schema).await;
    let now = Timestamp::now().as_millisecond();
    let today = today_start();
    let spec = serde_json::to_string(&spec("s1", "orders")).unwrap();
    client
        .execute(
            "INSERT INTO topics (name, created_at) VALUES ('orders', $1)",
            &[&now],
        )
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO subscriptions (name, topic, spec, created_at, updated_at)
             VALUES ('s1', 'orders', $1, $2, $2)",
            &[&spec, &now],
        )
        .await
        .unwrap();
    // A week ago, today, tomorrow (a clock ahead) and an id no clock made.
    let rows = [
        (id_at(now - 7 * DAY_MS, 1), "week", now - 7 * DAY_MS),
        (id_at(now, 2), "today", now),
        (id_at(today + DAY_MS + 60_000, 3), "tomorrow", now),
        ("not-a-uuid".to_owned(), "odd", now),
    ];
    for (id, event_id, at) in &rows {
        insert_finished(&client, id, event_id, *at).await;
    }
    let store = open(&schema).await;
    let version: i32 = client
        .query_one("SELECT version FROM schema_version", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(usize::try_from(version).unwrap(), latest_version());
    let homes = [
        "deliveries_legacy",
        "deliveries_legacy",
        "deliveries_default",
        "deliveries_default",
    ];
    for ((id, event_id, _), wanted) in rows.iter().zip(homes) {
        let detail = store.get_delivery(id).await.unwrap();
        assert_eq!(detail.event.id, *event_id);
        assert_eq!(detail.delivery.state, DeliveryState::Delivered);
        assert_eq!(detail.attempts.len(), 1);
        assert_eq!(home(&client, id).await, wanted, "{id}");
    }
    // Tomorrow already has a row in the default partition: it gets no
    // partition (creating one would fail); the day after does.
    assert!(!exists(&client, &format!("deliveries_{}", suffix(today + DAY_MS))).await);
    assert!(
        exists(
            &client,
            &format!("deliveries_{}", suffix(today + 2 * DAY_MS))
        )
        .await
    );
    // Every index is back, on the parent and its partitions.
    let indexes: Vec<String> = client
        .query(
            "SELECT indexname::text FROM pg_indexes
             WHERE schemaname = current_schema() AND tablename IN ('deliveries', 'attempts')
             ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(
        indexes,
        [
            "attempts_pkey",
            "deliveries_due",
            "deliveries_ended",
            "deliveries_journal",
            "deliveries_pkey",
            "deliveries_recent_by_state",
            "deliveries_recent_by_status",
        ]
    );
    // The legacy partition goes whole once its last day passed.
    let outcome = store
        .purge_history(purge(today + DAY_MS + 1, 0))
        .await
        .unwrap();
    assert_eq!((outcome.deliveries, outcome.attempts), (4, 4));
    assert!(!exists(&client, "deliveries_legacy").await);
}

async fn a_day_whose_tables_stay_locked_goes_on_a_later_turn(url: String) {
    let (schema, client) = partitioned_yesterday(&url).await;
    let store = open(&schema).await;
    let now = Timestamp::now();
    let today_table = format!("deliveries_{}", suffix(today_start()));
    store.create_topic("orders", now).await.unwrap();
    store
        .create_subscription(spec("s1", "orders"), now)
        .await
        .unwrap();
    store
        .publish("orders", vec![event("e1", "t")], now)
        .await
        .unwrap();
    let claimed = store.claim_due(claim(now)).await.unwrap().claimed;
    let id = claimed[0].delivery.id.clone();
    store
        .complete_many(vec![Completion {
            delivery_id: id.clone(),
            subscription: "s1".into(),
            attempt: attempt(1, now, Decision::Delivered),
        }])
        .await
        .unwrap();
    let before = today_start() + DAY_MS + 3_600_000;

    // A long reader holds the tables: the purge gives up waiting and
    // leaves everything as it was.
    let mut reader = raw(&schema).await;
    let reading = reader.transaction().await.unwrap();
    reading
        .batch_execute("LOCK TABLE deliveries IN ACCESS SHARE MODE")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let waited = store.purge_history(purge(before, 0)).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!((waited.deliveries, waited.attempts), (0, 0));
    assert!(!waited.more);
    assert!(exists(&client, &today_table).await);
    assert!(exists(&client, "deliveries_legacy").await);
    assert!(store.get_delivery(&id).await.is_ok());
    reading.commit().await.unwrap();

    let purged = store.purge_history(purge(before, 0)).await.unwrap();
    assert_eq!((purged.deliveries, purged.attempts), (1, 1));
    assert!(!exists(&client, &today_table).await);
    assert!(matches!(
        store.get_delivery(&id).await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn a_day_that_cannot_go_leaves_the_rest_of_the_purge_working(url: String) {
    let (schema, client) = partitioned_yesterday(&url).await;
    let store = open(&schema).await;
    let now = Timestamp::now();
    let today_table = format!("deliveries_{}", suffix(today_start()));
    store.create_topic("orders", now).await.unwrap();
    store
        .create_subscription(spec("s1", "orders"), now)
        .await
        .unwrap();
    // Earlier today, whatever the time of day.
    let old = today_start() + (now.as_millisecond() - today_start()) / 2;
    insert_finished(&client, &id_at(old, 1), "in-today", old).await;
    // An id no clock made lives in the default partition.
    insert_finished(&client, "zz-odd", "odd", old).await;
    assert_eq!(home(&client, "zz-odd").await, "deliveries_default");
    // Something of the operator's depends on today's partition.
    client
        .batch_execute(&format!(
            "CREATE VIEW pinned AS SELECT id FROM {today_table}"
        ))
        .await
        .unwrap();

    let before = today_start() + DAY_MS + 3_600_000;
    let outcome = store.purge_history(purge(before, 0)).await.unwrap();
    assert_eq!((outcome.deliveries, outcome.attempts), (1, 1));
    assert!(matches!(
        store.get_delivery("zz-odd").await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(exists(&client, &today_table).await);
    assert!(store.get_delivery(&id_at(old, 1)).await.is_ok());

    client.batch_execute("DROP VIEW pinned").await.unwrap();
    let outcome = store.purge_history(purge(before, 0)).await.unwrap();
    assert_eq!((outcome.deliveries, outcome.attempts), (1, 1));
    assert!(!exists(&client, &today_table).await);
}

async fn subscriptions_made_before_push_backoff_keep_what_their_preset_brings(url: String) {
    let schema = schema(&url).await;
    migrate_to(&schema.url, version_before_push_backoff())
        .await
        .unwrap();
    let client = raw(&schema).await;
    let now = Timestamp::now().as_millisecond();
    client
        .execute(
            "INSERT INTO topics (name, created_at) VALUES ('orders', $1)",
            &[&now],
        )
        .await
        .unwrap();
    // As an older redrive wrote them: no push_backoff field.
    for (name, preset) in [("p", "pubsub"), ("e", "eventarc"), ("a", "appengine")] {
        let mut written = serde_json::to_value(spec(name, "orders")).unwrap();
        written["retry_policy"]["preset"] = preset.into();
        written.as_object_mut().unwrap().remove("push_backoff");
        client
            .execute(
                "INSERT INTO subscriptions (name, topic, spec, created_at, updated_at)
                 VALUES ($1, 'orders', $2, $3, $3)",
                &[&name, &written.to_string(), &now],
            )
            .await
            .unwrap();
    }
    let store = open(&schema).await;
    for (name, wanted) in [("p", true), ("e", true), ("a", false)] {
        let subscription = store.get_subscription(name).await.unwrap();
        assert_eq!(subscription.spec.push_backoff, wanted, "{name}");
    }
}

fn main() -> std::process::ExitCode {
    let need = redrive_testkit::postgres();
    redrive_testkit::run(vec![
        trial(
            "a_fresh_schema_has_partitions_for_today_and_the_next_days",
            &need,
            Runtime::CurrentThread,
            a_fresh_schema_has_partitions_for_today_and_the_next_days,
        ),
        trial(
            "connecting_creates_today_and_the_next_days",
            &need,
            Runtime::CurrentThread,
            connecting_creates_today_and_the_next_days,
        ),
        trial(
            "a_purge_past_a_day_drops_its_partition_and_keeps_what_is_not_finished",
            &need,
            Runtime::CurrentThread,
            a_purge_past_a_day_drops_its_partition_and_keeps_what_is_not_finished,
        ),
        trial(
            "stores_starting_together_on_one_schema_all_open",
            &need,
            Runtime::CurrentThread,
            stores_starting_together_on_one_schema_all_open,
        ),
        trial(
            "partitioning_a_schema_keeps_every_row",
            &need,
            Runtime::CurrentThread,
            partitioning_a_schema_keeps_every_row,
        ),
        trial(
            "a_day_whose_tables_stay_locked_goes_on_a_later_turn",
            &need,
            Runtime::CurrentThread,
            a_day_whose_tables_stay_locked_goes_on_a_later_turn,
        ),
        trial(
            "a_day_that_cannot_go_leaves_the_rest_of_the_purge_working",
            &need,
            Runtime::CurrentThread,
            a_day_that_cannot_go_leaves_the_rest_of_the_purge_working,
        ),
        trial(
            "subscriptions_made_before_push_backoff_keep_what_their_preset_brings",
            &need,
            Runtime::CurrentThread,
            subscriptions_made_before_push_backoff_keep_what_their_preset_brings,
        ),
    ])
}

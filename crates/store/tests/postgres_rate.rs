//! A subscription's rate limit on PostgreSQL holds for every node together:
//! two stores on one schema stand for two nodes. Reads
//! REDRIVE_TEST_DATABASE_URL; without it every test is reported ignored.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use redrive_store::conformance::{event, spec, t0};
use redrive_store::postgres::testing::TestSchema;
use redrive_store::prelude::*;
use redrive_store::{ClaimRate, ClaimRequest, ClaimWant, PostgresStore};
use redrive_testkit::{Runtime, trial};
use tokio_postgres::NoTls;

const RATE: ClaimRate = ClaimRate {
    per_second: 10.0,
    burst: 5,
};

async fn schema(url: &str) -> TestSchema {
    TestSchema::create(url).await.expect("a test schema")
}

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

fn at_ms(ms: i64) -> Timestamp {
    t0() + SignedDuration::from_millis(ms)
}

/// A topic "t" with the subscriptions `names`, each with `count` deliveries
/// due from before t0.
async fn seed(store: &PostgresStore, names: &[&str], count: usize) {
    let before = at_ms(-1_000);
    store.create_topic("t", before).await.unwrap();
    for name in names {
        store
            .create_subscription(spec(name, "t"), before)
            .await
            .unwrap();
    }
    let events = (0..count).map(|i| event(&format!("e{i}"), "x")).collect();
    store.publish("t", events, before).await.unwrap();
}

fn want(subscription: &str, limit: u32, rate: Option<ClaimRate>) -> ClaimWant {
    ClaimWant {
        subscription: subscription.into(),
        limit,
        rate,
        lookahead: std::time::Duration::ZERO,
    }
}

/// How many deliveries of `subscription` a claim at `now` gets.
async fn claim(store: &PostgresStore, subscription: &str, now: Timestamp) -> usize {
    claim_many(store, now, vec![want(subscription, 100, Some(RATE))])
        .await
        .len()
}

/// The subscription of each delivery a claim at `now` gets.
async fn claim_many(store: &PostgresStore, now: Timestamp, wants: Vec<ClaimWant>) -> Vec<String> {
    store
        .claim_due(ClaimRequest {
            now,
            lease: Duration::from_secs(3600),
            wants,
            limit_total: 1000,
        })
        .await
        .expect("the claim")
        .claimed
        .into_iter()
        .map(|c| c.delivery.subscription)
        .collect()
}

async fn two_nodes_take_from_one_bucket(url: String) {
    let schema = schema(&url).await;
    let (a, b) = (open(&schema).await, open(&schema).await);
    seed(&a, &["limited"], 100).await;

    // The bucket starts full: the burst, whichever node asks.
    let first = claim(&a, "limited", t0()).await + claim(&b, "limited", t0()).await;
    assert_eq!(first, 5, "claims at one instant from two nodes");
    // The bucket is empty: the claim says when its next token comes.
    let empty = a
        .claim_due(ClaimRequest {
            now: at_ms(30),
            lease: Duration::from_secs(3600),
            wants: vec![want("limited", 100, Some(RATE))],
            limit_total: 1000,
        })
        .await
        .unwrap();
    assert!(empty.claimed.is_empty());
    assert_eq!(empty.rate_refill_at, Some(at_ms(100)));

    // Over the next second, claiming every 100 ms from either node: the rate.
    let mut next_second = 0;
    for step in 1..=10 {
        let node = if step % 2 == 0 { &a } else { &b };
        let got = claim(node, "limited", at_ms(step * 100)).await;
        assert_eq!(got, 1, "step {step}");
        next_second += got;
    }
    assert_eq!(next_second, 10);

    // A longer gap refills the bucket only up to its burst.
    assert_eq!(claim(&b, "limited", at_ms(11_000)).await, 5);
    assert_eq!(claim(&a, "limited", at_ms(11_000)).await, 0);

    // A node whose clock lags gets nothing extra for it.
    assert_eq!(claim(&b, "limited", at_ms(10_500)).await, 0);
    assert_eq!(claim(&a, "limited", at_ms(11_100)).await, 1);
    drop((a, b));
    drop(schema);
}

async fn concurrent_claims_never_exceed_the_bucket(url: String) {
    let schema = schema(&url).await;
    let (a, b) = (open(&schema).await, open(&schema).await);
    seed(&a, &["limited"], 100).await;

    let step_ms = 37;
    let mut total = 0;
    let mut by_node = (0, 0);
    for round in 0..60 {
        let elapsed_ms = round * step_ms;
        let now = at_ms(elapsed_ms);
        let (got_a, got_b) = tokio::join!(claim(&a, "limited", now), claim(&b, "limited", now));
        total += got_a + got_b;
        by_node.0 += got_a;
        by_node.1 += got_b;
        let allowed = f64::from(RATE.burst) + RATE.per_second * elapsed_ms as f64 / 1000.0;
        assert!(
            total as f64 <= allowed,
            "round {round}: {total} claimed, at most {allowed} allowed"
        );
        // Demand always exceeds the rate: every whole token goes out.
        assert!(
            total as f64 > allowed - 1.0,
            "round {round}: {total} claimed, {allowed} allowed"
        );
    }
    eprintln!(
        "60 concurrent rounds over {} ms: {total} claimed ({} + {})",
        59 * step_ms,
        by_node.0,
        by_node.1
    );
    drop((a, b));
    drop(schema);
}

async fn only_rated_subscriptions_are_limited(url: String) {
    let schema = schema(&url).await;
    let store = open(&schema).await;
    seed(&store, &["free", "limited", "paused"], 40).await;
    let paused = ClaimRate {
        per_second: 0.0,
        burst: 5,
    };
    let claimed = claim_many(
        &store,
        t0(),
        vec![
            want("free", 30, None),
            want("limited", 30, Some(RATE)),
            want("paused", 30, Some(paused)),
        ],
    )
    .await;
    let count = |name: &str| claimed.iter().filter(|s| *s == name).count();
    assert_eq!(count("free"), 30);
    assert_eq!(count("limited"), 5);
    assert_eq!(count("paused"), 0, "a rate of 0 claims nothing");
    let alone = claim_many(&store, t0(), vec![want("paused", 30, Some(paused))]).await;
    assert!(alone.is_empty(), "a rate of 0 claims nothing, alone too");

    // A claim without any rate leaves the buckets alone.
    let client = raw(&schema).await;
    let buckets = |client: tokio_postgres::Client| async move {
        let names: Vec<String> = client
            .query("SELECT subscription FROM rate_buckets ORDER BY 1", &[])
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        (names, client)
    };
    assert_eq!(
        claim_many(&store, t0(), vec![want("free", 30, None)])
            .await
            .len(),
        10
    );
    let (names, _client) = buckets(client).await;
    assert_eq!(names, ["limited"]);
    drop(store);
    drop(schema);
}

async fn a_deleted_subscription_takes_its_bucket_along(url: String) {
    let schema = schema(&url).await;
    let store = open(&schema).await;
    seed(&store, &["limited"], 20).await;
    assert_eq!(claim(&store, "limited", t0()).await, 5);
    let client = raw(&schema).await;
    let count = || async {
        client
            .query_one("SELECT count(*) FROM rate_buckets", &[])
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    assert_eq!(count().await, 1);

    store.delete_subscription("limited").await.unwrap();
    assert_eq!(count().await, 0);

    // A new subscription of the same name starts with a full bucket.
    store
        .create_subscription(spec("limited", "t"), t0())
        .await
        .unwrap();
    let events = (0..10).map(|i| event(&format!("n{i}"), "x")).collect();
    store.publish("t", events, t0()).await.unwrap();
    assert_eq!(claim(&store, "limited", t0()).await, 5);
    drop(store);
    drop(schema);
}

fn main() -> std::process::ExitCode {
    let need = redrive_testkit::postgres();
    redrive_testkit::run(vec![
        trial(
            "two_nodes_take_from_one_bucket",
            &need,
            Runtime::MultiThread(2),
            two_nodes_take_from_one_bucket,
        ),
        trial(
            "concurrent_claims_never_exceed_the_bucket",
            &need,
            Runtime::MultiThread(2),
            concurrent_claims_never_exceed_the_bucket,
        ),
        trial(
            "only_rated_subscriptions_are_limited",
            &need,
            Runtime::MultiThread(2),
            only_rated_subscriptions_are_limited,
        ),
        trial(
            "a_deleted_subscription_takes_its_bucket_along",
            &need,
            Runtime::MultiThread(2),
            a_deleted_subscription_takes_its_bucket_along,
        ),
    ])
}

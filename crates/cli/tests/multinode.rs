//! Several real `redrive serve` processes on one PostgreSQL database: any
//! node accepts publishes, any node delivers, a node killed with SIGKILL
//! loses nothing, a node that publishes wakes the others at once, and a
//! node started with another secret key leaves its deliveries to the
//! others.
//! Reads REDRIVE_TEST_DATABASE_URL; without it the tests are reported
//! ignored, with the reason.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use redrive_store::postgres::testing::TestSchema;
use redrive_testkit::{Runtime, trial};
use serde_json::{Value, json};

mod common;

use common::{Api, Endpoint, RunningServer};

// ---------------------------------------------------------------------------
// A node
// ---------------------------------------------------------------------------

/// How long a node may take to stop gracefully.
const STOP_PATIENCE: Duration = Duration::from_secs(40);

/// A `redrive serve` node on the shared database, its data in
/// `dir/NAME-data` and its log in `dir/NAME.log`.
async fn start_node(database_url: &str, dir: &Path, name: &str, extra: &[&str]) -> RunningServer {
    start_node_with_key(database_url, dir, name, SECRET_KEY, extra).await
}

/// [`start_node`] with `secret_key` as the key of its signing secrets.
async fn start_node_with_key(
    database_url: &str,
    dir: &Path,
    name: &str,
    secret_key: &str,
    extra: &[&str],
) -> RunningServer {
    let mut command = common::bare_command();
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.join(format!("{name}-data")))
        .args(["--database-url", database_url])
        // A dead node's deliveries come back after timeout + margin.
        .args(["--lease-margin", "5s"])
        // Every node shares one admin token and (but for a test of the
        // mistake) one secret key, as a deployment on one database must;
        // the receivers are local.
        .args(["--api-token", TOKEN, "--secret-key", secret_key])
        .args(["--allow-endpoint-networks", "127.0.0.0/8"])
        .args(["--publish-rate-limit", "unlimited"])
        .args(extra);
    let log = dir.join(format!("{name}.log"));
    let name = name.to_owned();
    tokio::task::spawn_blocking(move || {
        RunningServer::try_start(command, &log)
            .unwrap_or_else(|problem| panic!("node {name} did not start: {problem}"))
    })
    .await
    .expect("the start task")
}

// ---------------------------------------------------------------------------
// The API
// ---------------------------------------------------------------------------

/// The admin token of every node.
const TOKEN: &str = "multinode-admin-token-0123456789";
/// Base64 of 32 bytes: the key of every node's signing secrets.
const SECRET_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// Another key, for a node set up by mistake.
const OTHER_SECRET_KEY: &str = "HxAREhMUFRYXGBkaGxwdHh8AAQIDBAUGBwgJCgsMDQ4=";

fn event(id: &str) -> Value {
    json!({
        "specversion": "1.0",
        "id": id,
        "source": "/multinode",
        "type": "order.created",
        "datacontenttype": "application/json",
        "data": {"id": id},
    })
}

// ---------------------------------------------------------------------------
// The endpoint
// ---------------------------------------------------------------------------

/// How often a test looks at what the endpoint received.
const POLL: Duration = Duration::from_millis(5);

/// ce-ids whose push was still open, or answered so recently that the
/// node may not have recorded it yet: the attempts in flight at a kill.
fn in_flight(endpoint: &Endpoint, recent: Duration) -> BTreeSet<String> {
    endpoint
        .by_ce_id()
        .into_iter()
        .filter(|(_, pushes)| {
            pushes.iter().any(|push| {
                push.answered
                    .is_none_or(|answered| answered.at.elapsed() <= recent)
            })
        })
        .map(|(id, _)| id)
        .collect()
}

/// When each ce-id was first received.
fn first_seen(endpoint: &Endpoint) -> BTreeMap<String, Instant> {
    endpoint
        .by_ce_id()
        .into_iter()
        .filter_map(|(id, pushes)| Some((id, pushes.iter().map(|push| push.at).min()?)))
        .collect()
}

async fn wait_for_unique(endpoint: &Endpoint, count: usize, patience: Duration) -> bool {
    endpoint
        .wait_until(patience, POLL, |e| e.unique() >= count)
        .await
}

/// Publishes `ids` in batches of `batch`, round-robin over `apis`, and
/// returns the ids the nodes accepted.
async fn publish_spread(apis: &[&Api], ids: &[String], batch: usize) -> HashSet<String> {
    let mut accepted = HashSet::new();
    for (n, chunk) in ids.chunks(batch).enumerate() {
        let api = apis[n % apis.len()];
        let events: Vec<Value> = chunk.iter().map(|id| event(id)).collect();
        let (status, body) = api.publish_batch("orders", &events).await;
        assert_eq!(status, 202, "{body}");
        for outcome in body["events"].as_array().expect("outcomes") {
            assert_eq!(outcome["duplicate"], false, "{outcome}");
            accepted.insert(outcome["id"].as_str().expect("an id").to_owned());
        }
    }
    accepted
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

async fn three_nodes_lose_nothing_when_one_is_killed_and_one_restarted(base: String) {
    let schema = TestSchema::create(&base).await.expect("a test schema");
    let database_url = format!("{}&pool_size=6", schema.url);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let endpoint = Endpoint::ok_after(Duration::from_millis(100)).await;

    let a = start_node(&database_url, dir.path(), "a", &[]).await;
    let b = start_node(&database_url, dir.path(), "b", &[]).await;
    let c = start_node(&database_url, dir.path(), "c", &[]).await;
    let (api_a, api_b, api_c) = (
        Api::new(&a.url, TOKEN),
        Api::new(&b.url, TOKEN),
        Api::new(&c.url, TOKEN),
    );
    common::create_orders_hook(&api_a, &endpoint.url, "0.1s", "2s", 8).await;

    let first: Vec<String> = (0..450).map(|i| format!("e-{i:04}")).collect();
    let mut accepted = publish_spread(&[&api_a, &api_b, &api_c], &first, 15).await;
    assert_eq!(accepted.len(), first.len());

    // Mid-run: some delivered, some in flight on every node, most waiting.
    assert!(
        wait_for_unique(&endpoint, 150, Duration::from_secs(30)).await,
        "deliveries did not start; log of a:\n{}",
        a.log()
    );
    a.kill_9();
    // Anything a's process had pushed but not recorded is in flight now or
    // was answered moments ago; after this, nothing of a's reaches the
    // endpoint any more.
    let in_flight_at_kill = in_flight(&endpoint, Duration::from_millis(100));
    let at_kill = endpoint.unique();
    assert!(
        at_kill < accepted.len(),
        "everything was delivered before the kill"
    );

    // b restarts gracefully while c keeps delivering; then both take more.
    assert!(
        b.terminate(STOP_PATIENCE).success(),
        "b should stop cleanly"
    );
    let b = start_node(&database_url, dir.path(), "b2", &[]).await;
    let api_b = Api::new(&b.url, TOKEN);
    let second: Vec<String> = (450..600).map(|i| format!("e-{i:04}")).collect();
    accepted.extend(publish_spread(&[&api_b, &api_c], &second, 10).await);
    assert_eq!(accepted.len(), 600);

    // Every accepted event arrives, the killed node's included once its
    // leases (2s timeout + 5s margin) run out and another node rescues them.
    let arrived = wait_for_unique(&endpoint, accepted.len(), Duration::from_secs(60)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut delivered = api_c.count("orders-hook", "delivered").await;
    while delivered < accepted.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        delivered = api_c.count("orders-hook", "delivered").await;
    }
    assert!(
        arrived && delivered == accepted.len(),
        "{} of {} events arrived, {delivered} recorded delivered; log of c:\n{}",
        endpoint.unique(),
        accepted.len(),
        c.log()
    );
    assert_eq!(api_b.count("orders-hook", "failed").await, 0);

    // Duplicates only for attempts that were in flight on the killed node.
    let pushes: BTreeMap<String, usize> = endpoint
        .by_ce_id()
        .into_iter()
        .map(|(id, pushes)| (id, pushes.len()))
        .collect();
    let duplicated: BTreeSet<&String> = pushes
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| id)
        .collect();
    let unexplained: Vec<&&String> = duplicated
        .iter()
        .filter(|id| !in_flight_at_kill.contains(**id))
        .collect();
    assert!(
        !duplicated.is_empty(),
        "the killed node had nothing in flight: nothing was rescued"
    );
    assert!(
        unexplained.is_empty(),
        "pushed twice without being in flight at the kill: {unexplained:?}"
    );
    let unknown: Vec<&String> = pushes.keys().filter(|id| !accepted.contains(*id)).collect();
    assert!(unknown.is_empty(), "pushes of unknown events: {unknown:?}");
    eprintln!(
        "3 nodes, kill -9 after {at_kill}/{} events and a restart: none lost; \
         {} duplicate pushes over {} events, all in flight at the kill ({} were)",
        accepted.len(),
        pushes.values().sum::<usize>() - accepted.len(),
        duplicated.len(),
        in_flight_at_kill.len()
    );
    drop((b, c));
    drop(schema);
}

async fn a_publish_on_one_node_is_pushed_by_another_without_polling_delay(base: String) {
    let schema = TestSchema::create(&base).await.expect("a test schema");
    let database_url = format!("{}&pool_size=4", schema.url);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let endpoint = Endpoint::ok().await;

    // The publishing node pushes nothing itself; the other one polls only
    // every 10 s, so a quick push can only come from the wake-up.
    let publisher = start_node(
        &database_url,
        dir.path(),
        "publisher",
        &["--max-in-flight", "0"],
    )
    .await;
    let pusher = start_node(
        &database_url,
        dir.path(),
        "pusher",
        &["--poll-interval", "10s"],
    )
    .await;
    let api = Api::new(&publisher.url, TOKEN);
    common::create_orders_hook(&api, &endpoint.url, "0.1s", "2s", 8).await;
    // Let the pusher see the new subscription (it re-reads every 5 s).
    tokio::time::sleep(Duration::from_secs(6)).await;

    let mut latencies = Vec::new();
    for i in 0..5 {
        let id = format!("w-{i}");
        let sent = Instant::now();
        let (status, body) = api.publish_batch("orders", &[event(&id)]).await;
        assert_eq!(status, 202, "{body}");
        assert!(
            wait_for_unique(&endpoint, i + 1, Duration::from_secs(20)).await,
            "not pushed; log:\n{}",
            pusher.log()
        );
        let arrived = first_seen(&endpoint)[&id];
        latencies.push(arrived.duration_since(sent));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    latencies.sort();
    let median = latencies[latencies.len() / 2];
    assert!(
        median < Duration::from_millis(500),
        "a publish on another node took {latencies:?} to be pushed"
    );
    assert_eq!(endpoint.count(), 5);
    drop((publisher, pusher));
    drop(schema);
}

async fn a_rate_limit_holds_for_two_nodes_together(base: String) {
    let schema = TestSchema::create(&base).await.expect("a test schema");
    let database_url = format!("{}&pool_size=4", schema.url);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let endpoint = Endpoint::ok().await;

    let a = start_node(&database_url, dir.path(), "a", &[]).await;
    let api_a = Api::new(&a.url, TOKEN);
    api_a.create_topic("orders").await;
    api_a
        .create_subscription(json!({
            "name": "orders-hook",
            "topic": "orders",
            "endpoint": endpoint.url,
            "timeout": "2s",
            "max_concurrency": 50,
            "rate": "20/s",
            "bucket_size": 5,
        }))
        .await;
    // Started after the subscription exists, so it knows it at once.
    let b = start_node(&database_url, dir.path(), "b", &[]).await;
    let api_b = Api::new(&b.url, TOKEN);

    let ids: Vec<String> = (0..200).map(|i| format!("r-{i:04}")).collect();
    let accepted = publish_spread(&[&api_a, &api_b], &ids, 50).await;
    assert_eq!(accepted.len(), ids.len());

    assert!(
        wait_for_unique(&endpoint, 1, Duration::from_secs(10)).await,
        "nothing was pushed; log of a:\n{}",
        a.log()
    );
    let window = Duration::from_secs(3);
    let first = first_seen(&endpoint)
        .values()
        .min()
        .copied()
        .expect("a first push");
    tokio::time::sleep(
        (first + window + Duration::from_millis(300)).saturating_duration_since(Instant::now()),
    )
    .await;
    let in_window = first_seen(&endpoint)
        .values()
        .filter(|at| at.duration_since(first) <= window)
        .count();
    // One bucket for the cluster: the burst and 3 s at the rate, with a
    // little slack for when claims and pushes land; two buckets would let
    // 2 x 65 through.
    let allowed = 5 + 20 * 3;
    eprintln!(
        "2 nodes, rate 20/s, bucket 5: {in_window} pushes in the first 3 s \
         (at most {allowed} allowed by one bucket)"
    );
    assert!(
        in_window > 0 && in_window <= allowed + 10,
        "{in_window} pushes in the first 3 s; log of b:\n{}",
        b.log()
    );
    // The cluster keeps to the rate but also uses it.
    assert!(
        in_window >= allowed / 2,
        "only {in_window} pushes in the first 3 s"
    );
    assert_eq!(endpoint.count(), endpoint.unique(), "no push twice");
    drop((a, b));
    drop(schema);
}

/// What a node logs when a pause for an unreadable signing secret starts.
const UNREADABLE_SECRET: &str = "this node's secret key is not the one it was stored with";

/// Polls `api` until the subscription's pushes are held for `reason`.
async fn wait_for_hold(api: &Api, reason: &str, patience: Duration) -> Value {
    let deadline = Instant::now() + patience;
    loop {
        let (status, body) = api.get("/v1/subscriptions/orders-hook").await;
        assert_eq!(status, 200, "{body}");
        if body["pushes_held"]["reason"] == reason || Instant::now() >= deadline {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn a_node_with_another_secret_key_leaves_every_delivery_to_the_others(base: String) {
    let schema = TestSchema::create(&base).await.expect("a test schema");
    let database_url = format!("{}&pool_size=4", schema.url);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let endpoint = Endpoint::ok_after(Duration::from_millis(20)).await;

    // The subscription's secret is stored under a's key.
    let a = start_node(&database_url, dir.path(), "a", &[]).await;
    common::create_orders_hook(&Api::new(&a.url, TOKEN), &endpoint.url, "0.1s", "2s", 8).await;
    assert!(
        a.terminate(STOP_PATIENCE).success(),
        "a should stop cleanly"
    );

    // b, started with another key, is alone when the first events come:
    // it claims them, cannot sign them, and hands them back untouched.
    let b = start_node_with_key(&database_url, dir.path(), "b", OTHER_SECRET_KEY, &[]).await;
    let api_b = Api::new(&b.url, TOKEN);
    let first: Vec<String> = (0..20).map(|i| format!("k-{i:04}")).collect();
    let mut accepted = publish_spread(&[&api_b], &first, 10).await;
    let held = wait_for_hold(&api_b, "signing_secret_unreadable", Duration::from_secs(10)).await;
    let held_at = Instant::now();
    assert_eq!(
        held["pushes_held"]["reason"],
        "signing_secret_unreadable",
        "{held:#}; log of b:\n{}",
        b.log()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while api_b.count("orders-hook", "scheduled").await < first.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let waiting = api_b.deliveries_in("orders-hook", "scheduled").await;
    assert_eq!(waiting.len(), first.len(), "{waiting:#?}");
    assert!(
        waiting.iter().all(|d| d["attempts"] == 0),
        "b spent attempts: {waiting:#?}"
    );
    assert_eq!(endpoint.count(), 0, "b sent a push it could not sign");

    // a is back: it pushes what b handed back at once, and both nodes take
    // publishes until b's pause ended and b met the secret once more.
    let a = start_node(&database_url, dir.path(), "a2", &[]).await;
    let api_a = Api::new(&a.url, TOKEN);
    assert!(
        wait_for_unique(&endpoint, first.len(), Duration::from_secs(10)).await,
        "a did not push what b handed back; log of a:\n{}",
        a.log()
    );
    let mut n = first.len();
    while b.log().matches(UNREADABLE_SECRET).count() < 2
        && held_at.elapsed() < Duration::from_secs(45)
    {
        // Two requests, one to each node: a node pushes its own publishes
        // when it has room, so b meets the secret through its own.
        let ids: Vec<String> = (n..n + 10).map(|i| format!("k-{i:04}")).collect();
        n += ids.len();
        accepted.extend(publish_spread(&[&api_a, &api_b], &ids, 5).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pauses = b.log().matches(UNREADABLE_SECRET).count();
    assert!(
        pauses >= 2,
        "b did not look again after its pause; log of b:\n{}",
        b.log()
    );

    // Every event went out once, as its first attempt, and none failed.
    assert!(
        wait_for_unique(&endpoint, accepted.len(), Duration::from_secs(30)).await,
        "{} of {} events arrived; log of a:\n{}",
        endpoint.unique(),
        accepted.len(),
        a.log()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut delivered = api_a.deliveries_in("orders-hook", "delivered").await;
    while delivered.len() < accepted.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        delivered = api_a.deliveries_in("orders-hook", "delivered").await;
    }
    assert_eq!(delivered.len(), accepted.len());
    let later: Vec<&Value> = delivered.iter().filter(|d| d["attempts"] != 1).collect();
    assert!(
        later.is_empty(),
        "not delivered at the first attempt: {later:#?}"
    );
    assert_eq!(api_a.count("orders-hook", "failed").await, 0);
    assert_eq!(endpoint.count(), endpoint.unique(), "no push twice");
    // One error per pause of b, not one per delivery it handed back.
    let elapsed = held_at.elapsed().as_secs() as usize;
    assert!(
        pauses <= 2 + elapsed / 30,
        "{pauses} errors in {elapsed}s; log of b:\n{}",
        b.log()
    );
    eprintln!(
        "2 nodes, one with another secret key: {} events delivered, each at its first \
         attempt; the other node paused {pauses} times",
        accepted.len()
    );
    drop((a, b));
    drop(schema);
}

fn main() -> std::process::ExitCode {
    let need = redrive_testkit::postgres();
    // The harness starts the trials in this order, as many at a time as
    // there are cores: the one that waits out a node's 30 s pause goes
    // first, so the others run beside it rather than after it.
    redrive_testkit::run(vec![
        trial(
            "a_node_with_another_secret_key_leaves_every_delivery_to_the_others",
            &need,
            Runtime::MultiThread(2),
            a_node_with_another_secret_key_leaves_every_delivery_to_the_others,
        ),
        trial(
            "three_nodes_lose_nothing_when_one_is_killed_and_one_restarted",
            &need,
            Runtime::MultiThread(2),
            three_nodes_lose_nothing_when_one_is_killed_and_one_restarted,
        ),
        trial(
            "a_publish_on_one_node_is_pushed_by_another_without_polling_delay",
            &need,
            Runtime::MultiThread(2),
            a_publish_on_one_node_is_pushed_by_another_without_polling_delay,
        ),
        trial(
            "a_rate_limit_holds_for_two_nodes_together",
            &need,
            Runtime::MultiThread(2),
            a_rate_limit_holds_for_two_nodes_together,
        ),
    ])
}

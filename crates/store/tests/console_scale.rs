//! The console's reads on a subscription with 100,000 deliveries: every
//! page, filter, count and chart query stays an index range, so each one
//! is fast at any depth. Prints what it measured.

use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use redrive_core::{Attempt, Decision, DeliveryState, FailureReason};
use redrive_store::conformance::{event, spec, t0};
use redrive_store::{
    ClaimRequest, ClaimWant, Completion, DeliverySearch, OutcomeBucketsQuery, SqliteStore, Store,
};

const DELIVERIES: usize = 100_000;
const BATCH: usize = 1000;
/// Generous for a debug build on a busy machine; a page that scans the
/// backlog takes far longer than this.
const SLOWEST_PAGE: Duration = Duration::from_millis(250);
/// Counts and buckets read every delivery of their window from a covering
/// index: linear in the window, never in the whole table.
const SLOWEST_AGGREGATE: Duration = Duration::from_secs(1);

fn at(seconds: i64) -> Timestamp {
    t0() + SignedDuration::from_secs(seconds)
}

/// One event per second from t0, types `type-0`..`type-9` round robin;
/// `rare` every 10,000th. Every delivery attempted once at the end: 1 in 5
/// fails for good (500), the others are delivered (200).
async fn seed(store: &SqliteStore) {
    store.create_topic("orders", t0()).await.unwrap();
    store
        .create_subscription(spec("s1", "orders"), t0())
        .await
        .unwrap();
    for batch in 0..DELIVERIES / BATCH {
        let events = (0..BATCH)
            .map(|i| {
                let n = batch * BATCH + i;
                let ty = if n.is_multiple_of(10_000) {
                    "rare".to_owned()
                } else {
                    format!("type-{}", n % 10)
                };
                event(&format!("e{n}"), &ty)
            })
            .collect();
        let published = at((batch * BATCH) as i64);
        store.publish("orders", events, published).await.unwrap();
    }
    let end = at(DELIVERIES as i64 + 10);
    loop {
        let claimed = store
            .claim_due(ClaimRequest {
                now: end,
                lease: Duration::from_secs(60),
                limit_total: u32::MAX,
                wants: vec![ClaimWant {
                    subscription: "s1".into(),
                    limit: 5000,
                    rate: None,
                }],
            })
            .await
            .unwrap()
            .claimed;
        if claimed.is_empty() {
            break;
        }
        let completions = claimed
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let (status, decision) = if i.is_multiple_of(5) {
                    (
                        500,
                        Decision::Failed {
                            reason: FailureReason::RetriesExhausted,
                        },
                    )
                } else {
                    (200, Decision::Delivered)
                };
                Completion {
                    delivery_id: c.delivery.id.clone(),
                    attempt: Attempt {
                        number: 1,
                        started_at: end,
                        duration_ms: 3,
                        status: Some(status),
                        error: None,
                        error_message: None,
                        response_snippet: None,
                        decision,
                    },
                }
            })
            .collect();
        store.complete_many(completions).await.unwrap();
    }
}

async fn timed<T>(what: &str, work: impl std::future::Future<Output = T>) -> T {
    timed_within(SLOWEST_PAGE, what, work).await
}

async fn timed_within<T>(
    bound: Duration,
    what: &str,
    work: impl std::future::Future<Output = T>,
) -> T {
    let started = Instant::now();
    let outcome = work.await;
    let took = started.elapsed();
    println!("{what}: {:.2} ms", took.as_secs_f64() * 1000.0);
    assert!(took < bound, "{what} took {took:?}");
    outcome
}

fn search(f: impl FnOnce(&mut DeliverySearch)) -> DeliverySearch {
    let mut search = DeliverySearch {
        subscription: "s1".into(),
        limit: 50,
        ..Default::default()
    };
    f(&mut search);
    search
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_queries_stay_fast_on_100k_deliveries() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = SqliteStore::open(dir.path(), t0()).expect("the store opens");
    let started = Instant::now();
    seed(&store).await;
    println!(
        "seeded {DELIVERIES} deliveries in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let first = timed("first page", store.search_deliveries(search(|_| {})))
        .await
        .unwrap();
    assert_eq!(first.deliveries.len(), 50);
    assert_eq!(first.deliveries[0].event_id, format!("e{}", DELIVERIES - 1));

    // Walk to the last page; time the deepest one.
    let mut cursor = first.next_cursor;
    let mut pages = 1;
    let walk = Instant::now();
    let mut last_cursor = None;
    while let Some(next) = cursor {
        last_cursor = Some(next.clone());
        let page = store
            .search_deliveries(search(|s| {
                s.limit = 1000;
                s.cursor = Some(next);
            }))
            .await
            .unwrap();
        pages += 1;
        cursor = page.next_cursor;
    }
    println!(
        "walked {pages} pages (1000 rows each after the first) in {:.1} ms",
        walk.elapsed().as_secs_f64() * 1000.0
    );
    let deepest = timed(
        "deepest page",
        store.search_deliveries(search(|s| s.cursor = last_cursor)),
    )
    .await
    .unwrap();
    assert!(!deepest.deliveries.is_empty());

    let failed = timed(
        "state=failed",
        store.search_deliveries(search(|s| s.state = Some(DeliveryState::Failed))),
    )
    .await
    .unwrap();
    assert_eq!(failed.deliveries.len(), 50);
    timed(
        "reason=retries_exhausted",
        store.search_deliveries(search(|s| s.reason = Some(FailureReason::RetriesExhausted))),
    )
    .await
    .unwrap();
    let status = timed(
        "status=500",
        store.search_deliveries(search(|s| s.status = Some(500))),
    )
    .await
    .unwrap();
    assert_eq!(status.deliveries.len(), 50);
    let window = timed(
        "one hour window in the middle",
        store.search_deliveries(search(|s| {
            s.since = Some(at(50_000));
            s.until = Some(at(53_600));
        })),
    )
    .await
    .unwrap();
    assert_eq!(window.deliveries.len(), 50);
    let common = timed(
        "type=type-3 (a tenth of all)",
        store.search_deliveries(search(|s| s.event_type = Some("type-3".into()))),
    )
    .await
    .unwrap();
    assert_eq!(common.deliveries.len(), 50);
    // A rare type walks the subscription's index until it fills the page:
    // the slowest filter, measured here to keep it honest.
    let started = Instant::now();
    let rare = store
        .search_deliveries(search(|s| s.event_type = Some("rare".into())))
        .await
        .unwrap();
    println!(
        "type=rare (10 of 100k, a full walk): {:.2} ms",
        started.elapsed().as_secs_f64() * 1000.0
    );
    assert_eq!(rare.deliveries.len(), 10);

    let counts = timed_within(
        SLOWEST_AGGREGATE,
        "counts by state, last 24h",
        store.count_deliveries_by_state("s1", at(DELIVERIES as i64 - 86_400)),
    )
    .await
    .unwrap();
    // Events were published a thousand at a time, at the batch's first second.
    assert_eq!(counts.total(), 86_000);
    let all = timed_within(
        SLOWEST_AGGREGATE,
        "counts by state, all 100k",
        store.count_deliveries_by_state("s1", t0()),
    )
    .await
    .unwrap();
    assert_eq!(all.failed, DELIVERIES as u64 / 5);
    let end = at(DELIVERIES as i64 + 10);
    let buckets = timed_within(
        SLOWEST_AGGREGATE,
        "24 hourly buckets",
        store.outcome_buckets(OutcomeBucketsQuery {
            subscription: "s1".into(),
            from: end - SignedDuration::from_hours(23),
            until: end + SignedDuration::from_hours(1),
            width: Duration::from_secs(3600),
        }),
    )
    .await
    .unwrap();
    let delivered: u64 = buckets.iter().map(|b| b.delivered).sum();
    assert_eq!(delivered, DELIVERIES as u64 * 4 / 5);
}

//! `redrive bench console`: how long the console's reads take on one
//! subscription with a large history (100,000 deliveries by default).
//!
//! A measurement, not a test: whether each console query is an index range
//! is asserted by the store's plan tests; this prints what those ranges cost
//! on this machine. It seeds the store directly (no HTTP): one event per
//! second, types `type-0`..`type-9` round robin and `rare` every 10,000th,
//! each delivery attempted once, one in five failing for good (500), the
//! others delivered (200). Then it times the first page, a walk to the last
//! page, the deepest page, each filter, the counts by state and a day of
//! hourly outcome buckets, and checks their answers against the seed.
//!
//! SQLite by default, in a temporary directory; with `--database-url`, on
//! PostgreSQL in a schema of its own, dropped at the end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use jiff::{SignedDuration, Timestamp};
use redrive_core::{Attempt, CloudEvent, Decision, DeliveryState, FailureReason, SubscriptionSpec};
use redrive_store::postgres::ScratchSchema;
use redrive_store::{
    ClaimRequest, ClaimWant, Completion, DeliverySearch, DeliverySearchPage, OutcomeBucketsQuery,
    PostgresStore, SqliteStore, Store,
};

#[derive(clap::Args, Debug)]
pub struct BenchConsoleArgs {
    /// Deliveries to seed (rounded up to a multiple of 1,000).
    #[arg(long, default_value_t = 100_000)]
    deliveries: u64,
    /// Measure on this PostgreSQL database (in a schema made for the run
    /// and dropped after it) instead of a temporary embedded store.
    #[arg(long)]
    database_url: Option<String>,
    /// Keep the PostgreSQL schema after the run, to explain its queries by
    /// hand (drop it with `DROP SCHEMA ... CASCADE` when done).
    #[arg(long, requires = "database_url")]
    keep_schema: bool,
}

/// Events per publish.
const BATCH: u64 = 1000;
const TOPIC: &str = "bench-console";
const SUBSCRIPTION: &str = "bench-console-sub";

pub async fn run(args: BenchConsoleArgs) -> anyhow::Result<()> {
    let temp = tempfile::Builder::new()
        .prefix("redrive-bench-console-")
        .tempdir()
        .context("cannot create a temporary data directory")?;
    let batches = args.deliveries.div_ceil(BATCH).max(1);
    let total = batches * BATCH;
    // Publish times end an hour ago: every delivery is due when claimed.
    let base = Timestamp::now() - SignedDuration::from_secs(seconds(total) + 3600);
    let mut schema = None;
    let (store, backend): (Arc<dyn Store>, String) = match &args.database_url {
        Some(url) => {
            let made = ScratchSchema::create(url, "redrive_bench")
                .await
                .map_err(|err| anyhow::anyhow!("cannot make a schema for the run: {err}"))?;
            let store = PostgresStore::connect(&made.url, Timestamp::now())
                .await
                .context("cannot open the PostgreSQL store")?;
            let backend = format!("PostgreSQL, schema {}", made.name);
            schema = Some(made);
            (Arc::new(store), backend)
        }
        None => {
            let store = SqliteStore::open(temp.path(), Timestamp::now())
                .context("cannot open the store")?;
            (Arc::new(store), "SQLite".to_owned())
        }
    };
    let started = Instant::now();
    seed(&*store, base, batches).await?;
    println!(
        "seeded {total} deliveries on {backend} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let measured = measure(&*store, base, total).await;
    drop(store);
    if let Some(kept) = schema.take_if(|_| args.keep_schema) {
        println!("kept schema {}", kept.name);
        // The guard drops the schema: forgetting it keeps it.
        std::mem::forget(kept);
    }
    // The schema goes only once the store's connections are closed.
    drop(schema);
    drop(temp);
    measured
}

fn seconds(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn at(base: Timestamp, second: u64) -> Timestamp {
    base + SignedDuration::from_secs(seconds(second))
}

async fn seed(store: &dyn Store, base: Timestamp, batches: u64) -> anyhow::Result<()> {
    store.create_topic(TOPIC, base).await?;
    let spec = SubscriptionSpec::new(SUBSCRIPTION, TOPIC, "http://127.0.0.1:9/hook");
    store.create_subscription(spec, base).await?;
    for batch in 0..batches {
        let events = (0..BATCH).map(|i| event(batch * BATCH + i)).collect();
        store
            .publish(TOPIC, events, at(base, batch * BATCH))
            .await
            .with_context(|| format!("cannot publish batch {batch}"))?;
    }
    let end = at(base, batches * BATCH + 10);
    loop {
        let claimed = store
            .claim_due(ClaimRequest {
                now: end,
                lease: Duration::from_secs(600),
                limit_total: u32::MAX,
                wants: vec![ClaimWant {
                    subscription: SUBSCRIPTION.into(),
                    limit: 5000,
                    rate: None,
                    lookahead: std::time::Duration::ZERO,
                }],
            })
            .await
            .context("cannot claim the seeded deliveries")?
            .claimed;
        if claimed.is_empty() {
            return Ok(());
        }
        let completions = claimed
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let (status, decision) = if i.is_multiple_of(5) {
                    let reason = FailureReason::RetriesExhausted;
                    (500, Decision::Failed { reason })
                } else {
                    (200, Decision::Delivered)
                };
                Completion {
                    delivery_id: c.delivery.id.clone(),
                    subscription: c.delivery.subscription.clone(),
                    attempt: Attempt {
                        number: 1,
                        kind: redrive_core::AttemptKind::Push,
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
        store
            .complete_many(completions)
            .await
            .context("cannot complete the seeded deliveries")?;
    }
}

fn event(n: u64) -> CloudEvent {
    let ty = if n.is_multiple_of(10_000) {
        "rare".to_owned()
    } else {
        format!("type-{}", n % 10)
    };
    CloudEvent {
        id: format!("e{n}"),
        source: "/bench-console".into(),
        ty,
        specversion: "1.0".into(),
        subject: None,
        time: None,
        datacontenttype: Some("application/json".into()),
        dataschema: None,
        extensions: Default::default(),
        data: Some(format!(r#"{{"n":{n}}}"#).into_bytes()),
    }
}

fn search(f: impl FnOnce(&mut DeliverySearch)) -> DeliverySearch {
    let mut search = DeliverySearch {
        subscription: SUBSCRIPTION.into(),
        limit: 50,
        ..Default::default()
    };
    f(&mut search);
    search
}

/// Runs `work` and prints how long it took.
async fn timed<T>(
    what: &str,
    work: impl std::future::Future<Output = redrive_store::Result<T>>,
) -> anyhow::Result<T> {
    let started = Instant::now();
    let outcome = work.await.with_context(|| format!("{what} failed"))?;
    println!(
        "{what:<44} {:>9.2} ms",
        started.elapsed().as_secs_f64() * 1000.0
    );
    Ok(outcome)
}

async fn page(store: &dyn Store, what: &str, query: DeliverySearch) -> anyhow::Result<usize> {
    let found: DeliverySearchPage = timed(what, store.search_deliveries(query)).await?;
    Ok(found.deliveries.len())
}

async fn measure(store: &dyn Store, base: Timestamp, total: u64) -> anyhow::Result<()> {
    let first = timed("first page", store.search_deliveries(search(|_| {}))).await?;
    ensure!(
        first.deliveries.first().map(|d| d.event_id.clone()) == Some(format!("e{}", total - 1)),
        "the first page does not start with the newest delivery"
    );

    let mut cursor = first.next_cursor;
    let mut pages = 1;
    let mut seen = first.deliveries.len() as u64;
    let mut last_cursor = None;
    let walk = Instant::now();
    while let Some(next) = cursor {
        last_cursor = Some(next.clone());
        let found = store
            .search_deliveries(search(|s| {
                s.limit = 1000;
                s.cursor = Some(next);
            }))
            .await
            .context("walking the pages failed")?;
        pages += 1;
        seen += found.deliveries.len() as u64;
        cursor = found.next_cursor;
    }
    println!(
        "{:<44} {:>9.2} ms",
        format!("walk of {pages} pages (1,000 rows after the first)"),
        walk.elapsed().as_secs_f64() * 1000.0
    );
    ensure!(seen == total, "the walk saw {seen} of {total} deliveries");
    let deepest = page(store, "deepest page", search(|s| s.cursor = last_cursor)).await?;
    ensure!(deepest > 0, "the deepest page is empty");

    let failed = page(
        store,
        "state=failed",
        search(|s| s.state = Some(DeliveryState::Failed)),
    )
    .await?;
    ensure!(failed == 50, "state=failed found {failed}");
    page(
        store,
        "reason=retries_exhausted",
        search(|s| s.reason = Some(FailureReason::RetriesExhausted)),
    )
    .await?;
    let status = page(store, "status=500", search(|s| s.status = Some(500))).await?;
    ensure!(status == 50, "status=500 found {status}");
    let middle = total / 2;
    page(
        store,
        "one hour window in the middle",
        search(|s| {
            s.since = Some(at(base, middle));
            s.until = Some(at(base, middle + 3600));
        }),
    )
    .await?;
    page(
        store,
        "type=type-3 (a tenth of all)",
        search(|s| s.event_type = Some("type-3".into())),
    )
    .await?;
    // A rare type walks the subscription's list until it fills the page or
    // runs out: the slowest filter.
    let rare = page(
        store,
        "type=rare (1 in 10,000: a full walk)",
        search(|s| s.event_type = Some("rare".into())),
    )
    .await?;
    ensure!(
        rare as u64 == total.div_ceil(10_000).min(50),
        "type=rare found {rare}"
    );

    let day = timed(
        "counts by state, last 24h",
        store.count_deliveries_by_state(SUBSCRIPTION, at(base, total.saturating_sub(86_400))),
    )
    .await?;
    println!("{:<44} {:>9}", "  deliveries in the last 24h", day.total());
    let all = timed(
        "counts by state, all",
        store.count_deliveries_by_state(SUBSCRIPTION, base),
    )
    .await?;
    ensure!(all.total() == total, "counted {} of {total}", all.total());
    let end = at(base, total + 10);
    let buckets = timed(
        "24 hourly outcome buckets",
        store.outcome_buckets(OutcomeBucketsQuery {
            subscription: SUBSCRIPTION.into(),
            from: end - SignedDuration::from_hours(23),
            until: end + SignedDuration::from_hours(1),
            width: Duration::from_secs(3600),
        }),
    )
    .await?;
    let ended: u64 = buckets.iter().map(|b| b.delivered + b.failed).sum();
    ensure!(
        ended == total,
        "the buckets hold {ended} of {total} deliveries"
    );
    Ok(())
}

//! `redrive bench purge`: shows that storage stays bounded under steady
//! traffic once the history retention passes.
//!
//! It drives the embedded store directly (no HTTP, so that a million events
//! fit in minutes): each round publishes a batch of events, claims and
//! completes every delivery as delivered, moves a simulated clock forward
//! and runs the same incremental sweep as the server. The history window is
//! a fixed number of rounds, so after the first window every round purges
//! about as much as it adds. It prints the database size as it goes and,
//! at the end, how much the file grew after the first window had passed.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use redrive_core::{Attempt, CloudEvent, Decision, SubscriptionSpec};
use redrive_server::clock::Clock;
use redrive_server::sweeper::{self, SweeperConfig};
use redrive_store::{ClaimRequest, ClaimWant, Completion, SqliteStore, Store};

#[derive(clap::Args, Debug)]
pub struct BenchPurgeArgs {
    /// Events to publish and deliver in all.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Events per round (one publish, one claim, one completion batch).
    #[arg(long, default_value_t = 5_000)]
    batch: u64,
    /// Rounds that fit in the history window: the history kept is about
    /// `batch × window_rounds` events.
    #[arg(long, default_value_t = 20)]
    window_rounds: u64,
    /// Bytes of padding in each event's data.
    #[arg(long, default_value_t = 64)]
    payload_bytes: usize,
    /// Data directory to use (default: a fresh temporary one).
    #[arg(long)]
    data: Option<std::path::PathBuf>,
}

/// Simulated time per round; the history retention is `window_rounds` of it.
const ROUND: Duration = Duration::from_secs(60);

pub async fn run(args: BenchPurgeArgs) -> anyhow::Result<()> {
    let temp = tempfile::Builder::new()
        .prefix("redrive-bench-purge-")
        .tempdir()
        .context("cannot create a temporary data directory")?;
    let dir = args
        .data
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    let clock = Clock::default();
    let store = SqliteStore::open(&dir, clock.now()).context("cannot open the store")?;
    let db_path = store.database_path().to_path_buf();
    let store: Arc<dyn Store> = Arc::new(store);
    let config = SweeperConfig {
        history_retention: ROUND * u32::try_from(args.window_rounds).unwrap_or(u32::MAX),
        clock: clock.clone(),
        ..SweeperConfig::default()
    };
    store.create_topic("bench", clock.now()).await?;
    let spec = SubscriptionSpec::new("bench-sub", "bench", "http://127.0.0.1:9/hook");
    store.create_subscription(spec, clock.now()).await?;

    let batch = args.batch.max(1);
    let rounds = args.events.div_ceil(batch);
    let padding = "x".repeat(args.payload_bytes);
    let report_every = (rounds / 20).max(1);
    println!(
        "{} events in {rounds} rounds of {batch}; history window {} rounds (~{} events)",
        rounds * batch,
        args.window_rounds,
        args.window_rounds * batch
    );
    println!(
        "{:>10} {:>12} {:>12} {:>10}",
        "delivered", "db bytes", "wal bytes", "events/s"
    );
    let started = Instant::now();
    let mut events_cursor = 0;
    let mut delivered = 0u64;
    let mut size_after_window: Option<u64> = None;
    let mut largest_after_window = 0u64;
    for round in 0..rounds {
        let events: Vec<CloudEvent> = (0..batch)
            .map(|i| bench_event(round * batch + i, &padding))
            .collect();
        store.publish("bench", events, clock.now()).await?;
        loop {
            let claimed = store
                .claim_due(ClaimRequest {
                    now: clock.now(),
                    lease: Duration::from_secs(60),
                    limit_total: u32::MAX,
                    wants: vec![ClaimWant {
                        subscription: "bench-sub".into(),
                        limit: 1000,
                        rate: None,
                        lookahead: std::time::Duration::ZERO,
                    }],
                })
                .await?
                .claimed;
            if claimed.is_empty() {
                break;
            }
            let now = clock.now();
            let completions = claimed
                .iter()
                .map(|c| Completion {
                    delivery_id: c.delivery.id.clone(),
                    subscription: c.delivery.subscription.clone(),
                    attempt: Attempt {
                        number: c.delivery.attempts,
                        kind: redrive_core::AttemptKind::Push,
                        started_at: now,
                        duration_ms: 1,
                        status: Some(200),
                        error: None,
                        error_message: None,
                        response_snippet: None,
                        decision: Decision::Delivered,
                    },
                })
                .collect::<Vec<_>>();
            delivered += completions.len() as u64;
            store.complete_many(completions).await?;
        }
        clock.advance(ROUND);
        sweeper::sweep(&*store, &config, &Default::default(), &mut events_cursor).await;

        let (db, wal) = sizes(&db_path);
        // The first window ends once `window_rounds` rounds have aged out.
        if round + 1 >= 2 * args.window_rounds {
            size_after_window.get_or_insert(db);
            largest_after_window = largest_after_window.max(db);
        }
        if (round + 1) % report_every == 0 || round + 1 == rounds {
            let rate = delivered as f64 / started.elapsed().as_secs_f64();
            println!("{delivered:>10} {db:>12} {wal:>12} {rate:>10.0}");
        }
    }
    let (db, wal) = sizes(&db_path);
    println!();
    println!("delivered            {delivered}");
    println!(
        "elapsed              {:.1}s",
        started.elapsed().as_secs_f64()
    );
    println!("final database       {db} bytes (+ {wal} bytes of WAL)");
    match size_after_window {
        Some(first) => {
            let growth = largest_after_window.saturating_sub(first);
            println!("after the window     {first} bytes");
            println!(
                "growth since then    {growth} bytes ({:.1}%)",
                growth as f64 * 100.0 / first.max(1) as f64
            );
        }
        None => {
            println!("the history window never passed: raise --events or lower --window-rounds")
        }
    }
    drop(store);
    drop(temp);
    Ok(())
}

fn bench_event(n: u64, padding: &str) -> CloudEvent {
    CloudEvent {
        id: format!("bench-{n}"),
        source: "/bench".into(),
        ty: "bench.event".into(),
        specversion: "1.0".into(),
        subject: None,
        time: None,
        datacontenttype: Some("application/json".into()),
        dataschema: None,
        extensions: Default::default(),
        data: Some(format!(r#"{{"n":{n},"pad":"{padding}"}}"#).into_bytes()),
    }
}

/// Sizes of the database file and its write-ahead log.
fn sizes(db: &Path) -> (u64, u64) {
    let len = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    (len(db), len(Path::new(&wal)))
}

//! `redrive bench retries`: a million deliveries waiting to retry. The
//! server's memory with all of them waiting, its publish rate then against
//! an empty store, and, when they fall due, how fast and how late the
//! retries start.
//!
//! A run, on a fresh `redrive serve` child process:
//!
//! 1. the raw loopback figure: the probe's publishers posting straight to
//!    a receiver that answers 200;
//! 2. the probe on the empty store: single events to a topic of their own
//!    (the delivery bench's server phase);
//! 3. the events, in batches, to a subscription with a fixed retry
//!    interval whose endpoint answers each first attempt 503, until every
//!    first attempt has failed; the server's RSS then;
//! 4. the probe again, with every retry waiting;
//! 5. the retries as they fall due, until each has arrived.

mod options;
mod report;
mod results;
mod sink;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use redrive_core::HumanDuration;
use serde_json::json;

pub use options::BenchRetriesArgs;
use options::Settings;

use super::delivery::generator::{self, Generator};
use super::delivery::process_stats::ProcessSample;
use super::delivery::results::ServerResults;
use super::delivery::server::ServerUnderTest;
use super::delivery::setup::BenchTopic;
use super::delivery::sink::{Sink, SinkServer};
use super::delivery::{progress, publish_and_wait, raw_phase};
use report::Report;
use results::{Loading, Moments, Run, Samples, Wave};
use sink::RetrySink;

/// How often the long phases say where they are.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// And while nothing happens but waiting for the first retry.
const WAITING_PROGRESS_EVERY: Duration = Duration::from_secs(10);
/// After the last first attempt was answered, the time the server gets to
/// record the outcomes still on their way before its RSS is read.
const SETTLE: Duration = Duration::from_secs(1);

pub async fn run(args: BenchRetriesArgs) -> anyhow::Result<()> {
    let settings = Settings::resolve(args)?;
    redrive_server::dispatcher::push::install_crypto_provider();
    // On Ctrl-C the runs are dropped, and with them the server they
    // started (killed) and its data directory.
    let runs = tokio::select! {
        runs = run_all(&settings) => runs?,
        _ = tokio::signal::ctrl_c() => bail!("interrupted"),
    };
    let report = Report {
        settings: &settings,
        runs,
    };
    if settings.json {
        println!("{}", serde_json::to_string_pretty(&report.to_json())?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

async fn run_all(settings: &Settings) -> anyhow::Result<Vec<Run>> {
    let mut runs = Vec::with_capacity(settings.runs);
    for index in 0..settings.runs {
        let run = run_once(settings, index)
            .await
            .with_context(|| format!("run {} of {}", index + 1, settings.runs))?;
        progress(format_args!(
            "bench: run {}/{}: {} retried, {:.0} attempts/s, lateness p99 {:.1} ms, max {:.1} ms, \
             {} more than 1 s late, {} missing",
            index + 1,
            settings.runs,
            run.wave.retried,
            run.wave.attempts_per_second,
            run.wave.lateness.p99_ms,
            run.wave.lateness.max_ms,
            run.wave.late,
            run.wave.missing
        ));
        runs.push(run);
    }
    Ok(runs)
}

/// The receivers of one run: the retried subscription's endpoint and one
/// answering 200 for each probe.
struct Receivers {
    retry: Arc<RetrySink>,
    retry_server: SinkServer,
    empty: Arc<Sink>,
    empty_server: SinkServer,
    waiting: Arc<Sink>,
    waiting_server: SinkServer,
}

impl Receivers {
    async fn start(settings: &Settings) -> anyhow::Result<Receivers> {
        let retry = Arc::new(RetrySink::new(settings.events, settings.retry_interval));
        let empty = Arc::new(Sink::new(settings.probe_events));
        let waiting = Arc::new(Sink::new(settings.probe_events));
        Ok(Receivers {
            retry_server: sink::serve(retry.clone()).await?,
            empty_server: SinkServer::start(empty.clone()).await?,
            waiting_server: SinkServer::start(waiting.clone()).await?,
            retry,
            empty,
            waiting,
        })
    }

    async fn stop(self) {
        self.retry_server.stop().await;
        self.empty_server.stop().await;
        self.waiting_server.stop().await;
    }
}

async fn run_once(settings: &Settings, index: usize) -> anyhow::Result<Run> {
    let run_id = uuid::Uuid::now_v7().simple().to_string();
    let token: String = redrive_server::security::random_bytes::<16>()?
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let receivers = Receivers::start(settings).await?;
    let outcome = async {
        let address = receivers.empty_server.address;
        progress(format_args!(
            "bench: run {}/{}: raw phase, straight to the receiver http://{address}",
            index + 1,
            settings.runs
        ));
        let raw = raw_phase(&settings.probe(), Some(&token), address, &run_id).await?;
        // The server takes its --max-in-flight and store from these.
        let server = ServerUnderTest::start(&settings.load(), token.clone()).await?;
        progress(format_args!(
            "bench: run {}/{}: server {} ({})",
            index + 1,
            settings.runs,
            server.bases.join(", "),
            server.describe()
        ));
        let measured = phases(settings, &server, &run_id, &receivers, raw).await;
        server.stop().await;
        measured
    }
    .await;
    receivers.stop().await;
    outcome
}

/// The server's one node, sampled.
fn sample(server: &ServerUnderTest) -> anyhow::Result<ProcessSample> {
    server
        .sample()?
        .into_iter()
        .next()
        .context("the bench has no server")
}

async fn phases(
    settings: &Settings,
    server: &ServerUnderTest,
    run_id: &str,
    receivers: &Receivers,
    raw: super::delivery::results::RawResults,
) -> anyhow::Result<Run> {
    let base = server.bases.first().context("the bench has no server")?;
    let token = server.token.as_deref();

    progress(format_args!(
        "bench: publish probe on the empty store ({} single events)",
        settings.probe_events
    ));
    let probe_empty = probe(
        settings,
        server,
        &format!("{run_id}-empty"),
        run_id,
        &receivers.empty,
        receivers.empty_server.address,
    )
    .await?;
    let empty = sample(server);

    let retry_sink = &receivers.retry;
    let retried = BenchTopic::create_with(
        base,
        token,
        &format!("bench-{run_id}-retries"),
        json!({
            "endpoint": format!("http://{}/push", receivers.retry_server.address),
            "max_concurrency": settings.endpoint_concurrency,
            "retry_policy": {
                "backoff": {
                    "kind": "fixed",
                    "interval": HumanDuration(settings.retry_interval).to_string(),
                },
            },
        }),
    )
    .await?;
    let load_start = sample(server);
    let loaded = load(settings, server, &retried.topic, run_id, retry_sink).await?;
    tokio::time::sleep(SETTLE).await;
    let waiting = sample(server);
    let early = retry_sink.retried_count.load(Ordering::Relaxed);
    if early > 0 {
        progress(format_args!(
            "bench: {early} retries arrived before every first attempt had failed: the interval \
             is shorter than loading takes here, and those retries queued behind first attempts \
             (use a longer --retry-interval)"
        ));
    }
    if let Ok(waiting) = &waiting {
        progress(format_args!(
            "bench: {} retries waiting; server RSS {:.0} MB (peak {:.0} MB)",
            retry_sink.failed_count.load(Ordering::Relaxed),
            waiting.rss as f64 / (1024.0 * 1024.0),
            waiting.peak_rss as f64 / (1024.0 * 1024.0)
        ));
    }

    progress(format_args!(
        "bench: publish probe with the retries waiting ({} single events)",
        settings.probe_events
    ));
    let probe_waiting = probe(
        settings,
        server,
        &format!("{run_id}-waiting"),
        run_id,
        &receivers.waiting,
        receivers.waiting_server.address,
    )
    .await?;
    let probe_end = retry_sink.base().elapsed();
    let wave_start = sample(server);

    let wave_timed_out = wait_for_retries(settings, retry_sink).await;
    let end = sample(server);

    if settings.database_url.is_some() {
        retried.remove().await;
    }
    let record = retry_sink.record();
    let accepted: Vec<(usize, usize)> = loaded
        .logs
        .iter()
        .flat_map(|log| log.accepted.iter())
        .map(|&(first, count, _)| (first, count))
        .collect();
    let wave = Wave::compute(
        &record,
        &accepted,
        settings.retry_interval,
        Moments {
            all_failed: loaded.all_failed,
            probe_end,
        },
        wave_timed_out,
    );
    let loading = Loading::compute(&loaded.logs, &record, loaded.timed_out);
    let pushes = retry_sink.pushes.load(Ordering::Relaxed);
    Ok(Run {
        raw,
        probe_empty,
        probe_waiting,
        loading,
        wave,
        samples: Samples {
            empty,
            load_start,
            waiting,
            wave_start,
            end,
        },
        pushes,
        duplicates: retry_sink.duplicates.load(Ordering::Relaxed),
        foreign: retry_sink.foreign.load(Ordering::Relaxed),
    })
}

/// The publish probe: single events to a topic of their own whose
/// subscription pushes to `sink` (answering 200), until all are delivered.
async fn probe(
    settings: &Settings,
    server: &ServerUnderTest,
    name: &str,
    run_id: &str,
    sink: &Arc<Sink>,
    sink_address: SocketAddr,
) -> anyhow::Result<ServerResults> {
    let base = server.bases.first().context("the bench has no server")?;
    let topic = BenchTopic::create(
        base,
        server.token.as_deref(),
        name,
        sink_address,
        settings.endpoint_concurrency,
    )
    .await?;
    let measured = publish_and_wait(&settings.probe(), server, &topic.topic, run_id, sink).await;
    if settings.database_url.is_some() {
        topic.remove().await;
    }
    measured
}

/// What publishing the events that wait left.
struct Loaded {
    logs: Vec<generator::PublisherLog>,
    /// The timeout came before every first attempt had failed.
    timed_out: bool,
    /// When the bench stopped waiting for first attempts, since the
    /// endpoint's base.
    all_failed: Duration,
}

/// Publishes the events that will wait and waits until the endpoint has
/// answered every accepted one's first attempt (or the timeout).
async fn load(
    settings: &Settings,
    server: &ServerUnderTest,
    topic: &str,
    run_id: &str,
    sink: &RetrySink,
) -> anyhow::Result<Loaded> {
    let load = settings.load();
    let base = server.bases.first().context("the bench has no server")?;
    let client = generator::client(&load, server.token.as_deref())?;
    let url = format!("{base}/v1/topics/{topic}/events");
    progress(format_args!(
        "bench: publishing {} events in batches of {} to a subscription retrying after {}",
        load.events,
        load.batch,
        HumanDuration(settings.retry_interval)
    ));
    let mut generator = Generator::start(&load, client, vec![url], run_id);
    let start = generator.started();
    let deadline = generator.deadline();
    let mut publishing_done = false;
    let mut last_report = Instant::now();
    let timed_out = loop {
        let done = generator.poll_done()?;
        let now = Instant::now();
        let accepted = generator.accepted_events();
        let failed = sink.failed_count.load(Ordering::Relaxed);
        if done && !publishing_done {
            publishing_done = true;
            progress(format_args!(
                "bench: published {accepted} events in {:.1}s; waiting for their first attempts",
                now.duration_since(start).as_secs_f64()
            ));
        }
        if publishing_done && failed >= accepted {
            break false;
        }
        if now >= deadline {
            break true;
        }
        if now.duration_since(last_report) >= PROGRESS_EVERY {
            last_report = now;
            progress(format_args!(
                "bench: {:>6.1}s  published {accepted}/{}  first attempts failed {failed}",
                now.duration_since(start).as_secs_f64(),
                load.events
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let all_failed = sink.base().elapsed();
    let logs = if timed_out {
        progress(format_args!(
            "bench: gave up after {} waiting for the first attempts; reporting what arrived",
            HumanDuration(settings.timeout)
        ));
        generator.abort().await
    } else {
        progress(format_args!(
            "bench: every first attempt failed {:.1}s after the first publish",
            start.elapsed().as_secs_f64()
        ));
        generator.join().await?
    };
    Ok(Loaded {
        logs,
        timed_out,
        all_failed,
    })
}

/// Waits until every event whose first attempt failed has been retried, or
/// the timeout past the last one's due time; true if it gave up.
async fn wait_for_retries(settings: &Settings, sink: &RetrySink) -> bool {
    let record = sink.record();
    let (first_failed, last_failed) = record.iter().filter_map(|times| times.failed).fold(
        (None, None),
        |(low, high): (Option<Duration>, _), at| {
            (
                Some(low.map_or(at, |low| low.min(at))),
                Some(high.map_or(at, |high: Duration| high.max(at))),
            )
        },
    );
    let (Some(first_failed), Some(last_failed)) = (first_failed, last_failed) else {
        return false;
    };
    let base = sink.base();
    let first_due = base + first_failed + settings.retry_interval;
    let deadline = base + last_failed + settings.retry_interval + settings.timeout;
    let expected = sink.failed_count.load(Ordering::Relaxed);
    let now = Instant::now();
    if first_due > now {
        progress(format_args!(
            "bench: the first retries fall due in {:.1}s, the last in {:.1}s",
            (first_due - now).as_secs_f64(),
            (base + last_failed + settings.retry_interval)
                .saturating_duration_since(now)
                .as_secs_f64()
        ));
    }
    let mut last_report = Instant::now();
    let mut last_count = sink.retried_count.load(Ordering::Relaxed);
    loop {
        let retried = sink.retried_count.load(Ordering::Relaxed);
        if retried >= expected {
            return false;
        }
        let now = Instant::now();
        if now >= deadline {
            progress(format_args!(
                "bench: gave up {} after the last retry was due; reporting what arrived",
                HumanDuration(settings.timeout)
            ));
            return true;
        }
        let since = now.duration_since(last_report);
        if now < first_due {
            if since >= WAITING_PROGRESS_EVERY {
                progress(format_args!(
                    "bench: the first retries fall due in {:.0}s",
                    (first_due - now).as_secs_f64()
                ));
                last_report = now;
            }
        } else if since >= PROGRESS_EVERY {
            progress(format_args!(
                "bench: retries arrived {retried}/{expected} ({:.0}/s), {} more than 1 s late, \
                 at most {:.1} ms after due",
                retried.saturating_sub(last_count) as f64 / since.as_secs_f64(),
                sink.late_count.load(Ordering::Relaxed),
                sink.max_lateness_us.load(Ordering::Relaxed) as f64 / 1e3
            ));
            last_report = now;
            last_count = retried;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

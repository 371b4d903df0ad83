//! `redrive bench retries`: a million deliveries waiting to retry. The
//! server's memory with all of them waiting, its publish rate then against
//! an empty store, and, when they fall due, how fast and how late the
//! retries start.
//!
//! A run, on a fresh `redrive serve` child process:
//!
//! 1. the raw loopback figure: the probe's publishers posting straight to
//!    a receiver that answers 200;
//! 2. the publish probe (the delivery bench's server phase) once to warm
//!    the server up, then a few times on the empty store;
//! 3. the events, in batches, to a paused subscription with a fixed retry
//!    interval whose endpoint answers each first attempt 503; then the
//!    subscription is resumed with a rate, so the first attempts fail (and
//!    the retries fall due) at that pace, until every one has failed; the
//!    rate is removed, and the server's RSS read;
//! 4. the probes again, with every retry waiting;
//! 5. the server idle until the first retry is due, then the retries as
//!    they fall due, until each has arrived.

mod options;
mod probe;
mod report;
mod results;
mod sink;
mod waves;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, bail};

pub use options::BenchRetriesArgs;
use options::Settings;

use super::delivery::process_stats;
use super::delivery::results::RawResults;
use super::delivery::server::ServerUnderTest;
use super::delivery::sink::{Sink, SinkServer};
use super::delivery::{progress, raw_phase};
use report::Report;
use results::{Loading, Moments, Run, Samples, Wave};
use sink::RetrySink;
use waves::server_sample;

/// After the last first attempt was answered, the time the server gets to
/// record the outcomes still on their way (and write them out) before its
/// RSS is read and the probes run.
const SETTLE: Duration = Duration::from_secs(3);

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

async fn run_once(settings: &Settings, index: usize) -> anyhow::Result<Run> {
    let run_id = uuid::Uuid::now_v7().simple().to_string();
    let token: String = redrive_server::security::random_bytes::<16>()?
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let retry_sink = Arc::new(RetrySink::new(settings.events, settings.retry_interval));
    let retry_server = sink::serve(retry_sink.clone()).await?;
    let raw_sink = SinkServer::start(Arc::new(Sink::new(settings.probe_events))).await?;
    let outcome = async {
        let address = raw_sink.address;
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
        let endpoint = format!("http://{}/push", retry_server.address);
        let measured = phases(settings, &server, &run_id, &retry_sink, &endpoint, raw).await;
        server.stop().await;
        measured
    }
    .await;
    retry_server.stop().await;
    raw_sink.stop().await;
    outcome
}

async fn phases(
    settings: &Settings,
    server: &ServerUnderTest,
    run_id: &str,
    retry_sink: &RetrySink,
    endpoint: &str,
    raw: RawResults,
) -> anyhow::Result<Run> {
    progress(format_args!(
        "bench: publish probe to warm the server up ({} single events)",
        settings.probe_events
    ));
    let probe_warmup = probe::probe(settings, server, &format!("{run_id}-warmup"), run_id).await?;
    let probe_empty =
        probe::probes(settings, server, run_id, "empty", "on the empty store").await?;
    let empty = server_sample(server);

    let retried = waves::create_retried(settings, server, run_id, endpoint).await?;
    let load_start = server_sample(server);
    let loaded = waves::load(settings, server, &retried, run_id, retry_sink).await?;
    waves::unpace(settings, &retried).await?;
    tokio::time::sleep(SETTLE).await;
    let waiting = server_sample(server);
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

    let probe_waiting = probe::probes(
        settings,
        server,
        run_id,
        "waiting",
        "with the retries waiting",
    )
    .await?;
    let probe_end = retry_sink.base().elapsed();
    let idle_start = server_sample(server);

    let waited = waves::wait_for_retries(settings, server, retry_sink).await;
    let end = server_sample(server);
    let bench_end = process_stats::sample_self();

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
        waited.timed_out,
    );
    let loading = Loading::compute(&loaded.logs, &record, loaded.timed_out);
    Ok(Run {
        raw,
        probe_warmup,
        probe_empty,
        probe_waiting,
        loading,
        wave,
        samples: Samples {
            empty,
            load_start,
            waiting,
            idle_start,
            first_due: waited.server_at_first_due,
            end,
            idle: waited.idle,
            bench_first_due: waited.bench_at_first_due,
            bench_end,
        },
        pushes: retry_sink.pushes.load(Ordering::Relaxed),
        duplicates: retry_sink.duplicates.load(Ordering::Relaxed),
        foreign: retry_sink.foreign.load(Ordering::Relaxed),
    })
}

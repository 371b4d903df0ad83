//! `redrive bench delivery`: publish and delivery throughput and latency,
//! end to end, with the server's own CPU and memory and the raw loopback
//! figure of the same run beside them.
//!
//! Each run has two phases. The raw phase: the generator (concurrent
//! publishers, optionally paced) posts its requests straight to a sink on
//! 127.0.0.1, which answers 200 at once: the loopback limit of this machine
//! for these requests. The server phase: a fresh `redrive serve` child
//! process (or an external server), a topic with one subscription pushing
//! to the same sink, and the same generator publishing through the real
//! HTTP API; the bench waits until the sink has seen every accepted event.
//! The report gives each run and the medians of the runs.

// The retries bench (`super::retries`) runs its phases with these pieces.
pub(super) mod generator;
mod options;
pub(super) mod process_stats;
pub(super) mod report;
pub(super) mod results;
pub(super) mod server;
pub(super) mod setup;
pub(super) mod sink;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use redrive_core::HumanDuration;

pub use options::BenchArgs;
pub(super) use options::Settings;

use generator::Generator;
use report::{Report, Run};
use results::{RawResults, ServerResults, ServerUsage, SinkRecord};
use server::ServerUnderTest;
use setup::BenchTopic;
use sink::{RAW_PATH, Sink, SinkServer};

/// Prints a progress line on stderr (stdout carries only the results).
pub(super) fn progress(line: std::fmt::Arguments<'_>) {
    eprintln!("{line}");
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let BenchArgs { options, server } = args;
    let settings = Settings::resolve(options)?;
    redrive_server::dispatcher::push::install_crypto_provider();

    // On Ctrl-C the runs are dropped, and with them the servers they
    // started (killed) and their data directories.
    let runs = tokio::select! {
        runs = run_all(&settings, server.as_deref()) => runs?,
        _ = tokio::signal::ctrl_c() => bail!("interrupted"),
    };
    let report = Report {
        settings: &settings,
        server: match &server {
            Some(url) => format!("external server {url}"),
            None => "child-process server".to_owned(),
        },
        runs,
    };
    if settings.json {
        println!("{}", serde_json::to_string_pretty(&report.to_json())?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

async fn run_all(settings: &Settings, external: Option<&str>) -> anyhow::Result<Vec<Run>> {
    let mut runs = Vec::with_capacity(settings.runs);
    for index in 0..settings.runs {
        let run = run_once(settings, external, index)
            .await
            .with_context(|| format!("run {} of {}", index + 1, settings.runs))?;
        progress(format_args!(
            "bench: run {}/{}: raw {:.0} requests/s, published {:.0}/s, delivered {:.0}/s, \
             {} missing",
            index + 1,
            settings.runs,
            run.raw.requests_per_second,
            run.server.publish_rate,
            run.server.delivery_rate,
            run.server.missing
        ));
        runs.push(run);
    }
    Ok(runs)
}

/// One run: a fresh sink, the raw phase, then a fresh server and the
/// server phase.
async fn run_once(
    settings: &Settings,
    external: Option<&str>,
    index: usize,
) -> anyhow::Result<Run> {
    let run_id = uuid::Uuid::now_v7().simple().to_string();
    // The raw phase sends the same Authorization header the server gets.
    let token = match external {
        Some(_) => std::env::var("REDRIVE_TOKEN").ok(),
        None => Some(
            redrive_server::security::random_bytes::<16>()?
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
        ),
    };
    let sink = Arc::new(Sink::new(settings.events));
    let sink_server = SinkServer::start(sink.clone()).await?;
    let address = sink_server.address;
    let outcome = async {
        progress(format_args!(
            "bench: run {}/{}: raw phase, straight to the sink http://{address}",
            index + 1,
            settings.runs
        ));
        let raw = raw_phase(settings, token.as_deref(), address, &run_id).await?;
        // Pushes are single events: with batches, the loopback rate of
        // single-event requests is what deliveries are compared with.
        let raw_single = if settings.batch > 1 {
            let single = Settings {
                batch: 1,
                ..settings.clone()
            };
            Some(raw_phase(&single, token.as_deref(), address, &run_id).await?)
        } else {
            None
        };
        let server = match external {
            Some(url) => ServerUnderTest::external(url, token.clone()),
            None => ServerUnderTest::start(settings, token.clone().unwrap_or_default()).await?,
        };
        progress(format_args!(
            "bench: run {}/{}: server phase, {} ({})",
            index + 1,
            settings.runs,
            server.bases.join(", "),
            server.describe()
        ));
        let measured = server_phase(settings, &server, &run_id, &sink, address).await;
        server.stop().await;
        Ok(Run {
            raw,
            raw_single,
            server: measured?,
        })
    }
    .await;
    sink_server.stop().await;
    outcome
}

pub(super) async fn raw_phase(
    settings: &Settings,
    token: Option<&str>,
    sink: SocketAddr,
    run_id: &str,
) -> anyhow::Result<RawResults> {
    let client = generator::client(settings, token)?;
    let generator = Generator::start(
        settings,
        client,
        vec![format!("http://{sink}{RAW_PATH}")],
        run_id,
    );
    let logs = generator.join().await?;
    Ok(RawResults::compute(&logs))
}

async fn server_phase(
    settings: &Settings,
    server: &ServerUnderTest,
    run_id: &str,
    sink: &Arc<Sink>,
    sink_address: SocketAddr,
) -> anyhow::Result<ServerResults> {
    let base = server.bases.first().context("the bench has no server")?;
    let topic = BenchTopic::create(
        base,
        server.token.as_deref(),
        run_id,
        sink_address,
        settings.endpoint_concurrency,
    )
    .await?;
    if server.bases.len() > 1 {
        // The other nodes learn of the new subscription when they next
        // re-read subscriptions (every 5 s); until then only one delivers.
        progress(format_args!(
            "bench: waiting for every node to load the subscription"
        ));
        tokio::time::sleep(Duration::from_millis(5500)).await;
    }
    let database_before = match &settings.database_url {
        Some(url) => Some(
            redrive_store::postgres::database_activity(url)
                .await
                .context("cannot read PostgreSQL's activity counters")?,
        ),
        None => None,
    };
    let mut measured = publish_and_wait(settings, server, &topic.topic, run_id, sink).await;
    if let (Some(url), Some(before), Ok(results)) =
        (&settings.database_url, database_before, &mut measured)
    {
        // Backends publish their counters about once a second.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let after = redrive_store::postgres::database_activity(url)
            .await
            .context("cannot read PostgreSQL's activity counters")?;
        results.database = Some(after.since(&before));
    }
    if server.is_external() || settings.database_url.is_some() {
        topic.remove().await;
    }
    measured
}

/// Publishes every event through the server and waits until the sink has
/// seen each accepted one (or the timeout), sampling the server's and this
/// process's CPU just before the first publish and once the last delivery
/// has arrived.
pub(super) async fn publish_and_wait(
    settings: &Settings,
    server: &ServerUnderTest,
    topic: &str,
    run_id: &str,
    sink: &Arc<Sink>,
) -> anyhow::Result<ServerResults> {
    let client = generator::client(settings, server.token.as_deref())?;
    let urls = server
        .bases
        .iter()
        .map(|base| format!("{base}/v1/topics/{topic}/events"))
        .collect();
    let server_before = server.sample();
    let bench_before = process_stats::sample_self();
    let database_before = local_database_cpu(settings);
    let mut generator = Generator::start(settings, client, urls, run_id);
    let start = generator.started();
    let deadline = generator.deadline();
    let mut publishing_done = false;
    let mut last_report = Instant::now();
    let timed_out = loop {
        let done = generator.poll_done()?;
        let now = Instant::now();
        let accepted = generator.accepted_events();
        if done && !publishing_done {
            publishing_done = true;
            progress(format_args!(
                "bench: published {accepted} events in {:.2}s; waiting for deliveries",
                now.duration_since(start).as_secs_f64()
            ));
        }
        let delivered = sink.unique.load(Ordering::Relaxed);
        if publishing_done && delivered >= accepted {
            break false;
        }
        if now >= deadline {
            break true;
        }
        if now.duration_since(last_report) >= Duration::from_secs(1) {
            last_report = now;
            progress(format_args!(
                "bench: {:>5.1}s  published {accepted}/{}  delivered {delivered}",
                now.duration_since(start).as_secs_f64(),
                settings.events
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let server_after = server.sample();
    let bench_after = process_stats::sample_self();
    let database_after = local_database_cpu(settings);
    let logs = if timed_out {
        progress(format_args!(
            "bench: gave up after {}; reporting what arrived",
            HumanDuration(settings.timeout)
        ));
        generator.abort().await
    } else {
        generator.join().await?
    };
    let record = SinkRecord {
        first_delivery: sink.first_arrivals()?,
        pushes: sink.total.load(Ordering::Relaxed),
        foreign: sink.foreign.load(Ordering::Relaxed),
    };
    let mut results = ServerResults::compute(&logs, &record, timed_out);
    results.usage = ServerUsage::between(server_before, server_after);
    if let (Ok(before), Ok(after)) = (bench_before, bench_after) {
        results.bench_cpu = Some(after.cpu.saturating_sub(before.cpu));
    }
    if let (Some(Ok(before)), Some(Ok(after))) = (database_before, database_after) {
        results.database_cpu = Some(after.saturating_sub(before));
    }
    Ok(results)
}

/// PostgreSQL's CPU so far, when the bench's database runs on this machine:
/// the server's CPU leaves out the work it hands PostgreSQL.
fn local_database_cpu(settings: &Settings) -> Option<anyhow::Result<Duration>> {
    let url = settings.database_url.as_deref()?;
    is_on_this_machine(url).then(|| process_stats::cpu_of_processes_named("postgres"))
}

/// Whether a `postgres://` URL names this machine: a loopback address,
/// `localhost`, or a Unix socket (no host, or a socket directory).
fn is_on_this_machine(url: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(url) else {
        return false;
    };
    let socket_dir = url
        .query_pairs()
        .any(|(name, value)| name == "host" && value.starts_with('/'));
    let host = url.host_str().unwrap_or_default();
    let ip = host.trim_start_matches('[').trim_end_matches(']');
    socket_dir
        || host.is_empty()
        || host == "localhost"
        || host.starts_with("%2F")
        || ip
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::is_on_this_machine;

    #[test]
    fn a_database_is_measured_only_on_this_machine() {
        for url in [
            "postgres://postgres@127.0.0.1:5432/bench",
            "postgres://postgres@localhost/bench",
            "postgres://[::1]/bench",
            "postgres:///bench?host=/var/run/postgresql",
            "postgres://%2Fvar%2Frun%2Fpostgresql/bench",
        ] {
            assert!(is_on_this_machine(url), "{url}");
        }
        for url in [
            "postgres://redrive@db.internal:5432/redrive",
            "postgres://10.0.0.7/bench",
            "not a url",
        ] {
            assert!(!is_on_this_machine(url), "{url}");
        }
    }
}

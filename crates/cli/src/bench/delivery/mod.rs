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

mod generator;
mod process_stats;
mod report;
mod results;
mod server;
mod setup;
mod sink;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use redrive_core::HumanDuration;

use generator::Generator;
use report::{Report, Run};
use results::{RawResults, ServerResults, ServerUsage, SinkRecord};
use server::ServerUnderTest;
use setup::BenchTopic;
use sink::{RAW_PATH, Sink, SinkServer};

/// `redrive bench delivery`'s options. `--server` is the CLI's global flag: given on
/// the command line, the bench runs against that server; otherwise (its
/// default, and `REDRIVE_SERVER`, are ignored here) against servers it
/// starts as child processes.
#[derive(Debug)]
pub struct BenchArgs {
    options: BenchOptions,
    server: Option<String>,
}

#[derive(clap::Args, Debug)]
struct BenchOptions {
    /// A preset for one row of the performance targets; flags given beside
    /// it override its values. The postgres cases need --database-url.
    #[arg(long, value_enum)]
    case: Option<Case>,
    /// Events to publish in each phase of each run [default: 20000].
    #[arg(long)]
    events: Option<usize>,
    /// Concurrent publishers (connections); each has one publish request
    /// open at a time [default: 16].
    #[arg(long)]
    publishers: Option<usize>,
    /// Events per publish request; above 1 they go as a CloudEvents batch
    /// [default: 1].
    #[arg(long)]
    batch: Option<usize>,
    /// Total publish rate in events per second (paced, for latency); as
    /// fast as the publishers go when absent.
    #[arg(long)]
    rate: Option<f64>,
    /// Runs, each a raw phase and then a fresh server; the report gives
    /// each run and their medians.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// max_concurrency of the bench subscription.
    #[arg(long, default_value_t = 256)]
    endpoint_concurrency: u32,
    /// Pushes in flight at once in the servers the bench starts (their
    /// --max-in-flight); ignored with --server.
    #[arg(long, default_value_t = 512)]
    max_in_flight: usize,
    /// Bytes of padding in each event's JSON data.
    #[arg(long, default_value_t = 64)]
    payload_bytes: usize,
    /// How long each phase's publishing and delivery may take before the
    /// bench gives up and reports what is missing.
    #[arg(long, default_value = "120s")]
    timeout: HumanDuration,
    /// Run the servers on this PostgreSQL database instead of a temporary
    /// embedded store, and report its work per event.
    #[arg(long)]
    database_url: Option<String>,
    /// Servers sharing --database-url; publishes go to them in turn and
    /// each delivers.
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// Print the results as one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// The rows of the performance targets, one command each.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Case {
    /// SQLite, single events, 64 connections, unpaced (20,000 events).
    SqliteSingle,
    /// SQLite, 100-event batches, 8 connections, unpaced (50,000 events).
    SqliteBatch,
    /// SQLite, single events paced at 2,000/s, 64 connections (20,000 events).
    #[value(name = "sqlite-paced-2k")]
    SqlitePaced2k,
    /// SQLite, single events paced at 10,000/s, 64 connections (50,000 events).
    #[value(name = "sqlite-paced-10k")]
    SqlitePaced10k,
    /// PostgreSQL, single events, 64 connections, one node (20,000 events).
    PostgresSingle,
    /// PostgreSQL, 100-event batches, 8 connections, one node (50,000 events).
    PostgresBatch,
}

/// What a case sets.
struct Preset {
    events: usize,
    publishers: usize,
    batch: usize,
    rate: Option<f64>,
    postgres: bool,
}

impl Case {
    fn preset(self) -> Preset {
        let single = |events, rate, postgres| Preset {
            events,
            publishers: 64,
            batch: 1,
            rate,
            postgres,
        };
        let batches = |postgres| Preset {
            events: 50_000,
            publishers: 8,
            batch: 100,
            rate: None,
            postgres,
        };
        match self {
            Case::SqliteSingle => single(20_000, None, false),
            Case::SqliteBatch => batches(false),
            Case::SqlitePaced2k => single(20_000, Some(2_000.0), false),
            Case::SqlitePaced10k => single(50_000, Some(10_000.0), false),
            Case::PostgresSingle => single(20_000, None, true),
            Case::PostgresBatch => batches(true),
        }
    }

    pub fn name(self) -> String {
        clap::ValueEnum::to_possible_value(&self)
            .map(|value| value.get_name().to_owned())
            .unwrap_or_else(|| format!("{self:?}"))
    }
}

const SERVER_HELP: &str = "Each run posts the same requests straight to the sink first (the raw \
loopback figure), then starts `redrive serve` from this executable as a child process on a fresh \
temporary data directory (--publish-rate-limit unlimited) and reports its CPU per delivered \
event and peak RSS (from /proc, Linux only). With --server URL on the command line it benches \
that running server instead (REDRIVE_SERVER is not enough; its CPU and memory are not \
measured); the server must reach the sink, which listens on 127.0.0.1.";

impl clap::FromArgMatches for BenchArgs {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        Ok(BenchArgs {
            options: BenchOptions::from_arg_matches(matches)?,
            server: explicit_server(matches),
        })
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        self.options.update_from_arg_matches(matches)?;
        if let Some(server) = explicit_server(matches) {
            self.server = Some(server);
        }
        Ok(())
    }
}

impl clap::Args for BenchArgs {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        BenchOptions::augment_args(cmd).after_help(SERVER_HELP)
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        BenchOptions::augment_args_for_update(cmd).after_help(SERVER_HELP)
    }
}

/// The global `--server`, only when typed on the command line.
fn explicit_server(matches: &clap::ArgMatches) -> Option<String> {
    let typed = matches.try_contains_id("server").is_ok_and(|known| known)
        && matches.value_source("server") == Some(clap::parser::ValueSource::CommandLine);
    if !typed {
        return None;
    }
    matches
        .try_get_one::<String>("server")
        .ok()
        .flatten()
        .cloned()
}

/// The options with the case's values filled in and checked.
#[derive(Clone)]
pub struct Settings {
    case: Option<Case>,
    events: usize,
    publishers: usize,
    batch: usize,
    rate: Option<f64>,
    runs: usize,
    endpoint_concurrency: u32,
    max_in_flight: usize,
    payload_bytes: usize,
    timeout: Duration,
    database_url: Option<String>,
    nodes: usize,
    json: bool,
}

impl Settings {
    fn resolve(options: BenchOptions) -> anyhow::Result<Settings> {
        let preset = options.case.map(Case::preset);
        let settings = Settings {
            case: options.case,
            events: options
                .events
                .or(preset.as_ref().map(|p| p.events))
                .unwrap_or(20_000),
            publishers: options
                .publishers
                .or(preset.as_ref().map(|p| p.publishers))
                .unwrap_or(16),
            batch: options
                .batch
                .or(preset.as_ref().map(|p| p.batch))
                .unwrap_or(1),
            rate: options.rate.or(preset.as_ref().and_then(|p| p.rate)),
            runs: options.runs,
            endpoint_concurrency: options.endpoint_concurrency,
            max_in_flight: options.max_in_flight,
            payload_bytes: options.payload_bytes,
            timeout: options.timeout.as_duration(),
            database_url: options.database_url,
            nodes: options.nodes,
            json: options.json,
        };
        if let (Some(case), Some(preset)) = (options.case, &preset)
            && preset.postgres
            && settings.database_url.is_none()
        {
            bail!("--case {} needs --database-url", case.name());
        }
        settings.check()?;
        Ok(settings)
    }

    fn check(&self) -> anyhow::Result<()> {
        if self.events == 0 {
            bail!("--events must be at least 1");
        }
        if self.publishers == 0 {
            bail!("--publishers must be at least 1");
        }
        if self.batch == 0 {
            bail!("--batch must be at least 1");
        }
        if let Some(rate) = self.rate
            && !(rate.is_finite() && rate > 0.0)
        {
            bail!("--rate must be a positive number of events per second");
        }
        if self.runs == 0 {
            bail!("--runs must be at least 1");
        }
        if self.timeout.is_zero() {
            bail!("--timeout must be more than 0s");
        }
        if self.nodes == 0 {
            bail!("--nodes must be at least 1");
        }
        if self.nodes > 1 && self.database_url.is_none() {
            bail!("--nodes above 1 needs --database-url: nodes share a PostgreSQL database");
        }
        Ok(())
    }
}

/// Prints a progress line on stderr (stdout carries only the results).
fn progress(line: std::fmt::Arguments<'_>) {
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

async fn raw_phase(
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
async fn publish_and_wait(
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
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        options: BenchOptions,
    }

    fn resolve(args: &[&str]) -> anyhow::Result<Settings> {
        let cli = Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied()))?;
        Settings::resolve(cli.options)
    }

    #[test]
    fn a_case_sets_its_row_and_flags_beside_it_win() {
        let batch = resolve(&["--case", "sqlite-batch"]).unwrap();
        assert_eq!(
            (batch.events, batch.publishers, batch.batch),
            (50_000, 8, 100)
        );
        assert_eq!(batch.rate, None);
        let paced = resolve(&["--case", "sqlite-paced-10k", "--events", "500"]).unwrap();
        assert_eq!((paced.events, paced.publishers), (500, 64));
        assert_eq!(paced.rate, Some(10_000.0));
        let plain = resolve(&[]).unwrap();
        assert_eq!(
            (plain.events, plain.publishers, plain.batch),
            (20_000, 16, 1)
        );
        assert_eq!(plain.runs, 3);
    }

    #[test]
    fn postgres_cases_need_a_database() {
        let err = resolve(&["--case", "postgres-single"]).err().unwrap();
        assert!(err.to_string().contains("--database-url"), "{err}");
        let pg = resolve(&[
            "--case",
            "postgres-batch",
            "--database-url",
            "postgres://x/y",
        ])
        .unwrap();
        assert_eq!(pg.batch, 100);
        assert!(resolve(&["--runs", "0"]).is_err());
    }
}

//! `redrive bench delivery`'s command line: its flags, the `--case`
//! presets, and the settings they resolve to.

use std::time::Duration;

use anyhow::bail;
use redrive_core::HumanDuration;

/// `redrive bench delivery`'s options. `--server` is the CLI's global flag: given on
/// the command line, the bench runs against that server; otherwise (its
/// default, and `REDRIVE_SERVER`, are ignored here) against servers it
/// starts as child processes.
#[derive(Debug)]
pub struct BenchArgs {
    pub options: BenchOptions,
    pub server: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct BenchOptions {
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
    pub case: Option<Case>,
    pub events: usize,
    pub publishers: usize,
    pub batch: usize,
    pub rate: Option<f64>,
    pub runs: usize,
    pub endpoint_concurrency: u32,
    pub max_in_flight: usize,
    pub payload_bytes: usize,
    pub timeout: Duration,
    pub database_url: Option<String>,
    pub nodes: usize,
    pub json: bool,
}

impl Settings {
    pub fn resolve(options: BenchOptions) -> anyhow::Result<Settings> {
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

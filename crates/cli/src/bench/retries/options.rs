//! `redrive bench retries`'s command line and the settings it resolves to.

use std::time::Duration;

use anyhow::bail;
use redrive_core::HumanDuration;

use super::super::delivery;

#[derive(clap::Args, Debug)]
#[command(after_help = HELP)]
pub struct BenchRetriesArgs {
    /// Events published to the retried subscription; each one's first
    /// attempt fails and its retry waits.
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    /// The subscription's fixed retry interval. It must outlast failing
    /// every first attempt (100 s for a million at the default --due-rate)
    /// and the probe: otherwise the first retries fall due while first
    /// attempts still wait, queue behind them and start late, and never are
    /// all retries waiting at once (the report says so).
    #[arg(long, default_value = "300s")]
    retry_interval: HumanDuration,
    /// The pace, per second, at which the first attempts fail and so the
    /// retries fall due: a rate on the subscription while the first
    /// attempts run, removed before the first retry is due (the retries
    /// themselves are not paced). 0: as fast as the server fails them.
    #[arg(long, default_value_t = 10_000)]
    due_rate: u32,
    /// Concurrent publishers of the events.
    #[arg(long, default_value_t = 4)]
    publishers: usize,
    /// Events per publish request (a CloudEvents batch above 1).
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Single events the publish probe sends, once on the empty store and
    /// once with every retry waiting.
    #[arg(long, default_value_t = 20_000)]
    probe_events: usize,
    /// Concurrent publishers of the probe.
    #[arg(long, default_value_t = 64)]
    probe_publishers: usize,
    /// Probes in a row on the empty store and again with the retries
    /// waiting; the report compares their medians.
    #[arg(long, default_value_t = 3)]
    probe_runs: usize,
    /// Runs, each on a fresh server. One by default: a run of a million
    /// takes several minutes. With more, the report adds their medians.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// max_concurrency of the bench's subscriptions.
    #[arg(long, default_value_t = 256)]
    endpoint_concurrency: u32,
    /// Pushes in flight at once in the server (its --max-in-flight).
    #[arg(long, default_value_t = 512)]
    max_in_flight: usize,
    /// Bytes of padding in each event's JSON data.
    #[arg(long, default_value_t = 64)]
    payload_bytes: usize,
    /// How long each phase may run past what the schedule needs (publishing
    /// and failing every first attempt; the last retry's due time) before
    /// the bench gives up and reports what is missing.
    #[arg(long, default_value = "10m")]
    timeout: HumanDuration,
    /// Run the server on this PostgreSQL database instead of a temporary
    /// embedded store.
    #[arg(long)]
    database_url: Option<String>,
    /// Print the results as one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

const HELP: &str = "A run measures one row of the performance targets: a million deliveries \
waiting to retry. It starts `redrive serve` from this executable as a child process on a fresh \
temporary data directory (--publish-rate-limit unlimited) and a receiver on 127.0.0.1 that \
answers each event's first push 503 and later ones 200. First the raw loopback figure (the probe's \
publishers posting straight to the receiver) and the publish probe, once to warm the server up and \
--probe-runs times on the empty store. Then the events, published to a paused subscription with a fixed \
retry interval, which is resumed with a rate of --due-rate until every first attempt has failed; \
the server's RSS with every retry waiting; the probes again; and the retries as they fall due: \
attempts/s and each one's lateness (its arrival less the receiver's answer to the first attempt \
and the interval). CPU and RSS are read from /proc (Linux only).";

/// The options, checked.
#[derive(Clone, Debug)]
pub struct Settings {
    pub events: usize,
    pub retry_interval: Duration,
    /// Per second; None: unpaced.
    pub due_rate: Option<u32>,
    pub publishers: usize,
    pub batch: usize,
    pub probe_events: usize,
    pub probe_publishers: usize,
    pub probe_runs: usize,
    pub runs: usize,
    pub endpoint_concurrency: u32,
    pub max_in_flight: usize,
    pub payload_bytes: usize,
    pub timeout: Duration,
    pub database_url: Option<String>,
    pub json: bool,
}

impl Settings {
    pub fn resolve(args: BenchRetriesArgs) -> anyhow::Result<Settings> {
        let settings = Settings {
            events: args.events,
            retry_interval: args.retry_interval.as_duration(),
            due_rate: (args.due_rate > 0).then_some(args.due_rate),
            publishers: args.publishers,
            batch: args.batch,
            probe_events: args.probe_events,
            probe_publishers: args.probe_publishers,
            probe_runs: args.probe_runs,
            runs: args.runs,
            endpoint_concurrency: args.endpoint_concurrency,
            max_in_flight: args.max_in_flight,
            payload_bytes: args.payload_bytes,
            timeout: args.timeout.as_duration(),
            database_url: args.database_url,
            json: args.json,
        };
        for (value, flag) in [
            (settings.events, "--events"),
            (settings.publishers, "--publishers"),
            (settings.batch, "--batch"),
            (settings.probe_events, "--probe-events"),
            (settings.probe_publishers, "--probe-publishers"),
            (settings.probe_runs, "--probe-runs"),
            (settings.runs, "--runs"),
        ] {
            if value == 0 {
                bail!("{flag} must be at least 1");
            }
        }
        if settings.retry_interval < Duration::from_secs(1) {
            bail!("--retry-interval must be at least 1s: lateness is judged against 1 s");
        }
        if let Some(rate) = settings.due_rate
            && f64::from(rate) > redrive_core::rate::MAX_RATE_PER_SECOND
        {
            bail!(
                "--due-rate must be at most {} (a subscription's fastest rate)",
                redrive_core::rate::MAX_RATE_PER_SECOND
            );
        }
        if settings.timeout.is_zero() {
            bail!("--timeout must be more than 0s");
        }
        Ok(settings)
    }

    /// The delivery bench's settings for publishing the events that wait.
    pub fn load(&self) -> delivery::Settings {
        self.delivery(self.events, self.publishers, self.batch)
    }

    /// The delivery bench's settings for the publish probe (and the raw
    /// phase, which posts the probe's requests straight to the receiver).
    pub fn probe(&self) -> delivery::Settings {
        self.delivery(self.probe_events, self.probe_publishers, 1)
    }

    fn delivery(&self, events: usize, publishers: usize, batch: usize) -> delivery::Settings {
        delivery::Settings {
            case: None,
            events,
            publishers,
            batch,
            rate: None,
            runs: self.runs,
            endpoint_concurrency: self.endpoint_concurrency,
            max_in_flight: self.max_in_flight,
            payload_bytes: self.payload_bytes,
            timeout: self.timeout,
            database_url: self.database_url.clone(),
            nodes: 1,
            json: self.json,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: BenchRetriesArgs,
    }

    fn resolve(args: &[&str]) -> anyhow::Result<Settings> {
        let cli = Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied()))?;
        Settings::resolve(cli.args)
    }

    #[test]
    fn defaults_are_the_targets_row() {
        let settings = resolve(&[]).unwrap();
        assert_eq!(settings.events, 1_000_000);
        assert_eq!(settings.retry_interval, Duration::from_secs(300));
        assert_eq!(settings.runs, 1);
        assert_eq!(settings.due_rate, Some(10_000));
        let load = settings.load();
        assert_eq!(
            (load.events, load.publishers, load.batch),
            (1_000_000, 4, 1000)
        );
        let probe = settings.probe();
        assert_eq!(
            (probe.events, probe.publishers, probe.batch),
            (20_000, 64, 1)
        );
        assert_eq!(probe.nodes, 1);
    }

    #[test]
    fn flags_override_and_nonsense_is_refused() {
        let small = resolve(&["--events", "2000", "--retry-interval", "5s"]).unwrap();
        assert_eq!(small.events, 2000);
        assert_eq!(small.retry_interval, Duration::from_secs(5));
        let err = resolve(&["--retry-interval", "500ms"]).err().unwrap();
        assert!(err.to_string().contains("--retry-interval"), "{err}");
        assert_eq!(resolve(&["--due-rate", "0"]).unwrap().due_rate, None);
        assert!(resolve(&["--due-rate", "200000"]).is_err());
        let err = resolve(&["--probe-events", "0"]).err().unwrap();
        assert!(err.to_string().contains("--probe-events"), "{err}");
    }
}

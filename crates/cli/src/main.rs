//! The `redrive` command: the server, a client for its API, and offline tools.

mod bench;
mod client;
mod commands;
mod declared;
mod explain;
mod health;
mod lifecycle;
mod ops;
mod output;
mod security;
mod sink;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

// The server allocates per request, per push and per stored row from many
// threads at once; glibc's allocator spent a tenth of its CPU in profiles.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "redrive",
    version = ops::VERSION,
    about = "Durable CloudEvents and webhook delivery with exact retry policies"
)]
struct Cli {
    /// URL of the redrive server that client commands talk to (http:// is
    /// assumed when the scheme is left out).
    #[arg(
        long,
        global = true,
        env = "REDRIVE_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    server: String,
    /// Bearer token for the server's API (client commands).
    #[arg(long, global = true, env = "REDRIVE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// How client commands print answers [default: table on a terminal,
    /// json otherwise]
    #[arg(long, global = true, value_enum, env = "REDRIVE_OUTPUT")]
    output: Option<output::Format>,
    #[command(flatten)]
    log: ops::LogArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server on the embedded store, or on a shared PostgreSQL.
    Serve(Box<ServeArgs>),
    /// Manage topics on a running server.
    #[command(subcommand)]
    Topics(commands::TopicsCommand),
    /// Manage subscriptions on a running server.
    #[command(subcommand)]
    Subscriptions(commands::SubscriptionsCommand),
    /// Publish one event to a topic.
    Publish(commands::PublishArgs),
    /// Inspect and retry deliveries.
    #[command(subcommand)]
    Deliveries(commands::DeliveriesCommand),
    /// Work with retry policies, offline.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Measure this machine: delivery throughput and latency, storage
    /// under purging, the console's reads.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// The former name of `bench purge`.
    #[command(hide = true)]
    BenchPurge(bench::purge::BenchPurgeArgs),
    /// The former name of `bench console`.
    #[command(hide = true)]
    BenchConsole(bench::console::BenchConsoleArgs),
    /// Run a webhook receiver that prints each push (for trying redrive out).
    Sink(sink::SinkArgs),
    /// Manage API tokens on a running server (admin).
    #[command(subcommand)]
    Tokens(security::TokensCommand),
    /// Copy a running server's database to a file (a consistent online copy).
    Backup(ops::BackupArgs),
    /// Print shell completions: bash, zsh, fish, elvish or powershell.
    Completions(ops::CompletionsArgs),
    /// Apply a redrive.toml to a running server, printing what changed.
    Apply(declared::ApplyArgs),
    /// Print the server's topics and subscriptions as a redrive.toml.
    Export,
    /// Create topics and subscriptions from another system's configuration.
    #[command(subcommand)]
    Import(declared::ImportCommand),
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Print the retry schedule of a policy.
    Explain(explain::ExplainArgs),
    /// List the retry presets, with the system each one reproduces.
    Presets,
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, env = "REDRIVE_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Directory of the embedded store; created if missing.
    #[arg(
        long = "data",
        env = "REDRIVE_DATA_DIR",
        default_value = "./redrive-data"
    )]
    data_dir: PathBuf,
    /// Share a PostgreSQL database with other redrive nodes instead of the
    /// embedded store, e.g. postgres://redrive@db.internal/redrive
    /// (`pool_size=N` among the parameters sets the connections per node).
    #[arg(long, env = "REDRIVE_DATABASE_URL")]
    database_url: Option<String>,
    /// How long a claim outlives the push timeout before another node may
    /// take the delivery over (the retry delay after a node dies), e.g. 30s.
    #[arg(long, env = "REDRIVE_LEASE_MARGIN", default_value = "30s",
        value_parser = at_least(MIN_LEASE_MARGIN))]
    lease_margin: redrive_core::HumanDuration,
    /// Longest wait for due work without a wake-up, e.g. 1s.
    #[arg(long, env = "REDRIVE_POLL_INTERVAL", default_value = "1s",
        value_parser = at_least(MIN_POLL_INTERVAL))]
    poll_interval: redrive_core::HumanDuration,
    /// Largest publish body in bytes.
    #[arg(long, env = "REDRIVE_MAX_PUBLISH_BYTES", default_value_t = 1024 * 1024)]
    max_publish_bytes: usize,
    /// Pushes in flight at once, over all subscriptions.
    #[arg(long, env = "REDRIVE_MAX_IN_FLIGHT", default_value_t = 512)]
    max_in_flight: usize,
    /// How long finished deliveries, their attempts and unreferenced events
    /// are kept before they are purged, e.g. 7d.
    #[arg(long, env = "REDRIVE_HISTORY_RETENTION", default_value = "7d",
        value_parser = at_least(MIN_HISTORY_RETENTION))]
    history_retention: redrive_core::HumanDuration,
    /// How often endpoint health is judged from recent attempts, e.g. 10s.
    #[arg(long, env = "REDRIVE_HEALTH_INTERVAL", default_value = "10s",
        value_parser = at_least(MIN_HEALTH_INTERVAL))]
    health_interval: redrive_core::HumanDuration,
    #[command(flatten)]
    security: security::SecurityArgs,
    /// On SIGTERM/SIGINT, how long in-flight pushes may finish before their
    /// deliveries are released to be retried at the next start.
    #[arg(long, env = "REDRIVE_DRAIN_TIMEOUT", default_value = "30s")]
    drain_timeout: redrive_core::HumanDuration,
    /// A redrive.toml whose topics and subscriptions are applied at start
    /// (an invalid file stops the start, and nothing is applied).
    #[arg(long, env = "REDRIVE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
}

/// Commands that never talk to a server: their help leaves out the flags
/// that only client commands use.
const OFFLINE: &[&str] = &[
    "serve",
    "policy",
    "bench",
    "bench-purge",
    "bench-console",
    "sink",
    "completions",
];

/// The flags only client commands use.
const CLIENT_FLAGS: &[&str] = &["server", "token", "output"];

/// The command line, with the client flags hidden where they do not apply.
fn command() -> clap::Command {
    let command = <Cli as clap::CommandFactory>::command();
    // A subcommand that already has a global flag keeps its own copy (and
    // passes it on to its subcommands), so a hidden copy hides it there.
    let hidden: Vec<clap::Arg> = command
        .get_arguments()
        .filter(|arg| CLIENT_FLAGS.contains(&arg.get_id().as_str()))
        .map(|arg| arg.clone().hide(true))
        .collect();
    OFFLINE.iter().fold(command, |command, name| {
        command.mut_subcommand(name, |sub| {
            hidden.iter().fold(sub, |sub, arg| sub.arg(arg.clone()))
        })
    })
}

// The shortest intervals `serve` accepts: below them the loops they pace
// would spin, or (the lease margin) a slow node's claims would be taken over
// while it still pushes.
const MIN_LEASE_MARGIN: Duration = Duration::from_secs(1);
const MIN_POLL_INTERVAL: Duration = Duration::from_millis(50);
const MIN_HISTORY_RETENTION: Duration = Duration::from_secs(1);
const MIN_HEALTH_INTERVAL: Duration = Duration::from_secs(1);

/// Parses a duration flag, refusing values below `min` with a message that
/// says the minimum.
fn at_least(
    min: Duration,
) -> impl Fn(&str) -> Result<redrive_core::HumanDuration, String> + Clone + Send + Sync + 'static {
    move |text| {
        let value: redrive_core::HumanDuration = text.parse().map_err(|err| format!("{err}"))?;
        if value.as_duration() < min {
            return Err(format!(
                "must be at least {}",
                redrive_core::duration::format_duration(min)
            ));
        }
        Ok(value)
    }
}

fn main() -> ExitCode {
    let matches = command().get_matches();
    let cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(err) => err.exit(),
    };
    output::init(cli.output);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            ops::init_logging(&cli.log)?;
            serve(args).await
        }
        Command::Topics(command) => {
            commands::topics(&client(&cli.server, cli.token.as_deref())?, command).await
        }
        Command::Subscriptions(command) => {
            commands::subscriptions(&client(&cli.server, cli.token.as_deref())?, command).await
        }
        Command::Publish(args) => {
            commands::publish(&client(&cli.server, cli.token.as_deref())?, args).await
        }
        Command::Deliveries(command) => {
            commands::deliveries(&client(&cli.server, cli.token.as_deref())?, command).await
        }
        Command::Tokens(command) => {
            security::tokens(&client(&cli.server, cli.token.as_deref())?, command).await
        }
        Command::Policy(PolicyCommand::Explain(args)) => {
            println!("{}", explain::run(&args)?);
            Ok(())
        }
        Command::Policy(PolicyCommand::Presets) => {
            println!("{}", explain::presets_table());
            Ok(())
        }
        Command::Bench(command) => bench::run(command).await,
        Command::BenchPurge(args) => bench::purge::run(args).await,
        Command::BenchConsole(args) => bench::console::run(args).await,
        Command::Sink(args) => sink::run(args).await,
        Command::Backup(args) => ops::backup(&cli.server, cli.token.as_deref(), args).await,
        Command::Completions(args) => ops::completions(args, &mut command()),
        Command::Apply(args) => {
            declared::apply(&client(&cli.server, cli.token.as_deref())?, args).await
        }
        Command::Export => declared::export(&client(&cli.server, cli.token.as_deref())?).await,
        Command::Import(command) => {
            declared::import(&client(&cli.server, cli.token.as_deref())?, command).await
        }
    }
}

fn client(server: &str, token: Option<&str>) -> anyhow::Result<client::Client> {
    client::Client::new(server, token)
}

async fn serve(args: Box<ServeArgs>) -> anyhow::Result<()> {
    let (security, generated) = args.security.options(&args.data_dir)?;
    let config = match &args.config {
        Some(path) => Some(declared::read_config(path)?.desired),
        None => None,
    };
    let options = redrive_server::ServeOptions {
        listen: args.listen,
        data_dir: args.data_dir,
        database_url: args.database_url.filter(|url| !url.is_empty()),
        limits: redrive_server::app::Limits {
            max_publish_bytes: args.max_publish_bytes,
            max_batch_events: args.security.max_batch_events,
            event: redrive_core::event::EventLimits {
                max_extensions: args.security.max_event_extensions,
                max_attribute_bytes: args.security.max_event_attribute_bytes,
            },
            ..Default::default()
        },
        dispatcher: redrive_server::dispatcher::DispatcherConfig {
            max_in_flight: args.max_in_flight,
            lease_margin: args.lease_margin.as_duration(),
            poll_interval: args.poll_interval.as_duration(),
            drain_timeout: args.drain_timeout.as_duration(),
            ..Default::default()
        },
        sweeper: redrive_server::sweeper::SweeperConfig {
            history_retention: args.history_retention.as_duration(),
            ..Default::default()
        },
        health: redrive_server::health::HealthConfig {
            interval: args.health_interval.as_duration(),
            ..Default::default()
        },
        security,
        config,
    };
    redrive_server::serve(
        options,
        // Printed on stdout so scripts (and tests) can read the bound port.
        move |address| {
            println!("redrive listening on http://{address}");
            if let Some((token, path)) = generated {
                println!(
                    "admin API token (shown once; kept in {}): {token}",
                    path.display()
                );
                println!("console: http://{address}/console");
            }
        },
        shutdown_signal(),
    )
    .await
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(err) => {
                    tracing::warn!(error = %err, "cannot listen for SIGTERM");
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    tracing::info!("shutting down");
}

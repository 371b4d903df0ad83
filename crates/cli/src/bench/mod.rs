//! `redrive bench`: measurements on this machine, one subcommand each.

pub mod console;
pub mod delivery;
pub mod purge;
pub mod retries;

#[derive(clap::Subcommand)]
pub enum BenchCommand {
    /// Publish and delivery throughput and latency, end to end.
    Delivery(delivery::BenchArgs),
    /// A million deliveries waiting to retry: the server's memory, publish
    /// throughput beside them, and how fast and how late the retries start
    /// when they fall due.
    Retries(retries::BenchRetriesArgs),
    /// That the database stops growing under steady traffic once the
    /// history retention passes (drives the embedded store directly).
    Purge(purge::BenchPurgeArgs),
    /// The console's reads (pages, filters, counts, buckets) on a
    /// subscription with 100,000 deliveries (drives the store directly).
    Console(console::BenchConsoleArgs),
}

pub async fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Delivery(args) => delivery::run(args).await,
        BenchCommand::Retries(args) => retries::run(args).await,
        BenchCommand::Purge(args) => purge::run(args).await,
        BenchCommand::Console(args) => console::run(args).await,
    }
}

//! Operating redrive: logging setup, online backups of a running server,
//! shell completions, and the version string.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

/// `redrive --version`: the release and the commit it was built from.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("REDRIVE_GIT_COMMIT"),
    ")"
);

#[derive(Clone, Copy, Debug, Default, ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line, with the span fields (request ids).
    Json,
}

#[derive(Args, Clone, Debug)]
pub struct LogArgs {
    /// Log line format.
    #[arg(
        long,
        global = true,
        env = "REDRIVE_LOG_FORMAT",
        value_enum,
        default_value_t
    )]
    pub log_format: LogFormat,
    /// Log filter, e.g. `info` or `redrive_server=debug,info`; overrides
    /// RUST_LOG. Without either, `info`.
    #[arg(long, global = true, env = "REDRIVE_LOG_LEVEL")]
    pub log_level: Option<String>,
}

/// Logs go to stderr; stdout stays for what commands print.
pub fn init_logging(args: &LogArgs) -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = match &args.log_level {
        Some(level) => EnvFilter::try_new(level)
            .with_context(|| format!("--log-level {level:?} is not a valid filter"))?,
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match args.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
    installed.map_err(|err| anyhow::anyhow!("cannot set up logging: {err}"))
}

#[derive(Args)]
pub struct BackupArgs {
    /// File to write the copy of the database to; must not exist.
    #[arg(long)]
    out: PathBuf,
}

/// Asks the server for a consistent copy of its store and writes it to
/// `--out` (through a temporary name, renamed once complete and synced, so
/// an interrupted download never looks like a backup).
pub async fn backup(server: &str, token: Option<&str>, args: BackupArgs) -> anyhow::Result<()> {
    if args.out.exists() {
        bail!(
            "{} already exists; choose another --out",
            args.out.display()
        );
    }
    redrive_server::dispatcher::push::install_crypto_provider();
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .context("cannot build the HTTP client")?;
    let url = format!("{}/v1/admin/backup", server.trim_end_matches('/'));
    let mut request = http.post(&url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("cannot reach redrive at {server}"))?;
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
            .unwrap_or(text);
        bail!("the backup failed: {message} (HTTP {})", status.as_u16());
    }
    let mut partial_name = args.out.as_os_str().to_owned();
    partial_name.push(".partial");
    let partial = PathBuf::from(partial_name);
    let mut file = tokio::fs::File::create(&partial)
        .await
        .with_context(|| format!("cannot create {}", partial.display()))?;
    let mut written: u64 = 0;
    let mut body = response.bytes_stream();
    let copied: anyhow::Result<()> = async {
        while let Some(chunk) = body.next().await {
            let chunk = chunk.context("the download broke off")?;
            file.write_all(&chunk)
                .await
                .with_context(|| format!("cannot write {}", partial.display()))?;
            written += chunk.len() as u64;
        }
        file.sync_all()
            .await
            .with_context(|| format!("cannot sync {}", partial.display()))?;
        Ok(())
    }
    .await;
    if let Err(err) = copied {
        let _ = tokio::fs::remove_file(&partial).await;
        return Err(err);
    }
    tokio::fs::rename(&partial, &args.out)
        .await
        .with_context(|| {
            format!(
                "cannot rename {} to {}",
                partial.display(),
                args.out.display()
            )
        })?;
    println!("wrote {} ({written} bytes)", args.out.display());
    println!(
        "restore: put it as redrive.db in an empty directory and run `redrive serve --data DIR`"
    );
    Ok(())
}

#[derive(Args)]
pub struct CompletionsArgs {
    /// The shell to print completions for.
    shell: clap_complete::Shell,
}

pub fn completions(args: CompletionsArgs, command: &mut clap::Command) -> anyhow::Result<()> {
    use std::io::Write;
    // Generated into memory first: the generator panics on a write error,
    // and a closed pipe (`| head`) must not look like a crash.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, command, "redrive", &mut script);
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(&script).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(err) => Err(err).context("cannot write the completions"),
    }
}

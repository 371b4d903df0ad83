//! The server under test: by default `redrive serve` run as child processes
//! of this same executable (so its CPU and memory are its own, apart from
//! the generator's and the sink's), or an external server (`--server`).
//!
//! A child is killed if the bench stops without stopping it (an error, a
//! panic, Ctrl-C): `kill_on_drop` is the guard against orphan servers.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use base64::Engine;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

use super::process_stats::{self, ProcessSample};
use super::{Settings, progress};

/// How long a node may take to listen and then to answer `/readyz` (a
/// PostgreSQL node migrates first).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a node may drain after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(40);

pub struct ServerUnderTest {
    /// Where each node listens.
    pub bases: Vec<String>,
    /// The bearer token for its API (an external server's from REDRIVE_TOKEN).
    pub token: Option<String>,
    /// Empty for an external server.
    nodes: Vec<ServerProcess>,
}

/// One `redrive serve` child process and its data directory.
struct ServerProcess {
    // Dropped before `data_dir`: the process dies (SIGKILL) before its
    // directory is removed.
    child: Child,
    pid: u32,
    data_dir: tempfile::TempDir,
}

impl ServerUnderTest {
    pub fn external(url: &str, token: Option<String>) -> ServerUnderTest {
        ServerUnderTest {
            bases: vec![url.trim_end_matches('/').to_owned()],
            token,
            nodes: Vec::new(),
        }
    }

    /// Starts `settings.nodes` servers, each on a fresh temporary data
    /// directory (sharing `--database-url` when given), and waits until
    /// every one answers `/readyz`.
    /// `token` is the admin token of every node (the bench's clients talk
    /// to all of them).
    pub async fn start(settings: &Settings, token: String) -> anyhow::Result<ServerUnderTest> {
        let probe = reqwest::Client::builder()
            .no_proxy()
            .build()
            .context("cannot build the HTTP client")?;
        let mut server = ServerUnderTest {
            bases: Vec::with_capacity(settings.nodes),
            token: Some(token.clone()),
            nodes: Vec::with_capacity(settings.nodes),
        };
        // Nodes sharing a database must share the key that encrypts the
        // signing secrets: each one's fresh data directory would make its own.
        let secret_key = base64::engine::general_purpose::STANDARD
            .encode(redrive_server::security::random_bytes::<32>()?);
        for _ in 0..settings.nodes {
            let (base, node) = ServerProcess::start(settings, &token, &secret_key).await?;
            // Owned by `server` before anything else can fail, so an error
            // below still kills it.
            server.nodes.push(node);
            wait_ready(&probe, &base, server.nodes.last_mut()).await?;
            server.bases.push(base);
        }
        Ok(server)
    }

    /// What the report calls it.
    pub fn describe(&self) -> String {
        if self.nodes.is_empty() {
            return "external: its CPU and memory are not measured".to_owned();
        }
        let pids: Vec<String> = self.nodes.iter().map(|node| node.pid.to_string()).collect();
        format!(
            "child process{} {}, fresh data directory",
            if pids.len() > 1 { "es" } else { "" },
            pids.join(", ")
        )
    }

    pub fn is_external(&self) -> bool {
        self.nodes.is_empty()
    }

    /// CPU time and peak RSS of every node, or why they are unavailable.
    pub fn sample(&self) -> anyhow::Result<Vec<ProcessSample>> {
        if self.nodes.is_empty() {
            bail!("an external server's CPU and memory are not measured");
        }
        self.nodes
            .iter()
            .map(|node| process_stats::sample(node.pid))
            .collect()
    }

    /// SIGTERM to every node, then waits for each to exit (killing one that
    /// takes longer than the drain allows) and removes its data directory.
    pub async fn stop(self) {
        for node in &self.nodes {
            node.terminate();
        }
        for node in self.nodes {
            node.wait_and_clean().await;
        }
    }
}

impl ServerProcess {
    async fn start(
        settings: &Settings,
        token: &str,
        secret_key: &str,
    ) -> anyhow::Result<(String, ServerProcess)> {
        let exe = std::env::current_exe().context("cannot find this executable to run serve")?;
        let data_dir = tempfile::Builder::new()
            .prefix("redrive-bench-")
            .tempdir()
            .context("cannot create a temporary data directory")?;
        let mut command = Command::new(&exe);
        // The bench decides every setting: none comes from this shell's
        // REDRIVE_* variables (a REDRIVE_DATABASE_URL would move the store).
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("REDRIVE_") {
                command.env_remove(name);
            }
        }
        command
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .arg("--data")
            .arg(data_dir.path())
            // The sink listens on 127.0.0.1.
            .args(["--allow-endpoint-networks", "127.0.0.0/8"])
            // The bench measures the store and the dispatcher, not the limiter.
            .args(["--publish-rate-limit", "unlimited"])
            .args(["--max-in-flight", &settings.max_in_flight.to_string()])
            .args(["--log-level", "warn"])
            .env("REDRIVE_API_TOKEN", token)
            .env("REDRIVE_SECRET_KEY", secret_key)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if let Some(url) = &settings.database_url {
            command.args(["--database-url", url]);
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start {} serve", exe.display()))?;
        let pid = child
            .id()
            .ok_or_else(|| anyhow!("the server exited as soon as it started"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("the server's stdout is not readable"))?;
        let mut node = ServerProcess {
            child,
            pid,
            data_dir,
        };
        let base = match tokio::time::timeout(START_TIMEOUT, listening_address(stdout)).await {
            Ok(Ok(base)) => base,
            Ok(Err(err)) => return Err(node.why_not_started(err).await),
            Err(_) => bail!(
                "the server did not say where it listens within {}s",
                START_TIMEOUT.as_secs()
            ),
        };
        Ok((base, node))
    }

    /// The reason a child failed to start, with its exit status if it ended.
    async fn why_not_started(&mut self, err: anyhow::Error) -> anyhow::Error {
        match tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await {
            Ok(Ok(status)) => err.context(format!(
                "the server exited ({status}) before listening; its log is above"
            )),
            _ => err.context("the server did not start"),
        }
    }

    fn terminate(&self) {
        #[cfg(unix)]
        {
            let pid = i32::try_from(self.pid)
                .ok()
                .and_then(rustix::process::Pid::from_raw);
            if let Some(pid) = pid
                && let Err(err) = rustix::process::kill_process(pid, rustix::process::Signal::TERM)
            {
                progress(format_args!(
                    "bench: cannot send SIGTERM to the server ({}): {err}",
                    self.pid
                ));
            }
        }
    }

    async fn wait_and_clean(mut self) {
        #[cfg(not(unix))]
        {
            let _ = self.child.start_kill();
        }
        match tokio::time::timeout(STOP_TIMEOUT, self.child.wait()).await {
            Ok(Ok(status)) if status.success() => {}
            Ok(Ok(status)) => progress(format_args!("bench: the server exited with {status}")),
            Ok(Err(err)) => progress(format_args!("bench: cannot wait for the server: {err}")),
            Err(_) => {
                progress(format_args!(
                    "bench: the server did not stop within {}s; killed",
                    STOP_TIMEOUT.as_secs()
                ));
                let _ = self.child.kill().await;
            }
        }
        if let Err(err) = self.data_dir.close() {
            progress(format_args!(
                "bench: cannot remove the temporary data directory: {err}"
            ));
        }
    }
}

/// Reads the child's stdout up to `redrive listening on http://ADDR`, then
/// keeps draining it (so the child never blocks on a full pipe).
async fn listening_address(stdout: ChildStdout) -> anyhow::Result<String> {
    let mut lines = BufReader::new(stdout).lines();
    loop {
        let line = lines
            .next_line()
            .await
            .context("cannot read the server's output")?
            .ok_or_else(|| anyhow!("the server closed its output before listening"))?;
        if let Some(base) = line.strip_prefix("redrive listening on ") {
            let base = base.trim().to_owned();
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return Ok(base);
        }
    }
}

/// Polls `/readyz` until it answers 200; fails if the node exits first.
async fn wait_ready(
    client: &reqwest::Client,
    base: &str,
    mut node: Option<&mut ServerProcess>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    let url = format!("{base}/readyz");
    loop {
        if let Ok(response) = client.get(&url).send().await
            && response.status().is_success()
        {
            return Ok(());
        }
        if let Some(node) = node.as_deref_mut()
            && let Ok(Some(status)) = node.child.try_wait()
        {
            bail!("the server at {base} exited ({status}) before it was ready");
        }
        if Instant::now() >= deadline {
            bail!(
                "{url} did not answer 200 within {}s",
                START_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

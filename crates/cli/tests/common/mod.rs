//! What the CLI integration tests share: the `redrive` binary run as a user
//! runs it, a `redrive serve` child process, and the set-up of a topic and
//! subscription through the test kit's API client.

// Every test binary uses only part of this module and of what it
// re-exports.
#![allow(dead_code, unused_imports)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub use redrive_testkit::api::Api;
pub use redrive_testkit::endpoint::{Endpoint, Reply};
use serde_json::json;

pub const REDRIVE: &str = env!("CARGO_BIN_EXE_redrive");

/// Leaves none of redrive's variables (`REDRIVE_*`) from the test's own
/// environment to `command`, so what it prints depends on its arguments
/// alone.
pub fn without_redrive_env(command: &mut Command) -> &mut Command {
    for (name, _) in std::env::vars() {
        if name.starts_with("REDRIVE_") {
            command.env_remove(name);
        }
    }
    command
}

/// `redrive bench SUBCOMMAND ARGS…` run as a user runs it.
pub fn bench(subcommand: &str, args: &[&str]) -> std::process::Output {
    let mut command = Command::new(REDRIVE);
    without_redrive_env(&mut command)
        .args(["bench", subcommand])
        .args(args)
        .output()
        .expect("redrive runs")
}

/// The process ids of the servers a bench started, from its progress lines
/// on stderr.
pub fn bench_server_pids(stderr: &str) -> Vec<u32> {
    stderr
        .lines()
        .filter_map(|line| line.split("(child process ").nth(1))
        .filter_map(|rest| rest.split(',').next())
        .map(|pid| pid.trim().parse().expect("a process id"))
        .collect()
}

/// Whether a bench's server is gone. Once the bench has exited its children
/// are reaped by init, so a stopped server has no /proc entry left (or a
/// reused one of another program).
pub fn bench_server_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/cmdline")) {
        Err(_) => true,
        Ok(cmdline) => !cmdline.contains("serve"),
    }
}

/// How long a server may take to say where it listens, or to print a line.
const STARTUP: Duration = Duration::from_secs(30);

/// The variables `redrive` reads: a test sets those it means, so none leaks
/// in from the shell that runs the tests.
const REDRIVE_VARS: &[&str] = &[
    "REDRIVE_SERVER",
    "REDRIVE_TOKEN",
    "REDRIVE_API_TOKEN",
    "REDRIVE_INSECURE_NO_AUTH",
    "REDRIVE_ALLOW_ENDPOINT_NETWORKS",
    "REDRIVE_SECRET_KEY",
    "REDRIVE_LISTEN",
    "REDRIVE_DATA_DIR",
    "REDRIVE_DATABASE_URL",
];

/// `redrive` with none of its variables set, logging warnings only.
pub fn bare_command() -> Command {
    let mut command = Command::new(REDRIVE);
    command.env("RUST_LOG", "warn").stdin(Stdio::null());
    for var in REDRIVE_VARS {
        command.env_remove(var);
    }
    command
}

/// `redrive` as a user with a token runs it: `token` as the server's admin
/// token and the client commands' token, and the test endpoints on
/// loopback allowed.
pub fn command(token: &str) -> Command {
    let mut command = bare_command();
    command
        .env("REDRIVE_API_TOKEN", token)
        .env("REDRIVE_TOKEN", token)
        .env("REDRIVE_ALLOW_ENDPOINT_NETWORKS", "127.0.0.0/8");
    command
}

/// `redrive serve` on `data` at a free loopback port (see [`command`]).
pub fn serve(token: &str, data: &Path) -> Command {
    let mut command = command(token);
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data);
    command
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

pub fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// A `redrive serve` child process; killed when dropped.
pub struct RunningServer {
    child: Child,
    pub url: String,
    log: PathBuf,
    /// What it printed after its first line.
    lines: mpsc::Receiver<String>,
    /// The temporary directory it runs in, if it owns one: removed after
    /// the process is killed.
    dir: Option<tempfile::TempDir>,
}

impl RunningServer {
    /// Spawns `command` (a `redrive serve` on port 0) with its stderr in
    /// `log`, and waits for its `redrive listening on URL` line: the server,
    /// or its log when it stopped or said something else first.
    pub fn try_start(mut command: Command, log: &Path) -> Result<RunningServer, String> {
        let log_file = std::fs::File::create(log).expect("a log file");
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .spawn()
            .expect("redrive starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (line_tx, line_rx) = mpsc::channel();
        // Passes on every line, keeping the pipe drained and open.
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            loop {
                let mut line = String::new();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let _ = line_tx.send(line.trim().to_owned());
                    }
                }
            }
        });
        let line = line_rx.recv_timeout(STARTUP).unwrap_or_default();
        match line.strip_prefix("redrive listening on ") {
            Some(url) => Ok(RunningServer {
                url: url.to_owned(),
                child,
                log: log.to_owned(),
                lines: line_rx,
                dir: None,
            }),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!("first line {line:?}; log:\n{}", read(log)))
            }
        }
    }

    /// [`try_start`](Self::try_start), panicking with the log.
    pub fn start(command: Command, log: &Path) -> RunningServer {
        Self::try_start(command, log)
            .unwrap_or_else(|problem| panic!("redrive serve did not start: {problem}"))
    }

    /// [`start`](Self::start), off the async runtime's threads.
    pub async fn start_async(command: Command, log: &Path) -> RunningServer {
        let log = log.to_owned();
        tokio::task::spawn_blocking(move || Self::start(command, &log))
            .await
            .expect("the start task")
    }

    /// `redrive serve` (see [`serve`]) with `extra` arguments, on a fresh
    /// temporary directory that lives as long as the server: its data in
    /// `data/`, its log in `redrive.log`.
    pub fn try_start_in_temp_dir(token: &str, extra: &[&str]) -> Result<RunningServer, String> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut command = serve(token, &dir.path().join("data"));
        command.args(extra);
        let mut server = Self::try_start(command, &dir.path().join("redrive.log"))?;
        server.dir = Some(dir);
        Ok(server)
    }

    /// The temporary directory the server owns, if it does.
    pub fn dir(&self) -> &Path {
        self.dir
            .as_ref()
            .map(|dir| dir.path())
            .expect("a server started in a temporary directory")
    }

    /// The next line the server printed after its first.
    pub fn next_line(&self) -> Option<String> {
        self.lines.recv_timeout(STARTUP).ok()
    }

    pub fn log(&self) -> String {
        read(&self.log)
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill_9(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("the killed process is reaped");
    }

    pub fn send_sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill -TERM runs");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits for the process to exit on its own.
    pub fn wait_exit(&mut self, patience: Duration) -> ExitStatus {
        wait_with_timeout(&mut self.child, patience)
            .unwrap_or_else(|| panic!("redrive did not exit; log:\n{}", self.log()))
    }

    /// SIGTERM, then waits for a graceful exit.
    pub fn terminate(mut self, patience: Duration) -> ExitStatus {
        self.send_sigterm();
        self.wait_exit(patience)
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Creates the topic `orders` and its subscription `orders-hook` pushing
/// to `endpoint`: a fixed backoff of `retry_interval`, pushes timing out
/// after `timeout`, at most `max_concurrency` at once.
pub async fn create_orders_hook(
    api: &Api,
    endpoint: &str,
    retry_interval: &str,
    timeout: &str,
    max_concurrency: u32,
) {
    api.create_topic("orders").await;
    api.create_subscription(json!({
        "name": "orders-hook",
        "topic": "orders",
        "endpoint": endpoint,
        "retry_policy": {"backoff": {"kind": "fixed", "interval": retry_interval}},
        "timeout": timeout,
        "max_concurrency": max_concurrency,
    }))
    .await;
}

//! What the CLI integration tests share: the `redrive` binary run as a user
//! runs it, a `redrive serve` child process, and a small JSON client for
//! its API over real HTTP.

// Every test file is its own crate and uses only part of this module.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

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

/// The API of a running server, with an admin token.
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
}

impl Api {
    pub fn new(base: &str, token: &str) -> Api {
        redrive_server::dispatcher::push::install_crypto_provider();
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {token}").parse().expect("a header value"),
        );
        Api {
            base: base.to_owned(),
            http: reqwest::Client::builder()
                .no_proxy()
                .default_headers(headers)
                .build()
                .expect("an HTTP client"),
        }
    }

    /// The status and the JSON body (`Null` when empty).
    pub async fn call(&self, request: reqwest::RequestBuilder) -> (u16, Value) {
        let response = request.send().await.expect("the API answers");
        let status = response.status().as_u16();
        let text = response.text().await.expect("a body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("non-JSON answer: {text}"))
        };
        (status, body)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(self.http.post(format!("{}{path}", self.base)).json(&body))
            .await
    }

    pub async fn publish_batch(&self, topic: &str, events: &[Value]) -> (u16, Value) {
        let request = self
            .http
            .post(format!("{}/v1/topics/{topic}/events", self.base))
            .header("content-type", "application/cloudevents-batch+json")
            .body(Value::from(events.to_vec()).to_string());
        self.call(request).await
    }

    /// The deliveries of `subscription` in `state`, every page of them.
    pub async fn deliveries(&self, subscription: &str, state: &str) -> Vec<Value> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path =
                format!("/v1/subscriptions/{subscription}/deliveries?state={state}&limit=500");
            if let Some(cursor) = &cursor {
                path.push_str(&format!("&cursor={cursor}"));
            }
            let (status, body) = self.get(&path).await;
            assert_eq!(status, 200, "{body}");
            all.extend(body["deliveries"].as_array().cloned().unwrap_or_default());
            match body["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return all,
            }
        }
    }

    /// How many deliveries of `subscription` are in `state`.
    pub async fn count(&self, subscription: &str, state: &str) -> usize {
        self.deliveries(subscription, state).await.len()
    }
}

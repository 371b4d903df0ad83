//! Durability of the real `redrive` binary: it is started as a child
//! process on a data directory, killed with SIGKILL or stopped with SIGTERM,
//! and restarted on the same directory. The webhook endpoint is a real HTTP
//! server in this test process.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

const REDRIVE: &str = env!("CARGO_BIN_EXE_redrive");
/// The admin token the server runs with, as users would run it.
const TOKEN: &str = "durability-admin-token-0123456789";

// ---------------------------------------------------------------------------
// The redrive process
// ---------------------------------------------------------------------------

/// A `redrive serve` child process; killed when dropped.
struct RunningServer {
    child: Child,
    url: String,
    log: PathBuf,
}

impl RunningServer {
    /// Starts `redrive serve` on `data` with a free port, logging to `log`,
    /// and waits for its `redrive listening on http://ADDR` line.
    async fn start(data: &Path, log: &Path) -> RunningServer {
        let (data, log) = (data.to_owned(), log.to_owned());
        tokio::task::spawn_blocking(move || RunningServer::start_blocking(&data, &log))
            .await
            .expect("the start task")
    }

    fn start_blocking(data: &Path, log: &Path) -> RunningServer {
        let log_file = std::fs::File::create(log).expect("a log file");
        let mut child = Command::new(REDRIVE)
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .env("RUST_LOG", "warn")
            .env_remove("REDRIVE_LISTEN")
            .env_remove("REDRIVE_DATA_DIR")
            .env("REDRIVE_API_TOKEN", TOKEN)
            .env("REDRIVE_ALLOW_ENDPOINT_NETWORKS", "127.0.0.0/8")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .spawn()
            .expect("redrive starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (line_tx, line_rx) = mpsc::channel();
        // Reads the first line, then keeps the pipe drained and open.
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let _ = line_tx.send(line);
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        let line = match line_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("redrive did not say where it listens; log:\n{}", read(log));
            }
        };
        let Some(url) = line.trim().strip_prefix("redrive listening on ") else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("unexpected first line {line:?}; log:\n{}", read(log));
        };
        RunningServer {
            url: url.to_owned(),
            child,
            log: log.to_owned(),
        }
    }

    /// SIGKILL: no chance to finish anything.
    fn kill_9(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("the killed process is reaped");
    }

    /// SIGTERM, then waits for a graceful exit.
    fn terminate(mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill -TERM runs");
        assert!(status.success(), "kill -TERM failed");
        wait_with_timeout(&mut self.child, Duration::from_secs(20))
            .unwrap_or_else(|| panic!("redrive ignored SIGTERM; log:\n{}", read(&self.log)))
    }

    fn log(&self) -> String {
        read(&self.log)
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

// ---------------------------------------------------------------------------
// The API, over real HTTP
// ---------------------------------------------------------------------------

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    fn new(base: &str) -> Api {
        redrive_server::dispatcher::push::install_crypto_provider();
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {TOKEN}").parse().unwrap(),
        );
        Api {
            base: base.to_owned(),
            http: reqwest::Client::builder()
                .no_proxy()
                .default_headers(headers)
                .build()
                .unwrap(),
        }
    }

    async fn call(&self, request: reqwest::RequestBuilder) -> (u16, Value) {
        let response = request.send().await.expect("the API answers");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("non-JSON answer: {text}"))
        };
        (status, body)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(self.http.post(format!("{}{path}", self.base)).json(&body))
            .await
    }

    async fn publish_batch(&self, topic: &str, events: &[Value]) -> (u16, Value) {
        let request = self
            .http
            .post(format!("{}/v1/topics/{topic}/events", self.base))
            .header("content-type", "application/cloudevents-batch+json")
            .body(Value::from(events.to_vec()).to_string());
        self.call(request).await
    }

    async fn setup(&self, endpoint: &str, max_concurrency: u32) {
        let (status, body) = self.post("/v1/topics", json!({"name": "orders"})).await;
        assert_eq!(status, 201, "{body}");
        let (status, body) = self
            .post(
                "/v1/subscriptions",
                json!({
                    "name": "orders-hook",
                    "topic": "orders",
                    "endpoint": endpoint,
                    "retry_policy": {"backoff": {"kind": "fixed", "interval": "0.1s"}},
                    "timeout": "2s",
                    "max_concurrency": max_concurrency,
                }),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }

    /// How many deliveries of `orders-hook` are in `state`.
    async fn count(&self, state: &str) -> usize {
        let (status, body) = self
            .get(&format!(
                "/v1/subscriptions/orders-hook/deliveries?state={state}&limit=1000"
            ))
            .await;
        assert_eq!(status, 200, "{body}");
        body["deliveries"].as_array().unwrap().len()
    }
}

fn event(id: &str) -> Value {
    json!({
        "specversion": "1.0",
        "id": id,
        "source": "/durability",
        "type": "order.created",
        "datacontenttype": "application/json",
        "data": {"id": id},
    })
}

// ---------------------------------------------------------------------------
// The endpoint
// ---------------------------------------------------------------------------

/// What the endpoint knows about one ce-id.
#[derive(Clone, Copy, Debug, Default)]
struct Seen {
    pushes: usize,
    highest_attempt: u32,
    /// Some push of it was answered 200 while the redrive that sent it was
    /// alive (arrived and finished within one phase, not while killing).
    acknowledged: bool,
}

/// Phases of a kill test, so that a push in flight at the kill, whose
/// answer nobody read, does not count as delivered.
const FIRST_PROCESS: u8 = 0;
const KILLING: u8 = 1;
const SECOND_PROCESS: u8 = 2;

/// A real endpoint that takes `latency` to answer 200 and records every
/// ce-id it receives.
#[derive(Clone)]
struct Recorder {
    url: String,
    state: Arc<RecorderState>,
}

struct RecorderState {
    latency: Duration,
    seen: Mutex<BTreeMap<String, Seen>>,
    requests: AtomicUsize,
    phase: AtomicU8,
}

impl Recorder {
    async fn start(latency: Duration) -> Recorder {
        let state = Arc::new(RecorderState {
            latency,
            seen: Mutex::default(),
            requests: AtomicUsize::new(0),
            phase: AtomicU8::new(FIRST_PROCESS),
        });
        let app = Router::new().fallback(record).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Recorder {
            url: format!("http://{address}/hook"),
            state,
        }
    }

    fn set_phase(&self, phase: u8) {
        self.state.phase.store(phase, Ordering::SeqCst);
    }

    fn seen(&self) -> BTreeMap<String, Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// Distinct ce-ids received.
    fn unique(&self) -> usize {
        self.state.seen.lock().unwrap().len()
    }

    /// Distinct ce-ids acknowledged.
    fn acknowledged(&self) -> usize {
        let seen = self.state.seen.lock().unwrap();
        seen.values().filter(|s| s.acknowledged).count()
    }

    fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    async fn wait_until(&self, patience: Duration, done: impl Fn(&Recorder) -> bool) -> bool {
        let deadline = Instant::now() + patience;
        while Instant::now() < deadline {
            if done(self) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        done(self)
    }

    async fn wait_for_unique(&self, count: usize, patience: Duration) -> bool {
        self.wait_until(patience, |r| r.unique() >= count).await
    }
}

async fn record(State(state): State<Arc<RecorderState>>, headers: HeaderMap) -> StatusCode {
    let arrived_in = state.phase.load(Ordering::SeqCst);
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let id = header("ce-id");
    let attempt: u32 = header("redrive-attempt").parse().unwrap_or(0);
    state.requests.fetch_add(1, Ordering::SeqCst);
    {
        let mut seen = state.seen.lock().unwrap();
        let entry = seen.entry(id.clone()).or_default();
        entry.pushes += 1;
        entry.highest_attempt = entry.highest_attempt.max(attempt);
    }
    if !state.latency.is_zero() {
        tokio::time::sleep(state.latency).await;
    }
    let answered_in = state.phase.load(Ordering::SeqCst);
    if arrived_in == answered_in
        && answered_in != KILLING
        && let Some(entry) = state.seen.lock().unwrap().get_mut(&id)
    {
        entry.acknowledged = true;
    }
    StatusCode::OK
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_delivery_loses_no_accepted_event() {
    const EVENTS: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let endpoint = Recorder::start(Duration::from_millis(40)).await;

    let first = RunningServer::start(&data, &dir.path().join("first.log")).await;
    let api = Api::new(&first.url);
    api.setup(&endpoint.url, 4).await;
    let mut accepted = HashSet::new();
    for batch in 0..EVENTS / 50 {
        let events: Vec<Value> = (0..50)
            .map(|i| event(&format!("e-{:03}", batch * 50 + i)))
            .collect();
        let (status, body) = api.publish_batch("orders", &events).await;
        assert_eq!(status, 202, "{body}");
        for outcome in body["events"].as_array().unwrap() {
            assert_eq!(outcome["duplicate"], false, "{outcome}");
            accepted.insert(outcome["id"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(accepted.len(), EVENTS);

    // Some delivered, four in flight, the rest waiting: now kill -9.
    assert!(
        endpoint.wait_for_unique(40, Duration::from_secs(20)).await,
        "deliveries did not start; log:\n{}",
        first.log()
    );
    endpoint.set_phase(KILLING);
    first.kill_9();
    let at_kill = endpoint.unique();
    assert!(
        at_kill < EVENTS,
        "every event was delivered before the kill; nothing was left to recover"
    );

    endpoint.set_phase(SECOND_PROCESS);
    let second = RunningServer::start(&data, &dir.path().join("second.log")).await;
    let api = Api::new(&second.url);
    endpoint
        .wait_until(Duration::from_secs(60), |r| r.acknowledged() >= EVENTS)
        .await;
    let seen = endpoint.seen();
    let missing: Vec<&String> = accepted
        .iter()
        .filter(|id| !seen.get(*id).is_some_and(|s| s.acknowledged))
        .collect();
    assert!(
        missing.is_empty() && seen.len() == EVENTS,
        "{} accepted events were never answered 200 to a live redrive (e.g. {:?}); log:\n{}",
        missing.len(),
        missing.iter().take(5).collect::<Vec<_>>(),
        second.log()
    );

    // The store agrees: every delivery ends delivered.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut delivered = api.count("delivered").await;
    while delivered < EVENTS && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        delivered = api.count("delivered").await;
    }
    let duplicates = endpoint.requests() - EVENTS;
    let repeated = seen.values().filter(|s| s.pushes > 1).count();
    // An endpoint that always answers 200 sees a second attempt only when
    // the first one was interrupted.
    let interrupted = seen.values().filter(|s| s.highest_attempt > 1).count();
    assert_eq!(
        delivered, EVENTS,
        "deliveries recorded as delivered ({duplicates} duplicate pushes)"
    );
    assert_eq!(api.count("failed").await, 0);
    // The deliveries in flight at the kill came back as later attempts.
    assert!(
        interrupted >= 1,
        "no delivery was in flight at the kill ({at_kill} of {EVENTS} received by then)"
    );
    eprintln!(
        "kill -9 after {at_kill}/{EVENTS} events: no loss; {duplicates} duplicate pushes \
         over {repeated} events; {interrupted} events retried after the restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_server_on_a_data_dir_in_use_exits_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let first = RunningServer::start(&data, &dir.path().join("first.log")).await;

    let data_arg = data.clone();
    let (status, stdout, stderr) = tokio::task::spawn_blocking(move || {
        let mut second = Command::new(REDRIVE)
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(&data_arg)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("redrive starts");
        let status = wait_with_timeout(&mut second, Duration::from_secs(20));
        if status.is_none() {
            let _ = second.kill();
            let _ = second.wait();
        }
        let mut stdout = String::new();
        let mut stderr = String::new();
        second
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut stdout)
            .unwrap();
        second
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        (status, stdout, stderr)
    })
    .await
    .unwrap();

    let status = status.expect("the second redrive should exit, not run");
    assert!(!status.success(), "it exited with {status}");
    assert!(
        stderr.contains("in use") && stderr.contains(&data.display().to_string()),
        "stderr should say the directory is in use: {stderr}"
    );
    assert!(!stdout.contains("listening"), "stdout: {stdout}");

    // The first one is unharmed.
    let (status, body) = Api::new(&first.url).get("/healthz").await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_a_clean_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let endpoint = Recorder::start(Duration::ZERO).await;

    let first = RunningServer::start(&data, &dir.path().join("first.log")).await;
    let api = Api::new(&first.url);
    api.setup(&endpoint.url, 4).await;
    let events: Vec<Value> = ["a", "b", "c"].iter().map(|id| event(id)).collect();
    let (status, body) = api.publish_batch("orders", &events).await;
    assert_eq!(status, 202, "{body}");
    assert!(
        endpoint.wait_for_unique(3, Duration::from_secs(10)).await,
        "log:\n{}",
        first.log()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while api.count("delivered").await < 3 {
        assert!(Instant::now() < deadline, "not delivered before the stop");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = first.terminate();
    assert!(
        status.success(),
        "SIGTERM should end redrive cleanly: {status}"
    );

    let second = RunningServer::start(&data, &dir.path().join("second.log")).await;
    let api = Api::new(&second.url);
    let (status, body) = api.get("/v1/topics/orders").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = api.get("/v1/subscriptions/orders-hook").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["endpoint"], endpoint.url.as_str());
    assert_eq!(body["max_concurrency"], 4);
    let (status, body) = api
        .get("/v1/subscriptions/orders-hook/deliveries?limit=10")
        .await;
    assert_eq!(status, 200, "{body}");
    let deliveries = body["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 3, "{body}");
    for delivery in deliveries {
        assert_eq!(delivery["state"], "delivered", "{delivery}");
        let (_, detail) = api
            .get(&format!(
                "/v1/deliveries/{}",
                delivery["id"].as_str().unwrap()
            ))
            .await;
        assert_eq!(
            detail["attempt_log"].as_array().unwrap().len(),
            1,
            "{detail}"
        );
        assert_eq!(detail["attempt_log"][0]["status"], 200);
    }

    // Nothing is pushed again, duplicates are still known, and new events flow.
    let (status, body) = api.publish_batch("orders", &events[..1]).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["events"][0]["duplicate"], true, "{body}");
    let (status, body) = api.publish_batch("orders", &[event("d")]).await;
    assert_eq!(status, 202, "{body}");
    assert!(
        endpoint.wait_for_unique(4, Duration::from_secs(10)).await,
        "log:\n{}",
        second.log()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(endpoint.requests(), 4, "an event was pushed twice");
}

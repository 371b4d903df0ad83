//! `redrive bench delivery`: publish and delivery throughput and latency, end to end.
//!
//! A sink on 127.0.0.1 answers every push with 200 at once and notes when
//! each event first arrives. Events go in through the real HTTP API, from
//! concurrent publishers, optionally paced; the bench then waits until the
//! sink has seen every accepted event and reports publish throughput, end to
//! end throughput, publish request latency, publish → first-delivery latency
//! and duplicates. The server runs in this process on a fresh temporary data
//! directory, or is an external one (`--server`).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use redrive_core::HumanDuration;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinSet;

/// `redrive bench delivery`'s options. `--server` is the CLI's global flag: given on
/// the command line, the bench runs against that server; otherwise (its
/// default, and `REDRIVE_SERVER`, are ignored here) against a server it
/// starts in this process.
#[derive(Debug)]
pub struct BenchArgs {
    options: BenchOptions,
    server: Option<String>,
}

#[derive(clap::Args, Debug)]
struct BenchOptions {
    /// Events to publish.
    #[arg(long, default_value_t = 20_000)]
    events: usize,
    /// Concurrent publishers; each has one publish request open at a time.
    #[arg(long, default_value_t = 16)]
    publishers: usize,
    /// Events per publish request; above 1 they go as a CloudEvents batch.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Total publish rate in events per second (paced, for latency); as
    /// fast as the publishers go when absent.
    #[arg(long)]
    rate: Option<f64>,
    /// max_concurrency of the bench subscription.
    #[arg(long, default_value_t = 256)]
    endpoint_concurrency: u32,
    /// Pushes in flight at once in the in-process server (its
    /// --max-in-flight); ignored with --server.
    #[arg(long, default_value_t = 512)]
    max_in_flight: usize,
    /// Bytes of padding in each event's JSON data.
    #[arg(long, default_value_t = 64)]
    payload_bytes: usize,
    /// How long publishing and delivery may take before the bench gives up
    /// and reports what is missing.
    #[arg(long, default_value = "120s")]
    timeout: HumanDuration,
    /// Run the in-process servers on this PostgreSQL database instead of
    /// a temporary embedded store, and report its work per event.
    #[arg(long)]
    database_url: Option<String>,
    /// In-process servers sharing --database-url; publishes go to them in
    /// turn and each delivers.
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// Print the results as one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

const SERVER_HELP: &str = "By default the bench starts a server in this process on a fresh \
temporary data directory. With --server URL on the command line it benches that running server \
instead (REDRIVE_SERVER is not enough); the server must reach the sink, which listens on \
127.0.0.1.";

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

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let BenchArgs {
        options: args,
        server,
    } = args;
    check(&args)?;
    redrive_server::dispatcher::push::install_crypto_provider();

    let sink = Arc::new(Sink::new(args.events));
    let (sink_address, stop_sink, sink_task) = start_sink(sink.clone()).await?;
    let server = match &server {
        Some(url) => Server::external(url),
        None => Server::start(&args).await?,
    };
    progress(format_args!(
        "bench: server {} ({}), sink http://{sink_address}",
        server.bases.join(", "),
        match (&server.local, &args.database_url) {
            (None, _) => "external".to_owned(),
            (Some(_), None) => "in process, fresh data directory".to_owned(),
            (Some(_), Some(_)) => format!("{} in process on PostgreSQL", server.bases.len()),
        }
    ));

    let external = server.local.is_none();
    let outcome = measure(
        &args,
        &server.bases,
        server.token.as_deref(),
        external,
        sink_address,
        &sink,
    )
    .await;

    let _ = stop_sink.send(());
    if tokio::time::timeout(Duration::from_secs(5), sink_task)
        .await
        .is_err()
    {
        progress(format_args!("bench: the sink did not stop within 5s"));
    }
    server.stop().await;

    let results = outcome?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&results.to_json())?);
    } else {
        print!("{}", results.table());
    }
    Ok(())
}

fn check(args: &BenchOptions) -> anyhow::Result<()> {
    if args.events == 0 {
        bail!("--events must be at least 1");
    }
    if args.publishers == 0 {
        bail!("--publishers must be at least 1");
    }
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    if let Some(rate) = args.rate
        && !(rate.is_finite() && rate > 0.0)
    {
        bail!("--rate must be a positive number of events per second");
    }
    if args.timeout.as_duration().is_zero() {
        bail!("--timeout must be more than 0s");
    }
    if args.nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    if args.nodes > 1 && args.database_url.is_none() {
        bail!("--nodes above 1 needs --database-url: nodes share a PostgreSQL database");
    }
    Ok(())
}

/// Prints a progress line on stderr (stdout carries only the results).
fn progress(line: std::fmt::Arguments<'_>) {
    eprintln!("{line}");
}

// ---------------------------------------------------------------------------
// The sink

/// What the sink saw: for each event (by index, its `ce-id`) the arrival
/// of its first push, and counts of every push.
struct Sink {
    first: Mutex<Vec<Option<Instant>>>,
    /// Events seen at least once.
    unique: AtomicUsize,
    /// Pushes received, duplicates included.
    total: AtomicU64,
    /// Pushes whose `ce-id` is not one of this run's events.
    foreign: AtomicU64,
}

impl Sink {
    fn new(events: usize) -> Sink {
        Sink {
            first: Mutex::new(vec![None; events]),
            unique: AtomicUsize::new(0),
            total: AtomicU64::new(0),
            foreign: AtomicU64::new(0),
        }
    }

    fn record(&self, ce_id: Option<&str>, at: Instant) {
        self.total.fetch_add(1, Ordering::Relaxed);
        let index = ce_id.and_then(|id| id.parse::<usize>().ok());
        let Ok(mut first) = self.first.lock() else {
            return;
        };
        match index.and_then(|i| first.get_mut(i)) {
            Some(slot @ None) => {
                *slot = Some(at);
                self.unique.fetch_add(1, Ordering::Relaxed);
            }
            Some(Some(_)) => {}
            None => {
                self.foreign.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

async fn start_sink(
    sink: Arc<Sink>,
) -> anyhow::Result<(SocketAddr, oneshot::Sender<()>, tokio::task::JoinHandle<()>)> {
    let app = Router::new().fallback(receive).with_state(sink);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot start the sink on 127.0.0.1")?;
    let address = listener
        .local_addr()
        .context("cannot read the sink's address")?;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await;
        if let Err(err) = served {
            progress(format_args!("bench: the sink failed: {err}"));
        }
    });
    Ok((address, stop, task))
}

/// Answers 200 at once. The body is read (so the connection stays reusable)
/// and dropped.
async fn receive(State(sink): State<Arc<Sink>>, headers: HeaderMap, _body: Bytes) -> StatusCode {
    let at = Instant::now();
    let ce_id = headers.get("ce-id").and_then(|value| value.to_str().ok());
    sink.record(ce_id, at);
    StatusCode::OK
}

// ---------------------------------------------------------------------------
// The server under test

struct Server {
    /// Where each node listens.
    bases: Vec<String>,
    local: Option<Vec<LocalServer>>,
    /// The bearer token for its API (an external server's from REDRIVE_TOKEN).
    token: Option<String>,
}

/// The `Authorization` header every bench request carries.
fn auth_headers(token: Option<&str>) -> anyhow::Result<reqwest::header::HeaderMap> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = token {
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {token}")
                .parse()
                .context("the token cannot be sent in a header")?,
        );
    }
    Ok(headers)
}

struct LocalServer {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    // Removed when dropped, after the server has stopped.
    data_dir: tempfile::TempDir,
}

impl Server {
    fn external(url: &str) -> Server {
        Server {
            bases: vec![url.trim_end_matches('/').to_owned()],
            local: None,
            token: std::env::var("REDRIVE_TOKEN").ok(),
        }
    }

    async fn start(args: &BenchOptions) -> anyhow::Result<Server> {
        // One token for every node: the bench's clients talk to all of them.
        let token: String = redrive_server::security::random_bytes::<16>()?
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let mut bases = Vec::with_capacity(args.nodes);
        let mut local = Vec::with_capacity(args.nodes);
        for _ in 0..args.nodes {
            let node = LocalServer::start(args, &token).await?;
            bases.push(node.0);
            local.push(node.1);
        }
        Ok(Server {
            bases,
            local: Some(local),
            token: Some(token),
        })
    }

    async fn stop(self) {
        for local in self.local.into_iter().flatten() {
            local.stop().await;
        }
    }
}

impl LocalServer {
    async fn start(args: &BenchOptions, token: &str) -> anyhow::Result<(String, LocalServer)> {
        let data_dir = tempfile::Builder::new()
            .prefix("redrive-bench-")
            .tempdir()
            .context("cannot create a temporary data directory")?;
        let options = redrive_server::ServeOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.path().to_path_buf(),
            database_url: args.database_url.clone(),
            limits: redrive_server::app::Limits::default(),
            dispatcher: redrive_server::dispatcher::DispatcherConfig {
                max_in_flight: args.max_in_flight,
                ..Default::default()
            },
            sweeper: Default::default(),
            health: Default::default(),
            security: redrive_server::security::SecurityOptions {
                admin_token: redrive_server::security::AdminToken::Given(token.to_owned()),
                // The sink listens on 127.0.0.1.
                endpoint_policy: redrive_core::security::EndpointPolicy {
                    allow: redrive_core::security::parse_networks("127.0.0.0/8")?,
                    https_only: false,
                },
                // The bench measures the store and dispatcher, not the limiter.
                publish_rate: redrive_core::security::RequestRate::UNLIMITED,
                ..Default::default()
            },
            config: None,
        };
        let (listening, address) = oneshot::channel::<SocketAddr>();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(redrive_server::serve(
            options,
            move |address| {
                let _ = listening.send(address);
            },
            async move {
                let _ = stopped.await;
            },
        ));
        let address = match address.await {
            Ok(address) => address,
            // It stopped before listening: its error says why.
            Err(_) => {
                return Err(match task.await {
                    Ok(Err(err)) => err.context("the in-process server did not start"),
                    Ok(Ok(())) => anyhow!("the in-process server stopped before listening"),
                    Err(err) => anyhow!("the in-process server panicked: {err}"),
                });
            }
        };
        Ok((
            format!("http://{address}"),
            LocalServer {
                stop,
                task,
                data_dir,
            },
        ))
    }

    async fn stop(self) {
        let local = self;
        let _ = local.stop.send(());
        match tokio::time::timeout(Duration::from_secs(40), local.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(err))) => progress(format_args!("bench: the server failed: {err:#}")),
            Ok(Err(err)) => progress(format_args!("bench: the server panicked: {err}")),
            Err(_) => progress(format_args!("bench: the server did not stop within 40s")),
        }
        if let Err(err) = local.data_dir.close() {
            progress(format_args!(
                "bench: cannot remove the temporary data directory: {err}"
            ));
        }
    }
}

// ---------------------------------------------------------------------------
// The run

async fn measure(
    args: &BenchOptions,
    bases: &[String],
    token: Option<&str>,
    external: bool,
    sink_address: SocketAddr,
    sink: &Arc<Sink>,
) -> anyhow::Result<Results> {
    let admin = reqwest::Client::builder()
        .no_proxy()
        .default_headers(auth_headers(token)?)
        .build()
        .context("cannot build the HTTP client")?;
    let base = bases
        .first()
        .ok_or_else(|| anyhow!("the bench has no server"))?;
    let run_id = uuid::Uuid::now_v7().simple().to_string();
    let topic = format!("bench-{run_id}");
    let subscription = format!("bench-{run_id}");
    admin_call(
        &admin,
        reqwest::Method::POST,
        &format!("{base}/v1/topics"),
        Some(json!({"name": topic})),
    )
    .await
    .context("cannot create the bench topic")?;
    admin_call(
        &admin,
        reqwest::Method::POST,
        &format!("{base}/v1/subscriptions"),
        Some(json!({
            "name": subscription,
            "topic": topic,
            "endpoint": format!("http://{sink_address}/push"),
            "max_concurrency": args.endpoint_concurrency,
        })),
    )
    .await
    .context("cannot create the bench subscription")?;

    if bases.len() > 1 {
        // The other nodes learn of the new subscription when they next
        // re-read subscriptions (every 5 s); until then only one delivers.
        progress(format_args!(
            "bench: waiting for every node to load the subscription"
        ));
        tokio::time::sleep(Duration::from_millis(5500)).await;
    }
    let before = match &args.database_url {
        Some(url) => Some(
            redrive_store::postgres::database_activity(url)
                .await
                .context("cannot read PostgreSQL's activity counters")?,
        ),
        None => None,
    };
    let mut measured = publish_and_wait(args, bases, token, &topic, &run_id, sink).await;
    if let (Some(url), Some(before), Ok(results)) = (&args.database_url, before, &mut measured) {
        // Backends publish their counters about once a second.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let after = redrive_store::postgres::database_activity(url)
            .await
            .context("cannot read PostgreSQL's activity counters")?;
        results.database = Some(after.since(&before));
    }

    if external || args.database_url.is_some() {
        // Leave the external server or the shared database as it was (a
        // leftover subscription would take dispatcher slots in later runs);
        // a failure here is only noted.
        for path in [
            format!("/v1/subscriptions/{subscription}"),
            format!("/v1/topics/{topic}"),
        ] {
            if let Err(err) = admin_call(
                &admin,
                reqwest::Method::DELETE,
                &format!("{base}{path}"),
                None,
            )
            .await
            {
                progress(format_args!("bench: cannot clean up {path}: {err:#}"));
            }
        }
    }
    measured
}

async fn admin_call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<Value>,
) -> anyhow::Result<()> {
    let mut request = client.request(method.clone(), url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        bail!("{method} {url} answered {status}: {}", text.trim());
    }
    Ok(())
}

/// What one publisher saw.
#[derive(Default)]
struct PublisherLog {
    /// (first event index, events in the request, when the request started).
    accepted: Vec<(usize, usize, Instant)>,
    /// Latency of every request that was answered, accepted or not.
    latencies: Vec<Duration>,
    first_start: Option<Instant>,
    last_answer: Option<Instant>,
    requests: usize,
    failed_requests: usize,
    failed_events: usize,
    first_error: Option<String>,
}

/// What publishers share.
struct Plan {
    client: reqwest::Client,
    /// One per node; requests go to them in turn.
    urls: Vec<String>,
    content_type: &'static str,
    run_id: String,
    events: usize,
    batch: usize,
    rate: Option<f64>,
    padding: String,
    start: Instant,
    deadline: Instant,
    next_request: AtomicUsize,
    accepted_events: AtomicUsize,
}

async fn publish_and_wait(
    args: &BenchOptions,
    bases: &[String],
    token: Option<&str>,
    topic: &str,
    run_id: &str,
    sink: &Arc<Sink>,
) -> anyhow::Result<Results> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .default_headers(auth_headers(token)?)
        .tcp_nodelay(true)
        .pool_max_idle_per_host(args.publishers)
        .pool_idle_timeout(Duration::from_secs(60))
        .build()
        .context("cannot build the publishing HTTP client")?;
    let start = Instant::now();
    let deadline = start + args.timeout.as_duration();
    let plan = Arc::new(Plan {
        client,
        urls: bases
            .iter()
            .map(|base| format!("{base}/v1/topics/{topic}/events"))
            .collect(),
        content_type: if args.batch > 1 {
            "application/cloudevents-batch+json"
        } else {
            "application/cloudevents+json"
        },
        run_id: run_id.to_owned(),
        events: args.events,
        batch: args.batch,
        rate: args.rate,
        padding: "x".repeat(args.payload_bytes),
        start,
        deadline,
        next_request: AtomicUsize::new(0),
        accepted_events: AtomicUsize::new(0),
    });
    progress(format_args!(
        "bench: publishing {} events ({} publishers, batch {}, {})",
        args.events,
        args.publishers,
        args.batch,
        match args.rate {
            Some(rate) => format!("{rate} events/s"),
            None => "unpaced".to_owned(),
        }
    ));

    let mut publishers = JoinSet::new();
    for _ in 0..args.publishers {
        publishers.spawn(publisher(plan.clone()));
    }
    let mut logs = Vec::with_capacity(args.publishers);
    let mut publishing_done_at = None;
    let mut last_report = Instant::now();
    let timed_out = loop {
        while let Some(joined) = publishers.try_join_next() {
            logs.push(joined.context("a publisher panicked")?);
        }
        let now = Instant::now();
        if publishers.is_empty() && publishing_done_at.is_none() {
            publishing_done_at = Some(now);
            progress(format_args!(
                "bench: published {} events in {:.2}s; waiting for deliveries",
                plan.accepted_events.load(Ordering::Relaxed),
                now.duration_since(start).as_secs_f64()
            ));
        }
        let accepted = plan.accepted_events.load(Ordering::Relaxed);
        let delivered = sink.unique.load(Ordering::Relaxed);
        if publishing_done_at.is_some() && delivered >= accepted {
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
                args.events
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    if timed_out {
        progress(format_args!(
            "bench: gave up after {}; reporting what arrived",
            args.timeout
        ));
        publishers.abort_all();
        while let Some(joined) = publishers.join_next().await {
            if let Ok(log) = joined {
                logs.push(log);
            }
        }
    }

    let first = match sink.first.lock() {
        Ok(first) => first.clone(),
        Err(_) => bail!("the sink's record is unreadable (a sink task panicked)"),
    };
    Ok(Results::compute(
        args,
        &logs,
        &first,
        sink.total.load(Ordering::Relaxed),
        sink.foreign.load(Ordering::Relaxed),
        timed_out,
    ))
}

/// Claims the next request until none is left, paced to `rate` if set.
/// It returns rather than fails: errors are counted in its log.
async fn publisher(plan: Arc<Plan>) -> PublisherLog {
    let mut log = PublisherLog::default();
    loop {
        let request = plan.next_request.fetch_add(1, Ordering::Relaxed);
        let first = request.saturating_mul(plan.batch);
        if first >= plan.events {
            break;
        }
        let count = plan.batch.min(plan.events - first);
        if let Some(rate) = plan.rate {
            let due = plan.start + Duration::from_secs_f64(first as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
        }
        if Instant::now() >= plan.deadline {
            break;
        }
        let body = plan.body(first, count);
        let started = Instant::now();
        log.first_start.get_or_insert(started);
        log.requests += 1;
        let sent = plan
            .client
            .post(&plan.urls[request % plan.urls.len()])
            .header(reqwest::header::CONTENT_TYPE, plan.content_type)
            .body(body)
            .send()
            .await;
        let answer = match sent {
            Ok(response) => {
                let status = response.status();
                let text = response.text().await;
                text.map(|text| (status, text))
            }
            Err(err) => Err(err),
        };
        let answered = Instant::now();
        match answer {
            Ok((status, _)) if status.is_success() => {
                log.latencies.push(answered.duration_since(started));
                log.last_answer = Some(answered);
                log.accepted.push((first, count, started));
                plan.accepted_events.fetch_add(count, Ordering::Relaxed);
            }
            Ok((status, text)) => {
                log.latencies.push(answered.duration_since(started));
                log.failed_requests += 1;
                log.failed_events += count;
                log.first_error
                    .get_or_insert_with(|| format!("{status}: {}", text.trim()));
            }
            Err(err) => {
                log.failed_requests += 1;
                log.failed_events += count;
                log.first_error.get_or_insert_with(|| format!("{err:#}"));
            }
        }
    }
    log
}

impl Plan {
    fn body(&self, first: usize, count: usize) -> String {
        let mut body = String::with_capacity(count * (160 + self.padding.len()) + 2);
        if self.batch > 1 {
            body.push('[');
        }
        for index in first..first + count {
            if index > first {
                body.push(',');
            }
            // Writing to a String cannot fail.
            let _ = write!(
                body,
                r#"{{"specversion":"1.0","id":"{index}","source":"/redrive/bench/{}","type":"redrive.bench","datacontenttype":"application/json","data":{{"n":{index},"pad":"{}"}}}}"#,
                self.run_id, self.padding
            );
        }
        if self.batch > 1 {
            body.push(']');
        }
        body
    }
}

// ---------------------------------------------------------------------------
// Results

struct Results {
    events: usize,
    publishers: usize,
    batch: usize,
    rate: Option<f64>,
    endpoint_concurrency: u32,
    timed_out: bool,
    requests: usize,
    failed_requests: usize,
    accepted: usize,
    first_error: Option<String>,
    publish_seconds: f64,
    publish_rate: f64,
    request_latency: Percentiles,
    delivered: usize,
    missing: usize,
    delivery_seconds: f64,
    delivery_rate: f64,
    delivery_latency: Percentiles,
    pushes: u64,
    duplicates: u64,
    foreign: u64,
    nodes: usize,
    /// PostgreSQL's work during the run, when on PostgreSQL.
    database: Option<redrive_store::postgres::DatabaseActivity>,
}

#[derive(Default)]
struct Percentiles {
    p50: Duration,
    p99: Duration,
    max: Duration,
}

impl Percentiles {
    /// Nearest-rank percentiles of `samples`, which it sorts.
    fn of(samples: &mut [Duration]) -> Percentiles {
        samples.sort_unstable();
        let rank = |p: f64| {
            let rank = (p * samples.len() as f64).ceil() as usize;
            samples
                .get(rank.saturating_sub(1).min(samples.len().saturating_sub(1)))
                .copied()
                .unwrap_or_default()
        };
        Percentiles {
            p50: rank(0.50),
            p99: rank(0.99),
            max: samples.last().copied().unwrap_or_default(),
        }
    }

    fn to_json(&self) -> Value {
        json!({"p50_ms": ms(self.p50), "p99_ms": ms(self.p99), "max_ms": ms(self.max)})
    }
}

fn ms(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1e6).round() / 1e3
}

fn per_second(count: usize, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

impl Results {
    fn compute(
        args: &BenchOptions,
        logs: &[PublisherLog],
        first_delivery: &[Option<Instant>],
        pushes: u64,
        foreign: u64,
        timed_out: bool,
    ) -> Results {
        let first_start = logs.iter().filter_map(|log| log.first_start).min();
        let last_answer = logs.iter().filter_map(|log| log.last_answer).max();
        let mut request_latencies: Vec<Duration> = logs
            .iter()
            .flat_map(|log| log.latencies.iter().copied())
            .collect();
        let requests = logs.iter().map(|log| log.requests).sum();
        let failed_requests = logs.iter().map(|log| log.failed_requests).sum();

        let mut accepted = 0;
        let mut delivered = 0;
        let mut last_delivery = None;
        let mut delivery_latencies = Vec::new();
        for &(first, count, sent) in logs.iter().flat_map(|log| log.accepted.iter()) {
            accepted += count;
            for arrival in first_delivery.iter().skip(first).take(count).flatten() {
                delivered += 1;
                delivery_latencies.push(arrival.saturating_duration_since(sent));
                last_delivery = last_delivery.max(Some(*arrival));
            }
        }
        let unique = first_delivery.iter().flatten().count() as u64;

        let publish_seconds = match (first_start, last_answer) {
            (Some(start), Some(end)) => end.duration_since(start).as_secs_f64(),
            _ => 0.0,
        };
        let delivery_seconds = match (first_start, last_delivery) {
            (Some(start), Some(end)) => end.duration_since(start).as_secs_f64(),
            _ => 0.0,
        };
        Results {
            events: args.events,
            publishers: args.publishers,
            batch: args.batch,
            rate: args.rate,
            endpoint_concurrency: args.endpoint_concurrency,
            timed_out,
            requests,
            failed_requests,
            accepted,
            first_error: logs.iter().find_map(|log| log.first_error.clone()),
            publish_seconds,
            publish_rate: per_second(accepted, publish_seconds),
            request_latency: Percentiles::of(&mut request_latencies),
            delivered,
            missing: accepted - delivered,
            delivery_seconds,
            delivery_rate: per_second(delivered, delivery_seconds),
            delivery_latency: Percentiles::of(&mut delivery_latencies),
            pushes,
            duplicates: pushes.saturating_sub(unique + foreign),
            foreign,
            nodes: args.nodes,
            database: None,
        }
    }

    fn per_delivered(&self, count: i64) -> f64 {
        if self.delivered == 0 {
            0.0
        } else {
            count as f64 / self.delivered as f64
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "events": self.events,
            "publishers": self.publishers,
            "batch": self.batch,
            "rate": self.rate,
            "endpoint_concurrency": self.endpoint_concurrency,
            "timed_out": self.timed_out,
            "publish": {
                "requests": self.requests,
                "failed_requests": self.failed_requests,
                "first_error": self.first_error,
                "accepted_events": self.accepted,
                "seconds": self.publish_seconds,
                "events_per_second": self.publish_rate,
                "request_latency": self.request_latency.to_json(),
            },
            "delivery": {
                "delivered": self.delivered,
                "missing": self.missing,
                "seconds": self.delivery_seconds,
                "events_per_second": self.delivery_rate,
                "first_delivery_latency": self.delivery_latency.to_json(),
                "pushes": self.pushes,
                "duplicates": self.duplicates,
                "foreign": self.foreign,
            },
            "nodes": self.nodes,
            "postgres": self.database.map(|db| json!({
                "transactions": db.commits + db.rollbacks,
                "transactions_per_event": self.per_delivered(db.commits + db.rollbacks),
                "rows_written_per_event":
                    self.per_delivered(db.rows_inserted + db.rows_updated + db.rows_deleted),
            })),
        })
    }

    fn table(&self) -> String {
        let mut out = String::new();
        let rate = match self.rate {
            Some(rate) => format!("{rate} events/s"),
            None => "unpaced".to_owned(),
        };
        let latency = |p: &Percentiles, with_max: bool| {
            let mut text = format!("p50 {:.2} ms   p99 {:.2} ms", ms(p.p50), ms(p.p99));
            if with_max {
                let _ = write!(text, "   max {:.2} ms", ms(p.max));
            }
            text
        };
        let rows: Vec<(&str, String)> = vec![
            ("events", self.events.to_string()),
            ("publishers", self.publishers.to_string()),
            ("batch", self.batch.to_string()),
            ("rate", rate),
            (
                "endpoint concurrency",
                self.endpoint_concurrency.to_string(),
            ),
            ("", String::new()),
            (
                "publish requests",
                format!("{} ({} failed)", self.requests, self.failed_requests),
            ),
            (
                "publish throughput",
                format!(
                    "{:.0} events/s ({} accepted in {:.2} s)",
                    self.publish_rate, self.accepted, self.publish_seconds
                ),
            ),
            (
                "publish request latency",
                latency(&self.request_latency, false),
            ),
            (
                "delivered",
                format!(
                    "{} of {} ({} missing)",
                    self.delivered, self.accepted, self.missing
                ),
            ),
            (
                "end-to-end throughput",
                format!(
                    "{:.0} events/s (first publish to last first delivery: {:.2} s)",
                    self.delivery_rate, self.delivery_seconds
                ),
            ),
            (
                "publish → first delivery",
                latency(&self.delivery_latency, true),
            ),
            (
                "duplicates",
                format!("{} ({} pushes in all)", self.duplicates, self.pushes),
            ),
        ];
        let width = rows
            .iter()
            .map(|(name, _)| name.chars().count())
            .max()
            .unwrap_or(0);
        for (name, value) in rows {
            if name.is_empty() {
                out.push('\n');
                continue;
            }
            let pad = width - name.chars().count();
            let _ = writeln!(out, "{name}{}  {value}", " ".repeat(pad));
        }
        if let Some(db) = self.database {
            let transactions = db.commits + db.rollbacks;
            let written = db.rows_inserted + db.rows_updated + db.rows_deleted;
            let _ = writeln!(
                out,
                "postgres ({} nodes): {transactions} transactions ({:.2} per delivered event), \
                 {written} rows written ({:.2} per event)",
                self.nodes,
                self.per_delivered(transactions),
                self.per_delivered(written)
            );
        }
        if self.foreign > 0 {
            let _ = writeln!(out, "(also {} pushes of other events)", self.foreign);
        }
        if let Some(error) = &self.first_error {
            let _ = writeln!(out, "first publish error: {error}");
        }
        if self.timed_out {
            let _ = writeln!(out, "(gave up at the timeout: the numbers are partial)");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        samples.reverse();
        let p = Percentiles::of(&mut samples);
        assert_eq!(p.p50, Duration::from_millis(50));
        assert_eq!(p.p99, Duration::from_millis(99));
        assert_eq!(p.max, Duration::from_millis(100));
        let empty = Percentiles::of(&mut []);
        assert_eq!(empty.max, Duration::ZERO);
    }

    #[test]
    fn the_sink_counts_first_arrivals_and_duplicates() {
        let sink = Sink::new(3);
        let now = Instant::now();
        sink.record(Some("1"), now);
        sink.record(Some("1"), now + Duration::from_millis(5));
        sink.record(Some("7"), now);
        sink.record(None, now);
        assert_eq!(sink.unique.load(Ordering::Relaxed), 1);
        assert_eq!(sink.total.load(Ordering::Relaxed), 4);
        assert_eq!(sink.foreign.load(Ordering::Relaxed), 2);
        let first = sink.first.lock().map(|f| f.clone()).unwrap_or_default();
        assert_eq!(first[1], Some(now));
    }
}

//! The `redrive` command line, run as a real process: offline policy
//! explanations, help, and the client commands against a running server.

use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use crate::common;

use common::RunningServer;

const TOKEN: &str = "cli-test-admin-token-0123456789";

/// `redrive ARGS` as users run it: the server with a token and the test
/// endpoints on 127.0.0.1 allowed, client commands with the same token.
fn command(args: &[&str]) -> Command {
    let mut command = common::command(TOKEN);
    command.args(args);
    command
}

/// Runs `redrive ARGS` to completion.
fn redrive(args: &[&str]) -> Output {
    command(args).output().expect("redrive runs")
}

/// The same, off the async runtime's threads.
async fn redrive_async(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        redrive(&args)
    })
    .await
    .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Stdout parsed as JSON, after checking the command succeeded.
fn json_output(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "redrive failed ({}): {}",
        output.status,
        stderr(output)
    );
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|err| panic!("stdout is not JSON ({err}): {}", stdout(output)))
}

/// Checks a failure: non-zero exit, nothing on stdout, and exactly one
/// `error:` line on stderr, which it returns.
fn one_line_error(output: &Output) -> String {
    assert!(!output.status.success(), "it succeeded: {}", stdout(output));
    assert!(output.stdout.is_empty(), "stdout: {}", stdout(output));
    let stderr = stderr(output);
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|line| !line.trim().is_empty())
        // clap's usage hint is not part of the message.
        .filter(|line| !line.starts_with("For more information"))
        .collect();
    assert_eq!(errors.len(), 1, "expected one error line, got: {stderr}");
    assert!(errors[0].starts_with("error: "), "{stderr}");
    errors[0].to_owned()
}

// ---------------------------------------------------------------------------
// policy explain
// ---------------------------------------------------------------------------

/// `(delay_seconds, at_seconds)` of each retry of `policy explain --json`.
fn explain(args: &[&str]) -> Vec<(f64, f64)> {
    let mut all = vec!["policy", "explain", "--json"];
    all.extend_from_slice(args);
    let rows = json_output(&redrive(&all));
    rows.as_array()
        .expect("a JSON array")
        .iter()
        .enumerate()
        .map(|(i, row)| {
            assert_eq!(row["retry"], i + 1, "{row}");
            (
                row["delay_seconds"].as_f64().unwrap(),
                row["at_seconds"].as_f64().unwrap(),
            )
        })
        .collect()
}

fn assert_schedule(actual: &[(f64, f64)], delays: &[f64], at: &[f64]) {
    let close = |a: &[f64], b: &[f64]| {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-9)
    };
    let actual_delays: Vec<f64> = actual.iter().map(|(d, _)| *d).collect();
    let actual_at: Vec<f64> = actual.iter().map(|(_, a)| *a).collect();
    assert!(close(&actual_delays, delays), "delays {actual_delays:?}");
    assert!(close(&actual_at, at), "at {actual_at:?}");
}

#[test]
fn explain_app_engine_example_doubles_three_times_then_grows_linearly_to_the_cap() {
    let schedule = explain(&[
        "--min-backoff",
        "10s",
        "--max-backoff",
        "300s",
        "--max-doublings",
        "3",
        "--count",
        "8",
    ]);
    assert_schedule(
        &schedule,
        &[10., 20., 40., 80., 160., 240., 300., 300.],
        &[10., 30., 70., 150., 310., 550., 850., 1150.],
    );
}

#[test]
fn explain_without_flags_uses_app_engine_defaults() {
    let schedule = explain(&["--count", "3"]);
    assert_schedule(&schedule, &[0.1, 0.2, 0.4], &[0.1, 0.3, 0.7]);
}

#[test]
fn explain_stops_at_the_retry_limit() {
    let schedule = explain(&["--retry-limit", "3"]);
    assert_schedule(&schedule, &[0.1, 0.2, 0.4], &[0.1, 0.3, 0.7]);
}

#[test]
fn explain_both_limit_mode_outlasts_either_mode() {
    // Retry n is allowed when n <= retry_limit OR (both) / AND (either) the
    // age at its decision, at_{n-1} (at_0 = 0), is within the age limit.
    let exponential = [
        "--min-backoff",
        "10s",
        "--max-backoff",
        "300s",
        "--max-doublings",
        "3",
    ];
    let with = |limits: &[&str]| {
        let mut args = exponential.to_vec();
        args.extend_from_slice(limits);
        explain(&args)
    };

    // Retry limit 3, age limit 100s; at = 10, 30, 70, 150, …
    // both: retries 1-3 by count, retry 4 by age (70s <= 100s), retry 5
    // neither (150s). either: retry 4 is past the count.
    let limits = ["--retry-limit", "3", "--age-limit", "100s"];
    let both = with(&[&limits[..], &["--limit-mode", "both"]].concat());
    assert_schedule(&both, &[10., 20., 40., 80.], &[10., 30., 70., 150.]);
    let either = with(&[&limits[..], &["--limit-mode", "either"]].concat());
    assert_schedule(&either, &[10., 20., 40.], &[10., 30., 70.]);

    // Retry limit 5, age limit 25s: either stops at retry 3 (age 30s);
    // both runs to the retry limit.
    let limits = ["--retry-limit", "5", "--age-limit", "25s"];
    let both = with(&[&limits[..], &["--limit-mode", "both"]].concat());
    assert_schedule(
        &both,
        &[10., 20., 40., 80., 160.],
        &[10., 30., 70., 150., 310.],
    );
    let either = with(&[&limits[..], &["--limit-mode", "either"]].concat());
    assert_schedule(&either, &[10., 20.], &[10., 30.]);

    // Both is App Engine's default.
    let default = with(&limits);
    assert_eq!(default.len(), 5);
}

#[test]
fn explain_with_a_bad_duration_fails_naming_the_value() {
    let output = redrive(&["policy", "explain", "--min-backoff", "10x"]);
    let line = one_line_error(&output);
    assert!(line.contains("10x"), "{line}");
    assert!(line.contains("--min-backoff"), "{line}");
}

#[test]
fn explain_with_min_over_max_backoff_fails_naming_the_flag() {
    let output = redrive(&[
        "policy",
        "explain",
        "--min-backoff",
        "10s",
        "--max-backoff",
        "1s",
    ]);
    let line = one_line_error(&output);
    assert!(line.contains("--max-backoff"), "{line}");
}

#[test]
fn serve_refuses_intervals_below_their_minimum_naming_flag_and_minimum() {
    let data = tempfile::tempdir().unwrap();
    let data = data.path().to_str().unwrap();
    for (flag, value, minimum) in [
        ("--health-interval", "0s", "1s"),
        ("--health-interval", "999ms", "1s"),
        ("--poll-interval", "0s", "50ms"),
        ("--poll-interval", "10ms", "50ms"),
        ("--lease-margin", "0s", "1s"),
        ("--history-retention", "0s", "1s"),
    ] {
        let output = redrive(&[
            "serve",
            "--data",
            data,
            "--listen",
            "127.0.0.1:0",
            flag,
            value,
        ]);
        let line = one_line_error(&output);
        assert!(
            line.contains(flag)
                && line.contains(value)
                && line.contains(&format!("at least {minimum}")),
            "{flag} {value}: {line}"
        );
    }
}

#[test]
fn help_is_available_for_the_command_and_serve() {
    let output = redrive(&["--help"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let help = stdout(&output);
    for word in ["serve", "topics", "subscriptions", "publish", "policy"] {
        assert!(
            help.contains(word),
            "--help does not mention {word}: {help}"
        );
    }
    let output = redrive(&["serve", "--help"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let help = stdout(&output);
    assert!(
        help.contains("--listen") && help.contains("--data"),
        "{help}"
    );
}

// ---------------------------------------------------------------------------
// Client commands against a running server
// ---------------------------------------------------------------------------

/// A `redrive serve` on a temporary data directory.
fn start_server() -> RunningServer {
    RunningServer::try_start_in_temp_dir(TOKEN, &[])
        .unwrap_or_else(|problem| panic!("redrive serve did not start: {problem}"))
}

type Pushes = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

/// A real endpoint that answers 200 and keeps every push.
async fn endpoint() -> (String, Pushes) {
    let pushes: Pushes = Arc::default();
    async fn receive(State(pushes): State<Pushes>, headers: HeaderMap, body: Bytes) -> StatusCode {
        pushes.lock().unwrap().push((headers, body));
        StatusCode::OK
    }
    let app = Router::new().fallback(receive).with_state(pushes.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{address}/hook"), pushes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_commands_create_publish_and_list_against_a_running_server() {
    let server = tokio::task::spawn_blocking(start_server).await.unwrap();
    let (endpoint, pushes) = endpoint().await;
    let url = server.url.as_str();

    let topic = json_output(&redrive_async(&["--server", url, "topics", "create", "orders"]).await);
    assert_eq!(topic["name"], "orders");

    let policy = r#"{"backoff": {"kind": "fixed", "interval": "0.2s"}, "retry_limit": 2}"#;
    let subscription = json_output(
        &redrive_async(&[
            "--server",
            url,
            "subscriptions",
            "create",
            "orders-hook",
            "--topic",
            "orders",
            "--endpoint",
            &endpoint,
            "--filter-type",
            "order.*",
            "--retry-policy",
            policy,
            "--timeout",
            "2s",
            "--max-concurrency",
            "2",
        ])
        .await,
    );
    assert_eq!(subscription["name"], "orders-hook");
    assert_eq!(subscription["endpoint"], endpoint.as_str());
    assert_eq!(subscription["filter"], json!({"type": "order.*"}));
    assert_eq!(subscription["retry_policy"]["retry_limit"], 2);
    assert_eq!(subscription["max_concurrency"], 2);

    let published = json_output(
        &redrive_async(&[
            "--server",
            url,
            "publish",
            "orders",
            "--type",
            "order.created",
            "--source",
            "/shop",
            "--id",
            "o-1",
            "--data",
            r#"{"a":1}"#,
        ])
        .await,
    );
    assert_eq!(
        published,
        json!({"events": [{"id": "o-1", "source": "/shop", "duplicate": false}]})
    );

    // The endpoint gets the event…
    let deadline = Instant::now() + Duration::from_secs(10);
    while pushes.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the endpoint got nothing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (headers, body) = pushes.lock().unwrap()[0].clone();
    assert_eq!(headers["ce-id"], "o-1");
    assert_eq!(headers["ce-type"], "order.created");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap(),
        json!({"a": 1})
    );

    // …and `deliveries list` shows it delivered.
    let deadline = Instant::now() + Duration::from_secs(10);
    let delivery = loop {
        let list = json_output(
            &redrive_async(&["--server", url, "deliveries", "list", "orders-hook"]).await,
        );
        let deliveries = list["deliveries"].as_array().unwrap().clone();
        assert_eq!(deliveries.len(), 1, "{list}");
        if deliveries[0]["state"] == "delivered" {
            break deliveries[0].clone();
        }
        assert!(Instant::now() < deadline, "never delivered: {list}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(delivery["event_id"], "o-1");
    let id = delivery["id"].as_str().unwrap();
    let detail = json_output(&redrive_async(&["--server", url, "deliveries", "get", id]).await);
    assert_eq!(
        detail["attempt_log"].as_array().unwrap().len(),
        1,
        "{detail}"
    );
    assert_eq!(detail["attempt_log"][0]["status"], 200);
    assert_eq!(headers["webhook-id"], id);

    let topics = json_output(&redrive_async(&["--server", url, "topics", "list"]).await);
    assert_eq!(topics["topics"][0]["name"], "orders");

    // An unknown topic is one clear error line.
    let output = redrive_async(&[
        "--server",
        url,
        "publish",
        "no-such-topic",
        "--type",
        "t",
        "--source",
        "s",
    ])
    .await;
    let line = one_line_error(&output);
    assert!(line.contains("no-such-topic"), "{line}");
    assert!(line.contains("404"), "{line}");
}

#[test]
fn client_command_without_a_server_fails_with_one_line() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = format!("http://127.0.0.1:{port}");
    let output = redrive(&["--server", &server, "topics", "list"]);
    let line = one_line_error(&output);
    assert!(line.contains(&server), "{line}");
}

/// A real endpoint that answers 503 while the flag is set, 200 after.
async fn switchable_endpoint() -> (String, Arc<std::sync::atomic::AtomicBool>) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let down = Arc::new(AtomicBool::new(true));
    async fn receive(State(down): State<Arc<AtomicBool>>) -> StatusCode {
        if down.load(Ordering::SeqCst) {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::OK
        }
    }
    let app = Router::new().fallback(receive).with_state(down.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{address}/hook"), down)
}

/// Polls `deliveries list` until every delivery is in `state`.
async fn wait_all(url: &str, subscription: &str, count: usize, state: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let list = json_output(
            &redrive_async(&["--server", url, "deliveries", "list", subscription]).await,
        );
        let deliveries = list["deliveries"].as_array().unwrap();
        if deliveries.len() == count && deliveries.iter().all(|d| d["state"] == state) {
            return;
        }
        assert!(Instant::now() < deadline, "not all {state}: {list}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_redrive_moves_failed_deliveries_and_shows_progress() {
    let server = tokio::task::spawn_blocking(start_server).await.unwrap();
    let (endpoint, down) = switchable_endpoint().await;
    let url = server.url.as_str();
    json_output(&redrive_async(&["--server", url, "topics", "create", "orders"]).await);
    json_output(&redrive_async(&["--server", url, "topics", "create", "orders-dead"]).await);
    let subscription = json_output(
        &redrive_async(&[
            "--server",
            url,
            "subscriptions",
            "create",
            "hook",
            "--topic",
            "orders",
            "--endpoint",
            &endpoint,
            "--retry-policy",
            r#"{"backoff": {"kind": "fixed", "interval": "0.1s"}, "retry_limit": 0}"#,
            "--dead-letter-topic",
            "orders-dead",
            "--max-delivery-attempts",
            "10",
            "--message-retention",
            "1d",
        ])
        .await,
    );
    assert_eq!(subscription["dead_letter_topic"], "orders-dead");
    assert_eq!(subscription["max_delivery_attempts"], 10);
    assert_eq!(subscription["message_retention"], "86400s");
    for id in ["o-1", "o-2"] {
        json_output(
            &redrive_async(&[
                "--server",
                url,
                "publish",
                "orders",
                "--type",
                "order.created",
                "--source",
                "/shop",
                "--id",
                id,
            ])
            .await,
        );
    }
    wait_all(url, "hook", 2, "failed").await;

    down.store(false, std::sync::atomic::Ordering::SeqCst);
    let output = redrive_async(&[
        "--server",
        url,
        "subscriptions",
        "redrive",
        "hook",
        "--reason",
        "retries_exhausted",
    ])
    .await;
    let answer = json_output(&output);
    assert_eq!(answer["moved"], 2, "{answer}");
    assert!(
        stderr(&output).contains("2/2 redriven"),
        "{}",
        stderr(&output)
    );
    wait_all(url, "hook", 2, "delivered").await;

    // Nothing is left to redrive, and a bad reason is one clear error.
    let again =
        json_output(&redrive_async(&["--server", url, "subscriptions", "redrive", "hook"]).await);
    assert_eq!(again["moved"], 0);
    let output = redrive_async(&[
        "--server",
        url,
        "subscriptions",
        "redrive",
        "hook",
        "--reason",
        "bogus",
    ])
    .await;
    let line = one_line_error(&output);
    assert!(line.contains("reasons"), "{line}");

    let journal =
        json_output(&redrive_async(&["--server", url, "subscriptions", "journal", "hook"]).await);
    assert_eq!(journal["entries"].as_array().unwrap().len(), 2, "{journal}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_pause_resume_and_enable_from_the_command_line() {
    let server = tokio::task::spawn_blocking(start_server).await.unwrap();
    let (endpoint, pushes) = endpoint().await;
    let url = server.url.as_str();
    json_output(&redrive_async(&["--server", url, "topics", "create", "orders"]).await);
    let created = json_output(
        &redrive_async(&[
            "--server",
            url,
            "subscriptions",
            "create",
            "hook",
            "--topic",
            "orders",
            "--endpoint",
            &endpoint,
            "--health-policy",
            r#"{"window": "1h", "auto_disable": false}"#,
        ])
        .await,
    );
    assert_eq!(created["health"], "healthy");
    assert_eq!(created["health_policy"]["window"], "3600s");
    assert_eq!(created["health_policy"]["auto_disable"], false);

    let output = redrive_async(&["--server", url, "subscriptions", "pause", "hook"]).await;
    assert_eq!(json_output(&output)["paused"], true);
    assert!(
        stderr(&output).contains("hook: healthy, paused"),
        "{}",
        stderr(&output)
    );
    json_output(
        &redrive_async(&[
            "--server", url, "publish", "orders", "--type", "t", "--source", "/s",
        ])
        .await,
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(pushes.lock().unwrap().is_empty(), "pushed while paused");

    let resumed =
        json_output(&redrive_async(&["--server", url, "subscriptions", "resume", "hook"]).await);
    assert_eq!(resumed["paused"], false);
    wait_all(url, "hook", 1, "delivered").await;

    let enabled =
        json_output(&redrive_async(&["--server", url, "subscriptions", "enable", "hook"]).await);
    assert_eq!(enabled["health"], "healthy");
    let line =
        one_line_error(&redrive_async(&["--server", url, "subscriptions", "pause", "nope"]).await);
    assert!(line.contains("not found"), "{line}");
}

#[test]
fn json_flags_refuse_unknown_fields_before_anything_is_sent() {
    // Port 9 (discard) is never asked: the flags are refused first.
    let base = [
        "--server",
        "http://127.0.0.1:9",
        "subscriptions",
        "create",
        "s",
        "--topic",
        "t",
        "--endpoint",
        "http://127.0.0.1:9/",
    ];
    for (flag, value, expected) in [
        (
            "--retry-policy",
            r#"{"retry_limmit": 5}"#,
            "error: --retry-policy: unknown field \"retry_limmit\"; known fields: age_limit, backoff,",
        ),
        (
            "--retry-policy",
            r#"{"backoff": {"kind": "fixed", "intervl": "1s"}}"#,
            "error: --retry-policy: unknown field \"intervl\" in backoff; known fields: interval",
        ),
        (
            "--health-policy",
            r#"{"windw": "1h"}"#,
            "error: --health-policy: unknown field \"windw\"; known fields: auto_disable,",
        ),
    ] {
        let mut args = base.to_vec();
        args.extend([flag, value]);
        let line = one_line_error(&redrive(&args));
        assert!(line.starts_with(expected), "{line}");
    }
}

#[test]
fn client_flags_show_in_the_help_of_client_commands_only() {
    for args in [
        &["policy", "explain", "--help"][..],
        &["policy", "presets", "--help"],
        &["sink", "--help"],
        &["serve", "--help"],
        &["completions", "--help"],
    ] {
        let help = stdout(&redrive(args));
        assert!(help.contains("Usage: redrive"), "{args:?}: {help}");
        for flag in ["--server", "--token", "--output"] {
            assert!(!help.contains(flag), "{args:?} lists {flag}: {help}");
        }
    }
    for args in [
        &["topics", "list", "--help"][..],
        &["deliveries", "get", "--help"],
        &["apply", "--help"],
    ] {
        let help = stdout(&redrive(args));
        for flag in ["--server", "--token", "--output"] {
            assert!(help.contains(flag), "{args:?} lacks {flag}: {help}");
        }
    }
}

#[test]
fn a_server_without_scheme_is_reached_over_http_and_a_bad_one_is_named() {
    // Nothing listens on port 9: the error shows the URL http:// made.
    let line = one_line_error(&redrive(&["--server", "127.0.0.1:9", "topics", "list"]));
    assert!(
        line.contains("cannot reach redrive at http://127.0.0.1:9"),
        "{line}"
    );
    let line = one_line_error(&redrive(&[
        "--server",
        "ftp://127.0.0.1:9",
        "topics",
        "list",
    ]));
    assert!(line.contains("use an http:// or https:// URL"), "{line}");
}

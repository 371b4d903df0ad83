//! `redrive bench delivery` run as a real process on a few hundred events:
//! it starts its own `redrive serve` child, measures the raw loopback figure
//! beside it, reports the server's CPU and memory, and leaves no server
//! behind, even when a run fails. No figure is held to a speed (the machine
//! is shared): only that each is there and that nothing is missing.

use serde_json::Value;

use crate::common;

#[test]
fn reports_the_servers_cpu_and_memory_beside_the_raw_loopback_figure() {
    let output = common::bench(
        "delivery",
        &[
            "--events",
            "300",
            "--publishers",
            "4",
            "--runs",
            "1",
            "--json",
        ],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "bench delivery failed:\n{stdout}\n{stderr}"
    );
    let report: Value = serde_json::from_str(&stdout).expect("one JSON object");
    assert_eq!(report["runs"].as_array().map(Vec::len), Some(1), "{report}");
    let run = &report["runs"][0];

    let raw = &run["raw"];
    assert_eq!(raw["events"], 300, "{raw}");
    assert_eq!(raw["failed_requests"], 0, "{raw}");
    assert!(raw["requests_per_second"].as_f64().unwrap() > 0.0, "{raw}");
    assert!(raw["request_latency"]["max_ms"].as_f64().unwrap() > 0.0);

    let delivery = &run["server"]["delivery"];
    assert_eq!(delivery["delivered"], 300, "{delivery}");
    assert_eq!(delivery["missing"], 0, "{delivery}");
    let server = &run["server"]["server"];
    assert!(
        server["cpu_us_per_event"].as_f64().unwrap() > 0.0,
        "{server}"
    );
    assert!(server["peak_rss_bytes"].as_u64().unwrap() > 0, "{server}");
    assert!(run["delivery_share_of_raw"].as_f64().unwrap() > 0.0);

    let median = &report["median"];
    assert!(median["server_cpu_us_per_event"].as_f64().unwrap() > 0.0);
    assert!(median["raw_requests_per_second"].as_f64().unwrap() > 0.0);
    assert_eq!(report["missing"], 0);

    let pids = common::bench_server_pids(&stderr);
    assert_eq!(pids.len(), 1, "one child server per run:\n{stderr}");
    assert!(
        pids.iter().all(|&pid| common::bench_server_gone(pid)),
        "the server outlived the bench"
    );
}

#[test]
fn the_table_gives_each_run_and_their_median() {
    let output = common::bench(
        "delivery",
        &["--case", "sqlite-batch", "--events", "400", "--runs", "2"],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "bench delivery failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.starts_with("case sqlite-batch: 400 events, 8 publishers, batch 100"));
    for row in ["\n1 ", "\n2 ", "\nmedian "] {
        assert!(stdout.contains(row), "no row {row:?} in:\n{stdout}");
    }
    // With batches, deliveries are compared with single-event requests.
    assert!(stdout.contains("raw single req/s"), "{stdout}");
}

#[test]
fn a_failing_run_stops_its_server() {
    // A subscription may not have 0 concurrency: the run fails after its
    // server has started.
    let output = common::bench(
        "delivery",
        &[
            "--events",
            "10",
            "--runs",
            "1",
            "--endpoint-concurrency",
            "0",
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("cannot create the bench subscription"),
        "{stderr}"
    );
    let pids = common::bench_server_pids(&stderr);
    assert_eq!(pids.len(), 1, "{stderr}");
    assert!(
        common::bench_server_gone(pids[0]),
        "the server outlived the failed bench"
    );
}

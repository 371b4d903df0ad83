//! `redrive bench retries` run as a real process on a few thousand events:
//! it starts its own `redrive serve` child, every event's first push fails,
//! every event is retried once when its fixed interval has passed, and the
//! server is gone afterwards. No figure is held to a speed (the machine is
//! shared): only that each is there and that nothing is missing or doubled.

use serde_json::Value;

use crate::common;

#[test]
fn every_event_fails_once_and_is_retried_once() {
    // The retries must still be waiting when the probes that run beside
    // them are done, or no server CPU is left to measure per retry: at 4s
    // a busy machine (other tests, other work) finished the whole wave
    // during the probes.
    let output = common::bench(
        "retries",
        &[
            "--events",
            "2000",
            "--batch",
            "100",
            "--publishers",
            "2",
            "--retry-interval",
            "10s",
            "--probe-events",
            "300",
            "--probe-publishers",
            "8",
            "--probe-runs",
            "2",
            "--json",
        ],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "bench retries failed:\n{stdout}\n{stderr}"
    );
    let report: Value = serde_json::from_str(&stdout).expect("one JSON object");
    assert_eq!(report["runs"].as_array().map(Vec::len), Some(1), "{report}");
    let run = &report["runs"][0];

    let loading = &run["loading"];
    assert_eq!(loading["accepted_events"], 2000, "{loading}");
    assert_eq!(loading["first_attempts_failed"], 2000, "{loading}");
    let retries = &run["retries"];
    assert_eq!(retries["retried"], 2000, "{retries}");
    assert_eq!(retries["missing"], 0, "{retries}");
    assert_eq!(retries["timed_out"], false, "{retries}");
    for figure in ["min", "p50", "p99", "max"] {
        assert!(
            retries["lateness_ms"][figure].is_number(),
            "{figure}: {retries}"
        );
    }
    // Each event twice: its failed first attempt and its retry.
    assert_eq!(run["pushes"], 4000, "{run}");
    assert_eq!(run["duplicates"], 0, "{run}");
    assert_eq!(run["foreign"], 0, "{run}");

    let warmup = std::slice::from_ref(&run["probe_warmup"]);
    let empty = run["probes_empty"]
        .as_array()
        .expect("the empty store's probes");
    let waiting = run["probes_waiting"]
        .as_array()
        .expect("the waiting probes");
    assert_eq!((empty.len(), waiting.len()), (2, 2), "{run}");
    for probe in warmup.iter().chain(empty).chain(waiting) {
        let delivery = &probe["delivery"];
        assert_eq!(delivery["delivered"], 300, "{delivery}");
        assert_eq!(delivery["missing"], 0, "{delivery}");
        assert!(probe["publish"]["events_per_second"].as_f64().unwrap() > 0.0);
    }
    assert!(run["probe_waiting_over_empty"].as_f64().unwrap() > 0.0);
    assert_eq!(run["raw"]["events"], 300, "{run}");

    let server = &run["server"];
    let waiting = server["rss_waiting_mb"]
        .as_f64()
        .expect("RSS while waiting");
    let peak = server["peak_rss_mb"].as_f64().expect("peak RSS");
    assert!(waiting > 0.0 && peak >= waiting, "{server}");
    assert!(
        server["cpu_us_per_retry"].as_f64().unwrap() > 0.0,
        "{server}"
    );

    assert_eq!(report["missing"], 0);
    assert_eq!(report["duplicates"], 0);
    assert!(report["median"]["retry_attempts_per_second"].is_number());

    let pids = common::bench_server_pids(&stderr);
    assert_eq!(pids.len(), 1, "one child server per run:\n{stderr}");
    assert!(
        common::bench_server_gone(pids[0]),
        "the server outlived the bench"
    );
}

#[test]
fn the_table_gives_each_run_and_their_median() {
    let output = common::bench(
        "retries",
        &[
            "--events",
            "200",
            "--batch",
            "50",
            "--retry-interval",
            "2s",
            "--probe-events",
            "100",
            "--probe-publishers",
            "4",
            "--probe-runs",
            "1",
            "--runs",
            "2",
        ],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "bench retries failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.starts_with(
            "200 events waiting to retry (fixed interval 2s, falling due at 10,000/s)"
        ),
        "{stdout}"
    );
    let header = stdout.lines().nth(2).unwrap_or_default();
    for column in ["run 1", "run 2", "median"] {
        assert!(header.contains(column), "no {column} in {header:?}");
    }
    for row in [
        "server RSS, every retry waiting (MB)",
        "lateness p99 (ms)",
        "retries more than 1 s late",
        "  waiting ÷ empty",
    ] {
        assert!(stdout.contains(row), "no row {row:?} in:\n{stdout}");
    }
    let missing = stdout
        .lines()
        .find(|line| line.starts_with("missing "))
        .expect("a missing row");
    assert!(
        missing.split_whitespace().skip(1).all(|cell| cell == "0"),
        "{missing}"
    );
}

//! The report: one column per run and, with several, their medians, as a
//! table or one JSON object.

use std::fmt::Write as _;

use serde_json::{Map, Value, json};

use super::super::delivery::report::{columns, median, thousands};
use super::options::Settings;
use super::results::Run;

/// How a figure is written in the table.
#[derive(Clone, Copy)]
enum Format {
    /// 12,345
    Count,
    /// 0.987
    Share,
    /// 12.35
    Millis,
    /// 123
    Whole,
}

/// One row: its label, its JSON key, and how to read it from a run.
struct Figure {
    label: &'static str,
    key: &'static str,
    format: Format,
    of: fn(&Run) -> Option<f64>,
}

fn mb(bytes: Option<u64>) -> Option<f64> {
    bytes.map(|b| b as f64 / (1024.0 * 1024.0))
}

const FIGURES: &[Figure] = &[
    Figure {
        label: "raw loopback, single events (req/s)",
        key: "raw_requests_per_second",
        format: Format::Count,
        of: |run| Some(run.raw.requests_per_second),
    },
    Figure {
        label: "probe publish, fresh server, warm-up (events/s)",
        key: "probe_warmup_publish_per_second",
        format: Format::Count,
        of: |run| Some(run.probe_warmup.publish_rate),
    },
    Figure {
        label: "probe publish, empty store, median (events/s)",
        key: "probe_empty_publish_per_second",
        format: Format::Count,
        of: Run::empty_publish_rate,
    },
    Figure {
        label: "probe publish, retries waiting, median (events/s)",
        key: "probe_waiting_publish_per_second",
        format: Format::Count,
        of: Run::waiting_publish_rate,
    },
    Figure {
        label: "  waiting ÷ empty",
        key: "probe_waiting_over_empty",
        format: Format::Share,
        of: Run::probe_ratio,
    },
    Figure {
        label: "probe publish p99, empty (ms)",
        key: "probe_empty_request_p99_ms",
        format: Format::Millis,
        of: Run::empty_p99_ms,
    },
    Figure {
        label: "probe publish p99, waiting (ms)",
        key: "probe_waiting_request_p99_ms",
        format: Format::Millis,
        of: Run::waiting_p99_ms,
    },
    Figure {
        label: "events published, subscription paused (events/s)",
        key: "load_publish_per_second",
        format: Format::Count,
        of: |run| Some(run.loading.publish_rate),
    },
    Figure {
        label: "first attempts failed (/s)",
        key: "first_attempts_per_second",
        format: Format::Count,
        of: |run| Some(run.loading.first_attempt_rate),
    },
    Figure {
        label: "server CPU per event, publish + failed attempt (µs)",
        key: "load_cpu_us_per_event",
        format: Format::Whole,
        of: Run::load_cpu_us_per_event,
    },
    Figure {
        label: "server RSS, empty store (MB)",
        key: "rss_empty_mb",
        format: Format::Whole,
        of: |run| mb(run.samples.rss_empty()),
    },
    Figure {
        label: "server RSS, every retry waiting (MB)",
        key: "rss_waiting_mb",
        format: Format::Whole,
        of: |run| mb(run.samples.rss_waiting()),
    },
    Figure {
        label: "server peak RSS (MB)",
        key: "peak_rss_mb",
        format: Format::Whole,
        of: |run| mb(run.samples.peak_rss()),
    },
    Figure {
        label: "server CPU, idle with the retries waiting (cores)",
        key: "idle_cores_while_waiting",
        format: Format::Share,
        of: |run| run.samples.idle_cores(),
    },
    Figure {
        label: "retries fell due, mean (/s)",
        key: "retries_due_per_second",
        format: Format::Count,
        of: |run| Some(run.wave.due_per_second),
    },
    Figure {
        label: "retry attempts, mean (/s)",
        key: "retry_attempts_per_second",
        format: Format::Count,
        of: |run| Some(run.wave.attempts_per_second),
    },
    Figure {
        label: "retries fell due, busiest second",
        key: "retries_due_busiest_second",
        format: Format::Count,
        of: |run| Some(run.wave.busiest_second_due as f64),
    },
    Figure {
        label: "retry attempts, busiest second",
        key: "retry_attempts_busiest_second",
        format: Format::Count,
        of: |run| Some(run.wave.busiest_second_attempts as f64),
    },
    Figure {
        label: "lateness p50 (ms)",
        key: "lateness_p50_ms",
        format: Format::Millis,
        of: |run| Some(run.wave.lateness.p50_ms),
    },
    Figure {
        label: "lateness p99 (ms)",
        key: "lateness_p99_ms",
        format: Format::Millis,
        of: |run| Some(run.wave.lateness.p99_ms),
    },
    Figure {
        label: "lateness max (ms)",
        key: "lateness_max_ms",
        format: Format::Millis,
        of: |run| Some(run.wave.lateness.max_ms),
    },
    Figure {
        label: "retries more than 1 s late",
        key: "late_over_1s",
        format: Format::Count,
        of: |run| Some(run.wave.late as f64),
    },
    Figure {
        label: "server CPU per retry (µs)",
        key: "cpu_us_per_retry",
        format: Format::Whole,
        of: Run::wave_cpu_us_per_retry,
    },
    Figure {
        label: "bench CPU per retry (µs)",
        key: "bench_cpu_us_per_retry",
        format: Format::Whole,
        of: Run::bench_cpu_us_per_retry,
    },
    Figure {
        label: "retried",
        key: "retried",
        format: Format::Count,
        of: |run| Some(run.wave.retried as f64),
    },
    Figure {
        label: "missing",
        key: "missing",
        format: Format::Count,
        of: |run| Some(run.wave.missing as f64),
    },
    Figure {
        label: "duplicates",
        key: "duplicates",
        format: Format::Count,
        of: |run| Some(run.duplicates as f64),
    },
];

fn cell(value: Option<f64>, format: Format) -> String {
    let Some(v) = value else {
        return "-".to_owned();
    };
    match format {
        Format::Count if v >= 0.0 => thousands(v.round() as u64),
        Format::Count | Format::Whole => format!("{v:.0}"),
        Format::Share => format!("{v:.3}"),
        Format::Millis => format!("{v:.2}"),
    }
}

pub struct Report<'a> {
    pub settings: &'a Settings,
    pub runs: Vec<Run>,
}

impl Report<'_> {
    fn medians(&self) -> Vec<Option<f64>> {
        FIGURES
            .iter()
            .map(|figure| median(self.runs.iter().map(figure.of)))
            .collect()
    }

    pub fn to_json(&self) -> Value {
        let s = self.settings;
        let median: Map<String, Value> = FIGURES
            .iter()
            .zip(self.medians())
            .map(|(figure, value)| (figure.key.to_owned(), json!(value)))
            .collect();
        json!({
            "events": s.events,
            "retry_interval_seconds": s.retry_interval.as_secs_f64(),
            "due_rate": s.due_rate,
            "publishers": s.publishers,
            "batch": s.batch,
            "probe_events": s.probe_events,
            "probe_publishers": s.probe_publishers,
            "probe_runs": s.probe_runs,
            "endpoint_concurrency": s.endpoint_concurrency,
            "max_in_flight": s.max_in_flight,
            "payload_bytes": s.payload_bytes,
            "backend": if s.database_url.is_some() { "postgres" } else { "sqlite" },
            "runs": self.runs.iter().map(Run::to_json).collect::<Vec<_>>(),
            "median": median,
            "missing": self.runs.iter().map(|run| run.wave.missing).sum::<usize>(),
            "duplicates": self.runs.iter().map(|run| run.duplicates).sum::<u64>(),
            "all_waiting_at_once": self.runs.iter().all(|run| run.wave.before_all_waiting == 0),
            "timed_out": self.runs.iter().any(|run| run.loading.timed_out || run.wave.timed_out),
        })
    }

    pub fn table(&self) -> String {
        let s = self.settings;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} events waiting to retry (fixed interval {}s, falling due {}), published by {} \
             publishers in batches of {}; probes of {} single events from {} publishers, {} in a \
             row; endpoint concurrency {}, max in flight {}, child-process server on {}",
            thousands(s.events as u64),
            s.retry_interval.as_secs_f64(),
            match s.due_rate {
                Some(rate) => format!("at {}/s", thousands(u64::from(rate))),
                None => "as fast as the first attempts failed".to_owned(),
            },
            s.publishers,
            s.batch,
            thousands(s.probe_events as u64),
            s.probe_publishers,
            s.probe_runs,
            s.endpoint_concurrency,
            s.max_in_flight,
            if s.database_url.is_some() {
                "PostgreSQL"
            } else {
                "SQLite"
            },
        );
        out.push('\n');
        let mut header = vec![String::new()];
        header.extend((1..=self.runs.len()).map(|n| format!("run {n}")));
        let several = self.runs.len() > 1;
        if several {
            header.push("median".to_owned());
        }
        let medians = self.medians();
        let mut rows = vec![header];
        for (figure, median) in FIGURES.iter().zip(medians) {
            let mut row = vec![figure.label.to_owned()];
            row.extend(
                self.runs
                    .iter()
                    .map(|run| cell((figure.of)(run), figure.format)),
            );
            if several {
                row.push(cell(median, figure.format));
            }
            rows.push(row);
        }
        out.push_str(&columns(&rows));
        out.push('\n');
        for line in [
            "raw: the probe's publishers posting the same single events straight to a receiver that answers 200.",
            "lateness: a retry's arrival at the receiver less (the receiver's answer to its first attempt + the \
             interval). The server counts the interval from its own end of the first attempt, just after that \
             answer, rounded up to the millisecond; so lateness is measured from the receiver's side and includes \
             the retry's way to it.",
            "retries fall due at the pace their first attempts failed (a fixed interval keeps the spacing; \
             --due-rate paces the first attempts with a rate on the subscription, removed before the first \
             retry is due), so attempts/s cannot exceed the due pace: with lateness small, the server kept up.",
        ] {
            let _ = writeln!(out, "{line}");
        }
        for (index, run) in self.runs.iter().enumerate() {
            for note in notes(run) {
                let _ = writeln!(out, "run {}: {note}", index + 1);
            }
        }
        out
    }
}

/// What a reader of a run's figures must know about it.
fn notes(run: &Run) -> Vec<String> {
    let mut notes = Vec::new();
    let wave = &run.wave;
    if wave.before_all_waiting > 0 {
        notes.push(format!(
            "{} retries arrived before every first attempt had failed: loading took longer than \
             the interval here, retries fell due while first attempts were still queued and waited \
             behind them, so lateness measures that backlog, and never were all retries waiting \
             at once (use a longer --retry-interval)",
            wave.before_all_waiting
        ));
    } else if wave.during_probe > 0 {
        notes.push(format!(
            "{} retries arrived during the probe: it overlapped the retries (use a longer \
             --retry-interval)",
            wave.during_probe
        ));
    }
    if let Some(reason) = run.samples.unavailable() {
        notes.push(format!("server CPU and RSS unavailable: {reason}"));
    }
    if run.foreign > 0 {
        notes.push(format!("also {} pushes of other events", run.foreign));
    }
    for (what, failed, error) in [
        (
            "publish requests of the events",
            run.loading.failed_requests,
            &run.loading.first_error,
        ),
        (
            "raw requests",
            run.raw.failed_requests,
            &run.raw.first_error,
        ),
    ] {
        if let Some(error) = error {
            notes.push(format!("{failed} {what} failed; first error: {error}"));
        }
    }
    if run.loading.timed_out {
        notes.push(format!(
            "gave up waiting for the first attempts ({} of {} failed): the numbers are partial",
            run.loading.first_attempts, run.loading.accepted
        ));
    }
    if wave.timed_out {
        notes.push(format!(
            "gave up waiting for the retries ({} arrived, {} missing): the numbers are partial",
            wave.retried, wave.missing
        ));
    }
    let probes = std::iter::once(("warming the server up", &run.probe_warmup))
        .chain(run.probe_empty.iter().map(|p| ("on the empty store", p)))
        .chain(
            run.probe_waiting
                .iter()
                .map(|p| ("with the retries waiting", p)),
        );
    for (what, probe) in probes {
        if probe.timed_out || probe.missing > 0 {
            notes.push(format!(
                "a probe {what} delivered {} of {} events",
                probe.delivered, probe.accepted
            ));
        }
        if let Some(error) = &probe.first_error {
            notes.push(format!(
                "{} requests of a probe {what} failed; first error: {error}",
                probe.failed_requests
            ));
        }
    }
    notes
}

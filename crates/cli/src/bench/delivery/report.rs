//! The report: one line per run and the medians of the runs, as a table or
//! one JSON object. Every server throughput comes with its share of the raw
//! loopback figure of the same run.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{Value, json};

use super::Settings;
use super::results::{Percentiles, RawResults, ServerResults, ServerUsage, ms};

/// One run: the raw phase, then the server phase.
pub struct Run {
    /// The generator's own requests straight to the sink.
    pub raw: RawResults,
    /// With batches, the same connections posting single events (the size
    /// of a push) straight to the sink.
    pub raw_single: Option<RawResults>,
    pub server: ServerResults,
}

impl Run {
    /// Accepted events/s over what the same generator reached against the
    /// sink with the same bodies.
    pub fn publish_share(&self) -> Option<f64> {
        ratio(self.server.publish_rate, self.raw.events_per_second)
    }

    /// Delivered events/s over the raw single-event requests/s: a push is
    /// one single-event request over loopback, so this is the share of the
    /// machine's loopback request rate the server turns into deliveries.
    pub fn delivery_share(&self) -> Option<f64> {
        ratio(
            self.server.delivery_rate,
            self.raw_pushes().requests_per_second,
        )
    }

    /// The raw figure deliveries compare with.
    fn raw_pushes(&self) -> &RawResults {
        self.raw_single.as_ref().unwrap_or(&self.raw)
    }

    fn to_json(&self) -> Value {
        json!({
            "raw": self.raw.to_json(),
            "raw_single_events": self.raw_single.as_ref().map(RawResults::to_json),
            "server": self.server.to_json(),
            "publish_share_of_raw": self.publish_share(),
            "delivery_share_of_raw": self.delivery_share(),
        })
    }
}

fn ratio(part: f64, whole: f64) -> Option<f64> {
    (whole > 0.0).then(|| part / whole)
}

/// The median of what is there (the mean of the middle two for an even
/// count); None when no run has the figure.
pub fn median(values: impl IntoIterator<Item = Option<f64>>) -> Option<f64> {
    let mut values: Vec<f64> = values
        .into_iter()
        .flatten()
        .filter(|v| v.is_finite())
        .collect();
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    })
}

/// The figures a run line and the median line show, in the same columns.
struct Figures {
    raw_requests_per_second: Option<f64>,
    raw_single_requests_per_second: Option<f64>,
    raw_events_per_second: Option<f64>,
    raw_p50_ms: Option<f64>,
    raw_p99_ms: Option<f64>,
    publish_per_second: Option<f64>,
    publish_share: Option<f64>,
    publish_p99_ms: Option<f64>,
    delivered_per_second: Option<f64>,
    delivery_share: Option<f64>,
    cpu_us_per_event: Option<f64>,
    peak_rss_mb: Option<f64>,
    bench_cpu_us_per_event: Option<f64>,
    e2e_p50_ms: Option<f64>,
    e2e_p99_ms: Option<f64>,
    e2e_max_ms: Option<f64>,
    missing: Option<f64>,
    duplicates: Option<f64>,
}

impl Figures {
    fn of(run: &Run) -> Figures {
        let latency = |p: Percentiles, pick: fn(Percentiles) -> Duration| Some(ms(pick(p)));
        let server = &run.server;
        Figures {
            raw_requests_per_second: Some(run.raw.requests_per_second),
            raw_single_requests_per_second: Some(run.raw_pushes().requests_per_second),
            raw_events_per_second: Some(run.raw.events_per_second),
            raw_p50_ms: latency(run.raw.latency, |p| p.p50),
            raw_p99_ms: latency(run.raw.latency, |p| p.p99),
            publish_per_second: Some(server.publish_rate),
            publish_share: run.publish_share(),
            publish_p99_ms: latency(server.request_latency, |p| p.p99),
            delivered_per_second: Some(server.delivery_rate),
            delivery_share: run.delivery_share(),
            cpu_us_per_event: server.cpu_per_event_us(),
            peak_rss_mb: server
                .peak_rss()
                .map(|bytes| bytes as f64 / (1024.0 * 1024.0)),
            bench_cpu_us_per_event: server.bench_cpu_per_event_us(),
            e2e_p50_ms: latency(server.delivery_latency, |p| p.p50),
            e2e_p99_ms: latency(server.delivery_latency, |p| p.p99),
            e2e_max_ms: latency(server.delivery_latency, |p| p.max),
            missing: Some(server.missing as f64),
            duplicates: Some(server.duplicates as f64),
        }
    }

    fn median(runs: &[Run]) -> Figures {
        let all: Vec<Figures> = runs.iter().map(Figures::of).collect();
        let m = |pick: fn(&Figures) -> Option<f64>| median(all.iter().map(pick));
        Figures {
            raw_requests_per_second: m(|f| f.raw_requests_per_second),
            raw_single_requests_per_second: m(|f| f.raw_single_requests_per_second),
            raw_events_per_second: m(|f| f.raw_events_per_second),
            raw_p50_ms: m(|f| f.raw_p50_ms),
            raw_p99_ms: m(|f| f.raw_p99_ms),
            publish_per_second: m(|f| f.publish_per_second),
            publish_share: m(|f| f.publish_share),
            publish_p99_ms: m(|f| f.publish_p99_ms),
            delivered_per_second: m(|f| f.delivered_per_second),
            delivery_share: m(|f| f.delivery_share),
            cpu_us_per_event: m(|f| f.cpu_us_per_event),
            peak_rss_mb: m(|f| f.peak_rss_mb),
            bench_cpu_us_per_event: m(|f| f.bench_cpu_us_per_event),
            e2e_p50_ms: m(|f| f.e2e_p50_ms),
            e2e_p99_ms: m(|f| f.e2e_p99_ms),
            e2e_max_ms: m(|f| f.e2e_max_ms),
            missing: m(|f| f.missing),
            duplicates: m(|f| f.duplicates),
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "raw_requests_per_second": self.raw_requests_per_second,
            "raw_single_event_requests_per_second": self.raw_single_requests_per_second,
            "raw_events_per_second": self.raw_events_per_second,
            "raw_request_p50_ms": self.raw_p50_ms,
            "raw_request_p99_ms": self.raw_p99_ms,
            "publish_events_per_second": self.publish_per_second,
            "publish_share_of_raw": self.publish_share,
            "publish_request_p99_ms": self.publish_p99_ms,
            "delivered_per_second": self.delivered_per_second,
            "delivery_share_of_raw": self.delivery_share,
            "server_cpu_us_per_event": self.cpu_us_per_event,
            "server_peak_rss_mb": self.peak_rss_mb,
            "bench_cpu_us_per_event": self.bench_cpu_us_per_event,
            "first_delivery_p50_ms": self.e2e_p50_ms,
            "first_delivery_p99_ms": self.e2e_p99_ms,
            "first_delivery_max_ms": self.e2e_max_ms,
        })
    }

    /// The table's cells, in [`columns_for`] order.
    fn cells(&self, label: String, batched: bool) -> Vec<String> {
        let count = |v: Option<f64>| v.map_or("-".to_owned(), |v| thousands(v.round() as u64));
        let share = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.3}"));
        let millis = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.2}"));
        let whole = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.0}"));
        let mut cells = vec![
            label,
            count(self.raw_requests_per_second),
            millis(self.raw_p99_ms),
            count(self.publish_per_second),
            share(self.publish_share),
            millis(self.publish_p99_ms),
            count(self.delivered_per_second),
            share(self.delivery_share),
            whole(self.cpu_us_per_event),
            whole(self.peak_rss_mb),
            whole(self.bench_cpu_us_per_event),
            millis(self.e2e_p50_ms),
            millis(self.e2e_p99_ms),
            millis(self.e2e_max_ms),
            whole(self.missing),
            whole(self.duplicates),
        ];
        if batched {
            cells.insert(3, count(self.raw_single_requests_per_second));
        }
        cells
    }
}

/// The table's headers; with batches, a column for the raw single-event
/// requests/s that deliveries are compared with.
fn columns_for(batched: bool) -> Vec<String> {
    let mut columns: Vec<String> = COLUMNS.iter().map(|c| (*c).to_owned()).collect();
    if batched {
        columns.insert(3, "raw single req/s".to_owned());
    }
    columns
}

const COLUMNS: [&str; 16] = [
    "run",
    "raw req/s",
    "raw p99 ms",
    "published/s",
    "of raw",
    "publish p99 ms",
    "delivered/s",
    "of raw",
    "server CPU µs/event",
    "peak RSS MB",
    "bench CPU µs/event",
    "e2e p50 ms",
    "e2e p99 ms",
    "e2e max ms",
    "missing",
    "dup",
];

/// 12345 as "12,345".
pub(in crate::bench) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// The report of every run.
pub struct Report<'a> {
    pub settings: &'a Settings,
    /// "child process", "external" …
    pub server: String,
    pub runs: Vec<Run>,
}

impl Report<'_> {
    pub fn to_json(&self) -> Value {
        let s = self.settings;
        let medians = Figures::median(&self.runs);
        json!({
            "case": s.case.map(|case| case.name()),
            "events": s.events,
            "publishers": s.publishers,
            "batch": s.batch,
            "rate": s.rate,
            "endpoint_concurrency": s.endpoint_concurrency,
            "max_in_flight": s.max_in_flight,
            "payload_bytes": s.payload_bytes,
            "nodes": s.nodes,
            "backend": if s.database_url.is_some() { "postgres" } else { "sqlite" },
            "server": self.server,
            "runs": self.runs.iter().map(Run::to_json).collect::<Vec<_>>(),
            "median": medians.to_json(),
            "missing": self.runs.iter().map(|run| run.server.missing).sum::<usize>(),
            "duplicates": self.runs.iter().map(|run| run.server.duplicates).sum::<u64>(),
            "timed_out": self.runs.iter().any(|run| run.server.timed_out),
        })
    }

    pub fn table(&self) -> String {
        let s = self.settings;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{}{} events, {} publishers, batch {}, {}, endpoint concurrency {}, \
             max in flight {}, {} on {}",
            s.case
                .map(|case| format!("case {}: ", case.name()))
                .unwrap_or_default(),
            s.events,
            s.publishers,
            s.batch,
            match s.rate {
                Some(rate) => format!("paced at {rate} events/s"),
                None => "unpaced".to_owned(),
            },
            s.endpoint_concurrency,
            s.max_in_flight,
            self.server,
            match (&s.database_url, s.nodes) {
                (None, _) => "SQLite".to_owned(),
                (Some(_), 1) => "PostgreSQL".to_owned(),
                (Some(_), nodes) => format!("PostgreSQL, {nodes} nodes"),
            },
        );
        out.push('\n');
        let batched = s.batch > 1;
        let mut rows: Vec<Vec<String>> = vec![columns_for(batched)];
        for (index, run) in self.runs.iter().enumerate() {
            rows.push(Figures::of(run).cells((index + 1).to_string(), batched));
        }
        if self.runs.len() > 1 {
            rows.push(Figures::median(&self.runs).cells("median".to_owned(), batched));
        }
        out.push_str(&columns(&rows));
        out.push('\n');
        let _ = writeln!(
            out,
            "raw: the same publishers, connections, bodies and pacing posting straight to the sink."
        );
        if batched {
            let _ = writeln!(
                out,
                "raw single: the same publishers and connections posting single events (a push's size)."
            );
            let _ = writeln!(
                out,
                "of raw: published events/s ÷ raw events/s; delivered/s ÷ raw single req/s (a push is one request)."
            );
        } else {
            let _ = writeln!(
                out,
                "of raw: published events/s ÷ raw events/s; delivered/s ÷ raw req/s (a push is one request)."
            );
        }
        for (index, run) in self.runs.iter().enumerate() {
            let run_no = index + 1;
            if let ServerUsage::Unavailable(reason) = &run.server.usage {
                let _ = writeln!(
                    out,
                    "run {run_no}: server CPU and RSS unavailable: {reason}"
                );
            }
            if let Some(line) = run.server.database_line() {
                let _ = writeln!(out, "run {run_no}: {line}");
            }
            if run.server.foreign > 0 {
                let _ = writeln!(
                    out,
                    "run {run_no}: also {} pushes of other events",
                    run.server.foreign
                );
            }
            if let Some(error) = &run.server.first_error {
                let _ = writeln!(
                    out,
                    "run {run_no}: {} publish requests failed; first error: {error}",
                    run.server.failed_requests
                );
            }
            if let Some(error) = &run.raw.first_error {
                let _ = writeln!(
                    out,
                    "run {run_no}: {} raw requests failed; first error: {error}",
                    run.raw.failed_requests
                );
            }
            if run.server.timed_out {
                let _ = writeln!(
                    out,
                    "run {run_no}: gave up at the timeout ({} of {} delivered): the numbers are partial",
                    run.server.delivered, run.server.accepted
                );
            }
        }
        out
    }
}

/// Left-aligned first column, the rest right-aligned.
pub(in crate::bench) fn columns(rows: &[Vec<String>]) -> String {
    let count = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..count)
        .map(|c| {
            rows.iter()
                .filter_map(|row| row.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            let pad = " ".repeat(widths[c] - cell.chars().count());
            if c == 0 {
                line.push_str(cell);
                line.push_str(&pad);
            } else {
                line.push_str("  ");
                line.push_str(&pad);
                line.push_str(cell);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_take_the_middle_or_the_mean_of_the_middle_two() {
        assert_eq!(median([Some(3.0), Some(1.0), Some(2.0)]), Some(2.0));
        assert_eq!(
            median([Some(4.0), Some(1.0), Some(2.0), Some(3.0)]),
            Some(2.5)
        );
        assert_eq!(median([None, Some(7.0)]), Some(7.0));
        assert_eq!(median([None, None]), None);
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn columns_line_up() {
        let rows = vec![
            vec!["run".to_owned(), "req/s".to_owned()],
            vec!["median".to_owned(), "7".to_owned()],
        ];
        assert_eq!(columns(&rows), "run     req/s\nmedian      7\n");
    }
}

//! What one phase measured: the raw phase (generator → sink) and the
//! server phase (generator → server → sink), computed from the publishers'
//! logs, the sink's record and the processes' CPU and memory.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::generator::PublisherLog;
use super::process_stats::ProcessSample;

#[derive(Clone, Copy, Default, Debug, PartialEq)]
pub struct Percentiles {
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Percentiles {
    /// Nearest-rank percentiles of `samples`, which it sorts.
    pub fn of(samples: &mut [Duration]) -> Percentiles {
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

    pub fn to_json(self) -> Value {
        json!({"p50_ms": ms(self.p50), "p99_ms": ms(self.p99), "max_ms": ms(self.max)})
    }
}

/// Milliseconds, to the microsecond.
pub fn ms(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1e6).round() / 1e3
}

pub fn per_second(count: usize, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

/// What the publishers' logs add up to.
pub struct Publishing {
    pub requests: usize,
    pub failed_requests: usize,
    pub first_error: Option<String>,
    pub first_start: Option<Instant>,
    pub last_answer: Option<Instant>,
    pub latency: Percentiles,
}

impl Publishing {
    pub fn of(logs: &[PublisherLog]) -> Publishing {
        let mut latencies: Vec<Duration> = logs
            .iter()
            .flat_map(|log| log.latencies.iter().copied())
            .collect();
        Publishing {
            requests: logs.iter().map(|log| log.requests).sum(),
            failed_requests: logs.iter().map(|log| log.failed_requests).sum(),
            first_error: logs.iter().find_map(|log| log.first_error.clone()),
            first_start: logs.iter().filter_map(|log| log.first_start).min(),
            last_answer: logs.iter().filter_map(|log| log.last_answer).max(),
            latency: Percentiles::of(&mut latencies),
        }
    }

    pub fn seconds(&self) -> f64 {
        match (self.first_start, self.last_answer) {
            (Some(start), Some(end)) => end.duration_since(start).as_secs_f64(),
            _ => 0.0,
        }
    }
}

/// The generator posting straight to the sink: the loopback limit of this
/// machine for these requests, in the same run.
pub struct RawResults {
    pub requests: usize,
    pub failed_requests: usize,
    pub first_error: Option<String>,
    pub events: usize,
    pub seconds: f64,
    pub requests_per_second: f64,
    pub events_per_second: f64,
    pub latency: Percentiles,
}

impl RawResults {
    pub fn compute(logs: &[PublisherLog]) -> RawResults {
        let publishing = Publishing::of(logs);
        let events = logs
            .iter()
            .flat_map(|log| log.accepted.iter())
            .map(|&(_, count, _)| count)
            .sum();
        let seconds = publishing.seconds();
        let answered = publishing.requests - publishing.failed_requests;
        RawResults {
            requests: publishing.requests,
            failed_requests: publishing.failed_requests,
            first_error: publishing.first_error,
            events,
            seconds,
            requests_per_second: per_second(answered, seconds),
            events_per_second: per_second(events, seconds),
            latency: publishing.latency,
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "requests": self.requests,
            "failed_requests": self.failed_requests,
            "first_error": self.first_error,
            "events": self.events,
            "seconds": self.seconds,
            "requests_per_second": self.requests_per_second,
            "events_per_second": self.events_per_second,
            "request_latency": self.latency.to_json(),
        })
    }
}

/// The server's own work over the measured window (first publish to last
/// first delivery), summed over its nodes.
#[derive(Clone, Debug)]
pub enum ServerUsage {
    Measured {
        cpu: Duration,
        /// The largest node's peak RSS.
        peak_rss: u64,
    },
    /// Why not (an external server, no `/proc`).
    Unavailable(String),
}

impl ServerUsage {
    /// The usage between two samplings of the same nodes.
    pub fn between(
        before: anyhow::Result<Vec<ProcessSample>>,
        after: anyhow::Result<Vec<ProcessSample>>,
    ) -> ServerUsage {
        match (before, after) {
            (Ok(before), Ok(after)) => ServerUsage::Measured {
                cpu: after
                    .iter()
                    .zip(&before)
                    .map(|(after, before)| after.cpu.saturating_sub(before.cpu))
                    .sum(),
                peak_rss: after.iter().map(|node| node.peak_rss).max().unwrap_or(0),
            },
            (Err(err), _) | (_, Err(err)) => ServerUsage::Unavailable(format!("{err:#}")),
        }
    }
}

/// The generator through the server to the sink.
pub struct ServerResults {
    pub timed_out: bool,
    pub requests: usize,
    pub failed_requests: usize,
    pub accepted: usize,
    pub first_error: Option<String>,
    pub publish_seconds: f64,
    pub publish_rate: f64,
    pub request_latency: Percentiles,
    pub delivered: usize,
    pub missing: usize,
    pub delivery_seconds: f64,
    pub delivery_rate: f64,
    pub delivery_latency: Percentiles,
    pub pushes: u64,
    pub duplicates: u64,
    pub foreign: u64,
    pub usage: ServerUsage,
    /// This process's CPU (generator and sink) over the same window.
    pub bench_cpu: Option<Duration>,
    /// PostgreSQL's work during the run, when on PostgreSQL.
    pub database: Option<redrive_store::postgres::DatabaseActivity>,
    /// PostgreSQL's CPU over the server's window, when it runs on this
    /// machine (all its processes, so other databases' work too).
    pub database_cpu: Option<Duration>,
}

/// What the sink saw of the server phase.
pub struct SinkRecord {
    pub first_delivery: Vec<Option<Instant>>,
    pub pushes: u64,
    pub foreign: u64,
}

impl ServerResults {
    pub fn compute(logs: &[PublisherLog], sink: &SinkRecord, timed_out: bool) -> ServerResults {
        let publishing = Publishing::of(logs);
        let mut accepted = 0;
        let mut delivered = 0;
        let mut last_delivery = None;
        let mut delivery_latencies = Vec::new();
        for &(first, count, sent) in logs.iter().flat_map(|log| log.accepted.iter()) {
            accepted += count;
            for arrival in sink.first_delivery.iter().skip(first).take(count).flatten() {
                delivered += 1;
                delivery_latencies.push(arrival.saturating_duration_since(sent));
                last_delivery = last_delivery.max(Some(*arrival));
            }
        }
        let unique = sink.first_delivery.iter().flatten().count() as u64;
        let publish_seconds = publishing.seconds();
        let delivery_seconds = match (publishing.first_start, last_delivery) {
            (Some(start), Some(end)) => end.duration_since(start).as_secs_f64(),
            _ => 0.0,
        };
        ServerResults {
            timed_out,
            requests: publishing.requests,
            failed_requests: publishing.failed_requests,
            accepted,
            first_error: publishing.first_error,
            publish_seconds,
            publish_rate: per_second(accepted, publish_seconds),
            request_latency: publishing.latency,
            delivered,
            missing: accepted - delivered,
            delivery_seconds,
            delivery_rate: per_second(delivered, delivery_seconds),
            delivery_latency: Percentiles::of(&mut delivery_latencies),
            pushes: sink.pushes,
            duplicates: sink.pushes.saturating_sub(unique + sink.foreign),
            foreign: sink.foreign,
            usage: ServerUsage::Unavailable("not measured".to_owned()),
            bench_cpu: None,
            database: None,
            database_cpu: None,
        }
    }

    /// `duration` per delivered event, in µs.
    fn micros_per_delivered(&self, duration: Duration) -> Option<f64> {
        (self.delivered > 0).then(|| duration.as_secs_f64() * 1e6 / self.delivered as f64)
    }

    /// The server's CPU per delivered event, in µs.
    pub fn cpu_per_event_us(&self) -> Option<f64> {
        match self.usage {
            ServerUsage::Measured { cpu, .. } => self.micros_per_delivered(cpu),
            ServerUsage::Unavailable(_) => None,
        }
    }

    pub fn peak_rss(&self) -> Option<u64> {
        match self.usage {
            ServerUsage::Measured { peak_rss, .. } => Some(peak_rss),
            ServerUsage::Unavailable(_) => None,
        }
    }

    pub fn bench_cpu_per_event_us(&self) -> Option<f64> {
        self.bench_cpu
            .and_then(|cpu| self.micros_per_delivered(cpu))
    }

    fn per_delivered(&self, count: i64) -> f64 {
        if self.delivered == 0 {
            0.0
        } else {
            count as f64 / self.delivered as f64
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
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
            "server": match &self.usage {
                ServerUsage::Measured { cpu, peak_rss } => json!({
                    "cpu_seconds": cpu.as_secs_f64(),
                    "cpu_us_per_event": self.cpu_per_event_us(),
                    "peak_rss_bytes": peak_rss,
                }),
                ServerUsage::Unavailable(reason) => json!({"unavailable": reason}),
            },
            "bench_cpu_us_per_event": self.bench_cpu_per_event_us(),
            "postgres": self.database.map(|db| json!({
                "transactions": db.commits + db.rollbacks,
                "transactions_per_event": self.per_delivered(db.commits + db.rollbacks),
                "rows_written_per_event":
                    self.per_delivered(db.rows_inserted + db.rows_updated + db.rows_deleted),
                "cpu_us_per_event": self.database_cpu_per_event_us(),
            })),
        })
    }

    /// PostgreSQL's work as one line, when on PostgreSQL.
    pub fn database_line(&self) -> Option<String> {
        let db = self.database?;
        let transactions = db.commits + db.rollbacks;
        let written = db.rows_inserted + db.rows_updated + db.rows_deleted;
        let cpu = match self.database_cpu_per_event_us() {
            Some(us) => format!(", {us:.0} µs of CPU per event (its processes on this machine)"),
            None => String::new(),
        };
        Some(format!(
            "postgres: {transactions} transactions ({:.2} per delivered event), \
             {written} rows written ({:.2} per event){cpu}",
            self.per_delivered(transactions),
            self.per_delivered(written)
        ))
    }

    /// PostgreSQL's CPU per delivered event, in µs, when measured.
    pub fn database_cpu_per_event_us(&self) -> Option<f64> {
        self.database_cpu
            .and_then(|cpu| self.micros_per_delivered(cpu))
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
    fn server_usage_sums_cpu_and_keeps_the_largest_peak() {
        let sample = |ms, rss| ProcessSample {
            cpu: Duration::from_millis(ms),
            peak_rss: rss,
            rss,
        };
        let usage = ServerUsage::between(
            Ok(vec![sample(100, 10), sample(50, 10)]),
            Ok(vec![sample(300, 40), sample(80, 70)]),
        );
        match usage {
            ServerUsage::Measured { cpu, peak_rss } => {
                assert_eq!(cpu, Duration::from_millis(230));
                assert_eq!(peak_rss, 70);
            }
            ServerUsage::Unavailable(reason) => panic!("unavailable: {reason}"),
        }
        let external = ServerUsage::between(Err(anyhow::anyhow!("external")), Ok(vec![]));
        assert!(matches!(external, ServerUsage::Unavailable(reason) if reason == "external"));
    }

    #[test]
    fn raw_results_count_answered_requests_and_their_events() {
        let start = Instant::now();
        let log = PublisherLog {
            accepted: vec![(0, 10, start), (10, 10, start)],
            latencies: vec![Duration::from_millis(1), Duration::from_millis(3)],
            first_start: Some(start),
            last_answer: Some(start + Duration::from_secs(2)),
            requests: 2,
            ..Default::default()
        };
        let raw = RawResults::compute(&[log]);
        assert_eq!(raw.events, 20);
        assert!((raw.requests_per_second - 1.0).abs() < 1e-9);
        assert!((raw.events_per_second - 10.0).abs() < 1e-9);
        assert_eq!(raw.latency.max, Duration::from_millis(3));
    }
}

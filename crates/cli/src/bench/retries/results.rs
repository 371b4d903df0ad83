//! What one run measured, computed from the publishers' logs, the retry
//! endpoint's record and samples of the server process.

use std::time::Duration;

use serde_json::{Value, json};

use super::super::delivery::generator::PublisherLog;
use super::super::delivery::process_stats::ProcessSample;
use super::super::delivery::results::{Publishing, RawResults, ServerResults, per_second};
use super::sink::{EventTimes, LATE};

/// Publishing the events that then wait, and their first attempts.
pub struct Loading {
    pub accepted: usize,
    pub failed_requests: usize,
    pub first_error: Option<String>,
    pub publish_seconds: f64,
    pub publish_rate: f64,
    /// Accepted events whose first attempt the endpoint answered.
    pub first_attempts: usize,
    /// Those over the span from the first answer to the last.
    pub first_attempt_rate: f64,
    pub timed_out: bool,
}

/// Percentiles of a retry's lateness (its arrival less its due time), in
/// ms; negative when it arrived before due.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Lateness {
    pub min_ms: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Lateness {
    /// Nearest-rank percentiles of `nanos`, which it sorts.
    fn of(nanos: &mut [i64]) -> Lateness {
        nanos.sort_unstable();
        let at = |p: f64| {
            let rank = (p * nanos.len() as f64).ceil() as usize;
            nanos
                .get(rank.saturating_sub(1).min(nanos.len().saturating_sub(1)))
                .map_or(0.0, |&n| n as f64 / 1e6)
        };
        Lateness {
            min_ms: nanos.first().map_or(0.0, |&n| n as f64 / 1e6),
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            max_ms: nanos.last().map_or(0.0, |&n| n as f64 / 1e6),
        }
    }
}

/// The retries, as they fell due.
pub struct Wave {
    /// Accepted events whose second attempt arrived.
    pub retried: usize,
    /// Accepted events whose first attempt failed but whose retry never
    /// arrived.
    pub missing: usize,
    /// Retries over the span from the first arrival to the last.
    pub attempts_per_second: f64,
    /// Due times over their span: the pace the retries fell due, set by
    /// the pace the first attempts failed.
    pub due_per_second: f64,
    pub lateness: Lateness,
    /// Retries more than [`LATE`] after due.
    pub late: usize,
    /// Retries that arrived before the last first attempt was answered:
    /// not every retry was waiting at once.
    pub before_all_waiting: usize,
    /// Retries that arrived before the probe with every retry waiting ended.
    pub during_probe: usize,
    pub timed_out: bool,
}

/// When the run's phases ended, as durations since the endpoint's base.
#[derive(Clone, Copy, Debug, Default)]
pub struct Moments {
    /// The loading loop saw every first attempt answered (or gave up).
    pub all_failed: Duration,
    /// The probe with every retry waiting ended.
    pub probe_end: Duration,
}

impl Wave {
    /// `accepted` holds (first index, count) of every accepted request.
    pub fn compute(
        record: &[EventTimes],
        accepted: &[(usize, usize)],
        interval: Duration,
        moments: Moments,
        timed_out: bool,
    ) -> Wave {
        let mut lateness = Vec::new();
        let mut missing = 0;
        let mut late = 0;
        let mut before_all_waiting = 0;
        let mut during_probe = 0;
        let mut arrivals: Option<(Duration, Duration)> = None;
        let mut dues: Option<(Duration, Duration)> = None;
        let widen = |span: &mut Option<(Duration, Duration)>, at: Duration| {
            *span = Some(match *span {
                Some((low, high)) => (low.min(at), high.max(at)),
                None => (at, at),
            });
        };
        for &(first, count) in accepted {
            for times in record.iter().skip(first).take(count) {
                let Some(failed) = times.failed else {
                    continue;
                };
                let Some(retried) = times.retried else {
                    missing += 1;
                    continue;
                };
                let due = failed + interval;
                let nanos = i64::try_from(retried.as_nanos()).unwrap_or(i64::MAX)
                    - i64::try_from(due.as_nanos()).unwrap_or(i64::MAX);
                lateness.push(nanos);
                if retried.saturating_sub(due) > LATE {
                    late += 1;
                }
                if retried < moments.all_failed {
                    before_all_waiting += 1;
                }
                if retried < moments.probe_end {
                    during_probe += 1;
                }
                widen(&mut arrivals, retried);
                widen(&mut dues, due);
            }
        }
        let rate = |span: Option<(Duration, Duration)>| {
            span.map_or(0.0, |(low, high)| {
                per_second(lateness.len(), (high - low).as_secs_f64())
            })
        };
        Wave {
            retried: lateness.len(),
            missing,
            attempts_per_second: rate(arrivals),
            due_per_second: rate(dues),
            lateness: Lateness::of(&mut lateness),
            late,
            before_all_waiting,
            during_probe,
            timed_out,
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "retried": self.retried,
            "missing": self.missing,
            "attempts_per_second": self.attempts_per_second,
            "due_per_second": self.due_per_second,
            "lateness_ms": {
                "min": self.lateness.min_ms,
                "p50": self.lateness.p50_ms,
                "p99": self.lateness.p99_ms,
                "max": self.lateness.max_ms,
            },
            "late_over_1s": self.late,
            "retries_before_all_waiting": self.before_all_waiting,
            "retries_during_probe": self.during_probe,
            "timed_out": self.timed_out,
        })
    }
}

impl Loading {
    pub fn compute(logs: &[PublisherLog], record: &[EventTimes], timed_out: bool) -> Loading {
        let publishing = Publishing::of(logs);
        let mut accepted = 0;
        let mut first_attempts = 0;
        let mut span: Option<(Duration, Duration)> = None;
        for &(first, count, _) in logs.iter().flat_map(|log| log.accepted.iter()) {
            accepted += count;
            for failed in record
                .iter()
                .skip(first)
                .take(count)
                .filter_map(|t| t.failed)
            {
                first_attempts += 1;
                span = Some(match span {
                    Some((low, high)) => (low.min(failed), high.max(failed)),
                    None => (failed, failed),
                });
            }
        }
        let publish_seconds = publishing.seconds();
        Loading {
            accepted,
            failed_requests: publishing.failed_requests,
            first_error: publishing.first_error,
            publish_seconds,
            publish_rate: per_second(accepted, publish_seconds),
            first_attempts,
            first_attempt_rate: span.map_or(0.0, |(low, high)| {
                per_second(first_attempts, (high - low).as_secs_f64())
            }),
            timed_out,
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "accepted_events": self.accepted,
            "failed_requests": self.failed_requests,
            "first_error": self.first_error,
            "publish_seconds": self.publish_seconds,
            "publish_events_per_second": self.publish_rate,
            "first_attempts_failed": self.first_attempts,
            "first_attempts_per_second": self.first_attempt_rate,
            "timed_out": self.timed_out,
        })
    }
}

/// The server process at the moments that matter, or why it could not be
/// read.
pub struct Samples {
    /// After the probe on the empty store.
    pub empty: anyhow::Result<ProcessSample>,
    /// Before the first publish of the events that wait.
    pub load_start: anyhow::Result<ProcessSample>,
    /// Once every first attempt had failed.
    pub waiting: anyhow::Result<ProcessSample>,
    /// After the probe with every retry waiting, before the first is due.
    pub wave_start: anyhow::Result<ProcessSample>,
    /// After the last retry.
    pub end: anyhow::Result<ProcessSample>,
}

impl Samples {
    pub fn rss_empty(&self) -> Option<u64> {
        self.empty.as_ref().ok().map(|s| s.rss)
    }

    pub fn rss_waiting(&self) -> Option<u64> {
        self.waiting.as_ref().ok().map(|s| s.rss)
    }

    pub fn peak_rss(&self) -> Option<u64> {
        self.end.as_ref().ok().map(|s| s.peak_rss)
    }

    /// The server's CPU time between two samples.
    fn cpu(
        before: &anyhow::Result<ProcessSample>,
        after: &anyhow::Result<ProcessSample>,
    ) -> Option<Duration> {
        match (before, after) {
            (Ok(before), Ok(after)) => Some(after.cpu.saturating_sub(before.cpu)),
            _ => None,
        }
    }

    /// Publishing and failing the events' first attempts.
    pub fn load_cpu(&self) -> Option<Duration> {
        Self::cpu(&self.load_start, &self.waiting)
    }

    /// The retries, from the probe's end to the last retry.
    pub fn wave_cpu(&self) -> Option<Duration> {
        Self::cpu(&self.wave_start, &self.end)
    }

    /// Why the figures are missing, if they are.
    pub fn unavailable(&self) -> Option<String> {
        [
            &self.empty,
            &self.load_start,
            &self.waiting,
            &self.wave_start,
            &self.end,
        ]
        .into_iter()
        .find_map(|sample| sample.as_ref().err().map(|err| format!("{err:#}")))
    }
}

/// One run.
pub struct Run {
    /// The probe's requests straight to a receiver answering 200.
    pub raw: RawResults,
    pub probe_empty: ServerResults,
    pub probe_waiting: ServerResults,
    pub loading: Loading,
    pub wave: Wave,
    pub samples: Samples,
    /// Pushes to the retry endpoint, duplicates and strangers among them.
    pub pushes: u64,
    pub duplicates: u64,
    pub foreign: u64,
}

impl Run {
    /// The probe's publish rate with every retry waiting over the same on
    /// the empty store.
    pub fn probe_ratio(&self) -> Option<f64> {
        let empty = self.probe_empty.publish_rate;
        (empty > 0.0).then(|| self.probe_waiting.publish_rate / empty)
    }

    pub fn load_cpu_us_per_event(&self) -> Option<f64> {
        micros_per(self.samples.load_cpu()?, self.loading.accepted)
    }

    pub fn wave_cpu_us_per_retry(&self) -> Option<f64> {
        micros_per(self.samples.wave_cpu()?, self.wave.retried)
    }

    pub fn to_json(&self) -> Value {
        let mb = |bytes: Option<u64>| bytes.map(|b| b as f64 / (1024.0 * 1024.0));
        json!({
            "raw": self.raw.to_json(),
            "probe_empty": self.probe_empty.to_json(),
            "probe_waiting": self.probe_waiting.to_json(),
            "probe_waiting_over_empty": self.probe_ratio(),
            "loading": self.loading.to_json(),
            "retries": self.wave.to_json(),
            "pushes": self.pushes,
            "duplicates": self.duplicates,
            "foreign": self.foreign,
            "server": {
                "rss_empty_mb": mb(self.samples.rss_empty()),
                "rss_waiting_mb": mb(self.samples.rss_waiting()),
                "peak_rss_mb": mb(self.samples.peak_rss()),
                "cpu_us_per_loaded_event": self.load_cpu_us_per_event(),
                "cpu_us_per_retry": self.wave_cpu_us_per_retry(),
                "unavailable": self.samples.unavailable(),
            },
        })
    }
}

fn micros_per(duration: Duration, count: usize) -> Option<f64> {
    (count > 0).then(|| duration.as_secs_f64() * 1e6 / count as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn times(failed_ms: u64, retried_ms: Option<u64>) -> EventTimes {
        EventTimes {
            failed: Some(Duration::from_millis(failed_ms)),
            retried: retried_ms.map(Duration::from_millis),
        }
    }

    #[test]
    fn lateness_is_arrival_less_answer_and_interval() {
        let interval = Duration::from_secs(10);
        let record = vec![
            times(0, Some(10_004)),
            times(100, Some(10_120)),
            times(200, Some(11_700)),
            times(300, None),
            // Never accepted: left out.
            times(400, Some(99_000)),
        ];
        let moments = Moments {
            all_failed: Duration::from_millis(10_050),
            probe_end: Duration::from_millis(10_010),
        };
        let wave = Wave::compute(&record, &[(0, 4)], interval, moments, false);
        assert_eq!(wave.retried, 3);
        assert_eq!(wave.missing, 1);
        assert_eq!(wave.late, 1);
        assert_eq!(wave.before_all_waiting, 1);
        assert_eq!(wave.during_probe, 1);
        assert_eq!(wave.lateness.min_ms, 4.0);
        assert_eq!(wave.lateness.p50_ms, 20.0);
        assert_eq!(wave.lateness.max_ms, 1500.0);
        // 3 retries from 10.004 s to 11.7 s; due from 10.0 s to 10.2 s.
        assert!((wave.attempts_per_second - 3.0 / 1.696).abs() < 1e-9);
        assert!((wave.due_per_second - 15.0).abs() < 1e-9);
    }

    #[test]
    fn a_retry_before_due_has_negative_lateness() {
        let record = vec![times(1_000, Some(10_999))];
        let wave = Wave::compute(
            &record,
            &[(0, 1)],
            Duration::from_secs(10),
            Moments::default(),
            false,
        );
        assert_eq!(wave.lateness.min_ms, -1.0);
        assert_eq!(wave.late, 0);
    }

    #[test]
    fn loading_counts_accepted_events_and_their_first_attempts() {
        let start = std::time::Instant::now();
        let log = PublisherLog {
            accepted: vec![(0, 2, start), (2, 2, start)],
            first_start: Some(start),
            last_answer: Some(start + Duration::from_secs(2)),
            requests: 2,
            ..Default::default()
        };
        let record = vec![
            times(0, None),
            times(500, None),
            times(1_000, None),
            EventTimes::default(),
        ];
        let loading = Loading::compute(&[log], &record, false);
        assert_eq!(loading.accepted, 4);
        assert_eq!(loading.first_attempts, 3);
        assert!((loading.publish_rate - 2.0).abs() < 1e-9);
        assert!((loading.first_attempt_rate - 3.0).abs() < 1e-9);
    }
}

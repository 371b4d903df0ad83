//! What one run measured, computed from the publishers' logs, the retry
//! endpoint's record and samples of the server process.

use std::time::Duration;

use serde_json::{Value, json};

use super::super::delivery::generator::PublisherLog;
use super::super::delivery::process_stats::ProcessSample;
use super::super::delivery::report::median;
use super::super::delivery::results::{Publishing, RawResults, ServerResults, ms, per_second};
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
    /// The most retries that arrived within one second (counted in whole
    /// seconds from the first arrival).
    pub busiest_second_attempts: usize,
    /// The most that fell due within one second, likewise.
    pub busiest_second_due: usize,
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
        let mut arrived_at = Vec::new();
        let mut due_at = Vec::new();
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
                arrived_at.push(retried);
                due_at.push(due);
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
            busiest_second_attempts: busiest_second(&arrived_at),
            busiest_second_due: busiest_second(&due_at),
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
            "busiest_second_attempts": self.busiest_second_attempts,
            "busiest_second_due": self.busiest_second_due,
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

/// The most of `times` in one whole second counted from the earliest.
fn busiest_second(times: &[Duration]) -> usize {
    let Some(&start) = times.iter().min() else {
        return 0;
    };
    let mut counts: Vec<usize> = Vec::new();
    for &at in times {
        let second = usize::try_from((at - start).as_secs()).unwrap_or(usize::MAX);
        if second >= counts.len() {
            counts.resize(second.saturating_add(1), 0);
        }
        counts[second] += 1;
    }
    counts.into_iter().max().unwrap_or(0)
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

/// The server process (and this one) at the moments that matter, or why
/// it could not be read.
pub struct Samples {
    /// After the probes on the empty store.
    pub empty: anyhow::Result<ProcessSample>,
    /// Before the first publish of the events that wait.
    pub load_start: anyhow::Result<ProcessSample>,
    /// Once every first attempt had failed.
    pub waiting: anyhow::Result<ProcessSample>,
    /// After the probes with every retry waiting.
    pub idle_start: anyhow::Result<ProcessSample>,
    /// Just before the first retry was due.
    pub first_due: anyhow::Result<ProcessSample>,
    /// After the last retry.
    pub end: anyhow::Result<ProcessSample>,
    /// From `idle_start` to `first_due`.
    pub idle: Duration,
    /// This process (generator and receivers) at `first_due` and `end`.
    pub bench_first_due: anyhow::Result<ProcessSample>,
    pub bench_end: anyhow::Result<ProcessSample>,
}

impl Samples {
    pub fn rss_empty(&self) -> Option<u64> {
        self.empty.as_ref().ok().map(|s| s.rss)
    }

    pub fn rss_waiting(&self) -> Option<u64> {
        self.waiting.as_ref().ok().map(|s| s.rss)
    }

    /// The kernel's high-water mark, or a resident size read earlier if
    /// that was higher: its counters are per thread and summed lazily, so
    /// VmRSS read once may exceed VmHWM read later by a few pages.
    pub fn peak_rss(&self) -> Option<u64> {
        let end = self.end.as_ref().ok()?;
        Some(
            [
                &self.empty,
                &self.load_start,
                &self.waiting,
                &self.idle_start,
                &self.first_due,
            ]
            .into_iter()
            .filter_map(|sample| sample.as_ref().ok())
            .map(|sample| sample.rss.max(sample.peak_rss))
            .fold(end.peak_rss.max(end.rss), u64::max),
        )
    }

    /// The CPU time between two samples of one process.
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

    /// The server's share of a core while it had nothing to do but hold
    /// the waiting retries (None when that was too short to tell).
    pub fn idle_cores(&self) -> Option<f64> {
        let cpu = Self::cpu(&self.idle_start, &self.first_due)?;
        (self.idle >= Duration::from_secs(1)).then(|| cpu.as_secs_f64() / self.idle.as_secs_f64())
    }

    /// The retries, from just before the first was due to the last.
    pub fn wave_cpu(&self) -> Option<Duration> {
        Self::cpu(&self.first_due, &self.end)
    }

    /// This process over the same span.
    pub fn bench_wave_cpu(&self) -> Option<Duration> {
        Self::cpu(&self.bench_first_due, &self.bench_end)
    }

    /// Why the server's figures are missing, if they are.
    pub fn unavailable(&self) -> Option<String> {
        [
            &self.empty,
            &self.load_start,
            &self.waiting,
            &self.idle_start,
            &self.first_due,
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
    /// The probe on the fresh server, before the measured ones.
    pub probe_warmup: ServerResults,
    /// The probes on the empty store and with every retry waiting.
    pub probe_empty: Vec<ServerResults>,
    pub probe_waiting: Vec<ServerResults>,
    pub loading: Loading,
    pub wave: Wave,
    pub samples: Samples,
    /// Pushes to the retry endpoint, duplicates and strangers among them.
    pub pushes: u64,
    pub duplicates: u64,
    pub foreign: u64,
}

/// The median publish rate of some probes.
fn median_rate(probes: &[ServerResults]) -> Option<f64> {
    median(probes.iter().map(|probe| Some(probe.publish_rate)))
}

/// The median of their publish requests' p99, in ms.
fn median_p99(probes: &[ServerResults]) -> Option<f64> {
    median(
        probes
            .iter()
            .map(|probe| Some(ms(probe.request_latency.p99))),
    )
}

impl Run {
    pub fn empty_publish_rate(&self) -> Option<f64> {
        median_rate(&self.probe_empty)
    }

    pub fn waiting_publish_rate(&self) -> Option<f64> {
        median_rate(&self.probe_waiting)
    }

    pub fn empty_p99_ms(&self) -> Option<f64> {
        median_p99(&self.probe_empty)
    }

    pub fn waiting_p99_ms(&self) -> Option<f64> {
        median_p99(&self.probe_waiting)
    }

    /// The probes' median publish rate with every retry waiting over the
    /// same on the empty store.
    pub fn probe_ratio(&self) -> Option<f64> {
        let empty = self.empty_publish_rate()?;
        (empty > 0.0).then(|| self.waiting_publish_rate().unwrap_or(0.0) / empty)
    }

    pub fn load_cpu_us_per_event(&self) -> Option<f64> {
        micros_per(self.samples.load_cpu()?, self.loading.accepted)
    }

    pub fn wave_cpu_us_per_retry(&self) -> Option<f64> {
        micros_per(self.samples.wave_cpu()?, self.wave.retried)
    }

    pub fn bench_cpu_us_per_retry(&self) -> Option<f64> {
        micros_per(self.samples.bench_wave_cpu()?, self.wave.retried)
    }

    pub fn to_json(&self) -> Value {
        let mb = |bytes: Option<u64>| bytes.map(|b| b as f64 / (1024.0 * 1024.0));
        let all = |probes: &[ServerResults]| {
            probes
                .iter()
                .map(ServerResults::to_json)
                .collect::<Vec<_>>()
        };
        json!({
            "raw": self.raw.to_json(),
            "probe_warmup": self.probe_warmup.to_json(),
            "probes_empty": all(&self.probe_empty),
            "probes_waiting": all(&self.probe_waiting),
            "probe_empty_publish_per_second": self.empty_publish_rate(),
            "probe_waiting_publish_per_second": self.waiting_publish_rate(),
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
                "idle_cores_while_waiting": self.samples.idle_cores(),
                "idle_seconds": self.samples.idle.as_secs_f64(),
                "cpu_us_per_retry": self.wave_cpu_us_per_retry(),
                "unavailable": self.samples.unavailable(),
            },
            "bench_cpu_us_per_retry": self.bench_cpu_us_per_retry(),
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
        assert_eq!(wave.busiest_second_attempts, 2);
        assert_eq!(wave.busiest_second_due, 3);
    }

    #[test]
    fn the_peak_is_never_below_a_resident_size_read_earlier() {
        let sample = |rss, peak_rss| {
            Ok(ProcessSample {
                cpu: Duration::ZERO,
                peak_rss,
                rss,
            })
        };
        let samples = Samples {
            empty: sample(40, 41),
            load_start: Err(anyhow::anyhow!("not read")),
            waiting: sample(67, 67),
            idle_start: sample(60, 66),
            first_due: sample(60, 66),
            end: sample(50, 66),
            idle: Duration::ZERO,
            bench_first_due: sample(1, 1),
            bench_end: sample(1, 1),
        };
        assert_eq!(samples.peak_rss(), Some(67));
        assert_eq!(samples.idle_cores(), None);
    }

    #[test]
    fn the_busiest_second_counts_from_the_earliest() {
        let at = |ms: u64| Duration::from_millis(ms);
        assert_eq!(busiest_second(&[]), 0);
        assert_eq!(busiest_second(&[at(500), at(1400), at(1600), at(2400)]), 2);
        assert_eq!(
            busiest_second(&[at(0), at(999), at(1000), at(1001), at(1002)]),
            3
        );
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

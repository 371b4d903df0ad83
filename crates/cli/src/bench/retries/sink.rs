//! The retried subscription's endpoint on 127.0.0.1: it answers an event's
//! first push 503 and every later one 200, and notes, per event (its
//! `ce-id` is its index), when it answered the first attempt and when the
//! second arrived. The attempt number is the `redrive-attempt` header.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};

use super::super::delivery::sink::SinkServer;

/// How late a retry may start: the target's bound.
pub const LATE: Duration = Duration::from_secs(1);

/// What the endpoint saw. Times are nanoseconds since `base`, plus one, so
/// that 0 means "not yet" and each slot is one atomic word (a million
/// events, pushed concurrently, need no lock).
pub struct RetrySink {
    base: Instant,
    interval: Duration,
    /// When the endpoint answered each event's first attempt.
    failed: Vec<AtomicU64>,
    /// When each event's second attempt arrived.
    retried: Vec<AtomicU64>,
    /// Events whose first attempt was answered.
    pub failed_count: AtomicUsize,
    /// Events whose second attempt arrived.
    pub retried_count: AtomicUsize,
    /// Of those, the retries that arrived more than [`LATE`] after due.
    pub late_count: AtomicUsize,
    /// The latest arrival relative to due so far, in µs.
    pub max_lateness_us: AtomicU64,
    /// Pushes received, whatever they were.
    pub pushes: AtomicU64,
    /// Pushes of an attempt the endpoint had already seen for that event,
    /// or of a third or later attempt (none is expected: the second is
    /// answered 200).
    pub duplicates: AtomicU64,
    /// Pushes without a known `ce-id` or attempt number.
    pub foreign: AtomicU64,
}

/// An event's two times, as [`RetrySink::record`] reads them back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventTimes {
    /// Since the sink's base: its answer to the first attempt.
    pub failed: Option<Duration>,
    /// Since the sink's base: the second attempt's arrival.
    pub retried: Option<Duration>,
}

impl RetrySink {
    pub fn new(events: usize, interval: Duration) -> RetrySink {
        RetrySink {
            base: Instant::now(),
            interval,
            failed: (0..events).map(|_| AtomicU64::new(0)).collect(),
            retried: (0..events).map(|_| AtomicU64::new(0)).collect(),
            failed_count: AtomicUsize::new(0),
            retried_count: AtomicUsize::new(0),
            late_count: AtomicUsize::new(0),
            max_lateness_us: AtomicU64::new(0),
            pushes: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            foreign: AtomicU64::new(0),
        }
    }

    pub fn base(&self) -> Instant {
        self.base
    }

    fn stamp(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX - 1)
            + 1
    }

    fn since_base(stamp: u64) -> Option<Duration> {
        stamp.checked_sub(1).map(Duration::from_nanos)
    }

    /// Notes a push of `attempt` of event `ce_id` at `at` and says how to
    /// answer it: 503 to a first attempt, 200 to any other push.
    pub fn push(&self, ce_id: Option<&str>, attempt: Option<&str>, at: Instant) -> StatusCode {
        self.pushes.fetch_add(1, Ordering::Relaxed);
        let index = ce_id.and_then(|id| id.parse::<usize>().ok());
        let attempt = attempt.and_then(|n| n.trim().parse::<u32>().ok());
        let (Some(index), Some(attempt)) = (index, attempt) else {
            self.foreign.fetch_add(1, Ordering::Relaxed);
            return StatusCode::OK;
        };
        let (Some(failed), Some(retried)) = (self.failed.get(index), self.retried.get(index))
        else {
            self.foreign.fetch_add(1, Ordering::Relaxed);
            return StatusCode::OK;
        };
        let stamp = self.stamp(at);
        match attempt {
            1 => {
                if failed
                    .compare_exchange(0, stamp, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    self.failed_count.fetch_add(1, Ordering::Relaxed);
                } else {
                    self.duplicates.fetch_add(1, Ordering::Relaxed);
                }
                StatusCode::SERVICE_UNAVAILABLE
            }
            2 => {
                if retried
                    .compare_exchange(0, stamp, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    self.retried_count.fetch_add(1, Ordering::Relaxed);
                    if let Some(first) = Self::since_base(failed.load(Ordering::Acquire)) {
                        let due = first + self.interval;
                        let lateness = Self::since_base(stamp)
                            .unwrap_or_default()
                            .saturating_sub(due);
                        if lateness > LATE {
                            self.late_count.fetch_add(1, Ordering::Relaxed);
                        }
                        let micros = u64::try_from(lateness.as_micros()).unwrap_or(u64::MAX);
                        self.max_lateness_us.fetch_max(micros, Ordering::Relaxed);
                    }
                } else {
                    self.duplicates.fetch_add(1, Ordering::Relaxed);
                }
                StatusCode::OK
            }
            _ => {
                self.duplicates.fetch_add(1, Ordering::Relaxed);
                StatusCode::OK
            }
        }
    }

    /// Each event's two times so far.
    pub fn record(&self) -> Vec<EventTimes> {
        self.failed
            .iter()
            .zip(&self.retried)
            .map(|(failed, retried)| EventTimes {
                failed: Self::since_base(failed.load(Ordering::Acquire)),
                retried: Self::since_base(retried.load(Ordering::Acquire)),
            })
            .collect()
    }
}

/// Serves `sink` on a free port of 127.0.0.1.
pub async fn serve(sink: Arc<RetrySink>) -> anyhow::Result<SinkServer> {
    SinkServer::serve(Router::new().fallback(receive).with_state(sink)).await
}

/// The body is read (so the connection stays reusable) and dropped; the
/// time is taken just before the answer goes.
async fn receive(
    State(sink): State<Arc<RetrySink>>,
    headers: HeaderMap,
    _body: Bytes,
) -> StatusCode {
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    sink.push(header("ce-id"), header("redrive-attempt"), Instant::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_attempts_fail_later_ones_succeed_and_times_are_kept() {
        let sink = RetrySink::new(3, Duration::from_secs(10));
        let base = sink.base();
        let at = |ms| base + Duration::from_millis(ms);
        assert_eq!(
            sink.push(Some("0"), Some("1"), at(100)),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            sink.push(Some("1"), Some("1"), at(200)),
            StatusCode::SERVICE_UNAVAILABLE
        );
        // On time, then 1.5 s late.
        assert_eq!(sink.push(Some("0"), Some("2"), at(10_150)), StatusCode::OK);
        assert_eq!(sink.push(Some("1"), Some("2"), at(11_700)), StatusCode::OK);
        assert_eq!(sink.failed_count.load(Ordering::Relaxed), 2);
        assert_eq!(sink.retried_count.load(Ordering::Relaxed), 2);
        assert_eq!(sink.late_count.load(Ordering::Relaxed), 1);
        assert_eq!(sink.max_lateness_us.load(Ordering::Relaxed), 1_500_000);

        let record = sink.record();
        assert_eq!(record[0].failed, Some(Duration::from_millis(100)));
        assert_eq!(record[0].retried, Some(Duration::from_millis(10_150)));
        assert_eq!(record[2], EventTimes::default());
    }

    #[test]
    fn repeats_later_attempts_and_strangers_are_counted_apart() {
        let sink = RetrySink::new(2, Duration::from_secs(1));
        let now = sink.base();
        sink.push(Some("0"), Some("1"), now);
        assert_eq!(
            sink.push(Some("0"), Some("1"), now),
            StatusCode::SERVICE_UNAVAILABLE
        );
        sink.push(Some("0"), Some("2"), now);
        sink.push(Some("0"), Some("2"), now);
        sink.push(Some("0"), Some("3"), now);
        assert_eq!(sink.push(Some("9"), Some("1"), now), StatusCode::OK);
        sink.push(Some("1"), None, now);
        sink.push(None, Some("1"), now);
        assert_eq!(sink.duplicates.load(Ordering::Relaxed), 3);
        assert_eq!(sink.foreign.load(Ordering::Relaxed), 3);
        assert_eq!(sink.pushes.load(Ordering::Relaxed), 8);
        assert_eq!(sink.failed_count.load(Ordering::Relaxed), 1);
    }
}

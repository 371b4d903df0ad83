//! Retry policies: when to try again and when to stop.
//!
//! One struct expresses App Engine push queues, Cloud Tasks, Pub/Sub,
//! Eventarc, Adobe I/O Events and Standard Webhooks schedules.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::duration::HumanDuration;
use crate::retry::classify::StatusRange;

/// How the delay before each retry grows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Backoff {
    /// App Engine's formula: for retry `n` (1 = first retry),
    /// `e = min(n-1, max_doublings)`,
    /// `delay = min(max_backoff, min_backoff * 2^e * max(n-e, 1))`.
    ///
    /// The delay doubles `max_doublings` times, then grows linearly by the
    /// last step. With `min_backoff` 10s, `max_backoff` 300s and
    /// `max_doublings` 3, retries 1 to 8 wait 10s, 20s, 40s, 80s (doubled 3
    /// times), 160s (80 × 2), 240s (80 × 3), then 300s (the cap: 80 × 4 =
    /// 320s) and 300s. With `max_doublings` 0 it is linear: 10s, 20s, 30s, …
    Exponential {
        min_backoff: HumanDuration,
        max_backoff: HumanDuration,
        max_doublings: u32,
    },
    Fixed {
        interval: HumanDuration,
    },
    /// Explicit delays; the last one repeats.
    Schedule {
        delays: Vec<HumanDuration>,
    },
    Immediate,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Jitter {
    #[default]
    None,
    /// A uniform delay in `[0, delay)`.
    Full,
    /// A uniform delay in `[delay/2, delay)`.
    Equal,
}

/// How `retry_limit` and `age_limit` combine when both are set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LimitMode {
    /// App Engine: stop only when both limits are exceeded.
    #[default]
    Both,
    /// Stop as soon as either limit is exceeded.
    Either,
}

/// A retry policy. The default is App Engine's: exponential from 0.1s to
/// 3600s with 16 doublings and no limits.
///
/// Written with `"preset": "NAME"`, the policy starts from that preset
/// (see [`crate::retry::presets`]) and the fields given beside it override it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "crate::retry::presets::RawRetryPolicy")]
pub struct RetryPolicy {
    /// The preset this policy started from, kept so it reads back as
    /// written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    #[serde(default = "default_backoff")]
    pub backoff: Backoff,
    #[serde(default)]
    pub jitter: Jitter,
    /// Number of retries (N retries = N+1 attempts). Unset: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_limit: Option<u32>,
    /// Time since the first attempt after which no retry starts. Unset: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_limit: Option<HumanDuration>,
    #[serde(default)]
    pub limit_mode: LimitMode,
    /// Status codes that count as success besides 2xx (e.g. 102).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub success_codes: Vec<u16>,
    /// When true, only `success_codes` are success: a 2xx outside the list
    /// is a failure (Pub/Sub push accepts 102, 200, 201, 202 and 204 only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub success_codes_only: bool,
    /// When set, only these codes are retried and every other non-success
    /// code is final. Entries: `429`, `"5xx"`, `"500-599"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<String>>)]
    pub retry_codes: Option<Vec<StatusRange>>,
    /// Codes never retried, whatever `retry_codes` says.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<String>)]
    pub final_codes: Vec<StatusRange>,
}

/// App Engine push queues' backoff defaults (queue.xml, queue.yaml):
/// 0.1 s doubling 16 times, at most 3600 s. redrive's default too.
pub const APPENGINE_BACKOFF: ExponentialBackoff = ExponentialBackoff {
    min_backoff: Duration::from_millis(100),
    max_backoff: Duration::from_secs(3600),
    max_doublings: 16,
};

/// The settings of an exponential backoff.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExponentialBackoff {
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    pub max_doublings: u32,
}

impl From<ExponentialBackoff> for Backoff {
    fn from(settings: ExponentialBackoff) -> Self {
        Backoff::Exponential {
            min_backoff: HumanDuration(settings.min_backoff),
            max_backoff: HumanDuration(settings.max_backoff),
            max_doublings: settings.max_doublings,
        }
    }
}

pub(crate) fn default_backoff() -> Backoff {
    APPENGINE_BACKOFF.into()
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            preset: None,
            backoff: default_backoff(),
            jitter: Jitter::None,
            retry_limit: None,
            age_limit: None,
            limit_mode: LimitMode::Both,
            success_codes: Vec::new(),
            success_codes_only: false,
            retry_codes: None,
            final_codes: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid retry_policy.{field}: {message}")]
pub struct PolicyError {
    pub field: String,
    pub message: String,
}

/// One line of a policy's schedule, as `redrive policy explain` prints it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ScheduledRetry {
    /// 1 for the first retry.
    pub retry: u32,
    /// Wait before this retry.
    pub delay: Duration,
    /// Time since the first attempt when this retry starts, when every
    /// attempt fails instantly.
    pub at: Duration,
}

impl RetryPolicy {
    /// The most doublings `validate` accepts: 2^62 × the smallest step
    /// already dwarfs any sensible `max_backoff`.
    pub const MAX_DOUBLINGS: u32 = 62;

    /// Checks ranges and shapes (min ≤ max, a non-empty schedule, …).
    pub fn validate(&self) -> Result<(), PolicyError> {
        let fail = |field: &str, message: String| {
            Err(PolicyError {
                field: field.to_string(),
                message,
            })
        };
        match &self.backoff {
            Backoff::Exponential {
                min_backoff,
                max_backoff,
                max_doublings,
            } => {
                if min_backoff.0.is_zero() {
                    // Zero times anything is zero: the policy would be
                    // `immediate` in disguise.
                    return fail(
                        "backoff.min_backoff",
                        "must be greater than 0 (use kind \"immediate\" for no delay)".into(),
                    );
                }
                if min_backoff > max_backoff {
                    return fail(
                        "backoff.max_backoff",
                        format!("must be at least min_backoff ({min_backoff}), got {max_backoff}"),
                    );
                }
                if *max_doublings > Self::MAX_DOUBLINGS {
                    return fail(
                        "backoff.max_doublings",
                        format!(
                            "must be at most {}, got {max_doublings}",
                            Self::MAX_DOUBLINGS
                        ),
                    );
                }
            }
            Backoff::Schedule { delays } if delays.is_empty() => {
                return fail("backoff.delays", "must list at least one delay".into());
            }
            Backoff::Fixed { .. } | Backoff::Schedule { .. } | Backoff::Immediate => {}
        }
        for (i, code) in self.success_codes.iter().enumerate() {
            if !StatusRange::VALID.contains(code) {
                return fail(
                    &format!("success_codes[{i}]"),
                    format!("{code} is not an HTTP status code (100-599)"),
                );
            }
        }
        let ranges = [
            (
                "retry_codes",
                self.retry_codes.as_deref().unwrap_or_default(),
            ),
            ("final_codes", self.final_codes.as_slice()),
        ];
        for (field, ranges) in ranges {
            for (i, range) in ranges.iter().enumerate() {
                if let Err(message) = range.check() {
                    return fail(&format!("{field}[{i}]"), message);
                }
            }
        }
        Ok(())
    }

    /// The delay before retry `n` (1 = first retry), before jitter.
    ///
    /// Retry 0 is read as retry 1. Never panics: huge `n` or
    /// `max_doublings` saturate at the cap.
    pub fn delay_for_retry(&self, n: u32) -> Duration {
        match &self.backoff {
            Backoff::Exponential {
                min_backoff,
                max_backoff,
                max_doublings,
            } => exponential_delay(min_backoff.0, max_backoff.0, *max_doublings, n),
            Backoff::Fixed { interval } => interval.0,
            Backoff::Schedule { delays } => {
                let index = usize::try_from(n.saturating_sub(1)).unwrap_or(usize::MAX);
                delays
                    .get(index)
                    .or(delays.last())
                    .map_or(Duration::ZERO, |d| d.0)
            }
            Backoff::Immediate => Duration::ZERO,
        }
    }

    /// Whether retry `n` may start when the delivery is `age` old
    /// (measured from its first attempt).
    ///
    /// With both limits set, [`LimitMode::Both`] (App Engine) stops only once
    /// both are passed; [`LimitMode::Either`] stops at the first one passed.
    pub fn may_retry(&self, n: u32, age: Duration) -> bool {
        let within_retries = self.retry_limit.map(|limit| n <= limit);
        let within_age = self.age_limit.map(|limit| age <= limit.0);
        match (within_retries, within_age) {
            (None, None) => true,
            (Some(ok), None) | (None, Some(ok)) => ok,
            (Some(retries), Some(age)) => match self.limit_mode {
                LimitMode::Both => retries || age,
                LimitMode::Either => retries && age,
            },
        }
    }

    /// The longest wait a `Retry-After` answer can impose.
    pub fn retry_after_cap(&self) -> Duration {
        match &self.backoff {
            Backoff::Exponential { max_backoff, .. } => max_backoff.0,
            Backoff::Fixed { interval } => interval.0,
            Backoff::Schedule { delays } => {
                delays.iter().map(|d| d.0).max().unwrap_or(Duration::ZERO)
            }
            Backoff::Immediate => Duration::ZERO,
        }
    }

    /// The retries this policy makes, at most `count` of them.
    ///
    /// Assumes every attempt fails instantly and ignores jitter: retry `n`
    /// is listed when [`may_retry`](Self::may_retry) allows it at the time
    /// attempt `n` ends, which is when retry `n-1` started.
    pub fn explain(&self, count: usize) -> Vec<ScheduledRetry> {
        let mut retries = Vec::new();
        let mut at = Duration::ZERO;
        for n in 1..=u32::MAX {
            if retries.len() >= count || !self.may_retry(n, at) {
                break;
            }
            let delay = self.delay_for_retry(n);
            at = at.saturating_add(delay);
            retries.push(ScheduledRetry {
                retry: n,
                delay,
                at,
            });
        }
        retries
    }
}

/// App Engine's exponential delay for retry `n`, in exact integer nanoseconds
/// so that `0.1s` doubled is `0.2s`, not a float neighbour of it.
fn exponential_delay(min: Duration, max: Duration, max_doublings: u32, n: u32) -> Duration {
    let n = n.max(1);
    let doublings = (n - 1).min(max_doublings);
    let linear = (n - doublings).max(1);
    // At most ~2^94 × 2^127 × 2^32: every step is checked, and overflow
    // means the cap was passed long ago.
    let nanos = 1u128
        .checked_shl(doublings)
        .and_then(|factor| min.as_nanos().checked_mul(factor))
        .and_then(|nanos| nanos.checked_mul(u128::from(linear)));
    match nanos {
        Some(nanos) if nanos < max.as_nanos() => duration_from_nanos(nanos),
        _ => max,
    }
}

/// A `Duration` of `nanos`, which the caller keeps below some other
/// `Duration` so it fits.
fn duration_from_nanos(nanos: u128) -> Duration {
    let secs = u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX);
    Duration::new(secs, (nanos % 1_000_000_000) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn ms(m: u64) -> Duration {
        Duration::from_millis(m)
    }

    fn exponential(min: Duration, max: Duration, max_doublings: u32) -> RetryPolicy {
        RetryPolicy {
            backoff: Backoff::Exponential {
                min_backoff: HumanDuration(min),
                max_backoff: HumanDuration(max),
                max_doublings,
            },
            ..RetryPolicy::default()
        }
    }

    fn schedule(delays: &[Duration]) -> RetryPolicy {
        RetryPolicy {
            backoff: Backoff::Schedule {
                delays: delays.iter().copied().map(HumanDuration).collect(),
            },
            ..RetryPolicy::default()
        }
    }

    fn delays(policy: &RetryPolicy, retries: std::ops::RangeInclusive<u32>) -> Vec<Duration> {
        retries.map(|n| policy.delay_for_retry(n)).collect()
    }

    fn limits(retry_limit: Option<u32>, age_limit: Option<u64>, mode: LimitMode) -> RetryPolicy {
        RetryPolicy {
            retry_limit,
            age_limit: age_limit.map(HumanDuration::from_secs),
            limit_mode: mode,
            ..RetryPolicy::default()
        }
    }

    fn field_of(policy: RetryPolicy) -> String {
        policy.validate().unwrap_err().field
    }

    #[test]
    fn appengine_exponential_doubles_then_grows_linearly() {
        let policy = exponential(secs(10), secs(300), 3);
        assert_eq!(
            delays(&policy, 1..=10),
            [10, 20, 40, 80, 160, 240, 300, 300, 300, 300].map(secs)
        );
    }

    #[test]
    fn zero_doublings_is_linear_from_min_backoff() {
        let policy = exponential(secs(10), secs(300), 0);
        assert_eq!(delays(&policy, 1..=6), [10, 20, 30, 40, 50, 60].map(secs));
        assert_eq!(policy.delay_for_retry(30), secs(300));
        assert_eq!(policy.delay_for_retry(31), secs(300));
    }

    #[test]
    fn appengine_default_doubles_from_100ms_sixteen_times_then_caps_at_an_hour() {
        let policy = RetryPolicy::default();
        let expected = [
            100, 200, 400, 800, 1600, 3200, 6400, 12_800, 25_600, 51_200, 102_400, 204_800,
            409_600, 819_200, 1_638_400, 3_276_800, 3_600_000, 3_600_000,
        ]
        .map(ms);
        assert_eq!(delays(&policy, 1..=18), expected);
    }

    #[test]
    fn exponential_keeps_decimal_steps_exact() {
        let policy = exponential(ms(100), secs(3600), 0);
        assert_eq!(delays(&policy, 1..=3), [100, 200, 300].map(ms));
    }

    #[test]
    fn exponential_saturates_at_the_cap_for_huge_retry_numbers() {
        let policy = exponential(secs(10), secs(300), 3);
        assert_eq!(policy.delay_for_retry(u32::MAX), secs(300));
        let policy = exponential(secs(10), Duration::MAX, 16);
        assert_eq!(
            policy.delay_for_retry(u32::MAX),
            secs(10 * 65_536 * (u32::MAX as u64 - 16))
        );
    }

    #[test]
    fn exponential_never_overflows_even_for_unvalidated_doublings() {
        for doublings in [62, 63, 64, 127, 128, 200, u32::MAX] {
            let policy = exponential(Duration::MAX, Duration::MAX, doublings);
            assert_eq!(policy.delay_for_retry(u32::MAX), Duration::MAX);
            let policy = exponential(secs(1), secs(3600), doublings);
            assert_eq!(policy.delay_for_retry(u32::MAX), secs(3600));
            assert_eq!(policy.delay_for_retry(200), secs(3600));
        }
        let policy = exponential(ms(1), Duration::MAX, u32::MAX);
        assert_eq!(policy.delay_for_retry(63), ms(1 << 62));
    }

    #[test]
    fn retry_zero_is_read_as_the_first_retry() {
        assert_eq!(
            exponential(secs(10), secs(300), 3).delay_for_retry(0),
            secs(10)
        );
        assert_eq!(schedule(&[secs(5), secs(60)]).delay_for_retry(0), secs(5));
    }

    #[test]
    fn fixed_waits_the_interval_every_time() {
        let policy = RetryPolicy {
            backoff: Backoff::Fixed {
                interval: HumanDuration::from_secs(30),
            },
            ..RetryPolicy::default()
        };
        assert_eq!(delays(&policy, 1..=3), [secs(30); 3]);
        assert_eq!(policy.delay_for_retry(u32::MAX), secs(30));
    }

    #[test]
    fn schedule_follows_its_list_then_repeats_the_last_entry() {
        let policy = schedule(&[secs(5), secs(300), secs(1800)]);
        assert_eq!(delays(&policy, 1..=5), [5, 300, 1800, 1800, 1800].map(secs));
        assert_eq!(policy.delay_for_retry(u32::MAX), secs(1800));
    }

    #[test]
    fn empty_schedule_waits_nothing_instead_of_panicking() {
        assert_eq!(schedule(&[]).delay_for_retry(1), Duration::ZERO);
        assert_eq!(schedule(&[]).retry_after_cap(), Duration::ZERO);
    }

    #[test]
    fn immediate_never_waits() {
        let policy = RetryPolicy {
            backoff: Backoff::Immediate,
            ..RetryPolicy::default()
        };
        assert_eq!(delays(&policy, 1..=3), [Duration::ZERO; 3]);
    }

    #[test]
    fn without_limits_every_retry_may_start() {
        let policy = limits(None, None, LimitMode::Both);
        assert!(policy.may_retry(1, Duration::ZERO));
        assert!(policy.may_retry(u32::MAX, Duration::MAX));
    }

    #[test]
    fn retry_limit_alone_counts_retries() {
        let policy = limits(Some(3), None, LimitMode::Both);
        assert!(policy.may_retry(3, Duration::MAX));
        assert!(!policy.may_retry(4, Duration::ZERO));
    }

    #[test]
    fn retry_limit_zero_allows_no_retry() {
        let policy = limits(Some(0), None, LimitMode::Both);
        assert!(!policy.may_retry(1, Duration::ZERO));
        assert!(policy.explain(10).is_empty());
    }

    #[test]
    fn age_limit_alone_includes_the_limit_itself() {
        let policy = limits(None, Some(10), LimitMode::Either);
        assert!(policy.may_retry(u32::MAX, secs(10)));
        assert!(!policy.may_retry(1, secs(10) + Duration::from_nanos(1)));
    }

    #[test]
    fn retries_stop_only_when_both_limits_pass() {
        let policy = limits(Some(2), Some(10), LimitMode::Both);
        assert!(policy.may_retry(2, secs(20)));
        assert!(policy.may_retry(3, secs(5)));
        assert!(!policy.may_retry(3, secs(20)));
    }

    #[test]
    fn either_mode_stops_at_the_first_limit_passed() {
        let policy = limits(Some(2), Some(10), LimitMode::Either);
        assert!(policy.may_retry(2, secs(10)));
        assert!(!policy.may_retry(2, secs(20)));
        assert!(!policy.may_retry(3, secs(5)));
    }

    #[test]
    fn retry_after_cap_is_the_longest_wait_of_the_backoff() {
        assert_eq!(
            exponential(secs(10), secs(300), 3).retry_after_cap(),
            secs(300)
        );
        let fixed = RetryPolicy {
            backoff: Backoff::Fixed {
                interval: HumanDuration::from_secs(30),
            },
            ..RetryPolicy::default()
        };
        assert_eq!(fixed.retry_after_cap(), secs(30));
        assert_eq!(
            schedule(&[secs(5), secs(3600), secs(60)]).retry_after_cap(),
            secs(3600)
        );
        let immediate = RetryPolicy {
            backoff: Backoff::Immediate,
            ..RetryPolicy::default()
        };
        assert_eq!(immediate.retry_after_cap(), Duration::ZERO);
    }

    fn explained(policy: &RetryPolicy, count: usize) -> Vec<(u32, u64, u64)> {
        policy
            .explain(count)
            .into_iter()
            .map(|r| (r.retry, r.delay.as_secs(), r.at.as_secs()))
            .collect()
    }

    #[test]
    fn explain_lists_delays_and_cumulative_times() {
        let policy = exponential(secs(10), secs(300), 3);
        assert_eq!(
            explained(&policy, 8),
            [
                (1, 10, 10),
                (2, 20, 30),
                (3, 40, 70),
                (4, 80, 150),
                (5, 160, 310),
                (6, 240, 550),
                (7, 300, 850),
                (8, 300, 1150),
            ]
        );
    }

    #[test]
    fn explain_stops_at_the_retry_limit() {
        let policy = RetryPolicy {
            retry_limit: Some(3),
            ..exponential(secs(10), secs(300), 3)
        };
        assert_eq!(
            explained(&policy, 20),
            [(1, 10, 10), (2, 20, 30), (3, 40, 70)]
        );
    }

    #[test]
    fn explain_judges_the_age_limit_when_the_previous_retry_starts() {
        // Retry 4 is decided when attempt 4 (retry 3, at 70s) fails: 70s is
        // within 100s. Retry 5 is decided at 150s, past the limit.
        let policy = RetryPolicy {
            age_limit: Some(HumanDuration::from_secs(100)),
            ..exponential(secs(10), secs(300), 3)
        };
        assert_eq!(
            explained(&policy, 20),
            [(1, 10, 10), (2, 20, 30), (3, 40, 70), (4, 80, 150)]
        );
    }

    #[test]
    fn explain_with_both_limits_runs_until_both_pass() {
        // Retry limit 2 is passed at retry 3, but the age (30s) is still
        // within 60s; retry 4 is decided at 70s, when both have passed.
        let policy = RetryPolicy {
            retry_limit: Some(2),
            age_limit: Some(HumanDuration::from_secs(60)),
            ..exponential(secs(10), secs(300), 3)
        };
        assert_eq!(
            explained(&policy, 20),
            [(1, 10, 10), (2, 20, 30), (3, 40, 70)]
        );
        let either = RetryPolicy {
            limit_mode: LimitMode::Either,
            ..policy
        };
        assert_eq!(explained(&either, 20), [(1, 10, 10), (2, 20, 30)]);
    }

    #[test]
    fn explain_stops_after_count_entries() {
        assert_eq!(RetryPolicy::default().explain(5).len(), 5);
        assert!(RetryPolicy::default().explain(0).is_empty());
    }

    #[test]
    fn explain_of_the_appengine_default_keeps_decimal_times_exact() {
        let retries = RetryPolicy::default().explain(3);
        let at: Vec<Duration> = retries.iter().map(|r| r.at).collect();
        assert_eq!(at, [ms(100), ms(300), ms(700)]);
    }

    #[test]
    fn default_policy_is_valid() {
        assert_eq!(RetryPolicy::default().validate(), Ok(()));
    }

    #[test]
    fn validate_accepts_every_backoff_kind() {
        let fixed = RetryPolicy {
            backoff: Backoff::Fixed {
                interval: HumanDuration::from_secs(0),
            },
            ..RetryPolicy::default()
        };
        let immediate = RetryPolicy {
            backoff: Backoff::Immediate,
            ..RetryPolicy::default()
        };
        for policy in [
            exponential(secs(10), secs(10), RetryPolicy::MAX_DOUBLINGS),
            fixed,
            schedule(&[secs(0)]),
            immediate,
        ] {
            assert_eq!(policy.validate(), Ok(()), "{policy:?}");
        }
    }

    #[test]
    fn validate_rejects_min_backoff_above_max_backoff() {
        let err = exponential(secs(10), secs(5), 3).validate().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid retry_policy.backoff.max_backoff: must be at least min_backoff (10s), got 5s"
        );
    }

    #[test]
    fn validate_rejects_a_zero_min_backoff() {
        assert_eq!(
            field_of(exponential(Duration::ZERO, secs(5), 3)),
            "backoff.min_backoff"
        );
    }

    #[test]
    fn validate_rejects_too_many_doublings() {
        let err = exponential(secs(1), secs(5), 63).validate().unwrap_err();
        assert_eq!(err.field, "backoff.max_doublings");
        assert_eq!(err.message, "must be at most 62, got 63");
    }

    #[test]
    fn validate_rejects_an_empty_schedule() {
        assert_eq!(field_of(schedule(&[])), "backoff.delays");
    }

    #[test]
    fn validate_rejects_success_codes_that_are_not_status_codes() {
        let err = RetryPolicy {
            success_codes: vec![102, 600],
            ..RetryPolicy::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid retry_policy.success_codes[1]: 600 is not an HTTP status code (100-599)"
        );
    }

    #[test]
    fn validate_rejects_bad_status_ranges_built_by_hand() {
        let reversed = StatusRange {
            first: 503,
            last: 500,
        };
        let out_of_range = StatusRange {
            first: 42,
            last: 42,
        };
        assert_eq!(
            field_of(RetryPolicy {
                retry_codes: Some(vec![StatusRange::single(429).unwrap(), reversed]),
                ..RetryPolicy::default()
            }),
            "retry_codes[1]"
        );
        assert_eq!(
            field_of(RetryPolicy {
                final_codes: vec![out_of_range],
                ..RetryPolicy::default()
            }),
            "final_codes[0]"
        );
    }

    #[test]
    fn policy_json_round_trips_with_human_durations_and_status_ranges() {
        let json = r#"{
            "backoff": {"kind": "exponential", "min_backoff": "10s", "max_backoff": 300, "max_doublings": 3},
            "retry_limit": 5,
            "age_limit": "1h",
            "retry_codes": [429, "5xx"],
            "final_codes": ["501-505"]
        }"#;
        let policy: RetryPolicy = serde_json::from_str(json).unwrap();
        assert_eq!(policy.validate(), Ok(()));
        assert_eq!(policy.delay_for_retry(2), secs(20));
        assert_eq!(
            serde_json::to_string(&policy).unwrap(),
            r#"{"backoff":{"kind":"exponential","min_backoff":"10s","max_backoff":"300s","max_doublings":3},"jitter":"none","retry_limit":5,"age_limit":"3600s","limit_mode":"both","retry_codes":[429,"5xx"],"final_codes":["501-505"]}"#
        );
    }
}

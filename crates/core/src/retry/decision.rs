//! The decision taken after each attempt: delivered, retry at T, or failed.

use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::retry::classify::{AttemptOutcome, RetryAfter, Verdict};
use crate::retry::policy::{Jitter, RetryPolicy};

/// Why a delivery ended without being delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    RetriesExhausted,
    AgeExhausted,
    RetentionExpired,
    NonRetryable,
    Cancelled,
}

impl FailureReason {
    pub const ALL: [FailureReason; 5] = [
        FailureReason::RetriesExhausted,
        FailureReason::AgeExhausted,
        FailureReason::RetentionExpired,
        FailureReason::NonRetryable,
        FailureReason::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::RetriesExhausted => "retries_exhausted",
            FailureReason::AgeExhausted => "age_exhausted",
            FailureReason::RetentionExpired => "retention_expired",
            FailureReason::NonRetryable => "non_retryable",
            FailureReason::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<FailureReason> {
        FailureReason::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// What to do with a delivery after an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Decision {
    Delivered,
    /// Try again at `at`; this will be retry number `retry` (1 = first retry).
    Retry {
        #[schema(value_type = String, format = DateTime)]
        at: Timestamp,
        retry: u32,
    },
    Failed {
        reason: FailureReason,
    },
}

/// The facts a decision needs beyond the outcome itself.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttemptContext {
    /// Number of the attempt that just ended (1 = first attempt).
    pub attempt: u32,
    /// When the first attempt started: age limits count from here.
    pub first_attempt_at: Timestamp,
    /// When the attempt ended.
    pub now: Timestamp,
    /// A uniform sample in `[0, 1)`, used only when the policy has jitter.
    pub jitter_sample: f64,
}

impl RetryPolicy {
    /// What to do after an attempt: delivered, retry at a time, or failed.
    ///
    /// A retryable outcome after attempt `n` schedules retry `n`, if
    /// [`may_retry`](Self::may_retry) allows it at the delivery's current age.
    /// The wait is the backoff delay with jitter applied, raised to honour a
    /// `Retry-After` answer up to [`retry_after_cap`](Self::retry_after_cap).
    /// A delivery's decision also weighs its attempt limit: see
    /// [`retry::decide`](super::decide).
    pub(super) fn decide(&self, outcome: &AttemptOutcome, ctx: &AttemptContext) -> Decision {
        match self.classify(outcome) {
            Verdict::Success => return Decision::Delivered,
            Verdict::Final => {
                return Decision::Failed {
                    reason: FailureReason::NonRetryable,
                };
            }
            Verdict::Retryable => {}
        }
        // Attempt 0 does not exist; reading it as 1 keeps retry numbers from 1.
        let retry = ctx.attempt.max(1);
        let age = elapsed(ctx.first_attempt_at, ctx.now);
        if !self.may_retry(retry, age) {
            let reason = match self.retry_limit {
                Some(limit) if retry > limit => FailureReason::RetriesExhausted,
                _ => FailureReason::AgeExhausted,
            };
            return Decision::Failed { reason };
        }
        let mut delay = apply_jitter(self.jitter, self.delay_for_retry(retry), ctx.jitter_sample);
        if let AttemptOutcome::Response {
            retry_after: Some(retry_after),
            ..
        } = *outcome
        {
            let asked = match retry_after {
                RetryAfter::Delay(d) => d,
                RetryAfter::At(t) => elapsed(ctx.now, t),
            };
            delay = delay.max(asked.min(self.retry_after_cap()));
        }
        Decision::Retry {
            at: ctx.now.saturating_add(delay).unwrap_or(Timestamp::MAX),
            retry,
        }
    }
}

/// Time from `from` to `to`, zero when `to` is earlier (clocks disagree).
fn elapsed(from: Timestamp, to: Timestamp) -> Duration {
    Duration::try_from(to.duration_since(from)).unwrap_or(Duration::ZERO)
}

/// `delay` scaled by the jitter kind and a sample in `[0, 1)`.
fn apply_jitter(jitter: Jitter, delay: Duration, sample: f64) -> Duration {
    match jitter {
        Jitter::None => delay,
        Jitter::Full => scale(delay, sample),
        Jitter::Equal => {
            let half = delay / 2;
            half.saturating_add(scale(half, sample))
        }
    }
}

/// `d × sample` for a sample in `[0, 1)`, in integer nanoseconds so that it
/// cannot panic the way `Duration::mul_f64` can. The sample is clamped
/// (NaN reads as 0) and kept to 32 bits: below a microsecond for any
/// delay under an hour.
fn scale(d: Duration, sample: f64) -> Duration {
    const ONE: f64 = (1u64 << 32) as f64;
    let sample = if sample.is_nan() {
        0.0
    } else {
        sample.clamp(0.0, 1.0)
    };
    // `as` saturates, and a sample of exactly 1.0 gives 2^32: at most `d`.
    let fraction = (sample * ONE) as u64;
    // d < 2^94 ns and fraction ≤ 2^32, so the product fits in u128.
    let nanos = (d.as_nanos() * u128::from(fraction)) >> 32;
    let secs = u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX);
    Duration::new(secs, (nanos % 1_000_000_000) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::duration::HumanDuration;
    use crate::retry::classify::{ErrorClass, StatusRange, parse_retry_after};
    use crate::retry::policy::{Backoff, LimitMode};

    fn t(secs: i64) -> Timestamp {
        let start: Timestamp = "2024-05-01T12:00:00Z".parse().unwrap();
        start
            .checked_add(jiff::SignedDuration::from_secs(secs))
            .unwrap()
    }

    fn t_ms(ms: i64) -> Timestamp {
        t(0).checked_add(jiff::SignedDuration::from_millis(ms))
            .unwrap()
    }

    /// Attempt `attempt` ended at `now` seconds; the first started at 0.
    fn ctx(attempt: u32, now: i64) -> AttemptContext {
        AttemptContext {
            attempt,
            first_attempt_at: t(0),
            now: t(now),
            jitter_sample: 0.0,
        }
    }

    fn status(status: u16) -> AttemptOutcome {
        AttemptOutcome::Response {
            status,
            retry_after: None,
        }
    }

    fn status_retry_after(status: u16, retry_after: RetryAfter) -> AttemptOutcome {
        AttemptOutcome::Response {
            status,
            retry_after: Some(retry_after),
        }
    }

    fn retry(at: Timestamp, retry: u32) -> Decision {
        Decision::Retry { at, retry }
    }

    fn failed(reason: FailureReason) -> Decision {
        Decision::Failed { reason }
    }

    /// App Engine's example: 10s to 300s, 3 doublings.
    fn ten_to_300() -> RetryPolicy {
        RetryPolicy {
            backoff: Backoff::Exponential {
                min_backoff: HumanDuration::from_secs(10),
                max_backoff: HumanDuration::from_secs(300),
                max_doublings: 3,
            },
            ..RetryPolicy::default()
        }
    }

    fn both_limits(mode: LimitMode) -> RetryPolicy {
        RetryPolicy {
            retry_limit: Some(2),
            age_limit: Some(HumanDuration::from_secs(10)),
            limit_mode: mode,
            ..ten_to_300()
        }
    }

    #[test]
    fn two_failures_then_success_retries_twice_then_delivers() {
        let policy = ten_to_300();
        assert_eq!(policy.decide(&status(503), &ctx(1, 0)), retry(t(10), 1));
        assert_eq!(policy.decide(&status(503), &ctx(2, 10)), retry(t(30), 2));
        assert_eq!(
            policy.decide(&status(200), &ctx(3, 30)),
            Decision::Delivered
        );
    }

    #[test]
    fn retry_time_counts_from_when_the_attempt_ended() {
        let policy = ten_to_300();
        assert_eq!(policy.decide(&status(500), &ctx(3, 35)), retry(t(75), 3));
    }

    #[test]
    fn appengine_default_first_retry_waits_100ms() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.decide(&status(500), &ctx(1, 0)), retry(t_ms(100), 1));
        assert_eq!(
            policy.decide(&status(500), &ctx(17, 100)),
            retry(t(3700), 17)
        );
    }

    #[test]
    fn both_limits_mode_keeps_retrying_while_the_age_limit_holds() {
        let policy = both_limits(LimitMode::Both);
        assert_eq!(policy.decide(&status(503), &ctx(3, 5)), retry(t(45), 3));
    }

    #[test]
    fn both_limits_mode_fails_once_both_limits_pass() {
        let policy = both_limits(LimitMode::Both);
        assert_eq!(
            policy.decide(&status(503), &ctx(3, 20)),
            failed(FailureReason::RetriesExhausted)
        );
        assert_eq!(policy.decide(&status(503), &ctx(2, 20)), retry(t(40), 2));
    }

    #[test]
    fn either_limit_mode_fails_at_the_retry_limit_even_when_young() {
        let policy = both_limits(LimitMode::Either);
        assert_eq!(
            policy.decide(&status(503), &ctx(3, 5)),
            failed(FailureReason::RetriesExhausted)
        );
    }

    #[test]
    fn either_limit_mode_fails_at_the_age_limit_within_the_retry_limit() {
        let policy = both_limits(LimitMode::Either);
        assert_eq!(
            policy.decide(&status(503), &ctx(2, 20)),
            failed(FailureReason::AgeExhausted)
        );
        assert_eq!(policy.decide(&status(503), &ctx(2, 10)), retry(t(30), 2));
    }

    #[test]
    fn retry_limit_alone_fails_with_retries_exhausted() {
        let policy = RetryPolicy {
            retry_limit: Some(2),
            ..ten_to_300()
        };
        assert_eq!(policy.decide(&status(503), &ctx(2, 10)), retry(t(30), 2));
        assert_eq!(
            policy.decide(&status(503), &ctx(3, 30)),
            failed(FailureReason::RetriesExhausted)
        );
    }

    #[test]
    fn age_limit_alone_fails_with_age_exhausted() {
        let policy = RetryPolicy {
            age_limit: Some(HumanDuration::from_secs(60)),
            ..ten_to_300()
        };
        assert_eq!(policy.decide(&status(503), &ctx(5, 60)), retry(t(220), 5));
        assert_eq!(
            policy.decide(&status(503), &ctx(5, 61)),
            failed(FailureReason::AgeExhausted)
        );
    }

    #[test]
    fn final_codes_fail_at_once_as_non_retryable() {
        let policy = RetryPolicy {
            final_codes: vec![
                StatusRange::single(400).unwrap(),
                StatusRange::single(404).unwrap(),
                StatusRange::single(410).unwrap(),
            ],
            ..ten_to_300()
        };
        assert_eq!(
            policy.decide(&status(404), &ctx(1, 0)),
            failed(FailureReason::NonRetryable)
        );
        assert_eq!(
            policy.decide(&status(410), &ctx(1, 0)),
            failed(FailureReason::NonRetryable)
        );
        assert_eq!(policy.decide(&status(409), &ctx(1, 0)), retry(t(10), 1));
    }

    #[test]
    fn retry_codes_only_retry_the_listed_codes_and_errors() {
        let policy = RetryPolicy {
            retry_codes: Some(vec![
                StatusRange::single(429).unwrap(),
                StatusRange::class(5).unwrap(),
            ]),
            final_codes: vec![StatusRange::single(505).unwrap()],
            ..ten_to_300()
        };
        assert_eq!(
            policy.decide(&status(404), &ctx(1, 0)),
            failed(FailureReason::NonRetryable)
        );
        assert_eq!(
            policy.decide(&status(505), &ctx(1, 0)),
            failed(FailureReason::NonRetryable)
        );
        assert_eq!(policy.decide(&status(503), &ctx(1, 0)), retry(t(10), 1));
        assert_eq!(policy.decide(&status(429), &ctx(2, 10)), retry(t(30), 2));
        assert_eq!(
            policy.decide(&AttemptOutcome::Error(ErrorClass::Timeout), &ctx(1, 0)),
            retry(t(10), 1)
        );
    }

    #[test]
    fn connection_errors_and_interruptions_are_retried() {
        let policy = ten_to_300();
        for class in [
            ErrorClass::Connect,
            ErrorClass::Dns,
            ErrorClass::Interrupted,
        ] {
            assert_eq!(
                policy.decide(&AttemptOutcome::Error(class), &ctx(2, 10)),
                retry(t(30), 2),
                "{class:?}"
            );
        }
    }

    #[test]
    fn success_codes_add_102_to_the_successes() {
        let pubsub_like = RetryPolicy {
            success_codes: vec![102],
            ..ten_to_300()
        };
        assert_eq!(
            pubsub_like.decide(&status(102), &ctx(1, 0)),
            Decision::Delivered
        );
        assert_eq!(
            ten_to_300().decide(&status(102), &ctx(1, 0)),
            retry(t(10), 1)
        );
    }

    #[test]
    fn retry_after_seconds_lengthen_the_wait() {
        let outcome = status_retry_after(503, RetryAfter::Delay(Duration::from_secs(120)));
        assert_eq!(ten_to_300().decide(&outcome, &ctx(1, 0)), retry(t(120), 1));
    }

    #[test]
    fn retry_after_never_shortens_the_backoff() {
        let outcome = status_retry_after(429, RetryAfter::Delay(Duration::from_secs(1)));
        assert_eq!(ten_to_300().decide(&outcome, &ctx(3, 30)), retry(t(70), 3));
    }

    #[test]
    fn retry_after_is_capped_at_max_backoff() {
        let outcome = status_retry_after(503, RetryAfter::Delay(Duration::from_secs(86_400)));
        assert_eq!(ten_to_300().decide(&outcome, &ctx(1, 0)), retry(t(300), 1));
    }

    #[test]
    fn retry_after_http_date_counts_from_now() {
        let policy = ten_to_300();
        let at = parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        let now: Timestamp = "2015-10-21T07:26:00Z".parse().unwrap();
        let ctx = AttemptContext {
            attempt: 1,
            first_attempt_at: now,
            now,
            jitter_sample: 0.0,
        };
        let expected: Timestamp = "2015-10-21T07:28:00Z".parse().unwrap();
        assert_eq!(
            policy.decide(&status_retry_after(503, at), &ctx),
            retry(expected, 1)
        );
    }

    #[test]
    fn retry_after_http_date_is_capped_at_max_backoff() {
        let outcome = status_retry_after(503, RetryAfter::At(t(10_000)));
        assert_eq!(ten_to_300().decide(&outcome, &ctx(1, 0)), retry(t(300), 1));
    }

    #[test]
    fn retry_after_http_date_in_the_past_keeps_the_backoff() {
        let outcome = status_retry_after(503, RetryAfter::At(t(-3600)));
        assert_eq!(ten_to_300().decide(&outcome, &ctx(1, 0)), retry(t(10), 1));
    }

    #[test]
    fn retry_after_is_ignored_by_an_immediate_policy() {
        let policy = RetryPolicy {
            backoff: Backoff::Immediate,
            ..RetryPolicy::default()
        };
        let outcome = status_retry_after(503, RetryAfter::Delay(Duration::from_secs(60)));
        assert_eq!(policy.decide(&outcome, &ctx(1, 5)), retry(t(5), 1));
    }

    #[test]
    fn retry_after_does_not_rescue_a_final_or_exhausted_delivery() {
        let policy = RetryPolicy {
            retry_limit: Some(1),
            final_codes: vec![StatusRange::single(404).unwrap()],
            ..ten_to_300()
        };
        let ra = RetryAfter::Delay(Duration::from_secs(5));
        assert_eq!(
            policy.decide(&status_retry_after(404, ra), &ctx(1, 0)),
            failed(FailureReason::NonRetryable)
        );
        assert_eq!(
            policy.decide(&status_retry_after(503, ra), &ctx(2, 10)),
            failed(FailureReason::RetriesExhausted)
        );
    }

    fn jittered(jitter: Jitter, sample: f64) -> Decision {
        let policy = RetryPolicy {
            jitter,
            ..ten_to_300()
        };
        let ctx = AttemptContext {
            jitter_sample: sample,
            ..ctx(1, 0)
        };
        policy.decide(&status(503), &ctx)
    }

    #[test]
    fn full_jitter_scales_the_whole_delay() {
        assert_eq!(jittered(Jitter::Full, 0.0), retry(t(0), 1));
        assert_eq!(jittered(Jitter::Full, 0.5), retry(t(5), 1));
        assert_eq!(jittered(Jitter::Full, 0.25), retry(t_ms(2500), 1));
    }

    #[test]
    fn equal_jitter_keeps_half_the_delay() {
        assert_eq!(jittered(Jitter::Equal, 0.0), retry(t(5), 1));
        assert_eq!(jittered(Jitter::Equal, 0.5), retry(t_ms(7500), 1));
    }

    #[test]
    fn no_jitter_ignores_the_sample() {
        assert_eq!(jittered(Jitter::None, 0.5), retry(t(10), 1));
    }

    #[test]
    fn jitter_tolerates_samples_outside_zero_to_one() {
        assert_eq!(jittered(Jitter::Full, f64::NAN), retry(t(0), 1));
        assert_eq!(jittered(Jitter::Full, -1.0), retry(t(0), 1));
        assert_eq!(jittered(Jitter::Full, 7.0), retry(t(10), 1));
        assert_eq!(jittered(Jitter::Equal, f64::INFINITY), retry(t(10), 1));
    }

    #[test]
    fn retry_after_raises_a_jittered_delay() {
        let policy = RetryPolicy {
            jitter: Jitter::Full,
            ..ten_to_300()
        };
        let ctx = AttemptContext {
            jitter_sample: 0.1,
            ..ctx(1, 0)
        };
        let outcome = status_retry_after(503, RetryAfter::Delay(Duration::from_secs(30)));
        assert_eq!(policy.decide(&outcome, &ctx), retry(t(30), 1));
    }

    #[test]
    fn a_clock_that_went_backwards_counts_as_age_zero() {
        let policy = RetryPolicy {
            age_limit: Some(HumanDuration::from_secs(0)),
            ..ten_to_300()
        };
        assert_eq!(policy.decide(&status(503), &ctx(1, -5)), retry(t(5), 1));
    }

    #[test]
    fn attempt_zero_is_read_as_the_first_attempt() {
        assert_eq!(
            ten_to_300().decide(&status(503), &ctx(0, 0)),
            retry(t(10), 1)
        );
    }

    #[test]
    fn huge_numbers_saturate_instead_of_panicking() {
        let policy = RetryPolicy {
            backoff: Backoff::Fixed {
                interval: HumanDuration(Duration::MAX),
            },
            ..RetryPolicy::default()
        };
        let ctx = AttemptContext {
            attempt: u32::MAX,
            first_attempt_at: Timestamp::MIN,
            now: Timestamp::MAX,
            jitter_sample: 0.0,
        };
        assert_eq!(
            policy.decide(&status(503), &ctx),
            retry(Timestamp::MAX, u32::MAX)
        );
    }
}

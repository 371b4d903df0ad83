//! One attempt: push, ask core for the decision, and tell the flow
//! control what the push showed. The push is signed with secrets read
//! before it (`signing`): a push that cannot be signed is no attempt.

use std::time::Duration;

use redrive_core::security::EndpointPolicy;
use redrive_core::{
    Attempt, AttemptContext, AttemptOutcome, Decision, ErrorClass, RetryAfter, RetryPolicy,
};
use redrive_store::{ClaimedDelivery, Completion};

use super::flow::Signal;
use crate::clock::Clock;
use crate::security::secrets::Keys;

use super::admission::Target;
use super::push;

/// Pushes once to `target`'s endpoint, signed with `keys` (none: unsigned,
/// for a dispatcher set up without security), and decides what follows;
/// also says what the push tells the subscription's flow control.
pub(super) async fn attempt(
    client: &super::client::Client,
    target: &Target,
    claimed: &ClaimedDelivery,
    clock: &Clock,
    security: Option<&crate::security::Security>,
    keys: Option<&Keys>,
) -> (Completion, Signal) {
    let spec = &target.subscription.spec;
    let delivery = &claimed.delivery;
    let open = EndpointPolicy::default();
    let policy = security.map_or(&open, |security| &*security.endpoint_policy);
    let secrets = keys.map(|keys| keys.signing_at(clock.now()));
    let guard = push::Guard {
        policy,
        secrets: secrets.as_deref().unwrap_or_default(),
    };
    let result = push::push(client, spec, &target.endpoint, claimed, guard, clock.now()).await;
    let context = AttemptContext {
        // The budget counts from the last redrive.
        attempt: delivery
            .attempts
            .saturating_sub(delivery.attempts_before_redrive),
        // So does the age limit: from the redrive, else the first attempt.
        first_attempt_at: delivery
            .redriven_at
            .or(delivery.first_attempt_at)
            .unwrap_or(result.started_at),
        // Stores keep whole milliseconds and cut the rest off: from the next
        // millisecond, a retry stored for `now + delay` never starts sooner
        // than the policy's delay after this attempt ended.
        now: ceil_to_millisecond(clock.now()),
        jitter_sample: rand::random::<f64>(),
    };
    let decision = redrive_core::retry::decide(
        &spec.retry_policy,
        &spec.delivery_limits(delivery.redriven_at.unwrap_or(delivery.created_at)),
        &result.outcome,
        &context,
    );
    let signal = flow_signal(&result.outcome, &decision, &spec.retry_policy, clock.now());
    let (status, error) = match result.outcome {
        redrive_core::AttemptOutcome::Response { status, .. } => (Some(status), None),
        redrive_core::AttemptOutcome::Error(class) => (None, Some(class)),
    };
    log_attempt(delivery, &spec.name, status, error, &decision);
    let completion = Completion {
        delivery_id: delivery.id.clone(),
        subscription: delivery.subscription.clone(),
        attempt: Attempt {
            number: delivery.attempts,
            kind: redrive_core::AttemptKind::Push,
            started_at: result.started_at,
            duration_ms: u64::try_from(result.duration.as_millis()).unwrap_or(u64::MAX),
            status,
            error,
            error_message: result.error_message,
            response_snippet: result.response_snippet,
            decision,
        },
    };
    (completion, signal)
}

/// A push the endpoint acknowledged is a success; anything else a failure,
/// carrying the wait a 429 or 503 asked for with `Retry-After` — capped as
/// the policy caps the retry it delays, so a pause never holds back a
/// retry longer than the policy lets that answer delay it — and whether
/// the push got no answer in time.
fn flow_signal(
    outcome: &AttemptOutcome,
    decision: &Decision,
    policy: &RetryPolicy,
    now: jiff::Timestamp,
) -> Signal {
    if matches!(decision, Decision::Delivered) {
        return Signal::Success;
    }
    let retry_after = match outcome {
        AttemptOutcome::Response {
            status: 429 | 503,
            retry_after: Some(retry_after),
        } => Some(match retry_after {
            RetryAfter::Delay(delay) => *delay,
            // An HTTP date is wall-clock time.
            RetryAfter::At(at) => Duration::try_from(at.duration_since(now)).unwrap_or_default(),
        }),
        _ => None,
    }
    .map(|wait| wait.min(policy.retry_after_cap()))
    .filter(|wait| !wait.is_zero());
    Signal::Failure {
        retry_after,
        timed_out: matches!(outcome, AttemptOutcome::Error(ErrorClass::Timeout)),
    }
}

/// One line per failed attempt at info, one more at warn when the delivery
/// fails for good. Ids, status and error class only: never the payload, the
/// endpoint URL (it may hold a token) or the response body.
fn log_attempt(
    delivery: &redrive_core::Delivery,
    subscription: &str,
    status: Option<u16>,
    error: Option<redrive_core::ErrorClass>,
    decision: &Decision,
) {
    let error = error.map(|e| e.as_str());
    match decision {
        Decision::Delivered => tracing::debug!(delivery = %delivery.id, subscription,
            attempt = delivery.attempts, status, "delivered"),
        Decision::Retry { at, retry } => tracing::info!(delivery = %delivery.id, subscription,
            attempt = delivery.attempts, status, error, retry, retry_at = %at,
            "attempt failed; retry scheduled"),
        Decision::Failed { reason } => {
            tracing::info!(delivery = %delivery.id, subscription, attempt = delivery.attempts,
                status, error, "attempt failed");
            tracing::warn!(delivery = %delivery.id, subscription, event = %delivery.event_id,
                attempts = delivery.attempts, reason = reason.as_str(), "delivery failed");
        }
    }
}

/// `at`, rounded up to a whole millisecond.
fn ceil_to_millisecond(at: jiff::Timestamp) -> jiff::Timestamp {
    let round = jiff::TimestampRound::new()
        .smallest(jiff::Unit::Millisecond)
        .mode(jiff::RoundMode::Ceil);
    at.round(round).unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use redrive_core::policy::Backoff;
    use redrive_core::{FailureReason, HumanDuration};

    fn now() -> jiff::Timestamp {
        Clock::default().now()
    }

    fn fixed(seconds: u64) -> RetryPolicy {
        RetryPolicy {
            backoff: Backoff::Fixed {
                interval: HumanDuration::from_secs(seconds),
            },
            ..RetryPolicy::default()
        }
    }

    fn answered(status: u16, wait: Option<u64>) -> AttemptOutcome {
        AttemptOutcome::Response {
            status,
            retry_after: wait.map(|s| RetryAfter::Delay(Duration::from_secs(s))),
        }
    }

    fn retry() -> Decision {
        Decision::Retry {
            at: jiff::Timestamp::UNIX_EPOCH,
            retry: 1,
        }
    }

    #[test]
    fn retry_after_pauses_at_most_as_long_as_the_policy_lets_it_delay_a_retry() {
        let signal = |outcome, policy: &RetryPolicy| flow_signal(&outcome, &retry(), policy, now());
        let pause = |outcome, policy: &RetryPolicy| match signal(outcome, policy) {
            Signal::Failure { retry_after, .. } => retry_after,
            Signal::Success => panic!("not a failure"),
        };
        let secs = |s| Some(Duration::from_secs(s));
        assert_eq!(pause(answered(503, Some(5)), &fixed(60)), secs(5));
        assert_eq!(pause(answered(429, Some(30)), &fixed(1)), secs(1));
        // Only 429 and 503 ask to slow down; an immediate policy never waits.
        assert_eq!(pause(answered(500, Some(5)), &fixed(60)), None);
        let immediate = RetryPolicy {
            backoff: Backoff::Immediate,
            ..RetryPolicy::default()
        };
        assert_eq!(pause(answered(503, Some(5)), &immediate), None);
    }

    #[test]
    fn only_a_timeout_counts_as_holding_the_slot() {
        let policy = fixed(1);
        let timed_out = |outcome| match flow_signal(&outcome, &retry(), &policy, now()) {
            Signal::Failure { timed_out, .. } => timed_out,
            Signal::Success => panic!("not a failure"),
        };
        assert!(timed_out(AttemptOutcome::Error(ErrorClass::Timeout)));
        assert!(!timed_out(AttemptOutcome::Error(ErrorClass::Connect)));
        assert!(!timed_out(answered(503, None)));
        let failed = Decision::Failed {
            reason: FailureReason::RetriesExhausted,
        };
        assert!(matches!(
            flow_signal(&answered(500, None), &failed, &policy, now()),
            Signal::Failure { .. }
        ));
        assert_eq!(
            flow_signal(&answered(200, None), &Decision::Delivered, &policy, now()),
            Signal::Success
        );
    }

    #[test]
    fn attempt_ends_round_up_to_the_millisecond_stores_keep() {
        let at = |text: &str| text.parse::<jiff::Timestamp>().unwrap();
        assert_eq!(
            super::ceil_to_millisecond(at("2026-01-01T00:00:00.999001Z")),
            at("2026-01-01T00:00:01Z")
        );
        assert_eq!(
            super::ceil_to_millisecond(at("2026-01-01T00:00:00.5Z")),
            at("2026-01-01T00:00:00.5Z")
        );
    }
}

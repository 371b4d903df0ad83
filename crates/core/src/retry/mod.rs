//! Retrying a delivery: the policy and its backoff (`policy`), which
//! outcomes succeed, are retried or are final (`classify`), the decision
//! after an attempt (`decision`), the presets that reproduce each system's
//! defaults (`presets`) and the schedule in words (`explain`).
//!
//! [`decide`] is the one entry point for a delivery's decision.

pub mod classify;
pub mod decision;
pub mod explain;
pub mod policy;
pub mod presets;

use std::time::Duration;

use jiff::Timestamp;

use classify::AttemptOutcome;
use decision::{AttemptContext, Decision, FailureReason};
use policy::RetryPolicy;

/// What a subscription adds to its retry policy's decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeliveryLimits {
    /// Attempts since the last redrive beyond which nothing is retried.
    pub max_delivery_attempts: Option<u32>,
    /// How long an undelivered event is kept.
    pub message_retention: Duration,
    /// When the retention counts from: the publish, or the last redrive.
    pub retention_from: Timestamp,
}

/// What follows an attempt of a delivery: the retry policy's decision, then
/// the subscription's limits — a retry that would pass
/// `max_delivery_attempts` fails as `retries_exhausted`, and one after an
/// attempt that ended once the message retention had run out fails as
/// `retention_expired` (what the sweeper would do to it a moment later,
/// had the attempt not kept it in flight). `ctx.attempt` counts attempts
/// since the last redrive.
pub fn decide(
    policy: &RetryPolicy,
    limits: &DeliveryLimits,
    outcome: &AttemptOutcome,
    ctx: &AttemptContext,
) -> Decision {
    match (policy.decide(outcome, ctx), limits.max_delivery_attempts) {
        (Decision::Retry { .. }, Some(max)) if ctx.attempt >= max => Decision::Failed {
            reason: FailureReason::RetriesExhausted,
        },
        (Decision::Retry { .. }, _)
            if retention_expired(limits.retention_from, limits.message_retention, ctx.now) =>
        {
            Decision::Failed {
                reason: FailureReason::RetentionExpired,
            }
        }
        (decision, _) => decision,
    }
}

/// Whether an event published at `published_at` has outlived `retention`
/// at `now`.
pub fn retention_expired(published_at: Timestamp, retention: Duration, now: Timestamp) -> bool {
    match published_at.checked_add(retention) {
        Ok(deadline) => now >= deadline,
        // Past the end of time: never.
        Err(_) => false,
    }
}

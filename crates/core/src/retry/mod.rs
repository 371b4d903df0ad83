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

use classify::AttemptOutcome;
use decision::{AttemptContext, Decision, FailureReason};
use policy::RetryPolicy;

/// What follows an attempt of a delivery: the retry policy's decision, then
/// the subscription's attempt limit — a retry that would pass
/// `max_delivery_attempts` fails as `retries_exhausted`. `ctx.attempt`
/// counts attempts since the last redrive.
pub fn decide(
    policy: &RetryPolicy,
    max_delivery_attempts: Option<u32>,
    outcome: &AttemptOutcome,
    ctx: &AttemptContext,
) -> Decision {
    match (policy.decide(outcome, ctx), max_delivery_attempts) {
        (Decision::Retry { .. }, Some(max)) if ctx.attempt >= max => Decision::Failed {
            reason: FailureReason::RetriesExhausted,
        },
        (decision, _) => decision,
    }
}

//! The decision taken after each attempt: delivered, retry at T, or failed.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

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
    Failed { reason: FailureReason },
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

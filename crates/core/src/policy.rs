//! Retry policies: when to try again and when to stop.
//!
//! One struct expresses App Engine push queues, Cloud Tasks, Pub/Sub,
//! Eventarc, Adobe I/O Events and Standard Webhooks schedules.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::classify::StatusRange;
use crate::duration::HumanDuration;

/// How the delay before each retry grows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Backoff {
    /// App Engine's formula: for retry `n` (1 = first retry),
    /// `e = min(n-1, max_doublings)`,
    /// `delay = min(max_backoff, min_backoff * 2^e * max(n-e, 1))`.
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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RetryPolicy {
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

fn default_backoff() -> Backoff {
    Backoff::Exponential {
        min_backoff: HumanDuration::from_millis(100),
        max_backoff: HumanDuration::from_secs(3600),
        max_doublings: 16,
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            backoff: default_backoff(),
            jitter: Jitter::None,
            retry_limit: None,
            age_limit: None,
            limit_mode: LimitMode::Both,
            success_codes: Vec::new(),
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
    /// Checks ranges and shapes (min ≤ max, a non-empty schedule, …).
    pub fn validate(&self) -> Result<(), PolicyError> {
        todo!()
    }

    /// The delay before retry `n` (1 = first retry), before jitter.
    pub fn delay_for_retry(&self, n: u32) -> Duration {
        let _ = n;
        todo!()
    }

    /// Whether retry `n` may start when the delivery is `age` old
    /// (measured from its first attempt).
    pub fn may_retry(&self, n: u32, age: Duration) -> bool {
        let _ = (n, age);
        todo!()
    }

    /// The longest wait a `Retry-After` answer can impose.
    pub fn retry_after_cap(&self) -> Duration {
        todo!()
    }

    /// The retries this policy makes, at most `count` of them.
    pub fn explain(&self, count: usize) -> Vec<ScheduledRetry> {
        let _ = count;
        todo!()
    }
}

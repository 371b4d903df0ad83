//! A retry policy's schedule in numbers and words: what `redrive policy
//! explain` prints and the console's policy preview shows, computed once.

use std::time::Duration;

use crate::duration::format_duration;
use crate::policy::{LimitMode, RetryPolicy, ScheduledRetry};

/// The first retries of a policy and why the list stops there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    pub retries: Vec<ScheduledRetry>,
    pub end: ScheduleEnd,
}

/// Why a schedule's list stops where it does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScheduleEnd {
    /// Only `count` retries were asked for; without limits it never ends.
    Forever { count: usize },
    /// Only `count` retries were asked for; the limits allow more.
    MoreFollow { count: usize },
    /// The policy refuses retry `next`, which would start `age` after the
    /// first attempt.
    Limited {
        next: u32,
        age: Duration,
        /// The list is empty: the policy never retries.
        no_retries: bool,
        retry_limit: Option<u32>,
        age_limit: Option<Duration>,
        limit_mode: LimitMode,
    },
}

impl ScheduleEnd {
    /// One line saying why the list ends, e.g. `no more retries: retry
    /// limit 6 reached`.
    pub fn describe(&self) -> String {
        match *self {
            ScheduleEnd::Forever { count } => {
                format!("showing the first {count} retries; the policy retries forever")
            }
            ScheduleEnd::MoreFollow { count } => {
                format!("showing the first {count} retries; more follow")
            }
            ScheduleEnd::Limited {
                next,
                age,
                no_retries,
                retry_limit,
                age_limit,
                limit_mode,
            } => {
                let lead = if no_retries {
                    "no retries"
                } else {
                    "no more retries"
                };
                let when = format!(
                    "attempt {next} fails {} after the first attempt",
                    format_duration(age)
                );
                match (retry_limit, age_limit) {
                    (Some(limit), Some(age_limit)) if limit_mode == LimitMode::Both => format!(
                        "{lead}: retry limit {limit} and age limit {} both reached ({when})",
                        format_duration(age_limit)
                    ),
                    (Some(limit), _) if next > limit => {
                        format!("{lead}: retry limit {limit} reached")
                    }
                    (_, Some(age_limit)) => format!(
                        "{lead}: age limit {} reached ({when})",
                        format_duration(age_limit)
                    ),
                    (_, None) => format!("{lead}: the policy allows no retry {next}"),
                }
            }
        }
    }
}

impl RetryPolicy {
    /// The first `count` retries (see [`explain`](Self::explain)) and why
    /// the list ends.
    pub fn schedule(&self, count: usize) -> Schedule {
        let retries = self.explain(count);
        let end = self.schedule_end(count, &retries);
        Schedule { retries, end }
    }

    fn schedule_end(&self, count: usize, retries: &[ScheduledRetry]) -> ScheduleEnd {
        let age = retries.last().map_or(Duration::ZERO, |r| r.at);
        let next = u32::try_from(retries.len())
            .ok()
            .and_then(|shown| shown.checked_add(1));
        match next.filter(|&n| !self.may_retry(n, age)) {
            Some(next) => ScheduleEnd::Limited {
                next,
                age,
                no_retries: retries.is_empty(),
                retry_limit: self.retry_limit,
                age_limit: self.age_limit.map(|limit| limit.0),
                limit_mode: self.limit_mode,
            },
            None if self.retry_limit.is_none() && self.age_limit.is_none() => {
                ScheduleEnd::Forever { count }
            }
            None => ScheduleEnd::MoreFollow { count },
        }
    }
}

/// Whether push backoff can move a subscription's retries from the times
/// its policy gives them, in one line: what `redrive policy explain` and the
/// console's policy preview say under the schedule.
pub fn push_backoff_note(on: bool) -> &'static str {
    if on {
        "push backoff on: while pushes keep failing, the subscription sends one at a time and \
         pauses after each failure, 100ms doubling to 60s, so a retry may start later than \
         shown, by up to 60s for each push due before it; a success ends the pauses"
    } else {
        "push backoff off: every retry starts at the time shown"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::duration::HumanDuration;
    use crate::policy::Backoff;

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

    #[test]
    fn without_limits_the_schedule_goes_on_forever() {
        let schedule = ten_to_300().schedule(3);
        let delays: Vec<u64> = schedule.retries.iter().map(|r| r.delay.as_secs()).collect();
        assert_eq!(delays, [10, 20, 40]);
        assert_eq!(schedule.end, ScheduleEnd::Forever { count: 3 });
        assert_eq!(
            schedule.end.describe(),
            "showing the first 3 retries; the policy retries forever"
        );
    }

    #[test]
    fn the_retry_limit_ends_the_schedule() {
        let policy = RetryPolicy {
            retry_limit: Some(2),
            ..ten_to_300()
        };
        let schedule = policy.schedule(20);
        assert_eq!(schedule.retries.len(), 2);
        assert_eq!(
            schedule.end.describe(),
            "no more retries: retry limit 2 reached"
        );
    }

    #[test]
    fn limits_beyond_count_say_more_follow() {
        let policy = RetryPolicy {
            retry_limit: Some(10),
            ..ten_to_300()
        };
        assert_eq!(policy.schedule(2).end, ScheduleEnd::MoreFollow { count: 2 });
    }

    #[test]
    fn a_zero_retry_limit_says_no_retries() {
        let policy = RetryPolicy {
            retry_limit: Some(0),
            ..ten_to_300()
        };
        let schedule = policy.schedule(5);
        assert!(schedule.retries.is_empty());
        assert_eq!(schedule.end.describe(), "no retries: retry limit 0 reached");
    }
}

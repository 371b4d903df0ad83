//! A retry policy's schedule in numbers and words: what `redrive policy
//! explain` prints and the console's policy preview shows, computed once.

use std::time::Duration;

use crate::duration::format_duration;
use crate::retry::policy::{LimitMode, RetryPolicy, ScheduledRetry};

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
    /// The message retention runs out before retry `next`, which would start
    /// `age` after the first attempt: the delivery fails as
    /// `retention_expired` instead.
    RetentionEnds {
        next: u32,
        age: Duration,
        retention: Duration,
        /// The list is empty: the retention ends it before any retry.
        no_retries: bool,
    },
    /// Only `count` retries were asked for; more follow until the message
    /// retention runs out. `last` is the last retry before it (its number
    /// and when it starts), unless there are too many to count.
    RetentionFollows {
        count: usize,
        retention: Duration,
        last: Option<(u32, Duration)>,
    },
}

/// Most retries beyond the shown ones counted to find where the retention
/// ends a schedule; past that the end is only described.
const RETENTION_SCAN_LIMIT: u32 = 100_000;

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
            ScheduleEnd::RetentionEnds {
                next,
                age,
                retention,
                no_retries,
            } => {
                let lead = if no_retries {
                    "no retries"
                } else {
                    "no more retries"
                };
                format!(
                    "{lead}: the message retention of {} runs out first (retry {next} would \
                     start {} after the first attempt); the delivery fails as retention_expired",
                    format_duration(retention),
                    format_duration(age)
                )
            }
            ScheduleEnd::RetentionFollows {
                count,
                retention,
                last,
            } => {
                let retention = format_duration(retention);
                match last {
                    Some((retry, at)) => format!(
                        "showing the first {count} retries; more follow until the message \
                         retention of {retention} runs out: the last is retry {retry}, {} after \
                         the first attempt, then the delivery fails as retention_expired",
                        format_duration(at)
                    ),
                    None => format!(
                        "showing the first {count} retries; more follow until the message \
                         retention of {retention} runs out, then the delivery fails as \
                         retention_expired"
                    ),
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

    /// The first `count` retries of a subscription with this policy whose
    /// events are kept `retention` (its `message_retention`): no retry starts
    /// once the event is that old, counted from the first attempt (made at
    /// publish when every attempt fails instantly).
    pub fn schedule_within(&self, count: usize, retention: Duration) -> Schedule {
        let mut retries = self.explain(count);
        if let Some(cut) = retries.iter().position(|r| r.at >= retention) {
            let end = ScheduleEnd::RetentionEnds {
                next: retries[cut].retry,
                age: retries[cut].at,
                retention,
                no_retries: cut == 0,
            };
            retries.truncate(cut);
            return Schedule { retries, end };
        }
        let end = match self.schedule_end(count, &retries) {
            ScheduleEnd::Forever { .. } | ScheduleEnd::MoreFollow { .. } => {
                self.end_beyond(count, &retries, retention)
            }
            limited => limited,
        };
        Schedule { retries, end }
    }

    /// How a schedule cut at `count` retries (`shown`) goes on: until its
    /// limits end it, or the retention.
    fn end_beyond(
        &self,
        count: usize,
        shown: &[ScheduledRetry],
        retention: Duration,
    ) -> ScheduleEnd {
        let mut last = shown.last().map(|r| (r.retry, r.at));
        let first = last.map_or(1, |(retry, _)| retry.saturating_add(1));
        let mut at = last.map_or(Duration::ZERO, |(_, at)| at);
        for n in first..=first.saturating_add(RETENTION_SCAN_LIMIT) {
            if !self.may_retry(n, at) {
                return ScheduleEnd::MoreFollow { count };
            }
            at = at.saturating_add(self.delay_for_retry(n));
            if at >= retention {
                if n == first {
                    return ScheduleEnd::RetentionEnds {
                        next: n,
                        age: at,
                        retention,
                        no_retries: shown.is_empty(),
                    };
                }
                return ScheduleEnd::RetentionFollows {
                    count,
                    retention,
                    last,
                };
            }
            last = Some((n, at));
        }
        ScheduleEnd::RetentionFollows {
            count,
            retention,
            last: None,
        }
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
    use crate::retry::policy::Backoff;

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
    fn pubsub_retries_until_its_retention_runs_out() {
        let preset = crate::retry::presets::preset("pubsub").unwrap();
        let retention = preset.message_retention.unwrap();
        let schedule = preset.policy().schedule_within(20, retention);
        assert_eq!(schedule.retries.len(), 20);
        // 10+20+40+80+160+320 = 630s, then 600s each: retry 1013 starts at
        // 630s + 1007 × 600s = 604,830s, past 7d = 604,800s.
        assert_eq!(
            schedule.end,
            ScheduleEnd::RetentionFollows {
                count: 20,
                retention,
                last: Some((1012, Duration::from_secs(630 + 1006 * 600))),
            }
        );
        assert_eq!(
            schedule.end.describe(),
            "showing the first 20 retries; more follow until the message retention of 7d runs \
             out: the last is retry 1012, 6d 23h 50m 30s after the first attempt, then the delivery \
             fails as retention_expired"
        );
        assert!(!schedule.end.describe().contains("forever"));
    }

    #[test]
    fn a_retention_shorter_than_the_list_ends_it() {
        let schedule = ten_to_300().schedule_within(20, Duration::from_secs(600));
        let at: Vec<u64> = schedule.retries.iter().map(|r| r.at.as_secs()).collect();
        // 10, 20, 40, 80, then linear by 80 (160, 240), capped at 300.
        assert_eq!(at, [10, 30, 70, 150, 310, 550]);
        assert_eq!(
            schedule.end.describe(),
            "no more retries: the message retention of 10m runs out first (retry 7 would start \
             14m 10s after the first attempt); the delivery fails as retention_expired"
        );
        // Right after the last one shown.
        let schedule = ten_to_300().schedule_within(6, Duration::from_secs(600));
        assert_eq!(schedule.retries.len(), 6);
        assert!(matches!(
            schedule.end,
            ScheduleEnd::RetentionEnds { next: 7, .. }
        ));
    }

    #[test]
    fn limits_that_end_before_the_retention_still_say_so() {
        let policy = RetryPolicy {
            retry_limit: Some(30),
            ..ten_to_300()
        };
        let week = Duration::from_secs(7 * 24 * 3600);
        assert_eq!(
            policy.schedule_within(2, week).end,
            ScheduleEnd::MoreFollow { count: 2 }
        );
        assert_eq!(
            policy.schedule_within(40, week).end.describe(),
            "no more retries: retry limit 30 reached"
        );
        // No delay at all: too many retries to count.
        let immediate = RetryPolicy {
            backoff: Backoff::Immediate,
            ..RetryPolicy::default()
        };
        assert_eq!(
            immediate.schedule_within(3, week).end,
            ScheduleEnd::RetentionFollows {
                count: 3,
                retention: week,
                last: None
            }
        );
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

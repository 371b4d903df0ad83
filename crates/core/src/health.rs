//! Endpoint health, Adobe I/O Events' model: a subscription whose endpoint
//! keeps failing becomes `unstable`, then `disabled` (no more pushes until
//! someone enables it), and goes back to `healthy` when it succeeds again.
//!
//! The rule is pure: it reads counts of recent attempts and the time, and
//! says which change, if any, is due. Each health is judged on the attempts
//! that ended since it began (within the trailing window), so a manual
//! enable forgives the failures that led to the disable, and an endpoint is
//! only disabled for failing *while* unstable.

use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::duration::HumanDuration;
use crate::event::CloudEvent;
use crate::event::SYSTEM_SOURCE;

/// Defaults, as in Adobe I/O Events: at least 10 attempts in 24 hours, 80%
/// of them failed, makes an endpoint unstable; 24 more hours of that
/// disable it.
pub const DEFAULT_HEALTH_WINDOW: Duration = Duration::from_secs(24 * 3600);
pub const DEFAULT_MIN_ATTEMPTS: u32 = 10;
pub const DEFAULT_FAILURE_PERCENT: u32 = 80;
pub const DEFAULT_HOLD: Duration = Duration::from_secs(24 * 3600);
pub const DEFAULT_RECOVERY_SUCCESSES: u32 = 5;

/// The longest window and hold a policy may ask for: attempt counts are
/// kept no longer than this.
pub const MAX_HEALTH_WINDOW: Duration = Duration::from_secs(31 * 24 * 3600);
pub const MIN_HEALTH_WINDOW: Duration = Duration::from_secs(1);

/// Where a subscription's endpoint stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Pushes go out.
    #[default]
    Healthy,
    /// Most recent attempts failed; pushes still go out.
    Unstable,
    /// No pushes until the subscription is enabled again; its deliveries
    /// keep their place.
    Disabled,
}

impl Health {
    pub const ALL: [Health; 3] = [Health::Healthy, Health::Unstable, Health::Disabled];

    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Unstable => "unstable",
            Health::Disabled => "disabled",
        }
    }

    pub fn parse(s: &str) -> Option<Health> {
        Health::ALL.into_iter().find(|h| h.as_str() == s)
    }

    /// The type of the operational event announcing a change to this health.
    pub fn event_type(self) -> &'static str {
        match self {
            Health::Healthy => "redrive.subscription.healthy",
            Health::Unstable => "redrive.subscription.unstable",
            Health::Disabled => "redrive.subscription.disabled",
        }
    }
}

/// When a subscription counts as failing, per subscription; every field is
/// optional in JSON and defaults to Adobe I/O Events' numbers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthPolicy {
    /// How far back attempts count (1s–31d, default 24h).
    #[serde(default = "default_window")]
    pub window: HumanDuration,
    /// Fewer attempts than this in the window never make an endpoint
    /// unstable (default 10).
    #[serde(default = "default_min_attempts")]
    pub min_attempts: u32,
    /// The share of failed attempts, in percent, that makes an endpoint
    /// unstable (1–100, default 80).
    #[serde(default = "default_failure_percent")]
    pub failure_percent: u32,
    /// How long an endpoint stays unstable while still failing before it is
    /// disabled (0s–31d, default 24h).
    #[serde(default = "default_hold")]
    pub hold: HumanDuration,
    /// Successful attempts since it became unstable that make it healthy
    /// again, provided failures no longer dominate (default 5).
    #[serde(default = "default_recovery_successes")]
    pub recovery_successes: u32,
    /// Whether an endpoint that stays unstable is disabled; when false it
    /// stays unstable and keeps getting pushes (default true).
    #[serde(default = "default_auto_disable")]
    pub auto_disable: bool,
}

fn default_window() -> HumanDuration {
    HumanDuration(DEFAULT_HEALTH_WINDOW)
}
fn default_min_attempts() -> u32 {
    DEFAULT_MIN_ATTEMPTS
}
fn default_failure_percent() -> u32 {
    DEFAULT_FAILURE_PERCENT
}
fn default_hold() -> HumanDuration {
    HumanDuration(DEFAULT_HOLD)
}
fn default_recovery_successes() -> u32 {
    DEFAULT_RECOVERY_SUCCESSES
}
fn default_auto_disable() -> bool {
    true
}

impl Default for HealthPolicy {
    fn default() -> Self {
        HealthPolicy {
            window: default_window(),
            min_attempts: DEFAULT_MIN_ATTEMPTS,
            failure_percent: DEFAULT_FAILURE_PERCENT,
            hold: default_hold(),
            recovery_successes: DEFAULT_RECOVERY_SUCCESSES,
            auto_disable: true,
        }
    }
}

/// A health policy setting out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct HealthPolicyError {
    pub field: &'static str,
    pub message: String,
}

impl HealthPolicy {
    pub fn validate(&self) -> Result<(), HealthPolicyError> {
        let fail = |field, message: String| Err(HealthPolicyError { field, message });
        let window = self.window.as_duration();
        if !(MIN_HEALTH_WINDOW..=MAX_HEALTH_WINDOW).contains(&window) {
            return fail(
                "health_policy.window",
                format!(
                    "must be between {} and {}, got {}",
                    HumanDuration(MIN_HEALTH_WINDOW),
                    HumanDuration(MAX_HEALTH_WINDOW),
                    self.window
                ),
            );
        }
        if self.min_attempts == 0 {
            return fail("health_policy.min_attempts", "must be at least 1".into());
        }
        if !(1..=100).contains(&self.failure_percent) {
            return fail(
                "health_policy.failure_percent",
                format!("must be between 1 and 100, got {}", self.failure_percent),
            );
        }
        if self.hold.as_duration() > MAX_HEALTH_WINDOW {
            return fail(
                "health_policy.hold",
                format!(
                    "must be at most {}, got {}",
                    HumanDuration(MAX_HEALTH_WINDOW),
                    self.hold
                ),
            );
        }
        if self.recovery_successes == 0 {
            return fail(
                "health_policy.recovery_successes",
                "must be at least 1".into(),
            );
        }
        Ok(())
    }

    /// Whether failures dominate `counts`: enough attempts, and at least
    /// `failure_percent` of them failed.
    pub fn failing(&self, counts: AttemptCounts) -> bool {
        counts.total() >= u64::from(self.min_attempts) && self.failures_dominate(counts)
    }

    fn failures_dominate(&self, counts: AttemptCounts) -> bool {
        counts.total() > 0
            && u128::from(counts.failed) * 100
                >= u128::from(self.failure_percent) * u128::from(counts.total())
    }

    /// The change due for a subscription that is `health` since
    /// `changed_at`, given the attempts that ended since then within the
    /// window (see [`HealthPolicy::window_start`]). `None` when it stays as
    /// it is.
    ///
    /// - healthy → unstable: failures dominate (at least `min_attempts`,
    ///   `failure_percent` of them failed);
    /// - unstable → disabled: still so after `hold` (when `auto_disable`);
    /// - unstable → healthy: `recovery_successes` successes, failures no
    ///   longer dominating;
    /// - disabled stays disabled: only enabling it by hand ends that.
    pub fn evaluate(
        &self,
        health: Health,
        changed_at: Timestamp,
        counts: AttemptCounts,
        now: Timestamp,
    ) -> Option<HealthVerdict> {
        let seen = || {
            format!(
                "{} of {} attempts failed in the last {}",
                counts.failed,
                counts.total(),
                self.window
            )
        };
        match health {
            Health::Healthy if self.failing(counts) => Some(HealthVerdict {
                to: Health::Unstable,
                reason: format!(
                    "{} (at least {}% of at least {} makes it unstable)",
                    seen(),
                    self.failure_percent,
                    self.min_attempts
                ),
            }),
            Health::Healthy => None,
            Health::Unstable => {
                let unstable_for =
                    Duration::try_from(now.duration_since(changed_at)).unwrap_or(Duration::ZERO);
                if self.failing(counts) {
                    (self.auto_disable && unstable_for >= self.hold.as_duration()).then(|| {
                        HealthVerdict {
                            to: Health::Disabled,
                            reason: format!(
                                "still failing after {} unstable: {}",
                                HumanDuration(self.hold.as_duration()),
                                seen()
                            ),
                        }
                    })
                } else if counts.succeeded >= u64::from(self.recovery_successes)
                    && !self.failures_dominate(counts)
                {
                    Some(HealthVerdict {
                        to: Health::Healthy,
                        reason: format!(
                            "{} of {} attempts succeeded since it became unstable",
                            counts.succeeded,
                            counts.total()
                        ),
                    })
                } else {
                    None
                }
            }
            Health::Disabled => None,
        }
    }

    /// Where the window of counts that [`HealthPolicy::evaluate`] reads
    /// starts at `now`.
    pub fn window_start(&self, now: Timestamp) -> Timestamp {
        now.checked_sub(self.window.as_duration())
            .unwrap_or(Timestamp::MIN)
    }
}

/// Attempts that ended, by outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AttemptCounts {
    /// Attempts the endpoint acknowledged.
    pub succeeded: u64,
    /// Every other attempt: error answers, timeouts, refused connections.
    pub failed: u64,
}

impl AttemptCounts {
    pub fn total(self) -> u64 {
        self.succeeded.saturating_add(self.failed)
    }
}

/// A change of health the rule calls for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthVerdict {
    pub to: Health,
    /// Why, in words, for the subscription's `health_reason`.
    pub reason: String,
}

/// What the store keeps about a subscription's health and pause.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SubscriptionStatus {
    pub health: Health,
    /// Why it has this health (absent for a subscription never changed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_reason: Option<String>,
    /// When the health last changed (its creation if never).
    #[schema(value_type = String, format = DateTime)]
    pub health_changed_at: Timestamp,
    /// Paused by hand: no pushes until resumed.
    #[serde(default)]
    pub paused: bool,
}

impl SubscriptionStatus {
    /// A new subscription's: healthy since `now`, not paused.
    pub fn new(now: Timestamp) -> Self {
        SubscriptionStatus {
            health: Health::Healthy,
            health_reason: None,
            health_changed_at: now,
            paused: false,
        }
    }

    /// Whether the dispatcher may push to this subscription.
    pub fn accepts_pushes(&self) -> bool {
        !self.paused && self.health != Health::Disabled
    }
}

/// The `redrive.subscription.<health>` event published on the system topic
/// when a subscription's health changes.
pub fn health_changed_event(
    subscription: &str,
    from: Health,
    to: Health,
    reason: &str,
    id: String,
    now: Timestamp,
) -> CloudEvent {
    let data = json!({
        "subscription": subscription,
        "health": to.as_str(),
        "previous_health": from.as_str(),
        "reason": reason,
        "changed_at": now.to_string(),
    });
    CloudEvent {
        id,
        source: format!("{SYSTEM_SOURCE}/subscriptions/{subscription}"),
        ty: to.event_type().into(),
        specversion: "1.0".into(),
        subject: Some(subscription.to_owned()),
        time: Some(now.to_string()),
        datacontenttype: Some("application/json".into()),
        dataschema: None,
        extensions: Default::default(),
        data: Some(data.to_string().into_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    fn counts(succeeded: u64, failed: u64) -> AttemptCounts {
        AttemptCounts { succeeded, failed }
    }

    const HOUR: i64 = 3600;

    #[test]
    fn defaults_are_adobes_numbers() {
        let policy: HealthPolicy = serde_json::from_str("{}").unwrap();
        assert_eq!(policy, HealthPolicy::default());
        assert_eq!(policy.window.as_duration(), Duration::from_secs(86_400));
        assert_eq!(policy.min_attempts, 10);
        assert_eq!(policy.failure_percent, 80);
        assert_eq!(policy.hold.as_duration(), Duration::from_secs(86_400));
        assert!(policy.auto_disable);
        assert_eq!(policy.validate(), Ok(()));
    }

    #[test]
    fn ten_attempts_eight_failed_make_a_healthy_endpoint_unstable() {
        let policy = HealthPolicy::default();
        let verdict = policy
            .evaluate(Health::Healthy, t(0), counts(2, 8), t(HOUR))
            .expect("a change");
        assert_eq!(verdict.to, Health::Unstable);
        assert_eq!(
            verdict.reason,
            "8 of 10 attempts failed in the last 86400s (at least 80% of at least 10 makes it unstable)"
        );
    }

    #[test]
    fn fewer_than_min_attempts_or_under_the_share_stay_healthy() {
        let policy = HealthPolicy::default();
        // Nine attempts, all failed: not enough to judge.
        assert_eq!(
            policy.evaluate(Health::Healthy, t(0), counts(0, 9), t(HOUR)),
            None
        );
        // 79% failed.
        assert_eq!(
            policy.evaluate(Health::Healthy, t(0), counts(21, 79), t(HOUR)),
            None
        );
        assert_eq!(
            policy.evaluate(Health::Healthy, t(0), counts(0, 0), t(HOUR)),
            None
        );
    }

    #[test]
    fn unstable_is_disabled_only_after_the_hold_while_still_failing() {
        let policy = HealthPolicy::default();
        // Failing, but unstable for 23h59m59s only.
        assert_eq!(
            policy.evaluate(Health::Unstable, t(0), counts(0, 50), t(24 * HOUR - 1)),
            None
        );
        let verdict = policy
            .evaluate(Health::Unstable, t(0), counts(0, 50), t(24 * HOUR))
            .expect("disabled");
        assert_eq!(verdict.to, Health::Disabled);
        assert_eq!(
            verdict.reason,
            "still failing after 86400s unstable: 50 of 50 attempts failed in the last 86400s"
        );
        // Held long enough but too few attempts since it became unstable:
        // nothing to judge it by, it stays unstable.
        assert_eq!(
            policy.evaluate(Health::Unstable, t(0), counts(0, 3), t(48 * HOUR)),
            None
        );
    }

    #[test]
    fn auto_disable_off_keeps_a_failing_endpoint_unstable() {
        let policy = HealthPolicy {
            auto_disable: false,
            ..HealthPolicy::default()
        };
        assert_eq!(
            policy.evaluate(Health::Unstable, t(0), counts(0, 500), t(30 * 24 * HOUR)),
            None
        );
    }

    #[test]
    fn enough_successes_make_an_unstable_endpoint_healthy() {
        let policy = HealthPolicy::default();
        // Four successes: not yet.
        assert_eq!(
            policy.evaluate(Health::Unstable, t(0), counts(4, 0), t(60)),
            None
        );
        let verdict = policy
            .evaluate(Health::Unstable, t(0), counts(5, 3), t(60))
            .expect("healthy");
        assert_eq!(verdict.to, Health::Healthy);
        assert_eq!(
            verdict.reason,
            "5 of 8 attempts succeeded since it became unstable"
        );
        // Five successes drowned in failures (25 of 30 failed) keep it
        // unstable.
        assert_eq!(
            policy.evaluate(Health::Unstable, t(0), counts(5, 25), t(60)),
            None
        );
    }

    #[test]
    fn disabled_is_left_to_a_manual_enable() {
        let policy = HealthPolicy::default();
        for c in [counts(100, 0), counts(0, 100)] {
            assert_eq!(
                policy.evaluate(Health::Disabled, t(0), c, t(100 * HOUR)),
                None
            );
        }
    }

    #[test]
    fn small_thresholds_walk_the_whole_cycle() {
        let policy = HealthPolicy {
            window: HumanDuration::from_secs(60),
            min_attempts: 3,
            failure_percent: 100,
            hold: HumanDuration::from_secs(2),
            recovery_successes: 1,
            auto_disable: true,
        };
        assert_eq!(policy.validate(), Ok(()));
        let unstable = policy.evaluate(Health::Healthy, t(0), counts(0, 3), t(1));
        assert_eq!(unstable.map(|v| v.to), Some(Health::Unstable));
        // 2 of 3 failed is under 100%.
        assert_eq!(
            policy.evaluate(Health::Healthy, t(0), counts(1, 2), t(1)),
            None
        );
        assert_eq!(
            policy.evaluate(Health::Unstable, t(1), counts(0, 3), t(2)),
            None
        );
        let disabled = policy.evaluate(Health::Unstable, t(1), counts(0, 3), t(3));
        assert_eq!(disabled.map(|v| v.to), Some(Health::Disabled));
        let healthy = policy.evaluate(Health::Unstable, t(1), counts(1, 0), t(2));
        assert_eq!(healthy.map(|v| v.to), Some(Health::Healthy));
    }

    #[test]
    fn the_window_trails_now() {
        let policy = HealthPolicy::default();
        assert_eq!(policy.window_start(t(48 * HOUR)), t(24 * HOUR));
    }

    #[test]
    fn out_of_range_settings_name_their_field() {
        let cases = [
            (r#"{"window": "0s"}"#, "health_policy.window"),
            (r#"{"window": "32d"}"#, "health_policy.window"),
            (r#"{"min_attempts": 0}"#, "health_policy.min_attempts"),
            (r#"{"failure_percent": 0}"#, "health_policy.failure_percent"),
            (
                r#"{"failure_percent": 101}"#,
                "health_policy.failure_percent",
            ),
            (r#"{"hold": "40d"}"#, "health_policy.hold"),
            (
                r#"{"recovery_successes": 0}"#,
                "health_policy.recovery_successes",
            ),
        ];
        for (json, field) in cases {
            let policy: HealthPolicy = serde_json::from_str(json).unwrap();
            assert_eq!(policy.validate().map_err(|e| e.field), Err(field), "{json}");
        }
        assert!(serde_json::from_str::<HealthPolicy>(r#"{"windw": "1h"}"#).is_err());
    }

    #[test]
    fn health_changes_are_announced_as_system_events() {
        let event = health_changed_event(
            "orders-push",
            Health::Unstable,
            Health::Disabled,
            "still failing",
            "e-1".into(),
            t(0),
        );
        assert_eq!(event.ty, "redrive.subscription.disabled");
        assert_eq!(event.source, "/redrive/subscriptions/orders-push");
        assert_eq!(event.subject.as_deref(), Some("orders-push"));
        let data: serde_json::Value =
            serde_json::from_slice(event.data.as_deref().unwrap()).unwrap();
        assert_eq!(data["health"], "disabled");
        assert_eq!(data["previous_health"], "unstable");
        assert_eq!(data["reason"], "still failing");
        assert_eq!(Health::Healthy.event_type(), "redrive.subscription.healthy");
        assert_eq!(
            Health::Unstable.event_type(),
            "redrive.subscription.unstable"
        );
    }

    #[test]
    fn a_paused_or_disabled_subscription_takes_no_pushes() {
        let mut status = SubscriptionStatus::new(t(0));
        assert!(status.accepts_pushes());
        status.paused = true;
        assert!(!status.accepts_pushes());
        status.paused = false;
        status.health = Health::Unstable;
        assert!(status.accepts_pushes());
        status.health = Health::Disabled;
        assert!(!status.accepts_pushes());
    }
}

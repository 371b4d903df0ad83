//! How a delivery ends when it can't be delivered: the attempt limit beside
//! the retry policy, message retention, and the dead-letter copy and
//! operational event published when a delivery fails.

use std::time::Duration;

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::duration::HumanDuration;
use crate::event::CloudEvent;
use crate::model::{Delivery, SubscriptionSpec};
use crate::retry::DeliveryLimits;
use crate::retry::classify::ErrorClass;
use crate::retry::decision::FailureReason;

/// The built-in topic of operational events (`redrive.delivery.failed`,
/// `redrive.subscription.*`). Exists in every store.
pub const SYSTEM_TOPIC: &str = "redrive.system";
/// Type of the operational event published when a delivery fails.
pub const DELIVERY_FAILED_TYPE: &str = "redrive.delivery.failed";
pub use crate::event::SYSTEM_SOURCE;

/// `max_delivery_attempts` bounds and default, as in Pub/Sub.
pub const MIN_DELIVERY_ATTEMPTS: u32 = 5;
pub const MAX_DELIVERY_ATTEMPTS: u32 = 100;
pub const DEFAULT_DELIVERY_ATTEMPTS: u32 = 5;

/// `message_retention` bounds and default, as in Pub/Sub.
pub const MIN_MESSAGE_RETENTION: Duration = Duration::from_secs(10 * 60);
pub const MAX_MESSAGE_RETENTION: Duration = Duration::from_secs(31 * 24 * 3600);
pub use crate::model::{DEFAULT_MESSAGE_RETENTION, default_message_retention};

/// How long finished deliveries, their attempts and unreferenced events are
/// kept before the sweeper purges them.
pub const DEFAULT_HISTORY_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// A lifecycle setting of a subscription out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct LifecycleError {
    pub field: &'static str,
    pub message: String,
}

impl SubscriptionSpec {
    /// The attempt limit in force: the one set, or the Pub/Sub default of 5
    /// when a dead-letter topic is set; none otherwise.
    pub fn effective_max_delivery_attempts(&self) -> Option<u32> {
        match (self.max_delivery_attempts, &self.dead_letter_topic) {
            (Some(max), _) => Some(max),
            (None, Some(_)) => Some(DEFAULT_DELIVERY_ATTEMPTS),
            (None, None) => None,
        }
    }

    /// Checks the dead-letter and retention settings (that the dead-letter
    /// topic exists is the store's to say).
    pub fn validate_lifecycle(&self) -> Result<(), LifecycleError> {
        if let Some(max) = self.max_delivery_attempts
            && !(MIN_DELIVERY_ATTEMPTS..=MAX_DELIVERY_ATTEMPTS).contains(&max)
        {
            return Err(LifecycleError {
                field: "max_delivery_attempts",
                message: format!(
                    "must be between {MIN_DELIVERY_ATTEMPTS} and {MAX_DELIVERY_ATTEMPTS}, got {max}"
                ),
            });
        }
        if self.dead_letter_topic.as_deref() == Some(self.topic.as_str()) {
            return Err(LifecycleError {
                field: "dead_letter_topic",
                message: "must differ from the subscription's own topic".into(),
            });
        }
        let retention = self.message_retention.as_duration();
        if !(MIN_MESSAGE_RETENTION..=MAX_MESSAGE_RETENTION).contains(&retention) {
            return Err(LifecycleError {
                field: "message_retention",
                message: format!(
                    "must be between {} and {}, got {}",
                    HumanDuration(MIN_MESSAGE_RETENTION),
                    HumanDuration(MAX_MESSAGE_RETENTION),
                    self.message_retention
                ),
            });
        }
        Ok(())
    }

    /// What the subscription adds to its retry policy's decision (see
    /// [`retry::decide`](crate::retry::decide)) for a delivery whose
    /// retention counts from `retention_from`: the publish, or the last
    /// redrive.
    pub fn delivery_limits(&self, retention_from: Timestamp) -> DeliveryLimits {
        DeliveryLimits {
            max_delivery_attempts: self.effective_max_delivery_attempts(),
            message_retention: self.message_retention.as_duration(),
            retention_from,
        }
    }
}

pub use crate::retry::retention_expired;

/// The facts of a delivery that just failed, for its dead-letter copy and
/// its operational event.
#[derive(Clone, Debug, PartialEq)]
pub struct Failure {
    pub subscription: String,
    pub delivery_id: String,
    pub reason: FailureReason,
    /// Attempts made in all.
    pub attempts: u32,
    pub last_status: Option<u16>,
    pub last_error: Option<ErrorClass>,
    pub first_attempt_at: Option<Timestamp>,
    pub last_attempt_at: Option<Timestamp>,
}

impl Failure {
    /// What a failed delivery records of its failure; `None` while it has
    /// not failed.
    pub fn of(delivery: &Delivery) -> Option<Failure> {
        Some(Failure {
            subscription: delivery.subscription.clone(),
            delivery_id: delivery.id.clone(),
            reason: delivery.failure_reason?,
            attempts: delivery.attempts,
            last_status: delivery.last_status,
            last_error: delivery.last_error,
            first_attempt_at: delivery.first_attempt_at,
            last_attempt_at: delivery.last_attempt_at,
        })
    }

    /// The last status code, or the error class when no answer came.
    fn last_status_value(&self) -> Option<Value> {
        match (self.last_status, self.last_error) {
            (Some(status), _) => Some(json!(status)),
            (None, Some(error)) => Some(json!(error.as_str())),
            (None, None) => None,
        }
    }
}

/// The copy of `event` published to a dead-letter topic: the same data and
/// attributes under a new `id` (the same event may be dead-lettered by
/// several subscriptions, or again after a redrive), plus extensions that
/// say why. The original id is kept in `deadletterid`.
pub fn dead_letter_copy(event: &CloudEvent, failure: &Failure, new_id: String) -> CloudEvent {
    let mut copy = event.clone();
    copy.id = new_id;
    let ext = &mut copy.extensions;
    ext.insert("deadletterid".into(), json!(event.id));
    ext.insert("deadletterreason".into(), json!(failure.reason.as_str()));
    ext.insert("deadlettersubscription".into(), json!(failure.subscription));
    ext.insert("deadletterattempts".into(), json!(failure.attempts));
    if let Some(status) = failure.last_status_value() {
        ext.insert("deadletterlaststatus".into(), status);
    }
    if let Some(at) = failure.first_attempt_at {
        ext.insert("deadletterfirstattempt".into(), json!(at.to_string()));
    }
    if let Some(at) = failure.last_attempt_at {
        ext.insert("deadletterlastattempt".into(), json!(at.to_string()));
    }
    copy
}

/// The `redrive.delivery.failed` event published on [`SYSTEM_TOPIC`].
pub fn delivery_failed_event(
    event: &CloudEvent,
    failure: &Failure,
    dead_letter_event: Option<&str>,
    id: String,
    now: Timestamp,
) -> CloudEvent {
    let data = json!({
        "subscription": failure.subscription,
        "delivery_id": failure.delivery_id,
        "event_id": event.id,
        "event_source": event.source,
        "event_type": event.ty,
        "reason": failure.reason.as_str(),
        "attempts": failure.attempts,
        "last_status": failure.last_status,
        "last_error": failure.last_error.map(|e| e.as_str()),
        "first_attempt_at": failure.first_attempt_at.map(|t| t.to_string()),
        "last_attempt_at": failure.last_attempt_at.map(|t| t.to_string()),
        "dead_letter_event": dead_letter_event,
    });
    CloudEvent {
        id,
        source: format!("{SYSTEM_SOURCE}/subscriptions/{}", failure.subscription),
        ty: DELIVERY_FAILED_TYPE.into(),
        specversion: "1.0".into(),
        subject: Some(failure.delivery_id.clone()),
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

    fn decide(
        spec: &SubscriptionSpec,
        outcome: &AttemptOutcome,
        ctx: &AttemptContext,
        retention_from: Timestamp,
    ) -> Decision {
        crate::retry::decide(
            &spec.retry_policy,
            &spec.delivery_limits(retention_from),
            outcome,
            ctx,
        )
    }
    use crate::retry::classify::AttemptOutcome;
    use crate::retry::decision::{AttemptContext, Decision};

    use crate::retry::policy::{Backoff, RetryPolicy};

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    fn spec() -> SubscriptionSpec {
        SubscriptionSpec {
            retry_policy: RetryPolicy {
                backoff: Backoff::Fixed {
                    interval: HumanDuration::from_secs(10),
                },
                ..RetryPolicy::default()
            },
            max_concurrency: 8,
            ..SubscriptionSpec::new("orders-push", "orders", "http://127.0.0.1:9/hook")
        }
    }

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

    const EXHAUSTED: Decision = Decision::Failed {
        reason: FailureReason::RetriesExhausted,
    };

    #[test]
    fn a_dead_letter_topic_brings_the_default_of_five_attempts() {
        let mut spec = spec();
        assert_eq!(spec.effective_max_delivery_attempts(), None);
        spec.dead_letter_topic = Some("orders-dead".into());
        assert_eq!(spec.effective_max_delivery_attempts(), Some(5));
        spec.max_delivery_attempts = Some(7);
        assert_eq!(spec.effective_max_delivery_attempts(), Some(7));
    }

    #[test]
    fn an_attempt_ending_after_the_retention_fails_the_delivery_instead_of_retrying() {
        let spec = SubscriptionSpec {
            message_retention: HumanDuration::from_secs(600),
            ..spec()
        };
        let published = t(0);
        // Within the retention a failure is retried, even when the retry
        // falls due after the retention (the sweeper ends it then).
        assert_eq!(
            decide(&spec, &status(500), &ctx(1, 599), published),
            Decision::Retry {
                at: t(609),
                retry: 1
            }
        );
        // Ending at or past it, the attempt fails the delivery.
        for now in [600, 601, 3600] {
            assert_eq!(
                decide(&spec, &status(500), &ctx(1, now), published),
                Decision::Failed {
                    reason: FailureReason::RetentionExpired
                }
            );
        }
        // A redrive restarts the count; a success is a success whenever.
        assert!(matches!(
            decide(&spec, &status(500), &ctx(1, 3600), t(3500)),
            Decision::Retry { .. }
        ));
        assert_eq!(
            decide(&spec, &status(200), &ctx(1, 3600), published),
            Decision::Delivered
        );
    }

    #[test]
    fn the_fifth_failed_attempt_fails_with_a_dead_letter_topic() {
        let spec = SubscriptionSpec {
            dead_letter_topic: Some("orders-dead".into()),
            ..spec()
        };
        let decisions: Vec<Decision> = (1..=5)
            .map(|n| decide(&spec, &status(503), &ctx(n, i64::from(n - 1) * 10), t(0)))
            .collect();
        assert_eq!(
            decisions,
            vec![
                Decision::Retry {
                    at: t(10),
                    retry: 1
                },
                Decision::Retry {
                    at: t(20),
                    retry: 2
                },
                Decision::Retry {
                    at: t(30),
                    retry: 3
                },
                Decision::Retry {
                    at: t(40),
                    retry: 4
                },
                EXHAUSTED,
            ]
        );
    }

    #[test]
    fn the_retry_policy_limit_applies_when_it_is_reached_first() {
        let mut spec = spec();
        spec.max_delivery_attempts = Some(10);
        spec.retry_policy.retry_limit = Some(1);
        assert_eq!(
            decide(&spec, &status(500), &ctx(1, 0), t(0)),
            Decision::Retry {
                at: t(10),
                retry: 1
            }
        );
        assert_eq!(decide(&spec, &status(500), &ctx(2, 10), t(0)), EXHAUSTED);
    }

    #[test]
    fn the_attempt_limit_never_turns_success_or_final_codes_into_exhaustion() {
        let mut spec = spec();
        spec.max_delivery_attempts = Some(5);
        assert_eq!(
            decide(&spec, &status(200), &ctx(9, 0), t(0)),
            Decision::Delivered
        );
        spec.retry_policy.final_codes =
            vec![crate::retry::classify::StatusRange::single(404).unwrap()];
        assert_eq!(
            decide(&spec, &status(404), &ctx(9, 0), t(0)),
            Decision::Failed {
                reason: FailureReason::NonRetryable
            }
        );
    }

    #[test]
    fn lifecycle_settings_are_checked_against_their_ranges() {
        let mut bad = spec();
        bad.max_delivery_attempts = Some(4);
        assert_eq!(
            bad.validate_lifecycle().unwrap_err().field,
            "max_delivery_attempts"
        );
        bad.max_delivery_attempts = Some(101);
        assert!(bad.validate_lifecycle().is_err());
        bad.max_delivery_attempts = Some(100);
        assert!(bad.validate_lifecycle().is_ok());

        let mut bad = spec();
        bad.message_retention = HumanDuration::from_secs(599);
        assert_eq!(
            bad.validate_lifecycle().unwrap_err().field,
            "message_retention"
        );
        bad.message_retention = HumanDuration::from_secs(600);
        assert!(bad.validate_lifecycle().is_ok());
        bad.message_retention = HumanDuration::from_secs(31 * 86_400 + 1);
        assert!(bad.validate_lifecycle().is_err());

        let mut bad = spec();
        bad.dead_letter_topic = Some("orders".into());
        assert_eq!(
            bad.validate_lifecycle().unwrap_err().field,
            "dead_letter_topic"
        );
    }

    #[test]
    fn retention_expires_exactly_at_publish_plus_retention() {
        let ten_minutes = Duration::from_secs(600);
        assert!(!retention_expired(t(0), ten_minutes, t(599)));
        assert!(retention_expired(t(0), ten_minutes, t(600)));
        assert!(!retention_expired(
            Timestamp::MAX,
            ten_minutes,
            Timestamp::MAX
        ));
    }

    fn failure() -> Failure {
        Failure {
            subscription: "orders-push".into(),
            delivery_id: "d1".into(),
            reason: FailureReason::RetriesExhausted,
            attempts: 5,
            last_status: Some(503),
            last_error: None,
            first_attempt_at: Some(t(0)),
            last_attempt_at: Some(t(40)),
        }
    }

    fn order_event() -> CloudEvent {
        let mut event = CloudEvent {
            id: "order-1".into(),
            source: "/shop".into(),
            ty: "order.created".into(),
            specversion: "1.0".into(),
            subject: Some("order/1".into()),
            time: None,
            datacontenttype: Some("application/json".into()),
            dataschema: None,
            extensions: Default::default(),
            data: Some(br#"{"n":1}"#.to_vec()),
        };
        event.extensions.insert("tenant".into(), json!("acme"));
        event
    }

    #[test]
    fn the_dead_letter_copy_keeps_data_and_attributes_and_says_why() {
        let event = order_event();
        let copy = dead_letter_copy(&event, &failure(), "dl-1".into());
        assert_eq!(copy.id, "dl-1");
        assert_eq!(copy.source, event.source);
        assert_eq!(copy.ty, event.ty);
        assert_eq!(copy.subject, event.subject);
        assert_eq!(copy.data, event.data);
        let ext = &copy.extensions;
        assert_eq!(ext["tenant"], json!("acme"));
        assert_eq!(ext["deadletterid"], json!("order-1"));
        assert_eq!(ext["deadletterreason"], json!("retries_exhausted"));
        assert_eq!(ext["deadlettersubscription"], json!("orders-push"));
        assert_eq!(ext["deadletterattempts"], json!(5));
        assert_eq!(ext["deadletterlaststatus"], json!(503));
        assert_eq!(ext["deadletterfirstattempt"], json!(t(0).to_string()));
        assert_eq!(ext["deadletterlastattempt"], json!(t(40).to_string()));
    }

    #[test]
    fn the_last_status_is_the_error_class_when_no_answer_came() {
        let failure = Failure {
            last_status: None,
            last_error: Some(ErrorClass::Timeout),
            ..failure()
        };
        let copy = dead_letter_copy(&order_event(), &failure, "dl-2".into());
        assert_eq!(copy.extensions["deadletterlaststatus"], json!("timeout"));
    }

    #[test]
    fn a_delivery_never_attempted_has_no_attempt_extensions() {
        let failure = Failure {
            reason: FailureReason::RetentionExpired,
            attempts: 0,
            last_status: None,
            last_error: None,
            first_attempt_at: None,
            last_attempt_at: None,
            ..failure()
        };
        let copy = dead_letter_copy(&order_event(), &failure, "dl-3".into());
        assert!(!copy.extensions.contains_key("deadletterlaststatus"));
        assert!(!copy.extensions.contains_key("deadletterfirstattempt"));
        assert_eq!(copy.extensions["deadletterattempts"], json!(0));
    }

    #[test]
    fn the_failed_event_describes_the_delivery() {
        let event = delivery_failed_event(
            &order_event(),
            &failure(),
            Some("dl-1"),
            "sys-1".into(),
            t(41),
        );
        assert_eq!(event.ty, DELIVERY_FAILED_TYPE);
        assert_eq!(event.source, "/redrive/subscriptions/orders-push");
        assert_eq!(event.subject.as_deref(), Some("d1"));
        let data: Value = serde_json::from_slice(event.data.as_deref().unwrap()).unwrap();
        assert_eq!(data["reason"], "retries_exhausted");
        assert_eq!(data["event_id"], "order-1");
        assert_eq!(data["dead_letter_event"], "dl-1");
        assert_eq!(data["attempts"], 5);
    }
}

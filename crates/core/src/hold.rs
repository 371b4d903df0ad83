//! Why a subscription's pushes are held back, and what a due delivery is
//! waiting on: the answers the API and the console give when retries start
//! later than their schedule.
//!
//! Three holds are the subscription's own and every node sees them: a pause
//! by hand, endpoint health `disabled`, and a `rate` of 0. Three are pauses
//! one node's dispatcher keeps in memory — push backoff, an endpoint's
//! `Retry-After`, and a signing secret this node cannot read — so each node
//! reports only its own; they come in here as a [`NodePause`] with the time
//! it ends.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::health::Health;
use crate::model::{Delivery, DeliveryState, Subscription};
use crate::rate::Rate;

/// What holds a subscription's pushes back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HeldReason {
    /// Paused by hand (`POST /v1/subscriptions/{name}/pause`).
    Paused,
    /// Endpoint health turned `disabled`.
    Disabled,
    /// The subscription's `rate` is 0.
    RateZero,
    /// Push backoff after consecutive failed pushes (this node).
    PushBackoff,
    /// The endpoint answered 429 or 503 with `Retry-After` (this node).
    RetryAfter,
    /// This node cannot read the subscription's signing secret, so it signs
    /// and sends nothing (this node).
    SigningSecretUnreadable,
}

impl HeldReason {
    /// The reason's JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            HeldReason::Paused => "paused",
            HeldReason::Disabled => "disabled",
            HeldReason::RateZero => "rate_zero",
            HeldReason::PushBackoff => "push_backoff",
            HeldReason::RetryAfter => "retry_after",
            HeldReason::SigningSecretUnreadable => "signing_secret_unreadable",
        }
    }

    /// A few words for a badge or a list: what a due delivery waits on.
    pub fn label(self) -> &'static str {
        match self {
            HeldReason::Paused => "paused by hand",
            HeldReason::Disabled => "endpoint disabled",
            HeldReason::RateZero => "rate is 0",
            HeldReason::PushBackoff => "push backoff",
            HeldReason::RetryAfter => "Retry-After",
            HeldReason::SigningSecretUnreadable => "signing secret unreadable",
        }
    }
}

/// A pause one node's dispatcher keeps in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodePause {
    /// Push backoff after this many consecutive failed pushes.
    PushBackoff { consecutive_failures: u32 },
    /// The endpoint asked to wait (429 or 503 with `Retry-After`).
    RetryAfter,
    /// This node could not read the signing secret; it looks again when
    /// the pause ends.
    SigningSecretUnreadable,
}

/// Pushes to a subscription are held back: until when, why, in words.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PushesHeld {
    /// When pushes may start again; `null` for a hold that lasts until
    /// someone lifts it (a pause by hand, `disabled`, a rate of 0).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub until: Option<Timestamp>,
    pub reason: HeldReason,
    /// What holds them and how it ends, worded to follow "pushes are
    /// held because".
    pub detail: String,
}

/// The hold on `subscription`'s pushes at `now`, if any: its own holds
/// first (they last until lifted), else `node`'s pause while it lasts.
pub fn pushes_held(
    subscription: &Subscription,
    node: Option<(Timestamp, NodePause)>,
    now: Timestamp,
) -> Option<PushesHeld> {
    let name = &subscription.spec.name;
    let status = &subscription.status;
    let lasting = |reason, detail: String| {
        Some(PushesHeld {
            until: None,
            reason,
            detail,
        })
    };
    if status.paused {
        return lasting(
            HeldReason::Paused,
            format!(
                "the subscription is paused by hand; resuming it \
                 (POST /v1/subscriptions/{name}/resume or `redrive subscriptions resume {name}`) \
                 starts them again"
            ),
        );
    }
    if status.health == Health::Disabled {
        let why = status
            .health_reason
            .as_deref()
            .map(|reason| format!(" ({reason})"))
            .unwrap_or_default();
        return lasting(
            HeldReason::Disabled,
            format!(
                "endpoint health is disabled{why}; enabling it \
                 (POST /v1/subscriptions/{name}/enable or `redrive subscriptions enable {name}`) \
                 starts them again"
            ),
        );
    }
    if subscription.spec.rate.is_some_and(Rate::is_paused) {
        return lasting(
            HeldReason::RateZero,
            "the subscription's rate is 0; raising it starts them again".to_owned(),
        );
    }
    let (until, pause) = node.filter(|(until, _)| *until > now)?;
    let (reason, detail) = match pause {
        NodePause::PushBackoff {
            consecutive_failures,
        } => (
            HeldReason::PushBackoff,
            format!(
                "push backoff is on and {consecutive_failures} {pushes} failed in a row: \
                 while pushes keep failing each pause doubles, from 100ms up to 60s, and a \
                 success ends them",
                pushes = if consecutive_failures == 1 {
                    "push"
                } else {
                    "pushes"
                }
            ),
        ),
        NodePause::RetryAfter => (
            HeldReason::RetryAfter,
            "the endpoint answered 429 or 503 with Retry-After (a wait it asks for is capped \
             by the retry policy's longest delay and 60s)"
                .to_owned(),
        ),
        NodePause::SigningSecretUnreadable => (
            HeldReason::SigningSecretUnreadable,
            "this node cannot read the subscription's signing secret, most likely because its \
             secret key (--secret-key, REDRIVE_SECRET_KEY or DATA/secret.key) is not the one the \
             secret was stored with (its log says): it signs and sends nothing, the deliveries \
             stay scheduled without spending attempts for nodes with the right key to push, and \
             this node tries again when the hold ends"
                .to_owned(),
        ),
    };
    Some(PushesHeld {
        until: Some(until),
        reason,
        detail,
    })
}

/// What a delivery that is due and not yet pushed is waiting on.
#[derive(Clone, Debug, PartialEq)]
pub enum Waiting<'a> {
    /// The subscription's pushes are held back.
    Held(&'a PushesHeld),
    /// The subscription's rate spaces its pushes out.
    Rate(Rate),
    /// Nothing holds it: it waits its turn for a push slot.
    Turn,
}

impl Waiting<'_> {
    /// One short line, e.g. `held back by push backoff`.
    pub fn describe(&self) -> String {
        match self {
            Waiting::Held(held) => match held.reason {
                HeldReason::Paused => "waiting: the subscription is paused by hand".to_owned(),
                HeldReason::Disabled => "waiting: the endpoint is disabled".to_owned(),
                HeldReason::RateZero => "waiting: the subscription's rate is 0".to_owned(),
                HeldReason::PushBackoff => "held back by push backoff".to_owned(),
                HeldReason::RetryAfter => "held back by the endpoint's Retry-After".to_owned(),
                HeldReason::SigningSecretUnreadable => {
                    "held back: this node cannot read the signing secret".to_owned()
                }
            },
            Waiting::Rate(rate) => format!("waiting its turn under the rate limit of {rate}"),
            Waiting::Turn => "due: waiting for a push slot".to_owned(),
        }
    }

    /// A few words for a list, e.g. `held back: push backoff`.
    pub fn short(&self) -> String {
        match self {
            Waiting::Held(held) => format!("held back: {}", held.reason.label()),
            Waiting::Rate(rate) => format!("waiting: rate limit {rate}"),
            Waiting::Turn => "due: waiting for a slot".to_owned(),
        }
    }
}

/// What `delivery` waits on at `now`: `None` unless it is scheduled and
/// due (its next attempt is not in the future).
pub fn delivery_waiting<'a>(
    delivery: &Delivery,
    held: Option<&'a PushesHeld>,
    rate: Option<Rate>,
    now: Timestamp,
) -> Option<Waiting<'a>> {
    if delivery.state != DeliveryState::Scheduled {
        return None;
    }
    if delivery.next_attempt_at.is_some_and(|due| due > now) {
        return None;
    }
    Some(match (held, rate) {
        (Some(held), _) => Waiting::Held(held),
        (None, Some(rate)) => Waiting::Rate(rate),
        (None, None) => Waiting::Turn,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::SubscriptionStatus;
    use crate::model::SubscriptionSpec;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn subscription(extra: serde_json::Value) -> Subscription {
        let mut spec = serde_json::json!({
            "name": "hooks", "topic": "orders", "endpoint": "http://127.0.0.1:9/hook"
        });
        if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
            spec.extend(extra.clone());
        }
        let spec: SubscriptionSpec = serde_json::from_value(spec).unwrap();
        let now = at("2026-01-02T10:00:00Z");
        Subscription {
            spec,
            status: SubscriptionStatus::new(now),
            created_at: now,
            updated_at: now,
        }
    }

    fn delivery(state: DeliveryState, next: Option<&str>) -> Delivery {
        let now = at("2026-01-02T10:00:00Z");
        Delivery {
            id: "d-1".into(),
            subscription: "hooks".into(),
            event_id: "e-1".into(),
            event_source: "/s".into(),
            event_type: "t".into(),
            state,
            attempts: 1,
            next_attempt_at: next.map(at),
            first_attempt_at: Some(now),
            last_attempt_at: Some(now),
            last_status: Some(503),
            last_error: None,
            failure_reason: None,
            dead_letter_event: None,
            attempts_before_redrive: 0,
            redriven_at: None,
            created_at: now,
            updated_at: now,
        }
    }

    const NOW: &str = "2026-01-02T12:00:00Z";

    #[test]
    fn a_node_pause_is_reported_while_it_lasts() {
        let sub = subscription(serde_json::json!({}));
        let until = at("2026-01-02T12:00:01.6Z");
        let pause = NodePause::PushBackoff {
            consecutive_failures: 5,
        };
        let held = pushes_held(&sub, Some((until, pause)), at(NOW)).unwrap();
        assert_eq!(held.until, Some(until));
        assert_eq!(held.reason, HeldReason::PushBackoff);
        assert_eq!(
            held.detail,
            "push backoff is on and 5 pushes failed in a row: while pushes keep failing each \
             pause doubles, from 100ms up to 60s, and a success ends them"
        );
        // Over: nothing holds the pushes any more.
        assert_eq!(pushes_held(&sub, Some((until, pause)), until), None);
        assert_eq!(pushes_held(&sub, None, at(NOW)), None);
        let held = pushes_held(&sub, Some((until, NodePause::RetryAfter)), at(NOW)).unwrap();
        assert_eq!(held.reason, HeldReason::RetryAfter);
        assert!(
            held.detail
                .starts_with("the endpoint answered 429 or 503 with Retry-After")
        );
        let unreadable = Some((until, NodePause::SigningSecretUnreadable));
        let held = pushes_held(&sub, unreadable, at(NOW)).unwrap();
        assert_eq!(held.reason, HeldReason::SigningSecretUnreadable);
        assert_eq!(held.reason.as_str(), "signing_secret_unreadable");
        assert!(held.detail.contains("secret key"), "{}", held.detail);
        assert_eq!(
            Waiting::Held(&held).short(),
            "held back: signing secret unreadable"
        );
    }

    #[test]
    fn holds_of_the_subscription_itself_come_first_and_last_until_lifted() {
        let node = Some((at("2026-01-02T12:00:05Z"), NodePause::RetryAfter));
        let mut sub = subscription(serde_json::json!({"rate": "0"}));
        let held = pushes_held(&sub, node, at(NOW)).unwrap();
        assert_eq!((held.reason, held.until), (HeldReason::RateZero, None));

        sub.status.health = Health::Disabled;
        sub.status.health_reason = Some("90% of 20 attempts failed".into());
        let held = pushes_held(&sub, node, at(NOW)).unwrap();
        assert_eq!(held.reason, HeldReason::Disabled);
        assert!(
            held.detail
                .starts_with("endpoint health is disabled (90% of 20 attempts failed); "),
            "{}",
            held.detail
        );

        sub.status.paused = true;
        let held = pushes_held(&sub, node, at(NOW)).unwrap();
        assert_eq!((held.reason, held.until), (HeldReason::Paused, None));
        assert!(held.detail.contains("/v1/subscriptions/hooks/resume"));

        let json = serde_json::to_value(&held).unwrap();
        assert_eq!(json["reason"], "paused");
        assert_eq!(json["until"], serde_json::Value::Null);
    }

    #[test]
    fn only_a_due_scheduled_delivery_waits_and_it_says_on_what() {
        let sub = subscription(serde_json::json!({}));
        let until = at("2026-01-02T12:00:30Z");
        let held = pushes_held(&sub, Some((until, NodePause::RetryAfter)), at(NOW)).unwrap();
        let due = delivery(DeliveryState::Scheduled, Some("2026-01-02T11:59:59Z"));
        let later = delivery(DeliveryState::Scheduled, Some("2026-01-02T12:00:01Z"));
        let delivered = delivery(DeliveryState::Delivered, None);
        assert_eq!(
            delivery_waiting(&due, Some(&held), None, at(NOW)),
            Some(Waiting::Held(&held))
        );
        assert_eq!(delivery_waiting(&later, Some(&held), None, at(NOW)), None);
        assert_eq!(
            delivery_waiting(&delivered, Some(&held), None, at(NOW)),
            None
        );
        let rate: Rate = "5/s".parse().unwrap();
        let waiting = delivery_waiting(&due, None, Some(rate), at(NOW)).unwrap();
        assert_eq!(
            waiting.describe(),
            "waiting its turn under the rate limit of 5/s"
        );
        assert_eq!(
            delivery_waiting(&due, None, None, at(NOW))
                .unwrap()
                .describe(),
            "due: waiting for a push slot"
        );
        assert_eq!(
            Waiting::Held(&held).describe(),
            "held back by the endpoint's Retry-After"
        );
        assert_eq!(Waiting::Held(&held).short(), "held back: Retry-After");
        assert_eq!(Waiting::Rate(rate).short(), "waiting: rate limit 5/s");
    }
}

//! Shared planning: the domain rules of each write, decided once for both
//! backends. A backend reads what a plan needs, asks this module what to
//! write, and runs the SQL; the rules (which subscriptions an event fans
//! out to, the row a completion writes, what a failure publishes, which
//! health bucket an attempt counts in) live only here and in `core`.

use jiff::Timestamp;
use redrive_core::lifecycle::{self, Failure, SYSTEM_TOPIC};
use redrive_core::{
    CloudEvent, Decision, Delivery, DeliveryState, FailureReason, Filter, SubscriptionSpec,
};

use crate::{Completion, Result};

/// Width of an endpoint-health bucket: one minute, in milliseconds.
const HEALTH_BUCKET_MS: i64 = 60_000;

/// The health bucket (the start of its minute) an attempt that ended at
/// `ms` is counted in.
fn health_bucket(ms: i64) -> i64 {
    ms - ms.rem_euclid(HEALTH_BUCKET_MS)
}

/// The first bucket a count of the attempts since `since` reads: the
/// whole minute `since` falls in.
pub(crate) fn counted_from(since: Timestamp) -> i64 {
    health_bucket(since.as_millisecond())
}

/// The subscriptions of one topic, with their filters parsed once for a
/// whole batch of events.
pub(crate) struct FanOut {
    targets: Vec<(String, Filter)>,
}

impl FanOut {
    /// From `(name, stored spec)` rows of the topic's subscriptions.
    pub(crate) fn from_stored<N, S>(rows: impl IntoIterator<Item = (N, S)>) -> Result<FanOut>
    where
        N: Into<String>,
        S: AsRef<str>,
    {
        let targets = rows
            .into_iter()
            .map(|(name, spec)| {
                let spec = SubscriptionSpec::from_stored(spec.as_ref())?;
                Ok((name.into(), spec.filter))
            })
            .collect::<Result<_>>()?;
        Ok(FanOut { targets })
    }

    /// The subscriptions `event` gets a delivery for, each with the new
    /// delivery's id.
    pub(crate) fn deliveries<'a>(
        &'a self,
        event: &'a CloudEvent,
    ) -> impl Iterator<Item = (String, &'a str)> + 'a {
        self.targets
            .iter()
            .filter(|(_, filter)| filter.matches(event))
            .map(|(name, _)| (new_id(), name.as_str()))
    }
}

/// A fresh, time-ordered id for a delivery or an event redrive makes.
pub(crate) fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// What one completion writes: the delivery's new state and its attempt
/// row, in stored form.
pub(crate) struct CompletionRow<'a> {
    pub delivery_id: &'a str,
    pub number: u32,
    pub state: DeliveryState,
    pub next_attempt_at: Option<i64>,
    pub failure_reason: Option<&'static str>,
    pub status: Option<u16>,
    pub error: Option<&'static str>,
    pub error_message: Option<&'a str>,
    pub response_snippet: Option<&'a str>,
    pub started_at: i64,
    pub duration_ms: i64,
    /// When the attempt ended: the delivery's `updated_at`.
    pub ended_at: i64,
    /// The decision as stored (JSON).
    pub decision: String,
    /// The health bucket the attempt counts in.
    pub bucket: i64,
    pub succeeded: bool,
    /// Whether the delivery fails here, so its failure effects follow.
    pub failed: bool,
}

impl<'a> CompletionRow<'a> {
    pub(crate) fn plan(completion: &'a Completion) -> Result<CompletionRow<'a>> {
        let attempt = &completion.attempt;
        let (state, next_attempt_at, failure_reason) = match attempt.decision {
            Decision::Delivered => (DeliveryState::Delivered, None, None),
            Decision::Retry { at, .. } => {
                (DeliveryState::Scheduled, Some(at.as_millisecond()), None)
            }
            Decision::Failed { reason } => (DeliveryState::Failed, None, Some(reason.as_str())),
        };
        let started_at = attempt.started_at.as_millisecond();
        let duration_ms = i64::try_from(attempt.duration_ms).unwrap_or(i64::MAX);
        let ended_at = started_at.saturating_add(duration_ms);
        Ok(CompletionRow {
            delivery_id: &completion.delivery_id,
            number: attempt.number,
            state,
            next_attempt_at,
            failure_reason,
            status: attempt.status,
            error: attempt.error.map(|class| class.as_str()),
            error_message: attempt.error_message.as_deref(),
            response_snippet: attempt.response_snippet.as_deref(),
            started_at,
            duration_ms,
            ended_at,
            decision: serde_json::to_string(&attempt.decision)?,
            bucket: health_bucket(ended_at),
            succeeded: state == DeliveryState::Delivered,
            failed: state == DeliveryState::Failed,
        })
    }
}

/// The stored decision of a cancel's entry in the attempt log.
pub(crate) fn cancel_decision() -> Result<String> {
    Ok(serde_json::to_string(&Decision::Failed {
        reason: FailureReason::Cancelled,
    })?)
}

/// The topics whose existence [`FailureEffects::plan`] depends on.
pub(crate) fn failure_topics(spec: &SubscriptionSpec) -> Vec<&str> {
    let mut topics: Vec<&str> = spec.dead_letter_topic.iter().map(String::as_str).collect();
    topics.push(SYSTEM_TOPIC);
    topics
}

/// What a failed delivery publishes, in the transaction that failed it.
#[derive(Debug, Default)]
pub(crate) struct FailureEffects {
    /// The copy of its event for the subscription's dead-letter topic; its
    /// id is linked from the delivery.
    pub dead_letter: Option<(String, CloudEvent)>,
    /// The `redrive.delivery.failed` event for the system topic.
    pub notice: Option<CloudEvent>,
}

impl FailureEffects {
    /// Plans the effects of `delivery`'s failure; `exists` answers for the
    /// topics of [`failure_topics`]. Nothing when it has not failed.
    pub(crate) fn plan(
        delivery: &Delivery,
        event: &CloudEvent,
        spec: &SubscriptionSpec,
        exists: impl Fn(&str) -> bool,
        now: Timestamp,
    ) -> FailureEffects {
        let Some(failure) = Failure::of(delivery) else {
            return FailureEffects::default();
        };
        let mut effects = FailureEffects::default();
        if let Some(topic) = &spec.dead_letter_topic {
            if exists(topic) {
                let copy = lifecycle::dead_letter_copy(event, &failure, new_id());
                effects.dead_letter = Some((topic.clone(), copy));
            } else {
                // Deleting a dead-letter topic is refused, so only a race gets here.
                tracing::warn!(delivery = %delivery.id, topic = %topic,
                    "the dead-letter topic is gone; the failed delivery stays without a copy");
            }
        }
        // Failures of the system topic's own subscriptions are not announced
        // there: a failing operator endpoint would feed itself forever.
        if spec.topic != SYSTEM_TOPIC && exists(SYSTEM_TOPIC) {
            let copy_id = effects
                .dead_letter
                .as_ref()
                .map(|(_, copy)| copy.id.as_str());
            effects.notice = Some(lifecycle::delivery_failed_event(
                event,
                &failure,
                copy_id,
                new_id(),
                now,
            ));
        }
        effects
    }
}

/// The `redrive.subscription.health_changed` event a health change
/// publishes on the system topic, when that topic exists.
pub(crate) fn health_change_notice(
    change: &crate::HealthChange,
    system_topic_exists: bool,
) -> Option<CloudEvent> {
    system_topic_exists.then(|| {
        redrive_core::health::health_changed_event(
            &change.subscription,
            change.from,
            change.to,
            &change.reason,
            new_id(),
            change.now,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_buckets_start_on_the_minute_before_and_after_the_epoch() {
        assert_eq!(health_bucket(0), 0);
        assert_eq!(health_bucket(59_999), 0);
        assert_eq!(health_bucket(60_000), 60_000);
        assert_eq!(health_bucket(-1), -60_000);
    }
}

//! Shared planning: the domain rules of each write, decided once for both
//! backends. A backend reads what a plan needs, asks this module what to
//! write, and runs the SQL; the rules (which subscriptions an event fans
//! out to, the row a completion writes, what a failure publishes, which
//! health bucket an attempt counts in) live only here and in `core`.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use jiff::Timestamp;
use redrive_core::lifecycle::{self, Failure, SYSTEM_TOPIC};
use redrive_core::{
    CloudEvent, Decision, Delivery, DeliveryState, FailureReason, Filter, SubscriptionSpec,
};

use crate::{ClaimedDelivery, Completion, Result};

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
    targets: Vec<(String, Arc<Filter>)>,
}

/// Most parsed filters kept; past it the memo starts again, empty.
const MEMO_CAPACITY: usize = 4096;

/// Filters parsed from stored specs, by the stored text. A publish reads its
/// topic's subscriptions every time (a change must apply to the next
/// publish), and parsing their specs cost more than the rest of a
/// single-event publish; a spec whose text is unchanged needs no parse.
/// Keyed by content, so it can never answer for a changed spec.
static PARSED_FILTERS: LazyLock<Mutex<HashMap<String, Arc<Filter>>>> =
    LazyLock::new(Mutex::default);

fn filter_of(stored_spec: &str) -> Result<Arc<Filter>> {
    if let Some(filter) = PARSED_FILTERS
        .lock()
        .ok()
        .and_then(|memo| memo.get(stored_spec).cloned())
    {
        return Ok(filter);
    }
    let filter = Arc::new(SubscriptionSpec::from_stored(stored_spec)?.filter);
    if let Ok(mut memo) = PARSED_FILTERS.lock() {
        if memo.len() >= MEMO_CAPACITY {
            memo.clear();
        }
        memo.insert(stored_spec.to_owned(), filter.clone());
    }
    Ok(filter)
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
            .map(|(name, spec)| Ok((name.into(), filter_of(spec.as_ref())?)))
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

/// A due delivery as its claim leaves it, and when it fell due: the claim
/// starts an attempt, at the due time when it is claimed ahead of it. A
/// backend writes the fields this changes (`attempts`, the attempt times,
/// `updated_at`) and hands the delivery on as it is, with no read back.
/// Times are whole milliseconds, as stored.
pub(crate) fn claimed(mut delivery: Delivery, now: Timestamp) -> Result<(Delivery, Timestamp)> {
    let Some(due_at) = delivery.next_attempt_at else {
        return Err(crate::StoreError::Backend(format!(
            "delivery {:?} was claimed without a due time",
            delivery.id
        )));
    };
    let now = Timestamp::from_millisecond(now.as_millisecond())
        .map_err(|err| crate::StoreError::Invalid(format!("claim time out of range: {err}")))?;
    let started = due_at.max(now);
    delivery.state = DeliveryState::InFlight;
    delivery.attempts += 1;
    delivery.last_attempt_at = Some(started);
    delivery.first_attempt_at.get_or_insert(started);
    delivery.next_attempt_at = None;
    delivery.updated_at = now;
    Ok((delivery, due_at))
}

/// A new delivery of `event` taken into flight by its own publish (see
/// `handoff`): exactly as a claim at the publish would leave the delivery
/// the publish would have stored, due at once. A backend stores it as it
/// is.
pub(crate) fn claimed_at_publish(
    id: String,
    subscription: &str,
    event: &CloudEvent,
    now: Timestamp,
    lease_until: Timestamp,
) -> Result<ClaimedDelivery> {
    let now = Timestamp::from_millisecond(now.as_millisecond())
        .map_err(|err| crate::StoreError::Invalid(format!("publish time out of range: {err}")))?;
    let published = Delivery {
        id,
        subscription: subscription.to_owned(),
        event_id: event.id.clone(),
        event_source: event.source.clone(),
        event_type: event.ty.clone(),
        state: DeliveryState::Scheduled,
        attempts: 0,
        next_attempt_at: Some(now),
        first_attempt_at: None,
        last_attempt_at: None,
        last_status: None,
        last_error: None,
        failure_reason: None,
        dead_letter_event: None,
        attempts_before_redrive: 0,
        redriven_at: None,
        created_at: now,
        updated_at: now,
    };
    let (delivery, due_at) = claimed(published, now)?;
    Ok(ClaimedDelivery {
        delivery,
        event: event.clone(),
        lease_until,
        due_at,
    })
}

/// What one completion writes: the delivery's new state and its attempt
/// row, in stored form.
pub(crate) struct CompletionRow<'a> {
    pub delivery_id: &'a str,
    pub subscription: &'a str,
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
            subscription: &completion.subscription,
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
    use redrive_core::{DeliveryState, FailureReason};

    use super::*;
    use crate::conformance::{event, spec, t0};

    fn failed(subscription: &str) -> Delivery {
        Delivery {
            id: "d1".into(),
            subscription: subscription.into(),
            event_id: "e1".into(),
            event_source: "/test".into(),
            event_type: "t".into(),
            state: DeliveryState::Failed,
            attempts: 5,
            next_attempt_at: None,
            first_attempt_at: Some(t0()),
            last_attempt_at: Some(t0()),
            last_status: Some(500),
            last_error: None,
            failure_reason: Some(FailureReason::RetriesExhausted),
            dead_letter_event: None,
            attempts_before_redrive: 0,
            created_at: t0(),
            updated_at: t0(),
            redriven_at: None,
        }
    }

    #[test]
    fn a_claim_starts_an_attempt_now_or_at_the_due_time_when_claimed_ahead() {
        let scheduled = |due: Timestamp, first: Option<Timestamp>| Delivery {
            state: DeliveryState::Scheduled,
            attempts: 2,
            next_attempt_at: Some(due),
            first_attempt_at: first,
            failure_reason: None,
            ..failed("s")
        };
        let now = t0() + jiff::SignedDuration::from_micros(10_500_700);
        let now_ms = t0() + jiff::SignedDuration::from_millis(10_500);

        // Overdue: the attempt starts now (in whole milliseconds); the
        // first attempt's time is kept.
        let due = t0() + jiff::SignedDuration::from_secs(3);
        let (claimed_late, due_at) = claimed(scheduled(due, Some(t0())), now).unwrap();
        assert_eq!(due_at, due);
        assert_eq!(claimed_late.state, DeliveryState::InFlight);
        assert_eq!(claimed_late.attempts, 3);
        assert_eq!(claimed_late.last_attempt_at, Some(now_ms));
        assert_eq!(claimed_late.first_attempt_at, Some(t0()));
        assert_eq!(claimed_late.next_attempt_at, None);
        assert_eq!(claimed_late.updated_at, now_ms);

        // Claimed ahead of its due time, first attempt: it starts when due.
        let ahead = t0() + jiff::SignedDuration::from_secs(11);
        let (claimed_ahead, due_at) = claimed(scheduled(ahead, None), now).unwrap();
        assert_eq!(due_at, ahead);
        assert_eq!(claimed_ahead.last_attempt_at, Some(ahead));
        assert_eq!(claimed_ahead.first_attempt_at, Some(ahead));
        assert_eq!(claimed_ahead.updated_at, now_ms);

        let not_due = Delivery {
            next_attempt_at: None,
            ..scheduled(due, None)
        };
        assert!(claimed(not_due, now).is_err());
    }

    #[test]
    fn health_buckets_start_on_the_minute_before_and_after_the_epoch() {
        assert_eq!(health_bucket(0), 0);
        assert_eq!(health_bucket(59_999), 0);
        assert_eq!(health_bucket(60_000), 60_000);
        assert_eq!(health_bucket(-1), -60_000);
    }

    #[test]
    fn events_fan_out_to_the_subscriptions_whose_filter_matches() {
        let mut typed = spec("typed", "orders");
        typed.filter.ty = Some("order.paid".into());
        let stored = [
            (
                "all".to_owned(),
                serde_json::to_string(&spec("all", "orders")).unwrap(),
            ),
            ("typed".to_owned(), serde_json::to_string(&typed).unwrap()),
        ];
        let fan_out = FanOut::from_stored(stored).unwrap();
        let to = |ty: &str| {
            let event = event("e1", ty);
            fan_out
                .deliveries(&event)
                .map(|(_, name)| name.to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(to("order.paid"), ["all", "typed"]);
        assert_eq!(to("order.created"), ["all"]);
        let event = event("e1", "t");
        let ids: Vec<_> = fan_out.deliveries(&event).map(|(id, _)| id).collect();
        assert_eq!(ids.len(), 1);
    }

    #[test]
    fn a_failure_copies_to_its_dead_letter_topic_and_links_the_copy_in_its_notice() {
        let mut with_dlq = spec("s1", "orders");
        with_dlq.dead_letter_topic = Some("orders-dlq".into());
        assert_eq!(failure_topics(&with_dlq), ["orders-dlq", SYSTEM_TOPIC]);
        let effects =
            FailureEffects::plan(&failed("s1"), &event("e1", "t"), &with_dlq, |_| true, t0());
        let (topic, copy) = effects.dead_letter.expect("a copy");
        assert_eq!(topic, "orders-dlq");
        let notice = effects.notice.expect("a notice");
        assert_eq!(notice.ty, lifecycle::DELIVERY_FAILED_TYPE);
        let data: serde_json::Value =
            serde_json::from_slice(notice.data.as_deref().unwrap()).unwrap();
        assert_eq!(data["dead_letter_event"], serde_json::json!(copy.id));
    }

    #[test]
    fn a_missing_topic_gets_nothing_and_the_system_topic_never_announces_its_own() {
        let mut with_dlq = spec("s1", "orders");
        with_dlq.dead_letter_topic = Some("gone".into());
        let only_system = |topic: &str| topic == SYSTEM_TOPIC;
        let effects = FailureEffects::plan(
            &failed("s1"),
            &event("e1", "t"),
            &with_dlq,
            only_system,
            t0(),
        );
        assert!(effects.dead_letter.is_none());
        assert!(effects.notice.is_some());

        let operator = spec("ops", SYSTEM_TOPIC);
        let effects =
            FailureEffects::plan(&failed("ops"), &event("e1", "t"), &operator, |_| true, t0());
        assert!(effects.dead_letter.is_none() && effects.notice.is_none());

        let mut delivered = failed("s1");
        delivered.failure_reason = None;
        delivered.state = DeliveryState::Delivered;
        let effects =
            FailureEffects::plan(&delivered, &event("e1", "t"), &with_dlq, |_| true, t0());
        assert!(effects.dead_letter.is_none() && effects.notice.is_none());
    }

    #[test]
    fn each_decision_writes_its_state_and_the_attempt_counts_in_the_minute_it_ended() {
        let completion = |decision| Completion {
            delivery_id: "d1".into(),
            subscription: "s1".into(),
            attempt: redrive_core::Attempt {
                number: 2,
                kind: redrive_core::AttemptKind::Push,
                started_at: t0(),
                duration_ms: 61_000,
                status: Some(503),
                error: None,
                error_message: None,
                response_snippet: None,
                decision,
            },
        };
        let retry_at = t0() + jiff::SignedDuration::from_secs(600);
        let retry = completion(Decision::Retry {
            at: retry_at,
            retry: 1,
        });
        let row = CompletionRow::plan(&retry).unwrap();
        assert_eq!(row.state, DeliveryState::Scheduled);
        assert_eq!(row.next_attempt_at, Some(retry_at.as_millisecond()));
        assert_eq!(
            (row.failure_reason, row.succeeded, row.failed),
            (None, false, false)
        );
        assert_eq!(row.ended_at, t0().as_millisecond() + 61_000);
        assert_eq!(row.bucket, health_bucket(t0().as_millisecond() + 61_000));

        let failed = completion(Decision::Failed {
            reason: FailureReason::NonRetryable,
        });
        let row = CompletionRow::plan(&failed).unwrap();
        assert_eq!(row.state, DeliveryState::Failed);
        assert_eq!(row.failure_reason, Some("non_retryable"));
        assert!(row.failed && !row.succeeded);

        let delivered = completion(Decision::Delivered);
        let delivered = CompletionRow::plan(&delivered).unwrap();
        assert_eq!(delivered.state, DeliveryState::Delivered);
        assert!(delivered.succeeded && delivered.next_attempt_at.is_none());
    }
}

//! The nouns of redrive: topics, subscriptions, deliveries and attempts.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::duration::HumanDuration;
use crate::filter::Filter;
use crate::health::{HealthPolicy, SubscriptionStatus};
use crate::rate::MAX_BUCKET_SIZE;
use crate::retry::classify::ErrorClass;
use crate::retry::decision::{Decision, FailureReason};
use crate::retry::policy::RetryPolicy;

/// Default time an endpoint has to answer one push.
pub const DEFAULT_TIMEOUT_SECS: u64 = 30;
/// Default number of pushes to one subscription in flight at once.
pub const DEFAULT_MAX_CONCURRENCY: u32 = 64;
/// How much of an endpoint's answer is kept with each attempt.
pub const RESPONSE_SNIPPET_BYTES: usize = 4096;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Topic {
    pub name: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

/// What a user declares about a subscription; the store adds timestamps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionSpec {
    pub name: String,
    pub topic: String,
    /// The push endpoint (http or https URL).
    pub endpoint: String,
    #[serde(default)]
    pub filter: Filter,
    #[serde(default)]
    pub retry_policy: RetryPolicy,
    /// How long one push may take before it counts as a timeout.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// Pushes in flight at once (App Engine's `max_concurrent_requests`).
    #[serde(default = "default_max_concurrency", alias = "max_concurrent_requests")]
    pub max_concurrency: u32,
    /// Topic that receives a copy of every event this subscription fails
    /// to deliver, whatever the reason. It must exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_topic: Option<String>,
    /// Most attempts of one delivery (5–100), a limit alongside the retry
    /// policy; 5 when a dead-letter topic is set and this is not (Pub/Sub).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_delivery_attempts: Option<u32>,
    /// How long after publish an undelivered event is still tried
    /// (10m–31d, default 7d); then its delivery fails as `retention_expired`.
    #[serde(default = "default_message_retention")]
    pub message_retention: HumanDuration,
    // --- dialects: rate limit and wire format ---
    /// Pushes per second, minute, hour or day (`"5/s"`, `"1/m"`,
    /// `"2000/d"`); `0` pauses the subscription. Unset: no rate limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "5/s")]
    pub rate: Option<crate::rate::Rate>,
    /// How many pushes may go at once after a quiet spell (the burst);
    /// 5 when a rate is set without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_size: Option<u32>,
    #[serde(
        default,
        skip_serializing_if = "crate::dialect::HeadersProfile::is_default"
    )]
    pub headers_profile: crate::dialect::HeadersProfile,
    #[serde(
        default,
        skip_serializing_if = "crate::dialect::PayloadFormat::is_default"
    )]
    pub payload_format: crate::dialect::PayloadFormat,
    /// When the endpoint counts as unstable or is disabled.
    #[serde(default)]
    pub health_policy: HealthPolicy,
    /// Pub/Sub's push backoff: after failures the subscription's pushes
    /// slow down and pause (100 ms doubling to 60 s per consecutive
    /// failure), so retries may start later than the retry policy says.
    /// Off: every attempt starts when the policy says. Presets `pubsub` and
    /// `eventarc` turn it on; always written out, so a stored subscription
    /// keeps the choice whatever its preset brings.
    #[serde(default)]
    pub push_backoff: bool,
}

impl SubscriptionSpec {
    /// A subscription of `topic` pushing to `endpoint`, every other field as
    /// a request or config file that leaves it out gets it: each default is
    /// the one serde fills in (the test below holds the two together).
    pub fn new(
        name: impl Into<String>,
        topic: impl Into<String>,
        endpoint: impl Into<String>,
    ) -> SubscriptionSpec {
        SubscriptionSpec {
            name: name.into(),
            topic: topic.into(),
            endpoint: endpoint.into(),
            filter: Filter::default(),
            retry_policy: RetryPolicy::default(),
            timeout: default_timeout(),
            max_concurrency: default_max_concurrency(),
            dead_letter_topic: None,
            max_delivery_attempts: None,
            message_retention: default_message_retention(),
            rate: None,
            bucket_size: None,
            headers_profile: crate::dialect::HeadersProfile::default(),
            payload_format: crate::dialect::PayloadFormat::default(),
            health_policy: HealthPolicy::default(),
            push_backoff: false,
        }
    }

    /// A spec as a store keeps it (JSON this program wrote): fields a newer
    /// version added are dropped rather than refused, so nodes of two
    /// versions can share a database during an upgrade.
    pub fn from_stored(text: &str) -> Result<SubscriptionSpec, serde_json::Error> {
        let value = serde_json::from_str(text)?;
        crate::strict::from_stored(value).map(|(spec, _dropped)| spec)
    }
}

fn default_timeout() -> HumanDuration {
    HumanDuration::from_secs(DEFAULT_TIMEOUT_SECS)
}

fn default_max_concurrency() -> u32 {
    DEFAULT_MAX_CONCURRENCY
}

/// The values in force for the settings a subscription may leave out: what
/// governs its pushes, whether written or defaulted. Read-only: the API
/// answers carry it beside the subscription's own fields, which keep what
/// was written, so an answer sent back changes nothing and a default that
/// changes later still applies to those who left it out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EffectiveSettings {
    pub timeout: HumanDuration,
    pub max_concurrency: u32,
    pub message_retention: HumanDuration,
    /// The burst of the rate limit: `bucket_size`, else 5; `null` without a
    /// rate.
    pub bucket_size: Option<u32>,
    /// `max_delivery_attempts`, else 5 with a dead-letter topic; `null`:
    /// only the retry policy limits attempts.
    pub max_delivery_attempts: Option<u32>,
    pub headers_profile: crate::dialect::HeadersProfile,
    pub payload_format: crate::dialect::PayloadFormat,
    pub push_backoff: bool,
}

impl SubscriptionSpec {
    /// The values in force for the settings that have defaults.
    pub fn effective(&self) -> EffectiveSettings {
        EffectiveSettings {
            timeout: self.timeout,
            max_concurrency: self.max_concurrency,
            message_retention: self.message_retention,
            bucket_size: self.rate.map(|_| self.effective_bucket_size()),
            max_delivery_attempts: self.effective_max_delivery_attempts(),
            headers_profile: self.headers_profile,
            payload_format: self.payload_format,
            push_backoff: self.push_backoff,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Subscription {
    #[serde(flatten)]
    pub spec: SubscriptionSpec,
    /// Endpoint health and whether it is paused.
    #[serde(flatten)]
    pub status: SubscriptionStatus,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

impl Subscription {
    /// The fields a subscription's answer carries beyond its spec: set by
    /// the server, never by a request. A request may carry them back (so
    /// what a GET returns can be sent again); see [`split_read_only`].
    pub const READ_ONLY_FIELDS: &'static [&'static str] = &[
        "health",
        "health_reason",
        "health_changed_at",
        "paused",
        "created_at",
        "updated_at",
    ];

    /// What the API adds to a subscription when it answers, computed then
    /// (`pushes_held`, `effective`): output only, ignored when sent back.
    pub const ANSWER_ONLY_FIELDS: &'static [&'static str] = &["pushes_held", "effective"];
}

/// Takes the read-only fields ([`Subscription::READ_ONLY_FIELDS`] and
/// [`Subscription::ANSWER_ONLY_FIELDS`]) out of a subscription written as
/// JSON, returning them.
pub fn split_read_only(
    subscription: &mut serde_json::Value,
) -> serde_json::Map<String, serde_json::Value> {
    let mut taken = serde_json::Map::new();
    if let Some(fields) = subscription.as_object_mut() {
        let read_only = Subscription::READ_ONLY_FIELDS.iter();
        for field in read_only.chain(Subscription::ANSWER_ONLY_FIELDS) {
            if let Some(value) = fields.remove(*field) {
                taken.insert((*field).to_owned(), value);
            }
        }
    }
    taken
}

/// Where a delivery is in its life.
///
/// `scheduled → in_flight → delivered`, or `in_flight → scheduled` (a retry),
/// ending `delivered` or `failed` (with a [`FailureReason`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Scheduled,
    InFlight,
    Delivered,
    Failed,
}

impl DeliveryState {
    pub const ALL: [DeliveryState; 4] = [
        DeliveryState::Scheduled,
        DeliveryState::InFlight,
        DeliveryState::Delivered,
        DeliveryState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Scheduled => "scheduled",
            DeliveryState::InFlight => "in_flight",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<DeliveryState> {
        DeliveryState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
    }
}

/// One event on its way to one subscription.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Delivery {
    /// Stable across retries: endpoints receive it as `webhook-id`.
    pub id: String,
    pub subscription: String,
    pub event_id: String,
    pub event_source: String,
    pub event_type: String,
    pub state: DeliveryState,
    /// Attempts started so far.
    pub attempts: u32,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_attempt_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub first_attempt_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_attempt_at: Option<Timestamp>,
    pub last_status: Option<u16>,
    pub last_error: Option<ErrorClass>,
    pub failure_reason: Option<FailureReason>,
    /// The id of the copy of the event published to the dead-letter topic
    /// when this delivery failed.
    pub dead_letter_event: Option<String>,
    /// Attempts made before the last redrive: the attempt budget (retry
    /// numbers, `max_delivery_attempts`) counts from here.
    pub attempts_before_redrive: u32,
    /// When the last redrive (or retry of an ended delivery) gave it a
    /// fresh budget: the age limit and retention count from here, while
    /// `first_attempt_at` keeps the very first attempt.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub redriven_at: Option<Timestamp>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

/// What an entry of a delivery's attempt log records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttemptKind {
    /// An HTTP try of the delivery.
    #[default]
    Push,
    /// The delivery was cancelled: no request was sent, and `number` is
    /// the attempt it came after (0 when there was none).
    Cancel,
}

/// One entry of a delivery's attempt log: an HTTP try and what was decided
/// after it, or a cancel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Attempt {
    /// 1 for the first attempt, 2 for the first retry, …
    pub number: u32,
    #[serde(default)]
    pub kind: AttemptKind,
    #[schema(value_type = String, format = DateTime)]
    pub started_at: Timestamp,
    pub duration_ms: u64,
    pub status: Option<u16>,
    pub error: Option<ErrorClass>,
    /// A human-readable detail of the error, when there was one.
    pub error_message: Option<String>,
    /// The first bytes of the endpoint's answer (lossy UTF-8).
    pub response_snippet: Option<String>,
    pub decision: Decision,
}

/// `message_retention` when none is set, as in Pub/Sub.
pub const DEFAULT_MESSAGE_RETENTION: std::time::Duration =
    std::time::Duration::from_secs(7 * 24 * 3600);

pub fn default_message_retention() -> HumanDuration {
    HumanDuration(DEFAULT_MESSAGE_RETENTION)
}

impl SubscriptionSpec {
    /// The bucket size in force when a rate is set.
    pub fn effective_bucket_size(&self) -> u32 {
        self.bucket_size
            .unwrap_or(crate::rate::DEFAULT_BUCKET_SIZE)
            .max(1)
    }

    /// Checks the rate limit settings.
    pub fn validate_push(&self) -> Result<(), crate::dialect::PushSettingsError> {
        if let Some(size) = self.bucket_size
            && !(1..=MAX_BUCKET_SIZE).contains(&size)
        {
            return Err(crate::dialect::PushSettingsError {
                field: "bucket_size",
                message: format!("must be between 1 and {MAX_BUCKET_SIZE}, got {size}"),
            });
        }
        if self.bucket_size.is_some() && self.rate.is_none() {
            return Err(crate::dialect::PushSettingsError {
                field: "bucket_size",
                message: "only applies with a rate; set rate too, e.g. \"5/s\"".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn spec(extra: serde_json::Value) -> SubscriptionSpec {
        let mut spec = json!({"name": "s", "topic": "t", "endpoint": "http://127.0.0.1/"});
        if let (Some(spec), serde_json::Value::Object(extra)) = (spec.as_object_mut(), extra) {
            spec.extend(extra);
        }
        serde_json::from_value(spec).unwrap()
    }

    #[test]
    fn new_gives_every_field_the_default_a_request_leaving_it_out_gets() {
        let built = SubscriptionSpec::new("s", "t", "http://127.0.0.1/");
        assert_eq!(built, spec(json!({})));
    }

    #[test]
    fn effective_settings_fill_in_what_applies_when_left_out() {
        let bare = serde_json::to_value(spec(json!({})).effective()).unwrap();
        assert_eq!(
            bare,
            json!({
                "timeout": "30s", "max_concurrency": 64, "message_retention": "604800s",
                "bucket_size": null, "max_delivery_attempts": null,
                "headers_profile": "standard", "payload_format": "cloudevents-binary",
                "push_backoff": false
            })
        );
        let set = spec(json!({"rate": "5/s", "dead_letter_topic": "dead"})).effective();
        assert_eq!(set.bucket_size, Some(5));
        assert_eq!(set.max_delivery_attempts, Some(5));
        let written = spec(json!({
            "rate": "5/s", "bucket_size": 2, "dead_letter_topic": "dead",
            "max_delivery_attempts": 9, "payload_format": "pubsub-push"
        }))
        .effective();
        assert_eq!(written.bucket_size, Some(2));
        assert_eq!(written.max_delivery_attempts, Some(9));
        assert_eq!(
            written.payload_format,
            crate::dialect::PayloadFormat::PubsubPush
        );
    }

    #[test]
    fn a_subscription_answer_is_its_spec_and_read_only_fields_only() {
        let spec: SubscriptionSpec = serde_json::from_value(serde_json::json!({
            "name": "s", "topic": "t", "endpoint": "http://127.0.0.1/",
            "dead_letter_topic": "d", "rate": "1/s"
        }))
        .unwrap();
        let mut status = SubscriptionStatus::new(Timestamp::UNIX_EPOCH);
        status.health_reason = Some("why".into());
        let subscription = Subscription {
            spec: spec.clone(),
            status,
            created_at: Timestamp::UNIX_EPOCH,
            updated_at: Timestamp::UNIX_EPOCH,
        };
        let mut answer = serde_json::to_value(&subscription).unwrap();
        let taken = split_read_only(&mut answer);
        let mut taken: Vec<&str> = taken.keys().map(String::as_str).collect();
        taken.sort_unstable();
        let mut expected = Subscription::READ_ONLY_FIELDS.to_vec();
        expected.sort_unstable();
        assert_eq!(taken, expected);
        // What is left reads strictly as the spec it came from.
        let back: SubscriptionSpec = crate::strict::from_value(answer).unwrap();
        assert_eq!(back, spec);
    }
}

//! How a subscription's pushes look and how fast they go, in the dialect of
//! the system its endpoint was written for: a rate limit with a burst
//! bucket, App Engine's task headers, CloudEvents structured mode or
//! Pub/Sub's push envelope.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

use crate::event::CloudEvent;

/// Extra request headers a subscription's pushes carry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HeadersProfile {
    /// redrive's own headers only.
    #[default]
    Standard,
    /// Also App Engine's `X-AppEngine-QueueName`, `-TaskName`,
    /// `-TaskRetryCount`, `-TaskExecutionCount` and `-TaskETA`.
    Appengine,
}

/// What the endpoint receives as the request body.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PayloadFormat {
    /// The data as the body, attributes as `ce-*` headers.
    #[default]
    CloudeventsBinary,
    /// The whole event as `application/cloudevents+json`.
    CloudeventsStructured,
    /// Pub/Sub's push envelope: `{"message": {"data": base64, "attributes",
    /// "messageId", "publishTime"}, "subscription", "deliveryAttempt"}`.
    PubsubPush,
}

impl PayloadFormat {
    pub fn is_default(&self) -> bool {
        *self == PayloadFormat::default()
    }
}

impl HeadersProfile {
    pub fn is_default(&self) -> bool {
        *self == HeadersProfile::default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct PushSettingsError {
    pub field: &'static str,
    pub message: String,
}

/// What one push of a delivery needs to know beyond the event.
#[derive(Clone, Copy, Debug)]
pub struct PushContext<'a> {
    pub subscription: &'a str,
    pub delivery_id: &'a str,
    /// 1 on the first attempt.
    pub attempt: u32,
    /// When the delivery was due (App Engine's ETA).
    pub due_at: Timestamp,
    /// When the event was accepted.
    pub published_at: Timestamp,
}

/// App Engine's task request headers. Every earlier attempt counts as an
/// execution: redrive does not tell apart attempts that never reached the
/// handler, so both counts are the number of earlier attempts.
pub fn appengine_headers(ctx: &PushContext<'_>) -> Vec<(String, String)> {
    let earlier = ctx.attempt.saturating_sub(1).to_string();
    // App Engine writes the ETA as seconds since the epoch with microseconds.
    let micros = ctx.due_at.as_microsecond();
    let eta = format!(
        "{}.{:06}",
        micros.div_euclid(1_000_000),
        micros.rem_euclid(1_000_000)
    );
    vec![
        ("X-AppEngine-QueueName".into(), ctx.subscription.into()),
        ("X-AppEngine-TaskName".into(), ctx.delivery_id.into()),
        ("X-AppEngine-TaskRetryCount".into(), earlier.clone()),
        ("X-AppEngine-TaskExecutionCount".into(), earlier),
        ("X-AppEngine-TaskETA".into(), eta),
    ]
}

/// Pub/Sub's push request body for `event`.
///
/// `attributes` holds the event's extensions under their own names (what a
/// Pub/Sub publisher set) and its context attributes as `ce-id`,
/// `ce-source`, `ce-type`, `ce-specversion`, `ce-time`, `ce-subject`,
/// `ce-datacontenttype`, `ce-dataschema`, as in the CloudEvents Pub/Sub
/// binding.
pub fn pubsub_push_body(event: &CloudEvent, ctx: &PushContext<'_>) -> Vec<u8> {
    let mut attributes = Map::new();
    for (name, value) in event.emitted_extensions() {
        let text = match value {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        attributes.insert(name.clone(), Value::String(text));
    }
    let context = [
        ("ce-id", Some(&event.id)),
        ("ce-source", Some(&event.source)),
        ("ce-type", Some(&event.ty)),
        ("ce-specversion", Some(&event.specversion)),
        ("ce-time", event.time.as_ref()),
        ("ce-subject", event.subject.as_ref()),
        ("ce-datacontenttype", event.datacontenttype.as_ref()),
        ("ce-dataschema", event.dataschema.as_ref()),
    ];
    for (name, value) in context {
        if let Some(value) = value {
            attributes.insert(name.into(), Value::String(value.clone()));
        }
    }
    let data = BASE64.encode(event.data.as_deref().unwrap_or_default());
    let publish_time = ctx.published_at.to_string();
    // Pub/Sub sends both spellings of the id and time; handlers use either.
    json!({
        "message": {
            "data": data,
            "attributes": attributes,
            "messageId": event.id,
            "message_id": event.id,
            "publishTime": publish_time,
            "publish_time": publish_time,
        },
        "subscription": format!("projects/redrive/subscriptions/{}", ctx.subscription),
        "deliveryAttempt": ctx.attempt,
    })
    .to_string()
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SubscriptionSpec;

    fn ctx(attempt: u32) -> PushContext<'static> {
        PushContext {
            subscription: "emails",
            delivery_id: "d-1",
            attempt,
            due_at: "2024-05-01T12:00:00.25Z".parse().unwrap(),
            published_at: "2024-05-01T11:59:59Z".parse().unwrap(),
        }
    }

    #[test]
    fn appengine_headers_count_earlier_attempts_from_zero() {
        let headers = appengine_headers(&ctx(1));
        let get = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("X-AppEngine-QueueName"), Some("emails"));
        assert_eq!(get("X-AppEngine-TaskName"), Some("d-1"));
        assert_eq!(get("X-AppEngine-TaskRetryCount"), Some("0"));
        assert_eq!(get("X-AppEngine-TaskExecutionCount"), Some("0"));
        assert_eq!(get("X-AppEngine-TaskETA"), Some("1714564800.250000"));
        let third = appengine_headers(&ctx(3));
        assert!(third.contains(&("X-AppEngine-TaskRetryCount".into(), "2".into())));
    }

    #[test]
    fn pubsub_envelope_carries_base64_data_attributes_and_attempt() {
        let mut event: CloudEvent = serde_json::from_value(json!({
            "id": "m-1", "source": "/shop", "type": "order.created", "specversion": "1.0",
            "extensions": {"origin": "eu"}
        }))
        .unwrap();
        event.data = Some(b"{\"total\":42}".to_vec());
        let body: Value = serde_json::from_slice(&pubsub_push_body(&event, &ctx(2))).unwrap();
        assert_eq!(body["message"]["data"], "eyJ0b3RhbCI6NDJ9");
        assert_eq!(body["message"]["messageId"], "m-1");
        assert_eq!(body["message"]["publishTime"], "2024-05-01T11:59:59Z");
        assert_eq!(body["message"]["attributes"]["origin"], "eu");
        assert_eq!(body["message"]["attributes"]["ce-type"], "order.created");
        assert!(body["message"]["attributes"].get("ce-dataschema").is_none());
        assert_eq!(body["deliveryAttempt"], 2);

        // Every context attribute the event has travels, dataschema too.
        event.subject = Some("order/42".into());
        event.time = Some("2024-05-01T11:59:58Z".into());
        event.datacontenttype = Some("application/json".into());
        event.dataschema = Some("https://example.com/order.json".into());
        let body: Value = serde_json::from_slice(&pubsub_push_body(&event, &ctx(1))).unwrap();
        let attributes = &body["message"]["attributes"];
        assert_eq!(attributes["ce-subject"], "order/42");
        assert_eq!(attributes["ce-time"], "2024-05-01T11:59:58Z");
        assert_eq!(attributes["ce-datacontenttype"], "application/json");
        assert_eq!(
            attributes["ce-dataschema"],
            "https://example.com/order.json"
        );
        assert_eq!(
            body["subscription"],
            "projects/redrive/subscriptions/emails"
        );
    }

    fn spec(extra: Value) -> SubscriptionSpec {
        let mut spec = json!({"name": "s", "topic": "t", "endpoint": "http://127.0.0.1/"});
        if let (Some(spec), Value::Object(extra)) = (spec.as_object_mut(), extra) {
            spec.extend(extra);
        }
        serde_json::from_value(spec).unwrap()
    }

    #[test]
    fn settings_read_from_json_with_defaults() {
        let settings = spec(json!({
            "rate": "20/s", "bucket_size": 5, "payload_format": "pubsub-push",
            "headers_profile": "appengine"
        }));
        assert_eq!(settings.validate_push(), Ok(()));
        assert_eq!(settings.payload_format, PayloadFormat::PubsubPush);
        assert_eq!(settings.headers_profile, HeadersProfile::Appengine);
        let default = spec(json!({}));
        assert_eq!(default.rate, None);
        assert_eq!(default.payload_format, PayloadFormat::CloudeventsBinary);
        let written = serde_json::to_value(&default).unwrap();
        for key in ["rate", "bucket_size", "payload_format", "headers_profile"] {
            assert!(written.get(key).is_none(), "{key}: {written}");
        }
    }

    #[test]
    fn bucket_size_needs_a_rate_and_a_sane_size() {
        let bare = spec(json!({"bucket_size": 5}));
        assert_eq!(bare.validate_push().unwrap_err().field, "bucket_size");
        let huge = spec(json!({"rate": "1/s", "bucket_size": 501}));
        assert_eq!(huge.validate_push().unwrap_err().field, "bucket_size");
        assert_eq!(huge.effective_bucket_size(), 501);
        assert_eq!(spec(json!({"rate": "1/s"})).effective_bucket_size(), 5);
    }
}

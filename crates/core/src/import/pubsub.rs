//! Pub/Sub push subscriptions, as the Pub/Sub REST API returns them (one
//! subscription, or `{"subscriptions": [...]}` from a list call), become a
//! subscription of the same short name with Pub/Sub's push envelope, and
//! the topics it needs.

use std::time::Duration;

use serde::Deserialize;

use super::{ImportError, Imported};
use crate::config::TopicDecl;
use crate::dialect::PayloadFormat;
use crate::duration::{HumanDuration, parse_duration};
use crate::filter::Filter;
use crate::lifecycle::{
    MAX_DELIVERY_ATTEMPTS, MAX_MESSAGE_RETENTION, MIN_DELIVERY_ATTEMPTS, default_message_retention,
};
use crate::model::SubscriptionSpec;
use crate::retry::policy::Backoff;

/// Pub/Sub's limits, checked as Pub/Sub checks them.
const MAX_BACKOFF: Duration = Duration::from_secs(600);
const MIN_RETENTION: Duration = Duration::from_secs(600);
const PUBSUB_MAX_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
const ACK_DEADLINE: std::ops::RangeInclusive<u64> = 10..=600;
const DEFAULT_ACK_DEADLINE_SECS: u64 = 10;

#[derive(Deserialize)]
#[serde(untagged)]
enum File {
    List {
        subscriptions: Vec<PubsubSubscription>,
    },
    One(Box<PubsubSubscription>),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PubsubSubscription {
    name: String,
    topic: String,
    push_config: Option<PushConfig>,
    ack_deadline_seconds: Option<u64>,
    retry_policy: Option<RetryPolicy>,
    dead_letter_policy: Option<DeadLetterPolicy>,
    message_retention_duration: Option<String>,
    filter: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PushConfig {
    push_endpoint: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RetryPolicy {
    minimum_backoff: Option<String>,
    maximum_backoff: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeadLetterPolicy {
    dead_letter_topic: Option<String>,
    max_delivery_attempts: Option<u32>,
}

/// The last segment of `projects/P/topics/NAME`.
fn short_name(full: &str) -> &str {
    full.rsplit('/').next().unwrap_or(full)
}

pub fn import(content: &str) -> Result<Imported, ImportError> {
    let file: File = serde_json::from_str(content)
        .map_err(|err| ImportError(format!("invalid Pub/Sub subscription JSON: {err}")))?;
    let subscriptions = match file {
        File::List { subscriptions } => subscriptions,
        File::One(one) => vec![*one],
    };
    if subscriptions.is_empty() {
        return Err(ImportError("the file lists no subscription".into()));
    }
    let mut imported = Imported::default();
    for subscription in subscriptions {
        let name = short_name(&subscription.name).to_owned();
        let spec = convert(&subscription, &mut imported.notes)
            .map_err(|message| ImportError(format!("subscription {name:?}: {message}")))?;
        for topic in std::iter::once(&spec.topic).chain(spec.dead_letter_topic.as_ref()) {
            if !imported.desired.topics.iter().any(|t| &t.name == topic) {
                imported.desired.topics.push(TopicDecl {
                    name: topic.clone(),
                });
            }
        }
        if imported
            .desired
            .subscriptions
            .iter()
            .any(|s| s.name == spec.name)
        {
            return Err(ImportError(format!(
                "subscription {name:?} is listed twice"
            )));
        }
        imported.desired.subscriptions.push(spec);
    }
    Ok(imported)
}

fn duration(field: &str, text: &str) -> Result<Duration, String> {
    parse_duration(text).map_err(|err| format!("{field}: {err}"))
}

fn convert(sub: &PubsubSubscription, notes: &mut Vec<String>) -> Result<SubscriptionSpec, String> {
    let name = short_name(&sub.name).to_owned();
    let endpoint = sub
        .push_config
        .as_ref()
        .and_then(|push| push.push_endpoint.clone())
        .ok_or("it has no pushConfig.pushEndpoint: only push subscriptions can be imported")?;
    let ack_deadline = sub
        .ack_deadline_seconds
        .unwrap_or(DEFAULT_ACK_DEADLINE_SECS);
    if !ACK_DEADLINE.contains(&ack_deadline) {
        return Err(format!(
            "ackDeadlineSeconds must be between 10 and 600, got {ack_deadline}"
        ));
    }
    let preset = crate::retry::presets::preset("pubsub").map_err(|err| err.to_string())?;
    let mut retry_policy = preset.policy();
    if let Some(policy) = &sub.retry_policy {
        let min = match &policy.minimum_backoff {
            Some(text) => duration("retryPolicy.minimumBackoff", text)?,
            None => Duration::from_secs(10),
        };
        let max = match &policy.maximum_backoff {
            Some(text) => duration("retryPolicy.maximumBackoff", text)?,
            None => MAX_BACKOFF,
        };
        for (field, value) in [("minimumBackoff", min), ("maximumBackoff", max)] {
            if value > MAX_BACKOFF {
                return Err(format!(
                    "retryPolicy.{field} must be between 0s and 600s, got {}",
                    HumanDuration(value)
                ));
            }
        }
        if min > max {
            return Err(format!(
                "retryPolicy.minimumBackoff ({}) is greater than maximumBackoff ({})",
                HumanDuration(min),
                HumanDuration(max)
            ));
        }
        retry_policy.backoff = if max.is_zero() {
            Backoff::Immediate
        } else {
            // A zero minimum would never grow; Pub/Sub's own floor is
            // about 100ms.
            let min = min.max(Duration::from_millis(100)).min(max);
            Backoff::Exponential {
                min_backoff: HumanDuration(min),
                max_backoff: HumanDuration(max),
                max_doublings: 16,
            }
        };
    }
    let (dead_letter_topic, max_delivery_attempts) = match &sub.dead_letter_policy {
        Some(policy) => {
            let attempts = policy
                .max_delivery_attempts
                .unwrap_or(MIN_DELIVERY_ATTEMPTS);
            if !(MIN_DELIVERY_ATTEMPTS..=MAX_DELIVERY_ATTEMPTS).contains(&attempts) {
                return Err(format!(
                    "deadLetterPolicy.maxDeliveryAttempts must be between \
                     {MIN_DELIVERY_ATTEMPTS} and {MAX_DELIVERY_ATTEMPTS}, got {attempts}"
                ));
            }
            let topic = policy
                .dead_letter_topic
                .as_deref()
                .map(|t| short_name(t).to_owned());
            (topic, Some(attempts))
        }
        None => (None, None),
    };
    let message_retention = match &sub.message_retention_duration {
        Some(text) => {
            let retention = duration("messageRetentionDuration", text)?;
            if !(MIN_RETENTION..=PUBSUB_MAX_RETENTION).contains(&retention) {
                return Err(format!(
                    "messageRetentionDuration must be between 10m and 7d, got {}",
                    HumanDuration(retention)
                ));
            }
            HumanDuration(retention.min(MAX_MESSAGE_RETENTION))
        }
        None => default_message_retention(),
    };
    let filter = match sub.filter.as_deref().map(str::trim) {
        None | Some("") => Filter::default(),
        Some(text) => filter(text)?,
    };
    if sub.retry_policy.is_none() {
        notes.push(format!(
            "subscription {name:?} has no retryPolicy: it gets Pub/Sub's exponential 10s to 600s"
        ));
    }
    Ok(SubscriptionSpec {
        filter,
        retry_policy,
        timeout: HumanDuration::from_secs(ack_deadline),
        dead_letter_topic,
        max_delivery_attempts,
        message_retention,
        payload_format: PayloadFormat::PubsubPush,
        // Pub/Sub slows a failing push subscription down; so does the import.
        push_backoff: preset.push_backoff,
        ..SubscriptionSpec::new(name, short_name(&sub.topic), endpoint)
    })
}

/// `attributes.KEY = "VALUE"` where KEY is an attribute redrive filters on
/// (`type`, `source`, `subject`, also with a `ce-` prefix).
fn filter(text: &str) -> Result<Filter, String> {
    let refuse = || {
        format!(
            "filter {text:?} can't be imported: only a plain equality on the type, source \
             or subject attribute can, as in attributes.type = \"order.created\""
        )
    };
    let (left, right) = text.split_once('=').ok_or_else(refuse)?;
    let key = left
        .trim()
        .strip_prefix("attributes.")
        .ok_or_else(refuse)?
        .trim();
    let right = right.trim();
    let value = right
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .filter(|v| !v.contains('"') && !v.contains('\\') && !v.is_empty())
        .ok_or_else(refuse)?;
    // A `*` would read as a prefix match in redrive's filters.
    if value.ends_with('*') {
        return Err(refuse());
    }
    let mut filter = Filter::default();
    match key.strip_prefix("ce-").unwrap_or(key) {
        "type" => filter.ty = Some(value.to_owned()),
        "source" => filter.source = Some(value.to_owned()),
        "subject" => filter.subject = Some(value.to_owned()),
        _ => return Err(refuse()),
    }
    Ok(filter)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"{
      "name": "projects/shop/subscriptions/orders-push",
      "topic": "projects/shop/topics/orders",
      "pushConfig": {"pushEndpoint": "https://orders.example.com/push", "attributes": {}},
      "ackDeadlineSeconds": 30,
      "retryPolicy": {"minimumBackoff": "5s", "maximumBackoff": "120s"},
      "deadLetterPolicy": {"deadLetterTopic": "projects/shop/topics/orders-dead", "maxDeliveryAttempts": 7},
      "messageRetentionDuration": "86400s",
      "filter": "attributes.type = \"order.created\""
    }"#;

    #[test]
    fn a_push_subscription_maps_every_field() {
        let imported = import(FULL).unwrap();
        let names: Vec<&str> = imported
            .desired
            .topics
            .iter()
            .map(|t| t.name.as_str())
            .collect();
        assert_eq!(names, ["orders", "orders-dead"]);
        let spec = &imported.desired.subscriptions[0];
        assert_eq!(spec.name, "orders-push");
        assert_eq!(spec.topic, "orders");
        assert_eq!(spec.endpoint, "https://orders.example.com/push");
        assert_eq!(spec.timeout, HumanDuration::from_secs(30));
        assert_eq!(spec.dead_letter_topic.as_deref(), Some("orders-dead"));
        assert_eq!(spec.max_delivery_attempts, Some(7));
        assert_eq!(spec.message_retention, HumanDuration::from_secs(86_400));
        assert_eq!(spec.filter.ty.as_deref(), Some("order.created"));
        assert_eq!(spec.payload_format, PayloadFormat::PubsubPush);
        let delays: Vec<u64> = spec
            .retry_policy
            .explain(7)
            .iter()
            .map(|r| r.delay.as_secs())
            .collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 120, 120]);
        assert!(spec.retry_policy.success_codes_only);
        // A Pub/Sub push subscription slows down on failures: so does this.
        assert!(spec.push_backoff);
        assert!(imported.notes.is_empty());
    }

    #[test]
    fn a_list_with_defaults_reads_too() {
        let list = r#"{"subscriptions": [
            {"name": "projects/p/subscriptions/a", "topic": "projects/p/topics/t",
             "pushConfig": {"pushEndpoint": "http://127.0.0.1:1/a"}},
            {"name": "projects/p/subscriptions/b", "topic": "projects/p/topics/t",
             "pushConfig": {"pushEndpoint": "http://127.0.0.1:1/b"}}
        ]}"#;
        let imported = import(list).unwrap();
        assert_eq!(imported.desired.topics.len(), 1);
        let a = &imported.desired.subscriptions[0];
        assert_eq!(a.timeout, HumanDuration::from_secs(10));
        assert_eq!(a.retry_policy.delay_for_retry(1), Duration::from_secs(10));
        assert_eq!(a.retry_policy.delay_for_retry(9), Duration::from_secs(600));
        assert!(
            imported
                .desired
                .subscriptions
                .iter()
                .all(|s| s.push_backoff)
        );
        assert_eq!(imported.notes.len(), 2);
    }

    fn error(change: (&str, &str)) -> String {
        import(&FULL.replace(change.0, change.1))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn out_of_range_settings_are_refused_as_pubsub_would() {
        for (change, needle) in [
            (
                ("\"120s\"", "\"601s\""),
                "maximumBackoff must be between 0s and 600s",
            ),
            (
                ("\"5s\"", "\"300s\""),
                "minimumBackoff (300s) is greater than maximumBackoff (120s)",
            ),
            (
                ("\"maxDeliveryAttempts\": 7", "\"maxDeliveryAttempts\": 4"),
                "between 5 and 100",
            ),
            (
                ("\"maxDeliveryAttempts\": 7", "\"maxDeliveryAttempts\": 101"),
                "between 5 and 100",
            ),
            (("\"86400s\"", "\"300s\""), "between 10m and 7d"),
            (("\"86400s\"", "\"691200s\""), "between 10m and 7d"),
            (
                ("\"ackDeadlineSeconds\": 30", "\"ackDeadlineSeconds\": 601"),
                "ackDeadlineSeconds",
            ),
            (
                ("attributes.type = ", "attributes.region = "),
                "can't be imported",
            ),
            (
                ("attributes.type = ", "hasPrefix(attributes.type, "),
                "can't be imported",
            ),
            (
                (
                    "\"pushEndpoint\": \"https://orders.example.com/push\", ",
                    "",
                ),
                "only push subscriptions",
            ),
        ] {
            let message = error(change);
            assert!(message.contains(needle), "{change:?}: {message}");
            assert!(
                message.starts_with("subscription \"orders-push\""),
                "{message}"
            );
        }
        assert!(
            import("{")
                .unwrap_err()
                .to_string()
                .contains("invalid Pub/Sub")
        );
    }
}

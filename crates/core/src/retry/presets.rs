//! Retry presets: each reproduces the documented defaults of a system
//! redrive's users come from, so `{"preset": "pubsub"}` behaves as the
//! subscription they had.
//!
//! A policy written with a preset starts from it; fields given beside the
//! preset override it (`{"preset": "appengine", "retry_limit": 5}`).

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::duration::HumanDuration;
use crate::retry::classify::StatusRange;
use crate::retry::policy::{Backoff, Jitter, LimitMode, RetryPolicy};

/// One preset: a retry policy plus the subscription settings that come with
/// it in the source system.
#[derive(Clone, Copy, Debug)]
pub struct Preset {
    pub name: &'static str,
    /// The system whose defaults it reproduces.
    pub source: &'static str,
    /// One line on what it does, for `redrive policy presets`.
    pub summary: &'static str,
    policy: fn() -> RetryPolicy,
    /// The push timeout the system uses, when it has its own.
    pub timeout: Option<Duration>,
    /// How long an undelivered message is kept, when the system says.
    pub message_retention: Option<Duration>,
    /// Whether the system slows a failing endpoint's pushes down beyond the
    /// retry schedule (Pub/Sub's push backoff). Unlike `timeout` and
    /// `message_retention`, every preset says: choosing a preset chooses this.
    pub push_backoff: bool,
}

impl Preset {
    /// The preset's retry policy, carrying its name.
    pub fn policy(&self) -> RetryPolicy {
        RetryPolicy {
            preset: Some(self.name.to_owned()),
            ..(self.policy)()
        }
    }
}

const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;

fn exponential(min: Duration, max: Duration, max_doublings: u32) -> Backoff {
    Backoff::Exponential {
        min_backoff: HumanDuration(min),
        max_backoff: HumanDuration(max),
        max_doublings,
    }
}

fn appengine() -> RetryPolicy {
    RetryPolicy::default()
}

fn cloud_tasks() -> RetryPolicy {
    // max_attempts 100 counts the first attempt.
    RetryPolicy {
        retry_limit: Some(99),
        ..appengine()
    }
}

/// The codes a Pub/Sub push endpoint acknowledges with.
const PUBSUB_SUCCESS: [u16; 5] = [102, 200, 201, 202, 204];

fn pubsub() -> RetryPolicy {
    RetryPolicy {
        // 10s doubling: 10, 20, 40, 80, 160, 320, then the 600s cap.
        backoff: exponential(secs(10), secs(600), 6),
        success_codes: PUBSUB_SUCCESS.to_vec(),
        success_codes_only: true,
        ..RetryPolicy::default()
    }
}

fn adobe_io() -> RetryPolicy {
    let range = |first, last| StatusRange { first, last };
    RetryPolicy {
        // 1m, 2m, 4m, 8m, then 15m (16m capped) and every 15m after.
        backoff: exponential(secs(60), secs(15 * 60), 4),
        age_limit: Some(HumanDuration(secs(DAY))),
        limit_mode: LimitMode::Either,
        // 505 (HTTP version not supported) won't change on a retry.
        retry_codes: Some(vec![range(429, 429), range(500, 504), range(506, 599)]),
        ..RetryPolicy::default()
    }
}

fn standard_webhooks() -> RetryPolicy {
    let delays = [
        5,
        5 * 60,
        30 * 60,
        2 * HOUR,
        5 * HOUR,
        10 * HOUR,
        14 * HOUR,
        20 * HOUR,
        24 * HOUR,
    ];
    RetryPolicy {
        backoff: Backoff::Schedule {
            delays: delays.into_iter().map(HumanDuration::from_secs).collect(),
        },
        retry_limit: Some(9),
        ..RetryPolicy::default()
    }
}

fn eventbridge() -> RetryPolicy {
    RetryPolicy {
        // EventBridge documents only "exponential, up to 185 retries or 24h";
        // this curve is redrive's choice: 1s doubling to 8m, so the 185th
        // retry starts at 23h36m and both limits land close together.
        backoff: exponential(secs(1), secs(8 * 60), 16),
        retry_limit: Some(185),
        age_limit: Some(HumanDuration(secs(DAY))),
        limit_mode: LimitMode::Either,
        ..RetryPolicy::default()
    }
}

/// Every preset, in the order `redrive policy presets` lists them.
pub const PRESETS: &[Preset] = &[
    Preset {
        name: "appengine",
        source: "App Engine push queues (queue.xml / queue.yaml defaults)",
        summary: "exponential 0.1s to 3600s, 16 doublings, no limits; success = 2xx",
        policy: appengine,
        timeout: None,
        message_retention: None,
        push_backoff: false,
    },
    Preset {
        name: "cloud-tasks",
        source: "Cloud Tasks queue defaults",
        summary: "as appengine, 100 attempts (99 retries)",
        policy: cloud_tasks,
        timeout: None,
        message_retention: None,
        push_backoff: false,
    },
    Preset {
        name: "pubsub",
        source: "Pub/Sub push subscriptions",
        summary: "exponential 10s to 600s; success = 102/200/201/202/204 only; retention 7d; \
                  dead-letter after 5 attempts when a dead-letter topic is set; push backoff on",
        policy: pubsub,
        timeout: None,
        message_retention: Some(secs(7 * DAY)),
        push_backoff: true,
    },
    Preset {
        name: "eventarc",
        source: "Eventarc triggers (Pub/Sub transport)",
        summary: "as pubsub, retention 24h",
        policy: pubsub,
        timeout: None,
        message_retention: Some(secs(DAY)),
        push_backoff: true,
    },
    Preset {
        name: "adobe-io",
        source: "Adobe I/O Events webhooks",
        summary: "1m doubling to 15m, then every 15m, for 24h; retried only on 429, 5xx \
                  except 505, timeouts and connection errors; 10s timeout",
        policy: adobe_io,
        timeout: Some(secs(10)),
        message_retention: None,
        push_backoff: false,
    },
    Preset {
        name: "standard-webhooks",
        source: "Standard Webhooks retry schedule",
        summary: "immediately, then 5s, 5m, 30m, 2h, 5h, 10h, 14h, 20h, 24h",
        policy: standard_webhooks,
        timeout: None,
        message_retention: None,
        push_backoff: false,
    },
    Preset {
        name: "eventbridge",
        source: "Amazon EventBridge targets",
        summary: "up to 185 retries or 24h, whichever comes first; exponential 1s to 8m \
                  (redrive's choice of curve)",
        policy: eventbridge,
        timeout: None,
        message_retention: None,
        push_backoff: false,
    },
];

/// The preset called `name`.
pub fn preset(name: &str) -> Result<&'static Preset, UnknownPreset> {
    PRESETS
        .iter()
        .find(|p| p.name == name)
        .ok_or_else(|| UnknownPreset(name.to_owned()))
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown preset {0:?}; known presets: {names}", names = preset_names())]
pub struct UnknownPreset(pub String);

fn preset_names() -> String {
    PRESETS
        .iter()
        .map(|p| p.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A retry policy as written: every field optional, so that the ones given
/// can override a preset.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetryPolicy {
    #[serde(default)]
    preset: Option<String>,
    #[serde(default, deserialize_with = "strict_backoff")]
    backoff: Option<Backoff>,
    #[serde(default)]
    jitter: Option<Jitter>,
    // `null` removes a preset's limit; absent keeps it.
    #[serde(default, deserialize_with = "present")]
    retry_limit: Option<Option<u32>>,
    #[serde(default, deserialize_with = "present")]
    age_limit: Option<Option<HumanDuration>>,
    #[serde(default)]
    limit_mode: Option<LimitMode>,
    #[serde(default)]
    success_codes: Option<Vec<u16>>,
    #[serde(default)]
    success_codes_only: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    retry_codes: Option<Option<Vec<StatusRange>>>,
    #[serde(default)]
    final_codes: Option<Vec<StatusRange>>,
}

/// A backoff that refuses fields beside `kind` also for `immediate`, which
/// serde would otherwise read past.
fn strict_backoff<'de, D>(deserializer: D) -> Result<Option<Backoff>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    use serde::de::Error;
    let value = Value::deserialize(deserializer)?;
    if value.is_null() {
        return Ok(None);
    }
    if let Value::Object(fields) = &value
        && fields.get("kind").and_then(Value::as_str) == Some("immediate")
        && let Some(extra) = fields.keys().find(|key| *key != "kind")
    {
        return Err(D::Error::unknown_field(extra, &[]));
    }
    Backoff::deserialize(value)
        .map(Some)
        .map_err(D::Error::custom)
}

/// Tells a field given as `null` (`Some(None)`) from one left out (`None`).
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

impl TryFrom<RawRetryPolicy> for RetryPolicy {
    type Error = UnknownPreset;

    fn try_from(raw: RawRetryPolicy) -> Result<Self, Self::Error> {
        let base = match &raw.preset {
            Some(name) => preset(name)?.policy(),
            None => RetryPolicy::default(),
        };
        Ok(RetryPolicy {
            preset: base.preset,
            backoff: raw.backoff.unwrap_or(base.backoff),
            jitter: raw.jitter.unwrap_or(base.jitter),
            retry_limit: raw.retry_limit.unwrap_or(base.retry_limit),
            age_limit: raw.age_limit.unwrap_or(base.age_limit),
            limit_mode: raw.limit_mode.unwrap_or(base.limit_mode),
            success_codes: raw.success_codes.unwrap_or(base.success_codes),
            success_codes_only: raw.success_codes_only.unwrap_or(base.success_codes_only),
            retry_codes: raw.retry_codes.unwrap_or(base.retry_codes),
            final_codes: raw.final_codes.unwrap_or(base.final_codes),
        })
    }
}

/// Fills in, on a subscription written as JSON, the settings its retry
/// preset brings (`timeout`, `message_retention`, `push_backoff`) where the
/// subscription does not give them. Without a preset it changes nothing.
pub fn expand_subscription(subscription: &mut Value) -> Result<(), UnknownPreset> {
    let Some(name) = subscription
        .get("retry_policy")
        .and_then(|policy| policy.get("preset"))
        .and_then(Value::as_str)
    else {
        return Ok(());
    };
    let preset = preset(name)?;
    let Some(fields) = subscription.as_object_mut() else {
        return Ok(());
    };
    let defaults = [
        ("timeout", preset.timeout),
        ("message_retention", preset.message_retention),
    ];
    for (field, value) in defaults {
        if let Some(value) = value {
            fields
                .entry(field)
                .or_insert_with(|| Value::String(HumanDuration(value).to_string()));
        }
    }
    fields
        .entry("push_backoff")
        .or_insert(Value::Bool(preset.push_backoff));
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::retry::classify::{AttemptOutcome, ErrorClass, Verdict};

    fn named(name: &str) -> RetryPolicy {
        preset(name).unwrap().policy()
    }

    /// (retry, delay, at) in seconds for the retries the policy makes.
    fn schedule(policy: &RetryPolicy, count: usize) -> Vec<(u32, f64, f64)> {
        policy
            .explain(count)
            .into_iter()
            .map(|r| (r.retry, r.delay.as_secs_f64(), r.at.as_secs_f64()))
            .collect()
    }

    fn delays(policy: &RetryPolicy, count: usize) -> Vec<f64> {
        schedule(policy, count).into_iter().map(|r| r.1).collect()
    }

    fn verdict(policy: &RetryPolicy, status: u16) -> Verdict {
        policy.classify(&AttemptOutcome::Response {
            status,
            retry_after: None,
        })
    }

    #[test]
    fn every_preset_is_valid_and_named() {
        for p in PRESETS {
            let policy = p.policy();
            assert_eq!(policy.validate(), Ok(()), "{}", p.name);
            assert_eq!(policy.preset.as_deref(), Some(p.name));
        }
    }

    #[test]
    fn appengine_doubles_from_100ms_sixteen_times_with_no_limits() {
        let policy = named("appengine");
        let expected = [
            0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 51.2, 102.4, 204.8, 409.6, 819.2,
            1638.4, 3276.8, 3600.0, 3600.0, 3600.0,
        ];
        assert_eq!(delays(&policy, 19), expected);
        assert_eq!(policy.retry_limit, None);
        assert_eq!(policy.age_limit, None);
        assert_eq!(policy.limit_mode, LimitMode::Both);
        assert!(policy.may_retry(u32::MAX, Duration::MAX));
        assert_eq!(verdict(&policy, 299), Verdict::Success);
        assert_eq!(verdict(&policy, 404), Verdict::Retryable);
    }

    #[test]
    fn cloud_tasks_makes_100_attempts() {
        let policy = named("cloud-tasks");
        let retries = schedule(&policy, 1000);
        assert_eq!(retries.len(), 99);
        assert_eq!(delays(&policy, 3), [0.1, 0.2, 0.4]);
        assert_eq!(retries[98].1, 3600.0);
    }

    #[test]
    fn pubsub_doubles_from_10s_to_600s_and_accepts_only_its_codes() {
        let policy = named("pubsub");
        assert_eq!(
            delays(&policy, 9),
            [10.0, 20.0, 40.0, 80.0, 160.0, 320.0, 600.0, 600.0, 600.0]
        );
        for status in PUBSUB_SUCCESS {
            assert_eq!(verdict(&policy, status), Verdict::Success, "{status}");
        }
        for status in [203, 205, 206, 299, 500, 404] {
            assert_eq!(verdict(&policy, status), Verdict::Retryable, "{status}");
        }
        let p = preset("pubsub").unwrap();
        assert_eq!(p.message_retention, Some(secs(7 * DAY)));
    }

    #[test]
    fn pubsub_dead_letters_after_five_attempts_when_a_topic_is_set() {
        let spec: crate::SubscriptionSpec = serde_json::from_value(json!({
            "name": "s", "topic": "t", "endpoint": "http://127.0.0.1/",
            "retry_policy": {"preset": "pubsub"}, "dead_letter_topic": "dead"
        }))
        .unwrap();
        assert_eq!(spec.effective_max_delivery_attempts(), Some(5));
    }

    #[test]
    fn eventarc_is_pubsub_with_a_day_of_retention() {
        assert_eq!(
            RetryPolicy {
                preset: None,
                ..named("eventarc")
            },
            RetryPolicy {
                preset: None,
                ..named("pubsub")
            }
        );
        let p = preset("eventarc").unwrap();
        assert_eq!(p.message_retention, Some(secs(DAY)));
    }

    #[test]
    fn adobe_io_doubles_from_a_minute_to_15_minutes_for_a_day() {
        let policy = named("adobe-io");
        let retries = schedule(&policy, 1000);
        let first: Vec<(u32, f64, f64)> = retries.iter().copied().take(6).collect();
        assert_eq!(
            first,
            [
                (1, 60.0, 60.0),
                (2, 120.0, 180.0),
                (3, 240.0, 420.0),
                (4, 480.0, 900.0),
                (5, 900.0, 1800.0),
                (6, 900.0, 2700.0),
            ]
        );
        // Every 15 minutes from 15m: retry 99 starts at exactly 24h. Its
        // failure at that same instant is still within the day, so one more
        // retry is planned; any real attempt takes time and ends past it.
        assert!(retries[4..].iter().all(|r| r.1 == 900.0));
        assert_eq!(retries[98], (99, 900.0, 86_400.0));
        assert_eq!(retries.len(), 100);
        assert!(!policy.may_retry(100, secs(DAY) + Duration::from_millis(1)));
        assert_eq!(preset("adobe-io").unwrap().timeout, Some(secs(10)));
    }

    #[test]
    fn adobe_io_retries_only_429_5xx_but_505_and_transport_errors() {
        let policy = named("adobe-io");
        for status in [429, 500, 502, 503, 504, 506, 599] {
            assert_eq!(verdict(&policy, status), Verdict::Retryable, "{status}");
        }
        for status in [505, 400, 401, 404, 410, 408, 302] {
            assert_eq!(verdict(&policy, status), Verdict::Final, "{status}");
        }
        for class in [ErrorClass::Timeout, ErrorClass::Connect] {
            assert_eq!(
                policy.classify(&AttemptOutcome::Error(class)),
                Verdict::Retryable
            );
        }
    }

    #[test]
    fn standard_webhooks_follows_its_schedule_then_stops() {
        let policy = named("standard-webhooks");
        let hours = |h: f64| h * 3600.0;
        assert_eq!(
            delays(&policy, 100),
            [
                5.0,
                300.0,
                1800.0,
                hours(2.0),
                hours(5.0),
                hours(10.0),
                hours(14.0),
                hours(20.0),
                hours(24.0)
            ]
        );
    }

    #[test]
    fn eventbridge_stops_at_185_retries_before_the_day_ends() {
        let policy = named("eventbridge");
        let retries = schedule(&policy, 1000);
        assert_eq!(retries.len(), 185);
        assert_eq!(
            delays(&policy, 11),
            [
                1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 480.0, 480.0
            ]
        );
        // 511s of doubling, then 176 retries 8 minutes apart.
        assert_eq!(retries[184].2, 511.0 + 176.0 * 480.0);
        assert!(retries[184].2 < 86_400.0);
        // Either limit ends it: past a day even retry 2 is refused.
        assert!(!policy.may_retry(2, secs(DAY + 1)));
    }

    #[test]
    fn fields_beside_a_preset_override_it() {
        let policy: RetryPolicy = serde_json::from_value(
            json!({"preset": "adobe-io", "age_limit": "2h", "jitter": "full"}),
        )
        .unwrap();
        assert_eq!(policy.age_limit, Some(HumanDuration::from_secs(7200)));
        assert_eq!(policy.jitter, Jitter::Full);
        assert_eq!(policy.backoff, named("adobe-io").backoff);
        assert_eq!(policy.preset.as_deref(), Some("adobe-io"));
    }

    #[test]
    fn null_beside_a_preset_removes_its_limit() {
        let policy: RetryPolicy =
            serde_json::from_value(json!({"preset": "cloud-tasks", "retry_limit": null})).unwrap();
        assert_eq!(policy.retry_limit, None);
    }

    #[test]
    fn an_unknown_preset_is_rejected_with_the_known_names() {
        let err = serde_json::from_value::<RetryPolicy>(json!({"preset": "sqs"})).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("unknown preset \"sqs\""), "{message}");
        assert!(message.contains("standard-webhooks"), "{message}");
    }

    #[test]
    fn a_preset_policy_round_trips_through_json() {
        for p in PRESETS {
            let policy = p.policy();
            let json = serde_json::to_value(&policy).unwrap();
            assert_eq!(json["preset"], p.name);
            let back: RetryPolicy = serde_json::from_value(json).unwrap();
            assert_eq!(back, policy, "{}", p.name);
        }
    }

    #[test]
    fn a_policy_without_preset_reads_as_before() {
        let policy: RetryPolicy = serde_json::from_value(json!({"retry_limit": 3})).unwrap();
        assert_eq!(
            policy,
            RetryPolicy {
                retry_limit: Some(3),
                ..RetryPolicy::default()
            }
        );
    }

    #[test]
    fn expanding_a_subscription_adds_the_preset_settings_it_leaves_out() {
        let mut sub = json!({"name": "s", "retry_policy": {"preset": "adobe-io"}});
        expand_subscription(&mut sub).unwrap();
        assert_eq!(sub["timeout"], "10s");
        let mut sub = json!({"retry_policy": {"preset": "eventarc"}, "message_retention": "2d"});
        expand_subscription(&mut sub).unwrap();
        assert_eq!(sub["message_retention"], "2d");
        assert!(sub.get("timeout").is_none());
        let mut sub = json!({"retry_policy": {"preset": "eventarc"}});
        expand_subscription(&mut sub).unwrap();
        assert_eq!(sub["message_retention"], "86400s");
        let mut plain = json!({"retry_policy": {"retry_limit": 1}});
        expand_subscription(&mut plain).unwrap();
        assert_eq!(plain, json!({"retry_policy": {"retry_limit": 1}}));
        assert!(expand_subscription(&mut json!({"retry_policy": {"preset": "x"}})).is_err());
    }

    /// The subscription a JSON body with `retry_policy` reads as.
    fn expanded(mut body: Value) -> crate::SubscriptionSpec {
        let fields = body.as_object_mut().unwrap();
        fields.insert("name".into(), "s".into());
        fields.insert("topic".into(), "t".into());
        fields.insert("endpoint".into(), "http://127.0.0.1/".into());
        expand_subscription(&mut body).unwrap();
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn only_pubsub_and_eventarc_bring_push_backoff() {
        let on: Vec<&str> = PRESETS
            .iter()
            .filter(|p| p.push_backoff)
            .map(|p| p.name)
            .collect();
        assert_eq!(on, ["pubsub", "eventarc"]);
        for p in PRESETS {
            let spec = expanded(json!({"retry_policy": {"preset": p.name}}));
            assert_eq!(spec.push_backoff, p.push_backoff, "{}", p.name);
        }
        // No preset: off.
        assert!(!expanded(json!({})).push_backoff);
        assert!(!expanded(json!({"retry_policy": {"retry_limit": 2}})).push_backoff);
    }

    #[test]
    fn push_backoff_given_beside_a_preset_wins() {
        let spec = expanded(json!({"retry_policy": {"preset": "pubsub"}, "push_backoff": false}));
        assert!(!spec.push_backoff);
        let spec = expanded(json!({"retry_policy": {"preset": "appengine"}, "push_backoff": true}));
        assert!(spec.push_backoff);
        // Written out always, so a stored subscription keeps its choice
        // when it is read back and expanded again.
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(json["push_backoff"], true);
        let json = serde_json::to_value(expanded(json!({}))).unwrap();
        assert_eq!(json["push_backoff"], false);
    }
}

//! Configuration as code: `redrive.toml` declares topics and subscriptions;
//! applying it creates what is missing, updates what changed and, with
//! `prune = true`, deletes what it no longer lists.
//!
//! Parsing checks everything it can without a server, and every error names
//! the line it comes from, so a bad file is refused before anything changes.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::lifecycle::SYSTEM_TOPIC;
use crate::model::SubscriptionSpec;
use crate::names::validate_name;

/// What a configuration file declares.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Desired {
    /// Delete topics and subscriptions the file does not list.
    #[serde(default)]
    pub prune: bool,
    #[serde(default)]
    pub topics: Vec<TopicDecl>,
    #[serde(default)]
    pub subscriptions: Vec<SubscriptionSpec>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicDecl {
    pub name: String,
}

/// A configuration file refused, with the line at fault when known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub line: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// A parsed file and where each declaration starts, to word later errors
/// (the server's) by line too.
#[derive(Clone, Debug, Default)]
pub struct ParsedConfig {
    pub desired: Desired,
    /// Line of each subscription and topic declaration, by name.
    pub subscription_lines: HashMap<String, usize>,
    pub topic_lines: HashMap<String, usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    prune: bool,
    #[serde(default)]
    topics: Vec<toml::Spanned<TopicDecl>>,
    #[serde(default)]
    subscriptions: Vec<toml::Spanned<toml::Table>>,
}

fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Reads `redrive.toml`. `check` adds the checks only a server knows
/// (endpoint URLs, timeout ranges); its message is reported at the
/// subscription's line.
pub fn parse_toml(
    text: &str,
    check: impl Fn(&SubscriptionSpec) -> Result<(), String>,
) -> Result<ParsedConfig, ConfigError> {
    let raw: RawFile = toml::from_str(text).map_err(|err| ConfigError {
        line: err.span().map(|span| line_of(text, span.start)),
        message: reword(err.message().trim()),
    })?;
    let mut parsed = ParsedConfig {
        desired: Desired {
            prune: raw.prune,
            ..Desired::default()
        },
        ..ParsedConfig::default()
    };
    for topic in raw.topics {
        let line = line_of(text, topic.span().start);
        let fail = |message: String| ConfigError {
            line: Some(line),
            message,
        };
        let topic = topic.into_inner();
        validate_name("topic", &topic.name).map_err(|err| fail(err.to_string()))?;
        if topic.name == SYSTEM_TOPIC {
            return Err(fail(format!(
                "{SYSTEM_TOPIC} is built in; leave it out of the file"
            )));
        }
        if let Some(first) = parsed.topic_lines.insert(topic.name.clone(), line) {
            return Err(fail(format!(
                "topic {:?} is declared twice (first at line {first})",
                topic.name
            )));
        }
        parsed.desired.topics.push(topic);
    }
    for table in raw.subscriptions {
        let line = line_of(text, table.span().start);
        let fail = |message: String| ConfigError {
            line: Some(line),
            message,
        };
        let mut value = serde_json::to_value(table.get_ref())
            .map_err(|err| fail(format!("cannot read the subscription: {err}")))?;
        crate::retry::presets::expand_subscription(&mut value)
            .map_err(|err| fail(err.to_string()))?;
        let spec: SubscriptionSpec =
            crate::strict::from_value(value).map_err(|err| match &err {
                crate::strict::InputError::UnknownField { field, .. } => ConfigError {
                    line: Some(line_of_key(text, table.span().start, field)),
                    message: err.to_string(),
                },
                crate::strict::InputError::Invalid { .. } => {
                    fail(format!("invalid subscription: {err}"))
                }
            })?;
        let named = |message: String| fail(format!("subscription {:?}: {message}", spec.name));
        check_spec(&spec).map_err(named)?;
        check(&spec).map_err(named)?;
        if let Some(first) = parsed.subscription_lines.insert(spec.name.clone(), line) {
            return Err(fail(format!(
                "subscription {:?} is declared twice (first at line {first})",
                spec.name
            )));
        }
        parsed.desired.subscriptions.push(spec);
    }
    if parsed.desired.prune {
        // Pruning deletes what the file leaves out: a subscription whose
        // topic is left out would lose its topic.
        for spec in &parsed.desired.subscriptions {
            let line = parsed.subscription_lines.get(&spec.name).copied();
            for (field, topic) in [
                ("topic", Some(&spec.topic)),
                ("dead_letter_topic", spec.dead_letter_topic.as_ref()),
            ] {
                if let Some(topic) = topic
                    && topic != SYSTEM_TOPIC
                    && !parsed.topic_lines.contains_key(topic)
                {
                    return Err(ConfigError {
                        line,
                        message: format!(
                            "subscription {:?}: {field} {topic:?} is not declared in \
                             [[topics]], and prune = true would delete it",
                            spec.name
                        ),
                    });
                }
            }
        }
    }
    Ok(parsed)
}

/// The line of `key =` in the table starting at `start`, or of the table.
fn line_of_key(text: &str, start: usize, key: &str) -> usize {
    // The table's span may cover only its `[[subscriptions]]` header: the
    // key's first line after it is this table's, since the table holds it.
    let start = start.min(text.len());
    let mut offset = start;
    for candidate in text[start..].split_inclusive('\n') {
        let trimmed = candidate.trim_start();
        let starts_with_key = trimmed
            .strip_prefix(key)
            .is_some_and(|rest| rest.trim_start().starts_with('='));
        if starts_with_key
            || trimmed.contains(&format!("{key} ="))
            || trimmed.contains(&format!("{key}="))
        {
            return line_of(text, offset);
        }
        offset += candidate.len();
    }
    line_of(text, start)
}

/// serde's message for an unknown top-level key, in the words every input
/// uses (see [`crate::strict`]).
fn reword(message: &str) -> String {
    match crate::strict::parse_unknown_field(message) {
        Some((field, known)) => crate::strict::unknown_field_message(&field, "", &known),
        None => message.to_owned(),
    }
}

/// The core's own checks of a subscription.
fn check_spec(spec: &SubscriptionSpec) -> Result<(), String> {
    validate_name("subscription", &spec.name).map_err(|err| err.to_string())?;
    validate_name("topic", &spec.topic).map_err(|err| err.to_string())?;
    spec.retry_policy
        .validate()
        .map_err(|err| err.to_string())?;
    spec.validate_lifecycle().map_err(|err| err.to_string())?;
    spec.validate_push().map_err(|err| err.to_string())?;
    spec.filter.validate()
}

/// The declarations as `redrive.toml` text (what `redrive export` prints).
///
/// Each subscription lists only what differs from what would apply if it
/// were left out: a retry policy written from a preset is `preset = "…"`
/// plus the fields that differ from the preset, and settings equal to their
/// default (or to what the preset brings) are left out. The file then
/// follows the presets and defaults as they are where it is applied,
/// instead of pinning today's values; applied back, it changes nothing.
pub fn to_toml(desired: &Desired) -> Result<String, ConfigError> {
    let fail = |message: String| ConfigError {
        line: None,
        message: format!("cannot write the configuration as TOML: {message}"),
    };
    let mut file = toml::Table::new();
    file.insert("prune".into(), toml::Value::Boolean(desired.prune));
    let topics = desired
        .topics
        .iter()
        .map(|topic| toml::Table::try_from(topic).map(toml::Value::Table))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| fail(err.to_string()))?;
    file.insert("topics".into(), toml::Value::Array(topics));
    let subscriptions = desired
        .subscriptions
        .iter()
        .map(|spec| minimal_subscription(spec).map(toml::Value::Table))
        .collect::<Result<Vec<_>, _>>()
        .map_err(fail)?;
    file.insert("subscriptions".into(), toml::Value::Array(subscriptions));
    toml::to_string_pretty(&file).map_err(|err| fail(err.to_string()))
}

/// Fields every subscription writes, whatever their value.
const IDENTITY: [&str; 3] = ["name", "topic", "endpoint"];

/// `spec` as a TOML table without what equals the value that applies when
/// it is left out.
fn minimal_subscription(spec: &SubscriptionSpec) -> Result<toml::Table, String> {
    let mut table = toml::Table::try_from(spec).map_err(|err| err.to_string())?;
    // What the same subscription reads as with nothing but its identity
    // and its preset written.
    let mut bare = serde_json::json!({
        "name": spec.name, "topic": spec.topic, "endpoint": spec.endpoint,
    });
    if let (Some(preset), Some(fields)) = (&spec.retry_policy.preset, bare.as_object_mut()) {
        fields.insert(
            "retry_policy".into(),
            serde_json::json!({ "preset": preset }),
        );
    }
    crate::retry::presets::expand_subscription(&mut bare).map_err(|err| err.to_string())?;
    let bare: SubscriptionSpec = serde_json::from_value(bare).map_err(|err| err.to_string())?;
    let bare = toml::Table::try_from(&bare).map_err(|err| err.to_string())?;
    let keys: Vec<String> = table.keys().cloned().collect();
    for key in keys {
        if IDENTITY.contains(&key.as_str()) {
            continue;
        }
        let Some(default) = bare.get(&key) else {
            continue;
        };
        if key == "retry_policy" {
            if let (Some(toml::Value::Table(policy)), toml::Value::Table(default)) =
                (table.get_mut(&key), default)
            {
                minimal_policy(policy, default);
            }
        } else if let (Some(toml::Value::Table(fields)), toml::Value::Table(default)) =
            (table.get_mut(&key), default)
        {
            // A table of settings with defaults of their own (health_policy).
            fields.retain(|field, value| default.get(field) != Some(value));
        }
        let empty = matches!(table.get(&key), Some(toml::Value::Table(t)) if t.is_empty());
        if empty || table.get(&key) == Some(default) {
            table.remove(&key);
        }
    }
    Ok(table)
}

/// Leaves in `policy` the preset and the fields that differ from
/// `default`, the policy its preset (or the default policy) gives. A field
/// the preset sets and the policy removed (`retry_limit = null`) can't be
/// written in TOML: the policy is then kept whole, without the preset, so
/// that it still applies as it is.
fn minimal_policy(policy: &mut toml::Table, default: &toml::Table) {
    let removed = default
        .keys()
        .any(|field| field != "preset" && !policy.contains_key(field));
    if removed {
        policy.remove("preset");
        return;
    }
    policy.retain(|field, value| field == "preset" || default.get(field) != Some(value));
}

/// The top-level fields in which two subscriptions differ, for the
/// `~ changed` line of a diff.
pub fn changed_fields(current: &SubscriptionSpec, desired: &SubscriptionSpec) -> Vec<String> {
    let (Ok(Value::Object(current)), Ok(Value::Object(desired))) =
        (serde_json::to_value(current), serde_json::to_value(desired))
    else {
        return Vec::new();
    };
    let mut fields: Vec<String> = current
        .keys()
        .chain(desired.keys())
        .filter(|key| current.get(*key) != desired.get(*key))
        .cloned()
        .collect();
    fields.sort();
    fields.dedup();
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::policy::RetryPolicy;

    fn parse(text: &str) -> Result<ParsedConfig, ConfigError> {
        parse_toml(text, |_| Ok(()))
    }

    const GOOD: &str = r#"
prune = true

[[topics]]
name = "orders"

[[topics]]
name = "orders-dead"

[[subscriptions]]
name = "orders-hook"
topic = "orders"
endpoint = "http://127.0.0.1:9000/hook"
rate = "20/s"
bucket_size = 5
dead_letter_topic = "orders-dead"
retry_policy = { preset = "adobe-io" }
"#;

    #[test]
    fn a_good_file_reads_with_presets_expanded() {
        let parsed = parse(GOOD).unwrap();
        let desired = &parsed.desired;
        assert!(desired.prune);
        assert_eq!(desired.topics.len(), 2);
        let spec = &desired.subscriptions[0];
        assert_eq!(spec.timeout.as_duration().as_secs(), 10);
        assert_eq!(spec.retry_policy.preset.as_deref(), Some("adobe-io"));
        assert_eq!(spec.effective_bucket_size(), 5);
        assert_eq!(parsed.subscription_lines["orders-hook"], 10);
    }

    #[test]
    fn push_backoff_comes_from_the_preset_unless_the_file_sets_it() {
        let file = |extra: &str| {
            format!(
                "[[topics]]\nname = \"orders\"\n\n[[subscriptions]]\nname = \"s\"\n\
                 topic = \"orders\"\nendpoint = \"http://127.0.0.1:9/\"\n{extra}"
            )
        };
        let push_backoff =
            |extra: &str| parse(&file(extra)).unwrap().desired.subscriptions[0].push_backoff;
        assert!(!push_backoff(""));
        assert!(push_backoff("retry_policy = { preset = \"pubsub\" }\n"));
        assert!(!push_backoff(
            "push_backoff = false\nretry_policy = { preset = \"eventarc\" }\n"
        ));
        assert!(push_backoff("push_backoff = true\n"));
        assert!(!push_backoff("retry_policy = { preset = \"adobe-io\" }\n"));
    }

    #[test]
    fn export_reads_back_as_the_same_declarations() {
        let desired = parse(GOOD).unwrap().desired;
        let text = to_toml(&desired).unwrap();
        assert_eq!(parse(&text).unwrap().desired, desired, "{text}");
    }

    fn one_subscription(spec: serde_json::Value) -> Desired {
        let mut spec = spec;
        crate::retry::presets::expand_subscription(&mut spec).unwrap();
        Desired {
            prune: false,
            topics: vec![TopicDecl { name: "t".into() }],
            subscriptions: vec![serde_json::from_value(spec).unwrap()],
        }
    }

    #[test]
    fn export_writes_each_preset_by_name_and_reads_back_unchanged() {
        for preset in crate::retry::presets::PRESETS {
            let desired = one_subscription(serde_json::json!({
                "name": "s", "topic": "t", "endpoint": "http://127.0.0.1:9/",
                "retry_policy": {"preset": preset.name},
            }));
            let text = to_toml(&desired).unwrap();
            assert_eq!(parse(&text).unwrap().desired, desired, "{text}");
            let subscription = text.split("[[subscriptions]]").nth(1).unwrap();
            let lines: Vec<&str> = subscription
                .lines()
                .map(str::trim)
                .filter(|line| !line.is_empty())
                .collect();
            assert_eq!(
                lines,
                [
                    "name = \"s\"",
                    "topic = \"t\"",
                    "endpoint = \"http://127.0.0.1:9/\"",
                    "[subscriptions.retry_policy]",
                    &format!("preset = \"{}\"", preset.name),
                ],
                "{}: {text}",
                preset.name
            );
        }
    }

    #[test]
    fn export_writes_only_what_differs_from_the_preset_and_the_defaults() {
        let desired = one_subscription(serde_json::json!({
            "name": "s", "topic": "t", "endpoint": "http://127.0.0.1:9/",
            "retry_policy": {"preset": "adobe-io", "retry_limit": 5},
            "timeout": "20s", "max_concurrency": 8, "health_policy": {"min_attempts": 3},
        }));
        let text = to_toml(&desired).unwrap();
        assert_eq!(parse(&text).unwrap().desired, desired, "{text}");
        for written in [
            "preset = \"adobe-io\"",
            "retry_limit = 5",
            "timeout = \"20s\"",
            "max_concurrency = 8",
            "min_attempts = 3",
        ] {
            assert!(text.contains(written), "{written}: {text}");
        }
        for left_out in [
            "backoff",
            "age_limit",
            "retry_codes",
            "message_retention",
            "window",
        ] {
            assert!(!text.contains(left_out), "{left_out}: {text}");
        }

        // A preset's limit removed can't be written as null in TOML: the
        // policy goes whole, and applies the same.
        let unlimited = one_subscription(serde_json::json!({
            "name": "s", "topic": "t", "endpoint": "http://127.0.0.1:9/",
            "retry_policy": {"preset": "cloud-tasks", "retry_limit": null},
        }));
        let text = to_toml(&unlimited).unwrap();
        let back = parse(&text).unwrap().desired;
        let policy = |d: &Desired| RetryPolicy {
            preset: None,
            ..d.subscriptions[0].retry_policy.clone()
        };
        assert_eq!(policy(&back), policy(&unlimited), "{text}");
        assert_eq!(back.subscriptions[0].retry_policy.retry_limit, None);
    }

    #[test]
    fn syntax_errors_name_their_line() {
        let err = parse("[[topics]]\nname = \"a\"\n\n[[subscriptions]\n").unwrap_err();
        assert_eq!(err.line, Some(4), "{err}");
    }

    #[test]
    fn unknown_top_level_keys_are_refused() {
        let err = parse("[[topics]]\nname = \"a\"\n[[subscription]]\nname = \"x\"\n").unwrap_err();
        assert_eq!(err.line, Some(3), "{err}");
        assert!(
            err.message.starts_with(
                "unknown field \"subscription\"; known fields: prune, subscriptions, topics"
            ),
            "{err}"
        );
    }

    #[test]
    fn invalid_subscriptions_name_their_line_and_reason() {
        let text = GOOD.replace("bucket_size = 5", "bucket_size = 900");
        let err = parse(&text).unwrap_err();
        assert_eq!(err.line, Some(10));
        assert!(
            err.message
                .contains("bucket_size: must be between 1 and 500"),
            "{err}"
        );
        let text = GOOD.replace("\"20/s\"", "\"fast\"");
        let err = parse(&text).unwrap_err();
        assert_eq!(err.line, Some(10));
        assert!(err.message.contains("invalid rate \"fast\""), "{err}");
        let err = parse_toml(GOOD, |_| Err("endpoint: nope".into())).unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 10: subscription \"orders-hook\": endpoint: nope"
        );
    }

    #[test]
    fn unknown_keys_are_refused_at_their_line() {
        let text = GOOD.replace("bucket_size = 5", "bucket_size = 5\nrate_limit = 3");
        let err = parse(&text).unwrap_err();
        assert_eq!(err.line, Some(16), "{err}");
        assert!(
            err.message
                .starts_with("unknown field \"rate_limit\"; known fields: bucket_size,"),
            "{err}"
        );
        let text = GOOD.replace(
            "preset = \"adobe-io\"",
            "preset = \"adobe-io\", retry_limt = 3",
        );
        let err = parse(&text).unwrap_err();
        assert_eq!(err.line, Some(17), "{err}");
        assert!(
            err.message
                .starts_with("unknown field \"retry_limt\" in retry_policy; known fields:"),
            "{err}"
        );
        assert_eq!(err.message.matches("preset").count(), 1, "{err}");
        let text = GOOD.replace(
            "bucket_size = 5",
            "bucket_size = 5\nhealth_policy = { windw = \"1h\" }",
        );
        let err = parse(&text).unwrap_err();
        assert_eq!(err.line, Some(16), "{err}");
        assert!(
            err.message
                .starts_with("unknown field \"windw\" in health_policy; known fields:"),
            "{err}"
        );
        let alias = GOOD.replace(
            "bucket_size = 5",
            "bucket_size = 5\nmax_concurrent_requests = 3",
        );
        assert!(parse(&alias).is_ok());
    }

    #[test]
    fn duplicates_and_undeclared_topics_under_prune_are_refused() {
        let err = parse("[[topics]]\nname = \"a\"\n[[topics]]\nname = \"a\"\n").unwrap_err();
        assert_eq!(err.line, Some(3));
        let text = GOOD.replace("name = \"orders-dead\"", "name = \"other\"");
        let err = parse(&text).unwrap_err();
        assert!(
            err.message.contains("prune = true would delete it"),
            "{err}"
        );
        let kept = text.replace("prune = true", "prune = false");
        assert!(parse(&kept).is_ok());
    }

    #[test]
    fn changed_fields_lists_what_differs() {
        let desired = parse(GOOD).unwrap().desired;
        let current = desired.subscriptions[0].clone();
        let mut changed = current.clone();
        changed.timeout = crate::HumanDuration::from_secs(3);
        changed.rate = None;
        changed.bucket_size = None;
        assert_eq!(
            changed_fields(&current, &changed),
            ["bucket_size", "rate", "timeout"]
        );
        assert!(changed_fields(&current, &current).is_empty());
    }
}

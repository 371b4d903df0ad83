//! Strict reading of what users write: JSON bodies and flags, and
//! `redrive.toml`. A field no type knows is refused with one message,
//! wherever it comes from, naming the field, where it sits and the fields
//! that are known there, so a typo (`retry_limmit`) never passes silently.
//!
//! The types refuse unknown fields themselves (`deny_unknown_fields`);
//! this module finds where the refusal happened and words it.

use serde::de::DeserializeOwned;
use serde_json::Value;

/// The message for a field no type knows, shared by the API, the CLI and
/// `redrive.toml`: `unknown field "retry_limmit" in retry_policy; known
/// fields: age_limit, backoff, …`.
pub fn unknown_field_message(field: &str, at: &str, known: &[String]) -> String {
    let place = if at.is_empty() {
        String::new()
    } else {
        format!(" in {at}")
    };
    if known.is_empty() {
        return format!("unknown field {field:?}{place}; it takes no fields");
    }
    let mut known = known.to_vec();
    known.sort();
    known.dedup();
    format!(
        "unknown field {field:?}{place}; known fields: {}",
        known.join(", ")
    )
}

/// Why input was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// A field no type at that place has.
    #[error("{}", unknown_field_message(field, at, known))]
    UnknownField {
        field: String,
        /// Where it sits, e.g. `retry_policy.backoff` (empty at the top).
        at: String,
        known: Vec<String>,
    },
    /// Anything else: a wrong type, a bad value, a missing field, bad syntax.
    #[error("{}{message}", if at.is_empty() { String::new() } else { format!("{at}: ") })]
    Invalid { at: String, message: String },
}

impl InputError {
    /// The place in the input the error is about (empty at the top).
    pub fn at(&self) -> &str {
        match self {
            InputError::UnknownField { at, .. } | InputError::Invalid { at, .. } => at,
        }
    }
}

/// Reads a `T` from a JSON value, refusing unknown fields at every level.
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, InputError> {
    serde_path_to_error::deserialize(value).map_err(|err| classify(err.path(), err.inner()))
}

/// Reads a `T` from JSON text. Syntax errors keep their line and column;
/// the others name the field instead, which tells a person more.
pub fn from_slice<T: DeserializeOwned>(text: &[u8]) -> Result<T, InputError> {
    let value: Value = serde_json::from_slice(text).map_err(|err| InputError::Invalid {
        at: String::new(),
        message: err.to_string(),
    })?;
    from_value(value)
}

/// Reads a `T` this program wrote itself, possibly a newer version of it
/// (several nodes on one database are upgraded one by one): fields it does
/// not know are dropped, not refused. Returns the value and what it dropped.
pub fn from_stored<T: DeserializeOwned>(
    mut value: Value,
) -> Result<(T, Vec<String>), serde_json::Error> {
    let mut dropped = Vec::new();
    loop {
        match serde_path_to_error::deserialize(value.clone()) {
            Ok(read) => return Ok((read, dropped)),
            Err(err) => {
                let removed = match classify(err.path(), err.inner()) {
                    InputError::UnknownField { field, at, .. } => {
                        let parent = at
                            .split('.')
                            .filter(|part| !part.is_empty())
                            .try_fold(&mut value, |value, part| value.get_mut(part));
                        parent
                            .and_then(Value::as_object_mut)
                            .and_then(|fields| fields.remove(&field))
                            .map(|_| {
                                if at.is_empty() {
                                    field
                                } else {
                                    format!("{at}.{field}")
                                }
                            })
                    }
                    InputError::Invalid { .. } => None,
                };
                match removed {
                    Some(path) => dropped.push(path),
                    None => return Err(err.into_inner()),
                }
            }
        }
    }
}

fn classify(path: &serde_path_to_error::Path, err: &serde_json::Error) -> InputError {
    let message = err.to_string();
    let at = place(path);
    match parse_unknown_field(&message) {
        Some((field, known)) => {
            // The path of a refused key ends at the key itself.
            let at = match at.rsplit_once('.') {
                Some((parent, last)) if last == field => parent.to_owned(),
                _ if at == field => String::new(),
                _ => at,
            };
            InputError::UnknownField { field, at, known }
        }
        None => InputError::Invalid { at, message },
    }
}

/// A path as dotted field names (`subscriptions[1].retry_policy`), without
/// the segments serde could not name.
fn place(path: &serde_path_to_error::Path) -> String {
    let text = path.to_string();
    let parts: Vec<&str> = text
        .split('.')
        .filter(|part| !part.is_empty() && *part != "?")
        .collect();
    parts.join(".")
}

/// Reads serde's own wording for an unknown field (`` unknown field `x`,
/// expected one of `a`, `b` ``, also what `toml` reports) back into the
/// field and the names it lists; `None` for any other error.
pub fn parse_unknown_field(message: &str) -> Option<(String, Vec<String>)> {
    let rest = message.split_once("unknown field `")?.1;
    let (field, names) = if let Some((field, names)) = rest.split_once("`, expected ") {
        (field, names)
    } else {
        (rest.split_once("`, there are no fields")?.0, "")
    };
    // Names alternate with the text between them: `a`, `b` or `c`.
    let known = names
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    Some((field.to_owned(), known))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::SubscriptionSpec;
    use crate::retry::policy::RetryPolicy;

    fn spec(extra: Value) -> Value {
        let mut spec = json!({"name": "s", "topic": "t", "endpoint": "http://127.0.0.1/"});
        if let (Some(spec), Value::Object(extra)) = (spec.as_object_mut(), extra) {
            spec.extend(extra);
        }
        spec
    }

    fn unknown(value: Value) -> (String, String, Vec<String>) {
        match from_value::<SubscriptionSpec>(value) {
            Err(InputError::UnknownField { field, at, known }) => (field, at, known),
            other => panic!("expected an unknown field, got {other:?}"),
        }
    }

    #[test]
    fn serde_wording_is_read_back_for_every_count_of_names() {
        assert_eq!(
            parse_unknown_field("unknown field `x`, expected one of `a`, `b`, `c`"),
            Some(("x".into(), vec!["a".into(), "b".into(), "c".into()]))
        );
        assert_eq!(
            parse_unknown_field("unknown field `x`, expected `a` or `b` at line 1 column 9"),
            Some(("x".into(), vec!["a".into(), "b".into()]))
        );
        assert_eq!(
            parse_unknown_field("unknown field `x`, expected `a`"),
            Some(("x".into(), vec!["a".into()]))
        );
        assert_eq!(
            parse_unknown_field("unknown field `x`, there are no fields"),
            Some(("x".into(), vec![]))
        );
        assert_eq!(parse_unknown_field("missing field `name`"), None);
    }

    #[test]
    fn the_message_names_the_field_its_place_and_the_known_ones_sorted() {
        assert_eq!(
            unknown_field_message("retry_limmit", "retry_policy", &["b".into(), "a".into()]),
            "unknown field \"retry_limmit\" in retry_policy; known fields: a, b"
        );
        assert_eq!(
            unknown_field_message("x", "", &["a".into()]),
            "unknown field \"x\"; known fields: a"
        );
        assert_eq!(
            unknown_field_message("x", "retry_policy.backoff", &[]),
            "unknown field \"x\" in retry_policy.backoff; it takes no fields"
        );
    }

    #[test]
    fn a_subscription_refuses_unknown_fields_at_its_top() {
        let (field, at, known) = unknown(spec(json!({"retry_polcy": {}})));
        assert_eq!((field.as_str(), at.as_str()), ("retry_polcy", ""));
        assert!(known.contains(&"retry_policy".to_owned()), "{known:?}");
        assert!(known.contains(&"health_policy".to_owned()), "{known:?}");
    }

    #[test]
    fn the_alias_of_max_concurrency_is_still_accepted() {
        let spec: SubscriptionSpec =
            from_value(spec(json!({"max_concurrent_requests": 3}))).unwrap();
        assert_eq!(spec.max_concurrency, 3);
    }

    #[test]
    fn a_retry_policy_refuses_unknown_fields_with_and_without_a_preset() {
        for policy in [
            json!({"retry_limmit": 5}),
            json!({"preset": "pubsub", "retry_limmit": 5}),
        ] {
            let (field, at, known) = unknown(spec(json!({ "retry_policy": policy })));
            assert_eq!(
                (field.as_str(), at.as_str()),
                ("retry_limmit", "retry_policy")
            );
            let mut sorted = known.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), known.len(), "no name twice: {known:?}");
            assert!(known.contains(&"preset".to_owned()), "{known:?}");
            assert!(known.contains(&"retry_limit".to_owned()), "{known:?}");
        }
        let err = from_value::<RetryPolicy>(json!({"retry_limmit": 5})).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("unknown field \"retry_limmit\"; known fields: age_limit, backoff,"),
            "{err}"
        );
    }

    #[test]
    fn every_backoff_kind_refuses_fields_of_another() {
        for (backoff, field) in [
            (
                json!({"kind": "exponential", "min_backoff": "1s", "max_backoff": "2s",
                       "max_doublings": 1, "interval": "1s"}),
                "interval",
            ),
            (
                json!({"kind": "fixed", "interval": "1s", "delays": []}),
                "delays",
            ),
            (
                json!({"kind": "schedule", "delays": ["1s"], "max": "1s"}),
                "max",
            ),
            (json!({"kind": "immediate", "interval": "1s"}), "interval"),
        ] {
            let (got, at, _) = unknown(spec(json!({"retry_policy": {"backoff": backoff}})));
            assert_eq!((got.as_str(), at.as_str()), (field, "retry_policy.backoff"));
        }
    }

    #[test]
    fn health_policy_and_filter_refuse_unknown_fields() {
        let (field, at, known) = unknown(spec(json!({"health_policy": {"windw": "1h"}})));
        assert_eq!((field.as_str(), at.as_str()), ("windw", "health_policy"));
        assert!(known.contains(&"window".to_owned()), "{known:?}");
        let (field, at, known) = unknown(spec(json!({"filter": {"types": "a"}})));
        assert_eq!((field.as_str(), at.as_str()), ("types", "filter"));
        assert_eq!(known, ["type", "source", "subject"]);
    }

    #[test]
    fn other_errors_keep_their_place() {
        let err =
            from_value::<SubscriptionSpec>(spec(json!({"retry_policy": {"retry_limit": "x"}})))
                .unwrap_err();
        assert_eq!(err.at(), "retry_policy.retry_limit", "{err}");
        assert!(matches!(err, InputError::Invalid { .. }));
        let err = from_slice::<SubscriptionSpec>(b"{\"name\": ").unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
        let err = from_slice::<SubscriptionSpec>(br#"{"name": 1}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "name: invalid type: integer `1`, expected a string"
        );
    }

    #[test]
    fn stored_values_drop_the_fields_a_newer_version_added() {
        let stored = spec(json!({
            "retry_policy": {"retry_limit": 2, "added_later": 1},
            "added_later": true,
        }));
        let (read, mut dropped): (SubscriptionSpec, _) = from_stored(stored).unwrap();
        assert_eq!(read.retry_policy.retry_limit, Some(2));
        dropped.sort();
        assert_eq!(dropped, ["added_later", "retry_policy.added_later"]);
        assert!(from_stored::<SubscriptionSpec>(json!({"name": 1})).is_err());
    }

    #[test]
    fn what_a_subscription_serializes_to_reads_back() {
        let spec: SubscriptionSpec = from_value(spec(json!({
            "retry_policy": {"preset": "adobe-io", "retry_limit": 3},
            "filter": {"type": "a.*"},
            "health_policy": {"window": "1h"},
            "rate": "5/s",
            "dead_letter_topic": "dead",
        })))
        .unwrap();
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(from_value::<SubscriptionSpec>(json).unwrap(), spec);
    }
}

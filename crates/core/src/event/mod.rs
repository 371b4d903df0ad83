//! CloudEvents 1.0, split the way its specifications are: the event and
//! the rules its attributes follow (here), the JSON format (`json_format`:
//! in and out, batches), the HTTP binding in binary mode (`http_binding`:
//! in and out) and media types (`media_type`).

pub mod http_binding;
pub mod json_format;
pub mod media_type;
#[cfg(test)]
mod tests;

pub use http_binding::{binary_headers, parse_binary};
pub use json_format::{parse_batch, parse_structured, structured_body};
pub use media_type::is_json_content_type;

use std::collections::BTreeMap;

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The only CloudEvents version redrive speaks.
pub const SPECVERSION: &str = "1.0";

/// Upper bound, in bytes, on any string attribute value (`id`, `source`,
/// `type`, `subject`, `time`, `datacontenttype`, `dataschema`, string
/// extensions). Attributes travel in HTTP headers, where servers commonly
/// refuse lines beyond 8 KiB, so anything larger could never be delivered in
/// binary mode.
pub const MAX_ATTRIBUTE_LEN: usize = 4096;

/// Upper bound on an extension attribute's name. CloudEvents says names
/// SHOULD NOT exceed 20 characters; redrive enforces it.
pub const MAX_EXTENSION_NAME_LEN: usize = 20;

/// The content type an event without `datacontenttype` implicitly has.
pub const JSON_CONTENT_TYPE: &str = "application/json";

/// Source of redrive's own events.
pub const SYSTEM_SOURCE: &str = "/redrive";

/// Member names of the JSON format that are not extensions.
const RESERVED_MEMBERS: [&str; 10] = [
    "id",
    "source",
    "type",
    "specversion",
    "subject",
    "time",
    "datacontenttype",
    "dataschema",
    "data",
    "data_base64",
];

/// Accepts `data_base64` with or without trailing `=` padding: producers
/// differ, and the bytes are unambiguous either way.
const BASE64_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A CloudEvent. `data` holds the payload bytes exactly as an endpoint will
/// receive them in binary mode.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CloudEvent {
    pub id: String,
    pub source: String,
    #[serde(rename = "type")]
    pub ty: String,
    pub specversion: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// RFC 3339, as given by the producer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datacontenttype: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataschema: Option<String>,
    /// Extension attributes (lower-case alphanumeric names).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extensions: BTreeMap<String, serde_json::Value>,
    #[serde(skip)]
    pub data: Option<Vec<u8>>,
}

/// Why an inbound event was rejected, naming the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct EventError {
    /// The attribute (`"id"`, `"specversion"`, `"ce-source"`), prefixed with
    /// the index in a batch (`"[2].id"`).
    pub field: String,
    pub message: String,
}

impl EventError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    fn in_batch(self, index: usize) -> Self {
        Self {
            field: format!("[{index}].{}", self.field),
            message: self.message,
        }
    }
}

impl CloudEvent {
    /// The attributes as stored: JSON of everything but `data`, which the
    /// store keeps apart as bytes. [`CloudEvent::from_attributes_json`]
    /// reverses it.
    pub fn to_attributes_json(&self) -> String {
        // Strings, options and a string-keyed map of JSON values have no
        // serialization failure path.
        serde_json::to_string(self).expect("event attributes always serialize")
    }

    /// Rebuilds a stored event from [`CloudEvent::to_attributes_json`] and
    /// its payload bytes.
    pub fn from_attributes_json(
        attributes: &str,
        data: Option<Vec<u8>>,
    ) -> Result<Self, serde_json::Error> {
        let mut event: CloudEvent = serde_json::from_str(attributes)?;
        event.data = data;
        Ok(event)
    }

    /// Extensions an encoder writes out. Null means unset; a name shadowing
    /// a spec member (possible only for events built in code) would make the
    /// encoding ambiguous.
    pub fn emitted_extensions(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.extensions
            .iter()
            .filter(|(name, value)| !value.is_null() && !RESERVED_MEMBERS.contains(&name.as_str()))
    }
}

/// What one event may carry beyond the rules every attribute follows, so
/// that it can be delivered in any payload format. Checked at publish, for
/// every event, whichever format its subscriptions push in: a subscription
/// may change format later, and the event is already stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventLimits {
    /// Most extension attributes on one event.
    pub max_extensions: usize,
    /// Most bytes the attributes take as the headers of a binary-mode push
    /// (`ce-*` and `content-type` lines: names, percent-encoded values and
    /// their `": "` and CRLF). The smallest common limits on a request's
    /// headers are 8 KiB (Tomcat, Jetty in total; nginx and Apache per
    /// line); with redrive's own headers (about 1 KiB: host, `webhook-*`,
    /// `redrive-attempt`, App Engine's) the default keeps a push under them.
    pub max_attribute_bytes: usize,
}

impl Default for EventLimits {
    fn default() -> Self {
        EventLimits {
            max_extensions: 50,
            max_attribute_bytes: 6 * 1024,
        }
    }
}

/// An event carrying more than [`EventLimits`] allow.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error(
        "extensions: an event may carry at most {max} extension attributes; this one has {count}"
    )]
    TooManyExtensions { count: usize, max: usize },
    #[error(
        "attributes: an event's attributes may take at most {max} bytes as binary-mode \
         headers, where receivers limit them; these take {bytes}"
    )]
    AttributesTooLarge { bytes: usize, max: usize },
}

impl CloudEvent {
    /// Whether the event stays within `limits`.
    pub fn check_limits(&self, limits: &EventLimits) -> Result<(), LimitError> {
        let count = self.emitted_extensions().count();
        if count > limits.max_extensions {
            return Err(LimitError::TooManyExtensions {
                count,
                max: limits.max_extensions,
            });
        }
        let bytes = self.binary_header_bytes();
        if bytes > limits.max_attribute_bytes {
            return Err(LimitError::AttributesTooLarge {
                bytes,
                max: limits.max_attribute_bytes,
            });
        }
        Ok(())
    }
}

fn check_specversion(value: &str) -> Result<(), String> {
    if value == SPECVERSION {
        Ok(())
    } else {
        Err(format!(
            "must be {SPECVERSION:?}, not {:?}: redrive speaks only CloudEvents {SPECVERSION}",
            excerpt(value)
        ))
    }
}

/// Rules every context attribute's string value follows.
fn check_attribute(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("must not be empty".to_owned());
    }
    check_attribute_chars(value)
}

/// Rules of the CloudEvents String type, plus redrive's size bound;
/// extension strings may be empty, so this is apart from the emptiness rule.
fn check_attribute_chars(value: &str) -> Result<(), String> {
    if value.len() > MAX_ATTRIBUTE_LEN {
        return Err(format!(
            "must be at most {MAX_ATTRIBUTE_LEN} bytes, not {}",
            value.len()
        ));
    }
    // Most attributes are ASCII: a byte test finds its controls, and it has
    // no noncharacters. Every attribute of every event published goes here.
    let (control, noncharacter) = if value.is_ascii() {
        (value.bytes().any(|b| b.is_ascii_control()), false)
    } else {
        (
            value.chars().any(char::is_control),
            value.chars().any(is_noncharacter),
        )
    };
    if control {
        return Err(
            "must not contain control characters (U+0000–U+001F, U+007F–U+009F)".to_owned(),
        );
    }
    if noncharacter {
        return Err("must not contain Unicode noncharacters".to_owned());
    }
    Ok(())
}

fn is_noncharacter(c: char) -> bool {
    let c = u32::from(c);
    (0xFDD0..=0xFDEF).contains(&c) || c & 0xFFFE == 0xFFFE
}

fn check_time(value: &str) -> Result<(), String> {
    value
        .parse::<jiff::Timestamp>()
        .map(|_| ())
        .map_err(|e| format!("must be an RFC 3339 timestamp such as 2024-06-01T12:00:00Z: {e}"))
}

fn check_extension_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_EXTENSION_NAME_LEN {
        return Err(format!(
            "an extension name must be 1 to {MAX_EXTENSION_NAME_LEN} characters long"
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return Err(
            "an extension name may contain only lower-case letters a-z and digits 0-9".to_owned(),
        );
    }
    if RESERVED_MEMBERS.contains(&name) {
        return Err(format!(
            "{name:?} is reserved by the CloudEvents JSON format"
        ));
    }
    Ok(())
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Bounds producer-chosen text echoed back in an error.
fn excerpt(text: &str) -> String {
    const LIMIT: usize = 64;
    match text.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

//! CloudEvents 1.0: the event model and its three inbound HTTP encodings
//! (structured, batch, binary).

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

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

/// How `data` appears in the JSON format.
pub(crate) enum StructuredData<'a> {
    /// `data` as a JSON value; the raw bytes are kept so a writer can emit
    /// them verbatim instead of a re-serialization.
    Json { value: Value, raw: &'a [u8] },
    /// `data` as a JSON string.
    Text(&'a str),
    /// `data_base64`.
    Binary(&'a [u8]),
}

impl CloudEvent {
    /// The event in the JSON format (`application/cloudevents+json`): every
    /// attribute and extension as a top-level member, and the payload as
    /// `data` (a JSON value when the content type is JSON and the bytes
    /// parse, a string when the content type is text and the bytes are
    /// UTF-8) or else as `data_base64`.
    pub fn to_structured_json(&self) -> Value {
        let mut object = self.structured_attributes();
        match self.structured_data() {
            Some(StructuredData::Json { value, .. }) => {
                object.insert("data".to_owned(), value);
            }
            Some(StructuredData::Text(text)) => {
                object.insert("data".to_owned(), Value::String(text.to_owned()));
            }
            Some(StructuredData::Binary(bytes)) => {
                object.insert(
                    "data_base64".to_owned(),
                    Value::String(BASE64.encode(bytes)),
                );
            }
            None => {}
        }
        Value::Object(object)
    }

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

    /// All members of the JSON format except the payload.
    pub(crate) fn structured_attributes(&self) -> Map<String, Value> {
        let mut object: Map<String, Value> = self
            .emitted_extensions()
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        let mut put = |name: &str, value: &str| {
            object.insert(name.to_owned(), Value::String(value.to_owned()));
        };
        put("specversion", &self.specversion);
        put("id", &self.id);
        put("source", &self.source);
        put("type", &self.ty);
        for (name, value) in [
            ("subject", &self.subject),
            ("time", &self.time),
            ("datacontenttype", &self.datacontenttype),
            ("dataschema", &self.dataschema),
        ] {
            if let Some(value) = value {
                put(name, value);
            }
        }
        object
    }

    /// Extensions an encoder writes out. Null means unset; a name shadowing
    /// a spec member (possible only for events built in code) would make the
    /// encoding ambiguous.
    pub fn emitted_extensions(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.extensions
            .iter()
            .filter(|(name, value)| !value.is_null() && !RESERVED_MEMBERS.contains(&name.as_str()))
    }

    pub(crate) fn structured_data(&self) -> Option<StructuredData<'_>> {
        let bytes = self.data.as_deref()?;
        let content_type = self.datacontenttype.as_deref();
        if is_json_content_type(content_type)
            && let Ok(value) = serde_json::from_slice::<Value>(bytes)
        {
            return Some(StructuredData::Json { value, raw: bytes });
        }
        if is_text_content_type(content_type)
            && let Ok(text) = std::str::from_utf8(bytes)
        {
            return Some(StructuredData::Text(text));
        }
        Some(StructuredData::Binary(bytes))
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

/// Whether a `datacontenttype` declares JSON: a media type of the form
/// `*/json` or `*/*+json`, parameters and case ignored. An absent content
/// type counts as JSON, as the JSON format prescribes.
pub fn is_json_content_type(ct: Option<&str>) -> bool {
    let Some(ct) = ct else { return true };
    match split_media_type(ct) {
        Some((_, subtype, _)) => subtype == "json" || subtype.ends_with("+json"),
        None => false,
    }
}

/// Whether a content type is text that can travel as a JSON string without
/// changing its bytes: `text/*`, XML, YAML and a few textual application
/// types, in UTF-8 (or with no charset said).
fn is_text_content_type(ct: Option<&str>) -> bool {
    let Some((ty, subtype, params)) = ct.and_then(split_media_type) else {
        return false;
    };
    let textual = ty == "text"
        || subtype == "xml"
        || subtype.ends_with("+xml")
        || subtype == "yaml"
        || subtype == "x-yaml"
        || subtype.ends_with("+yaml")
        || (ty == "application"
            && matches!(
                subtype.as_str(),
                "javascript" | "ecmascript" | "x-www-form-urlencoded" | "toml"
            ));
    // Another charset would make the JSON string's code points differ from
    // the payload's bytes.
    let utf8 = params.split(';').all(|param| match param.split_once('=') {
        Some((name, value)) if name.trim().eq_ignore_ascii_case("charset") => {
            let value = value.trim().trim_matches('"');
            ["utf-8", "utf8", "us-ascii"]
                .iter()
                .any(|ok| value.eq_ignore_ascii_case(ok))
        }
        _ => true,
    });
    textual && utf8
}

/// `(type, subtype, parameters)` of a media type, type and subtype
/// lower-cased; `None` when it is not `type/subtype`.
fn split_media_type(ct: &str) -> Option<(String, String, &str)> {
    let (essence, params) = ct.split_once(';').unwrap_or((ct, ""));
    let (ty, subtype) = essence.trim().split_once('/')?;
    let (ty, subtype) = (ty.trim(), subtype.trim());
    let is_token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?=".contains(&b))
    };
    if !is_token(ty) || !is_token(subtype) {
        return None;
    }
    Some((
        ty.to_ascii_lowercase(),
        subtype.to_ascii_lowercase(),
        params,
    ))
}

/// Parses one event in structured mode (`application/cloudevents+json`).
pub fn parse_structured(body: &[u8]) -> Result<CloudEvent, EventError> {
    match parse_json_body(body)? {
        Value::Object(object) => event_from_object(object),
        other => Err(EventError::new(
            "body",
            format!(
                "a structured event must be a JSON object, not {}",
                json_kind(&other)
            ),
        )),
    }
}

/// Parses a batch (`application/cloudevents-batch+json`): a JSON array of
/// structured events. All-or-nothing: the first invalid event fails it.
pub fn parse_batch(body: &[u8]) -> Result<Vec<CloudEvent>, EventError> {
    let items = match parse_json_body(body)? {
        Value::Array(items) => items,
        other => {
            return Err(EventError::new(
                "body",
                format!("a batch must be a JSON array, not {}", json_kind(&other)),
            ));
        }
    };
    if items.is_empty() {
        return Err(EventError::new(
            "body",
            "a batch must hold at least one event",
        ));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| match item {
            Value::Object(object) => event_from_object(object).map_err(|e| e.in_batch(index)),
            other => Err(EventError::new(
                format!("[{index}]"),
                format!("an event must be a JSON object, not {}", json_kind(&other)),
            )),
        })
        .collect()
}

/// Parses binary mode: attributes in `ce-*` headers (percent-encoded), the
/// body is the data, `content-type` is `datacontenttype`.
///
/// Extension values arrive as strings: binary mode carries no type
/// information, so an integer extension comes back as its decimal text.
pub fn parse_binary<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    body: &[u8],
) -> Result<CloudEvent, EventError> {
    // Keyed by attribute name; the header name is rebuilt for errors.
    let mut attributes: BTreeMap<String, String> = BTreeMap::new();
    let mut content_type: Option<String> = None;
    for (name, raw) in headers {
        let name = name.to_ascii_lowercase();
        if name == "content-type" {
            if content_type.is_some() {
                return Err(EventError::new(name, "must be given only once"));
            }
            content_type = Some(content_type_header(raw)?);
            continue;
        }
        let Some(attribute) = name.strip_prefix("ce-") else {
            continue;
        };
        if attributes.contains_key(attribute) {
            return Err(EventError::new(name, "must be given only once"));
        }
        let value = decode_header_value(raw).map_err(|m| EventError::new(&name, m))?;
        attributes.insert(attribute.to_owned(), value);
    }

    let mut required = |attribute: &str| -> Result<String, EventError> {
        let value = attributes.remove(attribute).ok_or_else(|| {
            EventError::new(format!("ce-{attribute}"), "required header is missing")
        })?;
        check_attribute(&value).map_err(|m| EventError::new(format!("ce-{attribute}"), m))?;
        Ok(value)
    };
    let specversion = required("specversion")?;
    check_specversion(&specversion).map_err(|m| EventError::new("ce-specversion", m))?;
    let id = required("id")?;
    let source = required("source")?;
    let ty = required("type")?;

    let mut optional = |attribute: &str| -> Result<Option<String>, EventError> {
        let Some(value) = attributes.remove(attribute) else {
            return Ok(None);
        };
        check_attribute(&value).map_err(|m| EventError::new(format!("ce-{attribute}"), m))?;
        Ok(Some(value))
    };
    let subject = optional("subject")?;
    let time = optional("time")?;
    if let Some(time) = &time {
        check_time(time).map_err(|m| EventError::new("ce-time", m))?;
    }
    let dataschema = optional("dataschema")?;

    if attributes.contains_key("datacontenttype") {
        return Err(EventError::new(
            "ce-datacontenttype",
            "is not allowed in binary mode; the content-type header carries datacontenttype",
        ));
    }
    let mut extensions = BTreeMap::new();
    for (name, value) in attributes {
        let field = format!("ce-{}", excerpt(&name));
        check_extension_name(&name).map_err(|m| EventError::new(&field, m))?;
        check_attribute_chars(&value).map_err(|m| EventError::new(&field, m))?;
        extensions.insert(name, Value::String(value));
    }

    Ok(CloudEvent {
        id,
        source,
        ty,
        specversion,
        subject,
        time,
        datacontenttype: content_type,
        dataschema,
        extensions,
        data: (!body.is_empty()).then(|| body.to_vec()),
    })
}

fn parse_json_body(body: &[u8]) -> Result<Value, EventError> {
    serde_json::from_slice::<UniqueKeys>(body)
        .map(|UniqueKeys(value)| value)
        .map_err(|e| EventError::new("body", format!("invalid JSON: {e}")))
}

/// A JSON value as serde_json reads it, except that an object naming a
/// member twice is an error. serde_json keeps the last silently, so
/// `{"id": "a", "id": "b"}` would be stored as `b` while another reader of
/// the same bytes sees `a`. The check costs one map lookup per member, the
/// one the insert makes anyway.
struct UniqueKeys(Value);

impl<'de> Deserialize<'de> for UniqueKeys {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(UniqueKeysVisitor)
            .map(UniqueKeys)
    }
}

struct UniqueKeysVisitor;

impl<'de> serde::de::Visitor<'de> for UniqueKeysVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(UniqueKeys(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let UniqueKeys(value) = map.next_value()?;
            match object.entry(key) {
                serde_json::map::Entry::Vacant(slot) => {
                    slot.insert(value);
                }
                serde_json::map::Entry::Occupied(taken) => {
                    return Err(serde::de::Error::custom(format!(
                        "the member {:?} appears twice",
                        excerpt(taken.key())
                    )));
                }
            }
        }
        Ok(Value::Object(object))
    }
}

/// The common core of structured and batch mode.
fn event_from_object(mut object: Map<String, Value>) -> Result<CloudEvent, EventError> {
    // specversion first: it decides what the other members mean.
    let specversion = take_string(&mut object, "specversion")?
        .ok_or_else(|| EventError::new("specversion", "is required"))?;
    check_specversion(&specversion).map_err(|m| EventError::new("specversion", m))?;
    let mut required = |name: &'static str| {
        take_string(&mut object, name)?.ok_or_else(|| EventError::new(name, "is required"))
    };
    let id = required("id")?;
    let source = required("source")?;
    let ty = required("type")?;
    let subject = take_string(&mut object, "subject")?;
    let time = take_string(&mut object, "time")?;
    if let Some(time) = &time {
        check_time(time).map_err(|m| EventError::new("time", m))?;
    }
    let datacontenttype = take_string(&mut object, "datacontenttype")?;
    if let Some(ct) = &datacontenttype {
        check_media_type(ct).map_err(|m| EventError::new("datacontenttype", m))?;
    }
    let dataschema = take_string(&mut object, "dataschema")?;
    let data = take_data(&mut object, datacontenttype.as_deref())?;

    let mut extensions = BTreeMap::new();
    for (name, value) in object {
        let field = excerpt(&name);
        check_extension_name(&name).map_err(|m| EventError::new(&field, m))?;
        match value {
            // The JSON format: null MUST be treated as unset.
            Value::Null => continue,
            Value::String(s) => {
                check_attribute_chars(&s).map_err(|m| EventError::new(&field, m))?;
                extensions.insert(name, Value::String(s));
            }
            Value::Number(_) | Value::Bool(_) => {
                extensions.insert(name, value);
            }
            other => {
                return Err(EventError::new(
                    field,
                    format!(
                        "an extension must be a string, number or boolean, not {}",
                        json_kind(&other)
                    ),
                ));
            }
        }
    }

    Ok(CloudEvent {
        id,
        source,
        ty,
        specversion,
        subject,
        time,
        datacontenttype,
        dataschema,
        extensions,
        data,
    })
}

/// Removes a string attribute; absent and `null` are both `None`.
fn take_string(
    object: &mut Map<String, Value>,
    name: &'static str,
) -> Result<Option<String>, EventError> {
    match object.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            check_attribute(&s).map_err(|m| EventError::new(name, m))?;
            Ok(Some(s))
        }
        Some(other) => Err(EventError::new(
            name,
            format!("must be a string, not {}", json_kind(&other)),
        )),
    }
}

/// Removes `data` / `data_base64` and turns them into payload bytes.
fn take_data(
    object: &mut Map<String, Value>,
    datacontenttype: Option<&str>,
) -> Result<Option<Vec<u8>>, EventError> {
    let data = object.remove("data");
    let data_base64 = object.remove("data_base64");
    match (data, data_base64) {
        (Some(_), Some(_)) => Err(EventError::new(
            "data_base64",
            "must not be given together with data",
        )),
        (None, None) | (None, Some(Value::Null)) => Ok(None),
        (None, Some(Value::String(encoded))) => BASE64_LENIENT
            .decode(encoded.as_bytes())
            .map(Some)
            .map_err(|e| EventError::new("data_base64", format!("is not valid base64: {e}"))),
        (None, Some(other)) => Err(EventError::new(
            "data_base64",
            format!("must be a string, not {}", json_kind(&other)),
        )),
        (Some(value), None) => {
            let json = is_json_content_type(datacontenttype);
            match value {
                // JSON data may be an explicit null payload; other content
                // types have no null, so it means no data.
                Value::Null if !json => Ok(None),
                Value::String(text) if !json => Ok(Some(text.into_bytes())),
                value => serde_json::to_vec(&value)
                    .map(Some)
                    .map_err(|e| EventError::new("data", e.to_string())),
            }
        }
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
    if value.chars().any(|c| c.is_control()) {
        return Err(
            "must not contain control characters (U+0000–U+001F, U+007F–U+009F)".to_owned(),
        );
    }
    if value.chars().any(is_noncharacter) {
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

/// `datacontenttype` becomes a `content-type` header, so it must be one.
fn check_media_type(value: &str) -> Result<(), String> {
    let printable = value
        .bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b));
    if printable && split_media_type(value).is_some() {
        Ok(())
    } else {
        Err(format!(
            "must be a media type such as application/json, not {:?}",
            excerpt(value)
        ))
    }
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

fn content_type_header(raw: &[u8]) -> Result<String, EventError> {
    let value = std::str::from_utf8(raw)
        .map_err(|_| EventError::new("content-type", "must be ASCII text"))?
        .trim_matches([' ', '\t']);
    check_attribute(value)
        .and_then(|()| check_media_type(value))
        .map_err(|m| EventError::new("content-type", m))?;
    Ok(value.to_owned())
}

/// The binding's decoding: undo double-quoted strings (older producers quote
/// values with spaces), then one round of percent-decoding, then UTF-8.
fn decode_header_value(raw: &[u8]) -> Result<String, String> {
    let raw = raw.trim_ascii();
    let mut unquoted = Vec::with_capacity(raw.len());
    let mut bytes = raw.iter().copied();
    let mut quoted = false;
    while let Some(b) = bytes.next() {
        match (quoted, b) {
            (false, b'"') => quoted = true,
            (true, b'"') => quoted = false,
            (true, b'\\') => match bytes.next() {
                Some(escaped) => unquoted.push(escaped),
                None => return Err("ends inside a backslash escape".to_owned()),
            },
            (_, b) => unquoted.push(b),
        }
    }
    if quoted {
        return Err("has an unterminated double-quoted string".to_owned());
    }
    let decoded: Vec<u8> = percent_encoding::percent_decode(&unquoted).collect();
    String::from_utf8(decoded).map_err(|_| "is not valid UTF-8 after percent-decoding".to_owned())
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn minimal() -> Value {
        json!({"specversion": "1.0", "id": "e-1", "source": "/orders", "type": "order.created"})
    }

    fn with(mut base: Value, extra: Value) -> Vec<u8> {
        let (Value::Object(base_map), Value::Object(extra)) = (&mut base, extra) else {
            panic!("objects expected");
        };
        base_map.extend(extra);
        serde_json::to_vec(&base).unwrap()
    }

    fn without(member: &str) -> Vec<u8> {
        let mut base = minimal();
        base.as_object_mut().unwrap().remove(member);
        serde_json::to_vec(&base).unwrap()
    }

    fn structured(extra: Value) -> Result<CloudEvent, EventError> {
        parse_structured(&with(minimal(), extra))
    }

    fn err(field: &str, result: Result<CloudEvent, EventError>) -> String {
        let error = result.expect_err("should be rejected");
        assert_eq!(error.field, field, "{error}");
        error.message
    }

    fn binary(headers: &[(&str, &str)], body: &[u8]) -> Result<CloudEvent, EventError> {
        parse_binary(headers.iter().map(|(n, v)| (*n, v.as_bytes())), body)
    }

    const REQUIRED_HEADERS: [(&str, &str); 4] = [
        ("ce-specversion", "1.0"),
        ("ce-id", "e-1"),
        ("ce-source", "/orders"),
        ("ce-type", "order.created"),
    ];

    fn binary_with(extra: &[(&str, &str)], body: &[u8]) -> Result<CloudEvent, EventError> {
        let headers: Vec<_> = REQUIRED_HEADERS.iter().chain(extra).copied().collect();
        binary(&headers, body)
    }

    fn sample() -> CloudEvent {
        CloudEvent {
            id: "e-1".into(),
            source: "/orders".into(),
            ty: "order.created".into(),
            specversion: "1.0".into(),
            subject: None,
            time: None,
            datacontenttype: None,
            dataschema: None,
            extensions: BTreeMap::new(),
            data: None,
        }
    }

    // --- structured mode: attributes ---

    #[test]
    fn structured_minimal_event_parses() {
        let event = parse_structured(&serde_json::to_vec(&minimal()).unwrap()).unwrap();
        assert_eq!(event, sample());
    }

    #[test]
    fn structured_optional_attributes_are_kept() {
        let event = structured(json!({
            "subject": "order/42",
            "time": "2024-06-01T12:00:00+02:00",
            "datacontenttype": "application/xml",
            "dataschema": "https://example.com/schema",
        }))
        .unwrap();
        assert_eq!(event.subject.as_deref(), Some("order/42"));
        assert_eq!(event.time.as_deref(), Some("2024-06-01T12:00:00+02:00"));
        assert_eq!(event.datacontenttype.as_deref(), Some("application/xml"));
        assert_eq!(
            event.dataschema.as_deref(),
            Some("https://example.com/schema")
        );
        assert!(event.extensions.is_empty());
        assert_eq!(event.data, None);
    }

    #[test]
    fn structured_missing_required_attribute_is_named() {
        for member in ["id", "source", "type", "specversion"] {
            let message = err(member, parse_structured(&without(member)));
            assert_eq!(message, "is required");
        }
    }

    #[test]
    fn structured_null_required_attribute_counts_as_missing() {
        assert_eq!(err("id", structured(json!({"id": null}))), "is required");
    }

    #[test]
    fn structured_empty_required_attribute_is_rejected() {
        for member in ["id", "source", "type"] {
            let message = err(member, structured(json!({ member: "" })));
            assert_eq!(message, "must not be empty");
        }
    }

    #[test]
    fn structured_wrong_attribute_type_is_named() {
        assert_eq!(
            err("id", structured(json!({"id": 5}))),
            "must be a string, not a number"
        );
        assert_eq!(
            err("subject", structured(json!({"subject": ["a"]}))),
            "must be a string, not an array"
        );
        assert_eq!(
            err("type", structured(json!({"type": true}))),
            "must be a string, not a boolean"
        );
    }

    #[test]
    fn structured_specversion_other_than_1_0_is_rejected() {
        let message = err("specversion", structured(json!({"specversion": "0.3"})));
        assert!(message.contains("\"0.3\""), "{message}");
        assert!(message.contains("\"1.0\""), "{message}");
        err("specversion", structured(json!({"specversion": 1.0})));
    }

    #[test]
    fn structured_specversion_is_checked_before_other_attributes() {
        let body = json!({"specversion": "0.3", "id": 5});
        err(
            "specversion",
            parse_structured(&serde_json::to_vec(&body).unwrap()),
        );
    }

    #[test]
    fn structured_time_must_be_rfc3339() {
        for bad in [
            "yesterday",
            "2024-06-01",
            "2024-06-01T12:00:00",
            "1717243200",
        ] {
            let message = err("time", structured(json!({ "time": bad })));
            assert!(message.contains("RFC 3339"), "{message}");
        }
        for good in [
            "2024-06-01T12:00:00Z",
            "2024-06-01T12:00:00.123456789Z",
            "2024-06-01T12:00:00-07:00",
        ] {
            assert_eq!(
                structured(json!({ "time": good })).unwrap().time.as_deref(),
                Some(good)
            );
        }
    }

    #[test]
    fn structured_null_optional_attribute_is_unset() {
        let event = structured(json!({"subject": null, "time": null, "dataschema": null})).unwrap();
        assert_eq!(event, sample());
    }

    #[test]
    fn structured_empty_subject_is_rejected() {
        assert_eq!(
            err("subject", structured(json!({"subject": ""}))),
            "must not be empty"
        );
    }

    #[test]
    fn attribute_up_to_the_limit_is_accepted_beyond_it_rejected() {
        let at_limit = "x".repeat(MAX_ATTRIBUTE_LEN);
        assert_eq!(
            structured(json!({ "id": at_limit })).unwrap().id.len(),
            MAX_ATTRIBUTE_LEN
        );
        let message = err("id", structured(json!({ "id": format!("{at_limit}x") })));
        assert_eq!(message, "must be at most 4096 bytes, not 4097");
    }

    #[test]
    fn attribute_with_control_character_is_rejected() {
        for bad in ["a\nb", "a\u{0}b", "a\u{7f}b", "a\u{85}b"] {
            let message = err("subject", structured(json!({ "subject": bad })));
            assert!(message.contains("control characters"), "{message}");
        }
    }

    #[test]
    fn attribute_with_unicode_noncharacter_is_rejected() {
        for bad in ["a\u{fdd0}", "a\u{fffe}", "a\u{1ffff}"] {
            err("source", structured(json!({ "source": bad })));
        }
        assert!(structured(json!({"source": "/café/€/😀"})).is_ok());
    }

    #[test]
    fn datacontenttype_must_be_a_media_type() {
        for bad in ["json", "application/", "/json", "text/plain\u{e9}", "a b/c"] {
            err(
                "datacontenttype",
                structured(json!({ "datacontenttype": bad })),
            );
        }
        assert!(structured(json!({"datacontenttype": "text/plain; charset=\"utf-8\""})).is_ok());
    }

    // --- structured mode: extensions ---

    #[test]
    fn structured_extensions_accept_string_number_and_boolean() {
        let event = structured(
            json!({"traceparent": "00-abc", "partition": 7, "sampled": true, "ratio": 0.5}),
        )
        .unwrap();
        assert_eq!(
            event.extensions,
            BTreeMap::from([
                ("partition".to_owned(), json!(7)),
                ("ratio".to_owned(), json!(0.5)),
                ("sampled".to_owned(), json!(true)),
                ("traceparent".to_owned(), json!("00-abc")),
            ])
        );
    }

    #[test]
    fn structured_extension_may_be_an_empty_string() {
        let event = structured(json!({"tag": ""})).unwrap();
        assert_eq!(event.extensions["tag"], json!(""));
    }

    #[test]
    fn structured_null_extension_is_unset() {
        let event = structured(json!({"unsetextension": null})).unwrap();
        assert!(event.extensions.is_empty());
    }

    #[test]
    fn structured_extension_object_or_array_is_rejected_by_name() {
        let message = err("meta", structured(json!({"meta": {"a": 1}})));
        assert_eq!(
            message,
            "an extension must be a string, number or boolean, not an object"
        );
        err("tags", structured(json!({"tags": ["a"]})));
    }

    #[test]
    fn structured_extension_name_must_be_lower_case_alphanumeric() {
        for bad in ["traceParent", "trace_parent", "trace-parent", "tráce"] {
            let message = err(bad, structured(json!({ bad: "x" })));
            assert!(message.contains("lower-case"), "{message}");
        }
    }

    #[test]
    fn structured_extension_name_is_at_most_twenty_characters() {
        let twenty = "comexampleextension1";
        assert!(structured(json!({ twenty: "x" })).is_ok());
        let message = err(
            "comexampleextension12",
            structured(json!({"comexampleextension12": "x"})),
        );
        assert_eq!(message, "an extension name must be 1 to 20 characters long");
        err("", structured(json!({"": "x"})));
    }

    #[test]
    fn structured_extension_string_follows_attribute_rules() {
        err("tag", structured(json!({"tag": "a\tb"})));
        err(
            "tag",
            structured(json!({ "tag": "x".repeat(MAX_ATTRIBUTE_LEN + 1) })),
        );
    }

    #[test]
    fn error_echoes_at_most_an_excerpt_of_a_long_member_name() {
        let name = "X".repeat(1000);
        let error = structured(json!({ name: 1 })).unwrap_err();
        assert_eq!(error.field, format!("{}…", "X".repeat(64)));
    }

    // --- structured mode: data ---

    #[test]
    fn structured_json_data_becomes_its_compact_serialization() {
        let body = br#"{"specversion":"1.0","id":"1","source":"s","type":"t",
            "datacontenttype":"application/json","data": { "a" : [1, 2 ] }}"#;
        let event = parse_structured(body).unwrap();
        assert_eq!(event.data.as_deref(), Some(&br#"{"a":[1,2]}"#[..]));
    }

    #[test]
    fn structured_data_without_content_type_is_json() {
        let event = structured(json!({"data": "I'm just a string"})).unwrap();
        assert_eq!(event.data.as_deref(), Some(&br#""I'm just a string""#[..]));
        assert_eq!(event.datacontenttype, None);
    }

    #[test]
    fn structured_json_content_type_ignores_parameters_and_case() {
        for ct in [
            "Application/JSON; charset=utf-8",
            "text/json",
            "application/vnd.example+json",
            "application/cloudevents+JSON",
        ] {
            let event = structured(json!({"datacontenttype": ct, "data": "x"})).unwrap();
            assert_eq!(event.data.as_deref(), Some(&b"\"x\""[..]), "{ct}");
        }
    }

    #[test]
    fn structured_string_data_with_other_content_type_is_its_text() {
        let event = structured(json!({
            "datacontenttype": "application/xml",
            "data": "<much wow=\"xml\"/>",
        }))
        .unwrap();
        assert_eq!(event.data.as_deref(), Some(&b"<much wow=\"xml\"/>"[..]));
    }

    #[test]
    fn structured_non_string_data_with_other_content_type_is_serialized() {
        let event = structured(json!({"datacontenttype": "text/plain", "data": {"a": 1}})).unwrap();
        assert_eq!(event.data.as_deref(), Some(&br#"{"a":1}"#[..]));
    }

    #[test]
    fn structured_null_json_data_is_an_explicit_null_payload() {
        let event = structured(json!({"data": null})).unwrap();
        assert_eq!(event.data.as_deref(), Some(&b"null"[..]));
    }

    #[test]
    fn structured_null_data_with_other_content_type_is_no_data() {
        let event = structured(json!({"datacontenttype": "text/plain", "data": null})).unwrap();
        assert_eq!(event.data, None);
    }

    #[test]
    fn structured_data_base64_is_decoded_with_or_without_padding() {
        for encoded in ["aGk=", "aGk"] {
            let event = structured(json!({
                "datacontenttype": "application/octet-stream",
                "data_base64": encoded,
            }))
            .unwrap();
            assert_eq!(event.data.as_deref(), Some(&b"hi"[..]), "{encoded}");
        }
    }

    #[test]
    fn structured_data_base64_ignores_json_content_type() {
        let event = structured(json!({"data_base64": "eyJhIjoxfQ=="})).unwrap();
        assert_eq!(event.data.as_deref(), Some(&br#"{"a":1}"#[..]));
    }

    #[test]
    fn structured_invalid_base64_names_data_base64() {
        let message = err(
            "data_base64",
            structured(json!({"data_base64": "not base64!"})),
        );
        assert!(message.starts_with("is not valid base64"), "{message}");
        err("data_base64", structured(json!({"data_base64": 12})));
    }

    #[test]
    fn structured_null_data_base64_is_no_data() {
        assert_eq!(structured(json!({"data_base64": null})).unwrap().data, None);
    }

    #[test]
    fn structured_data_and_data_base64_are_mutually_exclusive() {
        let message = err(
            "data_base64",
            structured(json!({"data": {"a": 1}, "data_base64": "aGk="})),
        );
        assert_eq!(message, "must not be given together with data");
    }

    // --- structured mode: body ---

    #[test]
    fn structured_invalid_json_reports_line_and_column() {
        let error = parse_structured(b"{\n  \"id\": }").unwrap_err();
        assert_eq!(error.field, "body");
        assert!(
            error.message.starts_with("invalid JSON: "),
            "{}",
            error.message
        );
        assert!(error.message.contains("line 2 column"), "{}", error.message);
    }

    #[test]
    fn structured_body_must_be_an_object() {
        let error = parse_structured(b"[1]").unwrap_err();
        assert_eq!(error.field, "body");
        assert_eq!(
            error.message,
            "a structured event must be a JSON object, not an array"
        );
        assert_eq!(parse_structured(b"").unwrap_err().field, "body");
    }

    // --- batch mode ---

    #[test]
    fn a_member_given_twice_is_refused_at_any_depth() {
        for (body, member) in [
            (
                r#"{"specversion":"1.0","id":"a","id":"b","source":"/s","type":"t"}"#,
                "id",
            ),
            (
                r#"{"specversion":"1.0","id":"a","source":"/s","type":"t","ext":1,"ext":2}"#,
                "ext",
            ),
            (
                r#"{"specversion":"1.0","id":"a","source":"/s","type":"t","data":{"k":1,"k":2}}"#,
                "k",
            ),
            (
                r#"{"specversion":"1.0","id":"a","source":"/s","type":"t","data":[{"x":{"y":0,"y":0}}]}"#,
                "y",
            ),
        ] {
            let message = err("body", parse_structured(body.as_bytes()));
            assert!(
                message.contains(&format!("the member \"{member}\" appears twice at line 1")),
                "{body}: {message}"
            );
        }
        let batch = format!(
            "[{},{}]",
            minimal(),
            r#"{"specversion":"1.0","id":"a","source":"/s","source":"/t","type":"t"}"#
        );
        let message = err(
            "body",
            parse_batch(batch.as_bytes()).map(|mut v| v.remove(0)),
        );
        assert!(message.contains("\"source\" appears twice"), "{message}");
        // The same names in different objects are no duplicates.
        let fine = r#"{"specversion":"1.0","id":"a","source":"/s","type":"t","data":{"id":1,"a":{"id":2}}}"#;
        assert_eq!(
            parse_structured(fine.as_bytes()).unwrap().data.unwrap(),
            br#"{"a":{"id":2},"id":1}"#
        );
    }

    #[test]
    fn limits_count_extensions_and_the_bytes_attributes_take_as_headers() {
        let limits = EventLimits {
            max_extensions: 3,
            max_attribute_bytes: 200,
        };
        let mut event = sample();
        for i in 0..3 {
            event.extensions.insert(format!("x{i}"), json!(i));
        }
        // Unset (null) extensions are not carried, so they do not count.
        event.extensions.insert("gone".into(), Value::Null);
        assert_eq!(event.check_limits(&limits), Ok(()));
        event.extensions.insert("x3".into(), json!("v"));
        assert_eq!(
            event.check_limits(&limits),
            Err(LimitError::TooManyExtensions { count: 4, max: 3 })
        );
        event.extensions.remove("x3");

        // Each header line is "name: value\r\n", the value percent-encoded.
        let bytes = event.binary_header_bytes();
        let expected: usize = crate::binding::binary_headers(&event)
            .iter()
            .map(|(n, v)| format!("{n}: {v}\r\n").len())
            .sum();
        assert_eq!(bytes, expected);
        // A subject filling what is left: é is percent-encoded to 6 bytes.
        let room = 200 - bytes - "ce-subject: \r\n".len();
        event.subject = Some("é".repeat(room / 6));
        assert_eq!(event.binary_header_bytes(), 200 - room % 6);
        assert_eq!(event.check_limits(&limits), Ok(()));
        event.subject = Some("é".repeat(room / 6 + 1));
        assert_eq!(
            event.check_limits(&limits),
            Err(LimitError::AttributesTooLarge {
                bytes: event.binary_header_bytes(),
                max: 200
            })
        );
        let message = event.check_limits(&limits).unwrap_err().to_string();
        assert!(message.starts_with("attributes: "), "{message}");
        assert!(EventLimits::default().max_attribute_bytes >= 4096);
    }

    #[test]
    fn batch_parses_every_event_in_order() {
        let body = json!([
            {"specversion": "1.0", "id": "1", "source": "s", "type": "t"},
            {"specversion": "1.0", "id": "2", "source": "s", "type": "t", "data": 3},
        ]);
        let events = parse_batch(&serde_json::to_vec(&body).unwrap()).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].id, "1");
        assert_eq!(events[1].id, "2");
        assert_eq!(events[1].data.as_deref(), Some(&b"3"[..]));
    }

    #[test]
    fn batch_error_names_index_and_field() {
        let ok = minimal();
        let body = json!([ok, ok, {"specversion": "1.0", "id": 7, "source": "s", "type": "t"}]);
        let error = parse_batch(&serde_json::to_vec(&body).unwrap()).unwrap_err();
        assert_eq!(error.field, "[2].id");
        assert_eq!(error.to_string(), "[2].id: must be a string, not a number");
    }

    #[test]
    fn batch_item_that_is_not_an_object_is_named_by_index() {
        let body = json!([minimal(), "nope"]);
        let error = parse_batch(&serde_json::to_vec(&body).unwrap()).unwrap_err();
        assert_eq!(error.field, "[1]");
        assert_eq!(
            error.message,
            "an event must be a JSON object, not a string"
        );
    }

    #[test]
    fn batch_must_hold_at_least_one_event() {
        let error = parse_batch(b"[]").unwrap_err();
        assert_eq!(
            error,
            EventError::new("body", "a batch must hold at least one event")
        );
    }

    #[test]
    fn batch_body_must_be_an_array() {
        let error = parse_batch(&serde_json::to_vec(&minimal()).unwrap()).unwrap_err();
        assert_eq!(error.field, "body");
        assert_eq!(error.message, "a batch must be a JSON array, not an object");
        assert!(
            parse_batch(b"[")
                .unwrap_err()
                .message
                .starts_with("invalid JSON")
        );
    }

    // --- binary mode ---

    #[test]
    fn binary_parses_required_headers_case_insensitively() {
        let event = binary(
            &[
                ("CE-SpecVersion", "1.0"),
                ("Ce-Id", "e-1"),
                ("ce-source", "/orders"),
                ("CE-TYPE", "order.created"),
            ],
            b"",
        )
        .unwrap();
        assert_eq!(event, sample());
    }

    #[test]
    fn binary_missing_required_header_is_named() {
        for missing in ["ce-id", "ce-source", "ce-type", "ce-specversion"] {
            let headers: Vec<_> = REQUIRED_HEADERS
                .iter()
                .filter(|(name, _)| *name != missing)
                .copied()
                .collect();
            let message = err(missing, binary(&headers, b""));
            assert_eq!(message, "required header is missing");
        }
    }

    #[test]
    fn binary_empty_required_header_is_rejected() {
        let headers = [
            ("ce-specversion", "1.0"),
            ("ce-id", ""),
            ("ce-source", "/s"),
            ("ce-type", "t"),
        ];
        assert_eq!(err("ce-id", binary(&headers, b"")), "must not be empty");
    }

    #[test]
    fn binary_specversion_other_than_1_0_is_rejected() {
        let headers = [
            ("ce-specversion", "0.3"),
            ("ce-id", "1"),
            ("ce-source", "/s"),
            ("ce-type", "t"),
        ];
        err("ce-specversion", binary(&headers, b""));
    }

    #[test]
    fn binary_optional_headers_and_body_fill_the_event() {
        let event = binary_with(
            &[
                ("ce-subject", "order/42"),
                ("ce-time", "2024-06-01T12:00:00Z"),
                ("ce-dataschema", "https://example.com/schema"),
                ("Content-Type", "application/json; charset=utf-8"),
                ("user-agent", "curl/8"),
            ],
            br#"{"a": 1}"#,
        )
        .unwrap();
        assert_eq!(event.subject.as_deref(), Some("order/42"));
        assert_eq!(event.time.as_deref(), Some("2024-06-01T12:00:00Z"));
        assert_eq!(
            event.dataschema.as_deref(),
            Some("https://example.com/schema")
        );
        assert_eq!(
            event.datacontenttype.as_deref(),
            Some("application/json; charset=utf-8")
        );
        assert_eq!(event.data.as_deref(), Some(&br#"{"a": 1}"#[..]));
        assert!(
            event.extensions.is_empty(),
            "non-ce headers are not attributes"
        );
    }

    #[test]
    fn binary_empty_body_is_no_data() {
        assert_eq!(binary_with(&[], b"").unwrap().data, None);
    }

    #[test]
    fn binary_values_are_percent_decoded() {
        let event = binary_with(
            &[("ce-subject", "Euro%20%E2%82%AC%20%f0%9f%98%80%2525")],
            b"",
        )
        .unwrap();
        assert_eq!(event.subject.as_deref(), Some("Euro € 😀%25"));
    }

    #[test]
    fn binary_unnecessary_percent_encoding_is_accepted() {
        let event = binary_with(&[("ce-subject", "%61%62c")], b"").unwrap();
        assert_eq!(event.subject.as_deref(), Some("abc"));
    }

    #[test]
    fn binary_invalid_utf8_after_decoding_names_the_header() {
        let message = err("ce-subject", binary_with(&[("ce-subject", "%C0%A0")], b""));
        assert_eq!(message, "is not valid UTF-8 after percent-decoding");
    }

    #[test]
    fn binary_quoted_string_values_are_unescaped() {
        let event = binary_with(&[("ce-subject", r#""a b \"c\"" d"#)], b"").unwrap();
        assert_eq!(event.subject.as_deref(), Some(r#"a b "c" d"#));
    }

    #[test]
    fn binary_unterminated_quoted_string_is_rejected() {
        err("ce-subject", binary_with(&[("ce-subject", "\"abc")], b""));
        err("ce-subject", binary_with(&[("ce-subject", "\"abc\\")], b""));
    }

    #[test]
    fn binary_decoded_control_character_is_rejected() {
        let message = err("ce-subject", binary_with(&[("ce-subject", "a%0Ab")], b""));
        assert!(message.contains("control characters"), "{message}");
    }

    #[test]
    fn binary_invalid_time_names_ce_time() {
        let message = err("ce-time", binary_with(&[("ce-time", "noon")], b""));
        assert!(message.contains("RFC 3339"), "{message}");
    }

    #[test]
    fn binary_other_ce_headers_are_string_extensions() {
        let event = binary_with(
            &[
                ("ce-traceparent", "00-abc"),
                ("CE-Partition", "7"),
                ("ce-tag", ""),
            ],
            b"",
        )
        .unwrap();
        assert_eq!(
            event.extensions,
            BTreeMap::from([
                ("partition".to_owned(), json!("7")),
                ("tag".to_owned(), json!("")),
                ("traceparent".to_owned(), json!("00-abc")),
            ])
        );
    }

    #[test]
    fn binary_invalid_extension_name_is_named_by_header() {
        let message = err(
            "ce-trace_parent",
            binary_with(&[("ce-trace_parent", "x")], b""),
        );
        assert!(message.contains("lower-case"), "{message}");
        err("ce-", binary_with(&[("ce-", "x")], b""));
        err(
            "ce-comexampleextension12",
            binary_with(&[("ce-comexampleextension12", "x")], b""),
        );
    }

    #[test]
    fn binary_ce_data_is_reserved() {
        let message = err("ce-data", binary_with(&[("ce-data", "x")], b""));
        assert!(message.contains("reserved"), "{message}");
    }

    #[test]
    fn binary_ce_datacontenttype_is_rejected() {
        let message = err(
            "ce-datacontenttype",
            binary_with(&[("ce-datacontenttype", "text/plain")], b"x"),
        );
        assert!(message.contains("content-type header"), "{message}");
    }

    #[test]
    fn binary_repeated_header_is_rejected() {
        err("ce-id", binary_with(&[("CE-ID", "e-2")], b""));
        err(
            "content-type",
            binary_with(
                &[
                    ("content-type", "text/plain"),
                    ("Content-Type", "text/html"),
                ],
                b"",
            ),
        );
    }

    #[test]
    fn binary_content_type_must_be_a_media_type() {
        err(
            "content-type",
            binary_with(&[("content-type", "plain")], b"x"),
        );
        err("content-type", binary_with(&[("content-type", "")], b"x"));
        let headers: Vec<(&str, &[u8])> = REQUIRED_HEADERS
            .iter()
            .map(|(n, v)| (*n, v.as_bytes()))
            .chain([("content-type", &b"text/\xff"[..])])
            .collect();
        assert_eq!(
            parse_binary(headers, b"x").unwrap_err().field,
            "content-type"
        );
    }

    // --- JSON format, outbound ---

    #[test]
    fn is_json_content_type_follows_the_json_format() {
        assert!(is_json_content_type(None));
        for ct in [
            "application/json",
            "APPLICATION/JSON;charset=UTF-8",
            "text/json",
            "application/ld+json",
            " application/problem+json ; q=1",
        ] {
            assert!(is_json_content_type(Some(ct)), "{ct}");
        }
        for ct in [
            "text/plain",
            "application/jsonp",
            "json",
            "application/json-seq",
            "",
        ] {
            assert!(!is_json_content_type(Some(ct)), "{ct}");
        }
    }

    #[test]
    fn to_structured_json_writes_every_attribute_and_extension() {
        let mut event = sample();
        event.subject = Some("order/42".into());
        event.time = Some("2024-06-01T12:00:00Z".into());
        event.datacontenttype = Some("application/json".into());
        event.dataschema = Some("https://example.com/s".into());
        event.extensions.insert("partition".into(), json!(7));
        event.extensions.insert("unset".into(), Value::Null);
        event.data = Some(br#"{"a":1}"#.to_vec());
        assert_eq!(
            event.to_structured_json(),
            json!({
                "specversion": "1.0",
                "id": "e-1",
                "source": "/orders",
                "type": "order.created",
                "subject": "order/42",
                "time": "2024-06-01T12:00:00Z",
                "datacontenttype": "application/json",
                "dataschema": "https://example.com/s",
                "partition": 7,
                "data": {"a": 1},
            })
        );
    }

    #[test]
    fn to_structured_json_without_data_has_no_data_member() {
        let object = sample().to_structured_json();
        assert_eq!(object.get("data"), None);
        assert_eq!(object.get("data_base64"), None);
    }

    #[test]
    fn to_structured_json_chooses_data_representation_by_content_type() {
        let cases: [(Option<&str>, &[u8], Value); 8] = [
            (None, b"[1,2]", json!({"data": [1, 2]})),
            (None, b"hello", json!({"data_base64": "aGVsbG8="})),
            (
                Some("application/json"),
                b"{oops",
                json!({"data_base64": "e29vcHM="}),
            ),
            (Some("text/plain"), b"hello", json!({"data": "hello"})),
            (
                Some("application/xml; charset=utf-8"),
                b"<a/>",
                json!({"data": "<a/>"}),
            ),
            (
                Some("text/plain; charset=iso-8859-1"),
                b"hello",
                json!({"data_base64": "aGVsbG8="}),
            ),
            (Some("text/plain"), b"\xff", json!({"data_base64": "/w=="})),
            (
                Some("application/octet-stream"),
                b"hello",
                json!({"data_base64": "aGVsbG8="}),
            ),
        ];
        for (ct, bytes, expected) in cases {
            let mut event = sample();
            event.datacontenttype = ct.map(str::to_owned);
            event.data = Some(bytes.to_vec());
            let object = event.to_structured_json();
            let (member, value) = expected.as_object().unwrap().iter().next().unwrap();
            assert_eq!(object.get(member), Some(value), "{ct:?}");
            let other = if member == "data" {
                "data_base64"
            } else {
                "data"
            };
            assert_eq!(object.get(other), None, "{ct:?}");
        }
    }

    #[test]
    fn to_structured_json_skips_extensions_shadowing_spec_members() {
        let mut event = sample();
        event.extensions.insert("id".into(), json!("other"));
        event.extensions.insert("data_base64".into(), json!("aGk="));
        event.data = Some(b"1".to_vec());
        let object = event.to_structured_json();
        assert_eq!(object["id"], json!("e-1"));
        assert_eq!(object.get("data_base64"), None);
        assert_eq!(object["data"], json!(1));
    }

    #[test]
    fn structured_json_round_trips_through_parse_structured() {
        let mut json_event = sample();
        json_event.subject = Some("a b\"c%d€".into());
        json_event.time = Some("2024-06-01T12:00:00.5+02:00".into());
        json_event.extensions.insert("partition".into(), json!(7));
        json_event.extensions.insert("sampled".into(), json!(false));
        json_event.data = Some(br#"{"a":[1,"x"]}"#.to_vec());

        let mut text_event = sample();
        text_event.datacontenttype = Some("text/plain".into());
        text_event.data = Some("héllo\n".as_bytes().to_vec());

        let mut binary_event = sample();
        binary_event.datacontenttype = Some("image/png".into());
        binary_event.data = Some(vec![0x89, b'P', b'N', b'G', 0, 0xff]);

        let mut null_event = sample();
        null_event.data = Some(b"null".to_vec());

        let mut empty_text_event = sample();
        empty_text_event.datacontenttype = Some("text/plain".into());
        empty_text_event.data = Some(Vec::new());

        for event in [
            sample(),
            json_event,
            text_event,
            binary_event,
            null_event,
            empty_text_event,
        ] {
            let body = serde_json::to_vec(&event.to_structured_json()).unwrap();
            assert_eq!(parse_structured(&body).unwrap(), event);
        }
    }

    // --- storage ---

    #[test]
    fn attributes_json_round_trips_with_data_kept_apart() {
        let mut event = sample();
        event.subject = Some("s".into());
        event.time = Some("2024-06-01T12:00:00Z".into());
        event.datacontenttype = Some("application/octet-stream".into());
        event.dataschema = Some("https://example.com/s".into());
        event.extensions.insert("partition".into(), json!(7));
        event.extensions.insert("trace".into(), json!("x"));
        event.data = Some(vec![0, 1, 2, 255]);

        let attributes = event.to_attributes_json();
        assert!(
            !attributes.contains("data\""),
            "data is stored apart: {attributes}"
        );
        let back = CloudEvent::from_attributes_json(&attributes, event.data.clone()).unwrap();
        assert_eq!(back, event);

        // The plain serde derive is the same representation.
        let via_serde: CloudEvent =
            serde_json::from_str(&serde_json::to_string(&event).unwrap()).unwrap();
        assert_eq!(
            CloudEvent {
                data: event.data.clone(),
                ..via_serde
            },
            event
        );
    }

    #[test]
    fn attributes_json_of_minimal_event_has_only_required_members() {
        assert_eq!(
            serde_json::from_str::<Value>(&sample().to_attributes_json()).unwrap(),
            json!({"id": "e-1", "source": "/orders", "type": "order.created", "specversion": "1.0"})
        );
        assert_eq!(
            CloudEvent::from_attributes_json(&sample().to_attributes_json(), None).unwrap(),
            sample()
        );
    }
}

//! The JSON format of CloudEvents (`application/cloudevents+json`, and
//! batches as `application/cloudevents-batch+json`): reading events in,
//! writing an event out.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::media_type::{check_media_type, is_json_content_type, is_text_content_type};
use super::*;

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

/// The event in structured mode (`application/cloudevents+json`).
///
/// JSON data is written with the payload's own bytes rather than a
/// re-serialization, so numbers beyond `f64` precision and member order reach
/// the endpoint exactly as published in binary mode.
pub fn structured_body(event: &CloudEvent) -> Vec<u8> {
    let Some(StructuredData::Json { raw, .. }) = event.structured_data() else {
        return event.to_structured_json().to_string().into_bytes();
    };
    let attributes = Value::Object(event.structured_attributes()).to_string();
    // Splice `"data":<raw>` in before the closing brace; `raw` parsed as one
    // JSON value, so the result is one JSON object.
    let head = attributes.strip_suffix('}').unwrap_or(&attributes);
    let mut body = Vec::with_capacity(attributes.len() + raw.len() + 8);
    body.extend_from_slice(head.as_bytes());
    if head.len() > 1 {
        body.push(b',');
    }
    body.extend_from_slice(br#""data":"#);
    body.extend_from_slice(raw);
    body.push(b'}');
    body
}

//! What redrive sends, read back into a CloudEvent: binary mode, structured
//! mode or Pub/Sub's push envelope.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use percent_encoding::percent_decode;
use serde_json::{Map, Value};

use crate::headers::Headers;

/// A CloudEvent as a receiver sees it.
///
/// Extensions are strings whatever format carried them (binary mode and
/// Pub/Sub attributes can carry nothing else); a number or boolean from
/// structured mode becomes its JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudEvent {
    pub id: String,
    pub source: String,
    /// The `type` attribute.
    pub ty: String,
    pub specversion: String,
    pub subject: Option<String>,
    pub time: Option<String>,
    pub datacontenttype: Option<String>,
    pub dataschema: Option<String>,
    pub extensions: BTreeMap<String, String>,
    /// The payload. JSON data that arrived inside a structured-mode event
    /// is its compact JSON text; binary mode and Pub/Sub give the bytes as
    /// sent.
    pub data: Option<Vec<u8>>,
}

impl CloudEvent {
    /// The data read as JSON into `T`.
    ///
    /// ```
    /// # use redrive_receiver::CloudEvent;
    /// # let event = CloudEvent { id: "1".into(), source: "/s".into(), ty: "t".into(),
    /// #     specversion: "1.0".into(), subject: None, time: None, datacontenttype: None,
    /// #     dataschema: None, extensions: Default::default(), data: Some(br#"{"total": 42}"#.to_vec()) };
    /// #[derive(serde::Deserialize)]
    /// struct Order { total: u64 }
    /// let order: Order = event.data_json().unwrap();
    /// assert_eq!(order.total, 42);
    /// ```
    pub fn data_json<T: serde::de::DeserializeOwned>(&self) -> Result<T, DecodeError> {
        let data = self
            .data
            .as_deref()
            .ok_or_else(|| DecodeError::new("data", "the event has no data"))?;
        serde_json::from_slice(data)
            .map_err(|err| DecodeError::new("data", format!("not the JSON expected: {err}")))
    }
}

/// How the event travelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// CloudEvents binary mode: attributes in `ce-*` headers, data as body.
    Binary,
    /// CloudEvents structured mode: `application/cloudevents+json`.
    Structured,
    /// Pub/Sub's push envelope.
    PubsubPush,
}

impl Format {
    /// The name redrive's `payload_format` gives it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Format::Binary => "cloudevents-binary",
            Format::Structured => "cloudevents-structured",
            Format::PubsubPush => "pubsub-push",
        }
    }
}

/// A signed request that is not a CloudEvent redrive could have sent.
/// Answered 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct DecodeError {
    /// The header or member at fault.
    pub field: String,
    pub message: String,
}

impl DecodeError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> DecodeError {
        DecodeError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Attributes every CloudEvent has, in the order they are read.
const REQUIRED: [&str; 4] = ["id", "source", "type", "specversion"];
const OPTIONAL: [&str; 4] = ["subject", "time", "datacontenttype", "dataschema"];

/// Reads the event from a request, in whichever format it came, with the
/// attempt number redrive sent (`redrive-attempt`, or the envelope's
/// `deliveryAttempt`).
pub fn decode(
    headers: &Headers,
    body: &[u8],
) -> Result<(Format, CloudEvent, Option<u32>), DecodeError> {
    let media_type = headers.get_str("content-type").map(|ct| {
        ct.split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
    });
    let header_attempt = match headers.get("redrive-attempt") {
        None => None,
        Some(raw) => Some(
            std::str::from_utf8(raw)
                .ok()
                .and_then(|text| text.trim().parse::<u32>().ok())
                .ok_or_else(|| DecodeError::new("redrive-attempt", "is not a number"))?,
        ),
    };
    if headers.get("ce-specversion").is_some() {
        let event = decode_binary(headers, body)?;
        return Ok((Format::Binary, event, header_attempt));
    }
    match media_type.as_deref() {
        Some("application/cloudevents+json") => {
            let event = decode_structured(body)?;
            Ok((Format::Structured, event, header_attempt))
        }
        Some("application/json") => {
            let (event, envelope_attempt) = decode_pubsub(body)?;
            Ok((
                Format::PubsubPush,
                event,
                header_attempt.or(envelope_attempt),
            ))
        }
        _ => Err(DecodeError::new(
            "content-type",
            "not a CloudEvent: no ce-specversion header, no application/cloudevents+json \
             body and no Pub/Sub push envelope",
        )),
    }
}

/// Binary mode: `ce-*` headers, percent-decoded, and the body as data.
pub fn decode_binary(headers: &Headers, body: &[u8]) -> Result<CloudEvent, DecodeError> {
    let mut attributes: BTreeMap<String, String> = BTreeMap::new();
    for (name, raw) in headers.iter() {
        let Some(attribute) = name.strip_prefix("ce-") else {
            continue;
        };
        let value = percent_decode(raw)
            .decode_utf8()
            .map_err(|_| DecodeError::new(name, "is not UTF-8 once percent-decoded"))?;
        // The first of repeated headers wins, as `Headers::get` reads it.
        attributes
            .entry(attribute.to_owned())
            .or_insert_with(|| value.into_owned());
    }
    // The content-type header carries datacontenttype in binary mode.
    attributes.remove("datacontenttype");
    let content_type = headers
        .get_str("content-type")
        .map(|ct| ct.trim().to_owned());
    let data = (!body.is_empty()).then(|| body.to_vec());
    build(attributes, content_type, data, "ce-")
}

/// Structured mode: the whole event as one JSON object.
pub fn decode_structured(body: &[u8]) -> Result<CloudEvent, DecodeError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|err| DecodeError::new("body", format!("not JSON: {err}")))?;
    let Value::Object(mut object) = value else {
        return Err(DecodeError::new(
            "body",
            "a structured event is a JSON object",
        ));
    };
    let data = object.remove("data");
    let data_base64 = object.remove("data_base64");
    let mut attributes = BTreeMap::new();
    for (name, value) in object {
        let text = match value {
            Value::Null => continue,
            Value::String(text) => text,
            Value::Number(_) | Value::Bool(_) => value.to_string(),
            _ => {
                return Err(DecodeError::new(
                    name,
                    "an attribute is a string, number or boolean",
                ));
            }
        };
        attributes.insert(name, text);
    }
    let content_type = attributes.remove("datacontenttype");
    let data = match (data, data_base64) {
        (Some(_), Some(_)) => {
            return Err(DecodeError::new(
                "data_base64",
                "an event has data or data_base64, not both",
            ));
        }
        (Some(Value::Null), None) | (None, None) => None,
        (None, Some(Value::String(encoded))) => Some(
            BASE64
                .decode(encoded)
                .map_err(|err| DecodeError::new("data_base64", format!("not base64: {err}")))?,
        ),
        (None, Some(_)) => return Err(DecodeError::new("data_base64", "is a string")),
        (Some(Value::String(text)), None) if !is_json(content_type.as_deref()) => {
            Some(text.into_bytes())
        }
        (Some(value), None) => Some(value.to_string().into_bytes()),
    };
    build(attributes, content_type, data, "")
}

/// Pub/Sub's push envelope: `message.data` (base64) as data, context
/// attributes from `message.attributes["ce-…"]`, the rest of the attributes
/// as extensions. Returns the envelope's `deliveryAttempt` too.
pub fn decode_pubsub(body: &[u8]) -> Result<(CloudEvent, Option<u32>), DecodeError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|err| DecodeError::new("body", format!("not JSON: {err}")))?;
    let Some(message) = value.get("message").and_then(Value::as_object) else {
        return Err(DecodeError::new(
            "message",
            "a Pub/Sub push envelope has a message object",
        ));
    };
    let attempt = match value.get("deliveryAttempt") {
        None | Some(Value::Null) => None,
        Some(n) => Some(
            n.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| DecodeError::new("deliveryAttempt", "is a positive number"))?,
        ),
    };
    let empty = Map::new();
    let attributes_json = match message.get("attributes") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(map)) => map,
        Some(_) => return Err(DecodeError::new("message.attributes", "is an object")),
    };
    let mut attributes = BTreeMap::new();
    for (name, value) in attributes_json {
        let Value::String(text) = value else {
            return Err(DecodeError::new(
                format!("message.attributes.{name}"),
                "is a string",
            ));
        };
        // Context attributes carry a `ce-` prefix; a publisher's own
        // attributes (the event's extensions) do not.
        let name = name.strip_prefix("ce-").unwrap_or(name);
        attributes
            .entry(name.to_owned())
            .or_insert_with(|| text.clone());
    }
    if !attributes.contains_key("id")
        && let Some(id) = message
            .get("messageId")
            .or_else(|| message.get("message_id"))
            .and_then(Value::as_str)
    {
        attributes.insert("id".into(), id.to_owned());
    }
    let content_type = attributes.remove("datacontenttype");
    let data = match message.get("data") {
        None | Some(Value::Null) => None,
        Some(Value::String(encoded)) => {
            let bytes = BASE64
                .decode(encoded)
                .map_err(|err| DecodeError::new("message.data", format!("not base64: {err}")))?;
            (!bytes.is_empty()).then_some(bytes)
        }
        Some(_) => return Err(DecodeError::new("message.data", "is a base64 string")),
    };
    Ok((
        build(attributes, content_type, data, "message.attributes.ce-")?,
        attempt,
    ))
}

fn build(
    mut attributes: BTreeMap<String, String>,
    datacontenttype: Option<String>,
    data: Option<Vec<u8>>,
    field_prefix: &str,
) -> Result<CloudEvent, DecodeError> {
    let mut required = |name: &str| {
        attributes
            .remove(name)
            .filter(|value| !value.is_empty())
            .ok_or_else(|| DecodeError::new(format!("{field_prefix}{name}"), "is required"))
    };
    let [id, source, ty, specversion] = REQUIRED.map(&mut required);
    let (id, source, ty, specversion) = (id?, source?, ty?, specversion?);
    let [subject, time, _, dataschema] = OPTIONAL.map(|name| attributes.remove(name));
    Ok(CloudEvent {
        id,
        source,
        ty,
        specversion,
        subject,
        time,
        datacontenttype,
        dataschema,
        extensions: attributes,
        data,
    })
}

/// `*/json` or `*/*+json`, or no content type at all (JSON by default).
fn is_json(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else {
        return true;
    };
    let media = ct
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    media.ends_with("/json") || media.ends_with("+json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_mode_percent_decodes_and_keeps_extensions() {
        let headers = Headers::from_pairs([
            ("ce-id", "100%25%20sure"),
            ("ce-source", "/a%20b"),
            ("ce-type", "t"),
            ("ce-specversion", "1.0"),
            ("ce-subject", "a%22b%E2%82%AC"),
            ("ce-partition", "7"),
            ("content-type", "application/json"),
            ("redrive-attempt", "3"),
        ]);
        let (format, event, attempt) = decode(&headers, b"{}").unwrap();
        assert_eq!(format, Format::Binary);
        assert_eq!(attempt, Some(3));
        assert_eq!(event.id, "100% sure");
        assert_eq!(event.source, "/a b");
        assert_eq!(event.subject.as_deref(), Some("a\"b€"));
        assert_eq!(event.extensions["partition"], "7");
        assert_eq!(event.datacontenttype.as_deref(), Some("application/json"));
        assert_eq!(event.data.as_deref(), Some(&b"{}"[..]));
    }

    #[test]
    fn structured_text_data_stays_text_and_binary_data_is_decoded() {
        let text = br#"{"id":"1","source":"/s","type":"t","specversion":"1.0","datacontenttype":"text/plain","data":"hi","n":5}"#;
        let event = decode_structured(text).unwrap();
        assert_eq!(event.data.as_deref(), Some(&b"hi"[..]));
        assert_eq!(event.extensions["n"], "5");
        let binary =
            br#"{"id":"1","source":"/s","type":"t","specversion":"1.0","data_base64":"AP8="}"#;
        assert_eq!(decode_structured(binary).unwrap().data, Some(vec![0, 0xff]));
    }

    #[test]
    fn missing_attributes_name_the_field() {
        let headers = Headers::from_pairs([("ce-specversion", "1.0"), ("ce-id", "1")]);
        let err = decode(&headers, b"").unwrap_err();
        assert_eq!(err.field, "ce-source");
        let err =
            decode_structured(br#"{"id":"1","source":"/s","specversion":"1.0"}"#).unwrap_err();
        assert_eq!(err.field, "type");
    }

    #[test]
    fn pubsub_envelope_reads_attempt_and_falls_back_to_message_id() {
        let body = br#"{"message":{"data":"eyJ0b3RhbCI6NDJ9","attributes":{"ce-source":"/shop","ce-type":"order.created","ce-specversion":"1.0","origin":"eu"},"messageId":"m-1"},"subscription":"projects/redrive/subscriptions/s","deliveryAttempt":2}"#;
        let headers = Headers::from_pairs([("content-type", "application/json")]);
        let (format, event, attempt) = decode(&headers, body).unwrap();
        assert_eq!(format, Format::PubsubPush);
        assert_eq!(attempt, Some(2));
        assert_eq!(event.id, "m-1");
        assert_eq!(event.extensions["origin"], "eu");
        assert_eq!(event.data.as_deref(), Some(&br#"{"total":42}"#[..]));
    }

    #[test]
    fn anything_else_is_not_a_cloud_event() {
        let headers = Headers::from_pairs([("content-type", "text/plain")]);
        assert_eq!(decode(&headers, b"hi").unwrap_err().field, "content-type");
    }
}

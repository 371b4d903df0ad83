//! CloudEvents 1.0: the event model and its three inbound HTTP encodings
//! (structured, batch, binary).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

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

/// Parses one event in structured mode (`application/cloudevents+json`).
pub fn parse_structured(body: &[u8]) -> Result<CloudEvent, EventError> {
    let _ = body;
    todo!()
}

/// Parses a batch (`application/cloudevents-batch+json`): a JSON array of
/// structured events. All-or-nothing: the first invalid event fails it.
pub fn parse_batch(body: &[u8]) -> Result<Vec<CloudEvent>, EventError> {
    let _ = body;
    todo!()
}

/// Parses binary mode: attributes in `ce-*` headers (percent-encoded), the
/// body is the data, `content-type` is `datacontenttype`.
pub fn parse_binary<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    body: &[u8],
) -> Result<CloudEvent, EventError> {
    let _ = (headers.into_iter(), body);
    todo!()
}

//! The CloudEvents HTTP binding in binary mode, both ways: the attributes
//! as `ce-*` headers and the data as the body.

use std::borrow::Cow;

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use serde_json::Value;

use super::media_type::check_media_type;
use super::*;

/// What the binding requires percent-encoded in a header value: space,
/// double-quote, percent, and everything outside printable ASCII (controls
/// here; non-ASCII bytes are always encoded by `utf8_percent_encode`).
const HEADER_VALUE: &AsciiSet = &CONTROLS.add(b' ').add(b'"').add(b'%');

/// Headers of binary mode: `ce-id`, `ce-source`, `ce-type`, `ce-specversion`,
/// optional `ce-time`, `ce-subject`, `ce-dataschema`, `ce-<extension>`, values
/// percent-encoded as the binding requires, and `content-type` (the event's
/// `datacontenttype`, `application/json` when it has none and carries data).
pub fn binary_headers(event: &CloudEvent) -> Vec<(String, String)> {
    let mut headers = Vec::with_capacity(8 + event.extensions.len());
    each_binary_header(event, |name, value| {
        headers.push((name.into_owned(), value.into_owned()));
    });
    headers
}

impl CloudEvent {
    /// The bytes the attributes take as the headers of a binary-mode push
    /// (counted without building them: every publish checks it).
    pub fn binary_header_bytes(&self) -> usize {
        let mut bytes = 0;
        // "name: value\r\n"
        each_binary_header(self, |name, value| bytes += name.len() + value.len() + 4);
        bytes
    }
}

/// Calls `header` with each header of [`binary_headers`], in order; a name
/// or value is borrowed where it needs no building.
fn each_binary_header(event: &CloudEvent, mut header: impl FnMut(Cow<'static, str>, Cow<'_, str>)) {
    let mut put = |name: Cow<'static, str>, value: &str| {
        header(name, utf8_percent_encode(value, HEADER_VALUE).into());
    };
    put(Cow::Borrowed("ce-id"), &event.id);
    put(Cow::Borrowed("ce-source"), &event.source);
    put(Cow::Borrowed("ce-type"), &event.ty);
    put(Cow::Borrowed("ce-specversion"), &event.specversion);
    for (name, value) in [
        ("ce-time", &event.time),
        ("ce-subject", &event.subject),
        ("ce-dataschema", &event.dataschema),
    ] {
        if let Some(value) = value {
            put(Cow::Borrowed(name), value);
        }
    }
    for (name, value) in event.emitted_extensions() {
        match value {
            Value::String(text) => put(Cow::Owned(format!("ce-{name}")), text),
            // Numbers and booleans: their canonical string is their JSON text.
            other => put(Cow::Owned(format!("ce-{name}")), &other.to_string()),
        }
    }
    // A media type is printable ASCII already (checked on the way in), and
    // percent-encoding it would corrupt quoted parameters.
    match (&event.datacontenttype, &event.data) {
        (Some(ct), _) => header(Cow::Borrowed("content-type"), Cow::Borrowed(ct)),
        (None, Some(_)) => header(
            Cow::Borrowed("content-type"),
            Cow::Borrowed(JSON_CONTENT_TYPE),
        ),
        (None, None) => {}
    }
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;
    use crate::event::{parse_binary, parse_structured};

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

    fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn reparse(event: &CloudEvent) -> CloudEvent {
        let headers = binary_headers(event);
        let body = event.data.clone().unwrap_or_default();
        parse_binary(
            headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())),
            &body,
        )
        .unwrap()
    }

    #[test]
    fn binary_headers_list_attributes_in_a_fixed_order() {
        let mut event = sample();
        event.time = Some("2024-06-01T12:00:00Z".into());
        event.subject = Some("order/42".into());
        event.dataschema = Some("https://example.com/s".into());
        event
            .extensions
            .insert("traceparent".into(), json!("00-abc"));
        event.extensions.insert("partition".into(), json!(7));
        event.datacontenttype = Some("application/xml".into());
        event.data = Some(b"<a/>".to_vec());
        let expected: Vec<(String, String)> = [
            ("ce-id", "e-1"),
            ("ce-source", "/orders"),
            ("ce-type", "order.created"),
            ("ce-specversion", "1.0"),
            ("ce-time", "2024-06-01T12:00:00Z"),
            ("ce-subject", "order/42"),
            ("ce-dataschema", "https://example.com/s"),
            ("ce-partition", "7"),
            ("ce-traceparent", "00-abc"),
            ("content-type", "application/xml"),
        ]
        .into_iter()
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(binary_headers(&event), expected);
    }

    #[test]
    fn binary_headers_percent_encode_space_quote_and_percent() {
        let mut event = sample();
        event.subject = Some("a b\"c%d€".into());
        assert_eq!(
            header(&binary_headers(&event), "ce-subject"),
            Some("a%20b%22c%25d%E2%82%AC")
        );
    }

    #[test]
    fn binary_headers_percent_encode_non_ascii() {
        let mut event = sample();
        event.source = "Euro € 😀".into();
        assert_eq!(
            header(&binary_headers(&event), "ce-source"),
            Some("Euro%20%E2%82%AC%20%F0%9F%98%80")
        );
    }

    #[test]
    fn binary_headers_percent_encode_control_characters() {
        let mut event = sample();
        event.subject = Some("a\tb\u{7f}c\u{85}".into());
        assert_eq!(
            header(&binary_headers(&event), "ce-subject"),
            Some("a%09b%7Fc%C2%85")
        );
    }

    #[test]
    fn binary_headers_leave_other_printable_ascii_alone() {
        let printable: String = ('!'..='~').filter(|c| !matches!(c, '"' | '%')).collect();
        let mut event = sample();
        event.id = printable.clone();
        assert_eq!(
            header(&binary_headers(&event), "ce-id"),
            Some(printable.as_str())
        );
    }

    #[test]
    fn binary_headers_write_number_and_boolean_extensions_as_json_text() {
        let mut event = sample();
        event.extensions.insert("count".into(), json!(-12));
        event.extensions.insert("sampled".into(), json!(true));
        event.extensions.insert("ratio".into(), json!(0.5));
        event.extensions.insert("unset".into(), Value::Null);
        let headers = binary_headers(&event);
        assert_eq!(header(&headers, "ce-count"), Some("-12"));
        assert_eq!(header(&headers, "ce-sampled"), Some("true"));
        assert_eq!(header(&headers, "ce-ratio"), Some("0.5"));
        assert_eq!(header(&headers, "ce-unset"), None);
    }

    #[test]
    fn binary_headers_skip_extensions_shadowing_spec_attributes() {
        let mut event = sample();
        event.extensions.insert("id".into(), json!("other"));
        let headers = binary_headers(&event);
        let ids: Vec<_> = headers.iter().filter(|(n, _)| n == "ce-id").collect();
        assert_eq!(ids.len(), 1);
        assert_eq!(ids[0].1, "e-1");
    }

    #[test]
    fn binary_headers_content_type_defaults_to_json_only_with_data() {
        assert_eq!(header(&binary_headers(&sample()), "content-type"), None);
        let mut with_data = sample();
        with_data.data = Some(b"{}".to_vec());
        assert_eq!(
            header(&binary_headers(&with_data), "content-type"),
            Some("application/json")
        );
        let mut typed_without_data = sample();
        typed_without_data.datacontenttype = Some("text/plain".into());
        assert_eq!(
            header(&binary_headers(&typed_without_data), "content-type"),
            Some("text/plain")
        );
    }

    #[test]
    fn binary_headers_do_not_percent_encode_content_type() {
        let mut event = sample();
        event.datacontenttype = Some("text/plain; charset=\"utf-8\"".into());
        assert_eq!(
            header(&binary_headers(&event), "content-type"),
            Some("text/plain; charset=\"utf-8\"")
        );
    }

    #[test]
    fn binary_headers_round_trip_through_parse_binary() {
        let mut event = sample();
        event.id = "100%\"sure\" id".into();
        event.source = "https://example.com/a b?c=d&e=€".into();
        event.subject = Some("a b\"c%d€ 😀".into());
        event.time = Some("2024-06-01T12:00:00.5+02:00".into());
        event.dataschema = Some("urn:x".into());
        event
            .extensions
            .insert("traceparent".into(), json!("00-ab cd"));
        event.extensions.insert("tag".into(), json!(""));
        event.datacontenttype = Some("application/octet-stream".into());
        event.data = Some(vec![0, 1, 2, 0xff]);
        assert_eq!(reparse(&event), event);
        assert_eq!(reparse(&sample()), sample());
    }

    #[test]
    fn binary_round_trip_turns_typed_extensions_into_strings() {
        let mut event = sample();
        event.extensions.insert("count".into(), json!(7));
        assert_eq!(reparse(&event).extensions["count"], json!("7"));
    }

    #[test]
    fn binary_round_trip_makes_implied_json_content_type_explicit() {
        let mut event = sample();
        event.data = Some(b"[1]".to_vec());
        let back = reparse(&event);
        assert_eq!(back.datacontenttype.as_deref(), Some("application/json"));
        assert_eq!(back.data, event.data);
    }

    #[test]
    fn structured_body_round_trips_through_parse_structured() {
        let mut event = sample();
        event.subject = Some("a b\"c%d€".into());
        event.extensions.insert("partition".into(), json!(7));
        event.datacontenttype = Some("application/json".into());
        event.data = Some(br#"{"a":[1,"x"]}"#.to_vec());
        assert_eq!(parse_structured(&structured_body(&event)).unwrap(), event);

        let mut binary = sample();
        binary.datacontenttype = Some("application/octet-stream".into());
        binary.data = Some(vec![0, 0xff]);
        assert_eq!(parse_structured(&structured_body(&binary)).unwrap(), binary);
        assert_eq!(
            parse_structured(&structured_body(&sample())).unwrap(),
            sample()
        );
    }

    #[test]
    fn structured_body_is_the_structured_json() {
        let mut event = sample();
        event.datacontenttype = Some("text/plain".into());
        event.data = Some(b"hello".to_vec());
        let body: Value = serde_json::from_slice(&structured_body(&event)).unwrap();
        assert_eq!(body, event.to_structured_json());

        event.datacontenttype = None;
        event.data = Some(br#" {"b": 2, "a": [true, null]} "#.to_vec());
        let body: Value = serde_json::from_slice(&structured_body(&event)).unwrap();
        assert_eq!(body, event.to_structured_json());
    }

    #[test]
    fn structured_body_keeps_json_payload_bytes_verbatim() {
        let payload = br#"{"zeta": 1, "alpha": 123456789012345678901234567890, "pi": 3.14159265358979323846}"#;
        let mut event = sample();
        event.data = Some(payload.to_vec());
        let body = structured_body(&event);
        let text = String::from_utf8(body.clone()).unwrap();
        assert!(
            text.ends_with(&format!(
                r#","data":{}}}"#,
                std::str::from_utf8(payload).unwrap()
            )),
            "{text}"
        );
        let parsed: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(parsed["id"], json!("e-1"));
        assert_eq!(parsed["data"]["zeta"], json!(1));
    }
}

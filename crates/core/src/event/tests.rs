use serde_json::json;

use super::http_binding::*;
use super::json_format::*;
use super::media_type::*;
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
    // Each separator RFC 9110 keeps out of a token.
    for separator in "()<>@,:\\\"[]?=/".chars() {
        for bad in [
            format!("te{separator}xt/plain"),
            format!("text/pl{separator}ain"),
        ] {
            err(
                "datacontenttype",
                structured(json!({ "datacontenttype": bad })),
            );
        }
    }
    assert!(structured(json!({"datacontenttype": "application/vnd.a+json"})).is_ok());
    assert!(structured(json!({"datacontenttype": "text/plain; charset=\"utf-8\""})).is_ok());
}

// --- structured mode: extensions ---

#[test]
fn structured_extensions_accept_string_number_and_boolean() {
    let event =
        structured(json!({"traceparent": "00-abc", "partition": 7, "sampled": true, "ratio": 0.5}))
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
    let fine =
        r#"{"specversion":"1.0","id":"a","source":"/s","type":"t","data":{"id":1,"a":{"id":2}}}"#;
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
    let expected: usize = binary_headers(&event)
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

//! Property tests of every parser that reads untrusted input: arbitrary
//! bytes must give a value or an error, never a panic, and what parses must
//! survive the trip back through its own encoding. Bounded to a few seconds
//! each so they run with every `cargo test`.

use proptest::prelude::*;
use redrive_core::classify::{StatusRange, parse_retry_after};
use redrive_core::duration::parse_duration;
use redrive_core::event::{binary_headers, structured_body};
use redrive_core::event::{parse_batch, parse_binary, parse_structured};
use redrive_core::filter::Filter;
use serde_json::{Value, json};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 1000,
        // A failure prints its minimal input; no files written in the tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// JSON values up to a small depth, biased towards CloudEvent-looking shapes.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|n| json!(n)),
        "\\PC{0,20}".prop_map(Value::String),
        Just(json!("1.0")),
        Just(json!("2024-01-01T00:00:00Z")),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(attribute_name(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn attribute_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("specversion".to_owned()),
        Just("id".to_owned()),
        Just("source".to_owned()),
        Just("type".to_owned()),
        Just("subject".to_owned()),
        Just("time".to_owned()),
        Just("datacontenttype".to_owned()),
        Just("dataschema".to_owned()),
        Just("data".to_owned()),
        Just("data_base64".to_owned()),
        "[a-z0-9]{1,12}",
        "\\PC{0,12}",
    ]
}

/// Objects that are often valid events: the required attributes present
/// with string values, plus arbitrary extras.
fn event_object() -> impl Strategy<Value = Value> {
    (
        "[A-Za-z0-9._-]{1,16}",
        "/[a-z/]{0,12}",
        "[a-z.]{1,16}",
        prop::collection::btree_map("[a-z0-9]{1,10}", json_value(), 0..4),
        prop::option::of(json_value()),
    )
        .prop_map(|(id, source, ty, extras, data)| {
            let mut object = serde_json::Map::new();
            for (key, value) in extras {
                object.insert(key, value);
            }
            object.insert("specversion".into(), json!("1.0"));
            object.insert("id".into(), json!(id));
            object.insert("source".into(), json!(source));
            object.insert("type".into(), json!(ty));
            if let Some(data) = data {
                object.insert("data".into(), data);
            }
            Value::Object(object)
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn structured_parser_never_panics_on_bytes(body in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_structured(&body);
        let _ = parse_batch(&body);
    }

    #[test]
    fn structured_parser_never_panics_on_json(value in json_value()) {
        let body = value.to_string().into_bytes();
        let _ = parse_structured(&body);
        let _ = parse_batch(&body);
    }

    #[test]
    fn a_parsed_structured_event_round_trips(object in event_object()) {
        let body = object.to_string().into_bytes();
        if let Ok(event) = parse_structured(&body) {
            let again = parse_structured(&structured_body(&event))
                .expect("an event's own structured form parses");
            prop_assert_eq!(again, event);
        }
    }

    #[test]
    fn a_parsed_structured_event_survives_binary_mode(object in event_object()) {
        let body = object.to_string().into_bytes();
        if let Ok(event) = parse_structured(&body) {
            let headers = binary_headers(&event);
            let data = event.data.clone().unwrap_or_default();
            let pairs = headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes()));
            let again = parse_binary(pairs, &data).expect("an event's own binary form parses");
            prop_assert_eq!(again.id, event.id);
            prop_assert_eq!(again.source, event.source);
            prop_assert_eq!(again.ty, event.ty);
            // Binary mode carries every extension as a string (the
            // CloudEvents HTTP binding's rule), so compare their text.
            let text = |v: &Value| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let sent: Vec<(String, String)> =
                event.extensions.iter().map(|(k, v)| (k.clone(), text(v))).collect();
            let got: Vec<(String, String)> =
                again.extensions.iter().map(|(k, v)| (k.clone(), text(v))).collect();
            prop_assert_eq!(got, sent);
        }
    }

    #[test]
    fn batch_parser_never_panics(items in prop::collection::vec(prop_oneof![event_object(), json_value()], 0..6)) {
        let body = Value::Array(items).to_string().into_bytes();
        if let Ok(events) = parse_batch(&body) {
            prop_assert!(events.len() <= 6);
        }
    }

    #[test]
    fn binary_parser_never_panics(
        headers in prop::collection::vec(
            (prop_oneof![
                Just("ce-specversion".to_owned()),
                Just("ce-id".to_owned()),
                Just("ce-source".to_owned()),
                Just("ce-type".to_owned()),
                Just("ce-time".to_owned()),
                Just("content-type".to_owned()),
                "ce-[a-z0-9]{0,10}",
                "[a-z-]{1,12}",
            ], prop::collection::vec(any::<u8>(), 0..40)),
            0..10,
        ),
        body in prop::collection::vec(any::<u8>(), 0..128),
    ) {
        let pairs = headers.iter().map(|(n, v)| (n.as_str(), v.as_slice()));
        let _ = parse_binary(pairs, &body);
    }

    #[test]
    fn duration_parser_never_panics(input in "\\PC{0,24}") {
        let _ = parse_duration(&input);
    }

    #[test]
    fn numeric_durations_parse_to_what_they_say(secs in 0u64..10_000_000, unit in prop::sample::select(vec![("ms", 1u64), ("s", 1000), ("m", 60_000), ("h", 3_600_000)])) {
        let (suffix, millis) = unit;
        let parsed = parse_duration(&format!("{secs}{suffix}")).expect("a valid duration");
        prop_assert_eq!(parsed.as_millis(), u128::from(secs) * u128::from(millis));
    }

    #[test]
    fn retry_after_and_status_range_parsers_never_panic(input in "\\PC{0,40}") {
        let _ = parse_retry_after(&input);
        let _ = input.parse::<StatusRange>();
    }

    #[test]
    fn filter_parser_never_panics(value in json_value()) {
        if let Ok(filter) = serde_json::from_value::<Filter>(value) {
            let _ = filter.validate();
        }
    }
}

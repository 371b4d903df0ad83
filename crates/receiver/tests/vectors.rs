//! The shared test vectors (`tests/vectors.json`), which the Python module
//! passes too: verification, decoding, and the status of each handler
//! outcome with receipts in a real SQLite database.

use std::time::{Duration, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use redrive_receiver::{CloudEvent, Delivery, Headers, Outcome, Verifier, receive, sqlite};
use serde_json::{Map, Value, json};

fn vectors() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors.json");
    let text = std::fs::read_to_string(path).expect("tests/vectors.json");
    serde_json::from_str(&text).expect("vectors.json is JSON")
}

struct Case {
    name: String,
    verifier: Verifier,
    now: std::time::SystemTime,
    headers: Headers,
    body: Vec<u8>,
    expect: Value,
}

fn case(vector: &Value) -> Case {
    let name = vector["name"].as_str().unwrap().to_owned();
    let secrets: Vec<&str> = vector["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    let mut verifier = Verifier::with_secrets(secrets).unwrap();
    if let Some(tolerance) = vector["tolerance"].as_u64() {
        verifier = verifier.tolerance(Duration::from_secs(tolerance));
    }
    let request = &vector["request"];
    let headers = Headers::from_pairs(
        request["headers"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(n, v)| (n.clone(), v.as_str().unwrap().to_owned())),
    );
    let body = match (request["body"].as_str(), request["body_base64"].as_str()) {
        (Some(text), _) => text.as_bytes().to_vec(),
        (None, Some(encoded)) => BASE64.decode(encoded).unwrap(),
        (None, None) => Vec::new(),
    };
    Case {
        name,
        verifier,
        now: UNIX_EPOCH + Duration::from_secs(vector["now"].as_u64().unwrap()),
        headers,
        body,
        expect: vector["expect"].clone(),
    }
}

/// The event as the vectors write it.
fn as_json(event: &CloudEvent) -> Value {
    let mut object = Map::new();
    object.insert("id".into(), json!(event.id));
    object.insert("source".into(), json!(event.source));
    object.insert("type".into(), json!(event.ty));
    object.insert("specversion".into(), json!(event.specversion));
    for (name, value) in [
        ("subject", &event.subject),
        ("time", &event.time),
        ("datacontenttype", &event.datacontenttype),
        ("dataschema", &event.dataschema),
    ] {
        if let Some(value) = value {
            object.insert(name.into(), json!(value));
        }
    }
    object.insert("extensions".into(), json!(event.extensions));
    Value::Object(object)
}

fn check_event(case: &Case, event: &CloudEvent) {
    let mut expected = case.expect["event"].clone();
    let expected_map = expected.as_object_mut().unwrap();
    let data_json = expected_map.remove("data_json");
    let data_text = expected_map.remove("data");
    let data_base64 = expected_map.remove("data_base64");
    assert_eq!(as_json(event), expected, "{}", case.name);
    match (data_json, data_text, data_base64) {
        (Some(json), None, None) => {
            let data: Value = event.data_json().unwrap();
            assert_eq!(data, json, "{}", case.name);
        }
        (None, Some(text), None) => {
            assert_eq!(
                event.data.as_deref(),
                Some(text.as_str().unwrap().as_bytes()),
                "{}",
                case.name
            );
        }
        (None, None, Some(encoded)) => {
            let bytes = BASE64.decode(encoded.as_str().unwrap()).unwrap();
            assert_eq!(event.data.as_deref(), Some(&bytes[..]), "{}", case.name);
        }
        (None, None, None) => assert_eq!(event.data, None, "{}", case.name),
        _ => panic!("{}: one data key at most", case.name),
    }
}

#[test]
fn every_vector_verifies_and_decodes_as_expected() {
    let doc = vectors();
    let vectors = doc["vectors"].as_array().unwrap();
    assert!(vectors.len() >= 20);
    for vector in vectors {
        let case = case(vector);
        let verified = case
            .verifier
            .verify_headers(&case.headers, &case.body, case.now);
        let verify_kind = verified.as_ref().map_or_else(|e| e.kind(), |_| "ok");
        assert_eq!(verify_kind, case.expect["verify"], "{}", case.name);
        match receive(&case.verifier, &case.headers, &case.body, case.now) {
            Ok(delivery) => {
                assert_eq!(case.expect["receive"], "ok", "{}", case.name);
                assert_eq!(
                    delivery.format.as_str(),
                    case.expect["format"],
                    "{}",
                    case.name
                );
                assert_eq!(
                    delivery.attempt.map(u64::from),
                    case.expect["attempt"].as_u64(),
                    "{}",
                    case.name
                );
                assert_eq!(
                    delivery.webhook_id, case.expect["webhook_id"],
                    "{}",
                    case.name
                );
                check_event(&case, &delivery.event);
            }
            Err(err) => {
                assert_eq!(err.kind(), case.expect["receive"], "{}", case.name);
                assert_eq!(
                    u64::from(Outcome::Invalid(err).status()),
                    case.expect["status"].as_u64().unwrap(),
                    "{}",
                    case.name
                );
            }
        }
    }
}

#[test]
fn the_published_standard_webhooks_vector_is_among_them() {
    let doc = vectors();
    let published = doc["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["request"]["headers"]["webhook-id"] == "msg_p5jXN8AQM9LWM0D4loKWxJek")
        .expect("the published vector");
    assert_eq!(
        published["request"]["headers"]["webhook-signature"],
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    );
    assert_eq!(
        published["secrets"][0],
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    );
    assert_eq!(published["request"]["body"], r#"{"test": 2432232314}"#);
}

/// What a scenario's handler does after writing its effect row.
fn handler_outcome(handler: &Value) -> Result<Outcome, String> {
    match handler {
        Value::String(kind) => match kind.as_str() {
            "processed" => Ok(Outcome::Processed),
            "retry_later" => Ok(Outcome::retry_later()),
            "error" => Err("the handler failed".into()),
            other => panic!("unknown handler {other}"),
        },
        Value::Object(map) => {
            if let Some(seconds) = map.get("retry_after") {
                Ok(Outcome::retry_after(Duration::from_secs_f64(
                    seconds.as_f64().unwrap(),
                )))
            } else if let Some(reason) = map.get("reject") {
                Ok(Outcome::reject(reason.as_str().unwrap()))
            } else {
                panic!("unknown handler {handler}")
            }
        }
        other => panic!("unknown handler {other}"),
    }
}

fn scenario_delivery(doc: &Value) -> Delivery {
    let name = doc["scenario_vector"].as_str().unwrap();
    let vector = doc["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .expect("the scenario vector");
    let case = case(vector);
    receive(&case.verifier, &case.headers, &case.body, case.now).unwrap()
}

#[test]
fn every_scenario_answers_and_commits_as_expected_on_sqlite() {
    let doc = vectors();
    let delivery = scenario_delivery(&doc);
    for scenario in doc["scenarios"].as_array().unwrap() {
        let name = scenario["name"].as_str().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut conn = rusqlite::Connection::open(dir.path().join("receiver.db")).unwrap();
        sqlite::create_table(&conn).unwrap();
        conn.execute("CREATE TABLE effects (event_id TEXT NOT NULL)", [])
            .unwrap();
        let mut outcomes = Vec::new();
        let mut statuses = Vec::new();
        let mut retry_after = Vec::new();
        for handler in scenario["handlers"].as_array().unwrap() {
            let outcome = sqlite::process(&mut conn, &delivery, |tx, delivery| {
                tx.execute(
                    "INSERT INTO effects (event_id) VALUES (?1)",
                    [&delivery.event.id],
                )
                .map_err(|e| e.to_string())?;
                handler_outcome(handler)
            });
            outcomes.push(json!(outcome.name()));
            statuses.push(json!(outcome.status()));
            retry_after.push(json!(outcome.retry_after_header()));
        }
        let effects: i64 = conn
            .query_row("SELECT count(*) FROM effects", [], |row| row.get(0))
            .unwrap();
        let expect = &scenario["expect"];
        assert_eq!(Value::from(outcomes), expect["outcomes"], "{name}");
        assert_eq!(Value::from(statuses), expect["statuses"], "{name}");
        assert_eq!(Value::from(retry_after), expect["retry_after"], "{name}");
        assert_eq!(json!(effects), expect["effects"], "{name}");
    }
}

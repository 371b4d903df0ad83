//! What the generated OpenAPI document cannot say from the handlers' types
//! alone, added in one place so every operation says it the same way: the
//! error answers the guards in front of every route give (401, 403, 408,
//! 431, 503 …) with the API's error body, the content types publish really
//! takes, path parameters as strict as the names they carry, and request
//! bodies that refuse what the server refuses (unknown fields, `null`).

use serde_json::{Map, Value, json};

use crate::state::Limits;

/// The pattern of topic and subscription names (`redrive_core::names`):
/// `.` and `..` are refused because clients collapse them in URL paths.
const NAME_PATTERN: &str = r"^(?!\.{1,2}$)[A-Za-z0-9._-]+$";
/// A CloudEvents String attribute: no control characters and none of the
/// Unicode noncharacters of the basic plane.
const ATTRIBUTE_PATTERN: &str = r"^[^\u0000-\u001F\u007F-\u009F\uFDD0-\uFDEF\uFFFE\uFFFF]*$";
/// A signing secret: `whsec_` and the canonical standard base64 of 24 to 64
/// bytes.
const SECRET_PATTERN: &str = concat!(
    r"^whsec_(?:(?:[A-Za-z0-9+/]{4}){8,20}(?:[A-Za-z0-9+/][AQgw]==|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=)?",
    r"|(?:[A-Za-z0-9+/]{4}){21}(?:[A-Za-z0-9+/][AQgw]==)?)$"
);
/// A token scope.
const SCOPE_PATTERN: &str = r"^(admin|read|publish:(?!\.{1,2}$)[A-Za-z0-9._-]{1,255})$";
/// A token's name: anything but control characters.
const TOKEN_NAME_PATTERN: &str = r"^[^\u0000-\u001F\u007F-\u009F]*$";

/// Brings `document` (the generated one, as JSON) to what the server does.
pub fn apply(document: &mut Value, limits: &Limits) {
    add_components(document, limits);
    tighten_request_schemas(document);
    let Some(paths) = document.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, operation) in item.iter_mut() {
            let Some(operation) = operation.as_object_mut() else {
                continue;
            };
            if path == "/v1/topics/{name}/events" && method == "post" {
                describe_publish(operation, limits);
            }
            fix_request_body(path, method, operation);
            fix_parameters(path, operation);
            add_error_responses(path, method, operation);
        }
    }
}

fn add_components(document: &mut Value, limits: &Limits) {
    let components = document
        .as_object_mut()
        .map(|doc| doc.entry("components").or_insert_with(|| json!({})));
    let Some(components) = components.and_then(Value::as_object_mut) else {
        return;
    };
    let schemas = components.entry("schemas").or_insert_with(|| json!({}));
    if let Some(schemas) = schemas.as_object_mut() {
        schemas.insert("Error".into(), error_schema());
        schemas.insert("Name".into(), name_schema());
        schemas.insert("CloudEvent".into(), cloud_event_schema());
        schemas.insert(
            "CloudEventBatch".into(),
            json!({
                "type": "array",
                "description": "A batch: every event is stored, or none is.",
                "items": {"$ref": "#/components/schemas/CloudEvent"},
                "minItems": 1,
                "maxItems": limits.max_batch_events,
            }),
        );
    }
    let retry_after = json!({
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "integer", "minimum": 1}
    });
    let responses = components.entry("responses").or_insert_with(|| json!({}));
    if let Some(responses) = responses.as_object_mut() {
        for (name, description, headers) in [
            (
                "BadRequest",
                "The request is invalid; the message names the field at fault.",
                None,
            ),
            (
                "Unauthorized",
                "No token, or one the server does not know.",
                Some(json!({"WWW-Authenticate": {"schema": {"type": "string"}}})),
            ),
            ("Forbidden", "The token's scope does not allow this.", None),
            ("NotFound", "No such resource.", None),
            (
                "Conflict",
                "The resource exists already, or is in a state that forbids this.",
                None,
            ),
            (
                "RequestTimeout",
                "The request was not received and answered in time.",
                None,
            ),
            (
                "PayloadTooLarge",
                "The body is larger than this route accepts.",
                None,
            ),
            (
                "TooManyRequests",
                "This token publishes faster than the server allows.",
                Some(json!({"Retry-After": retry_after.clone()})),
            ),
            (
                "HeadersTooLarge",
                "Too many request headers, or too many bytes of them.",
                None,
            ),
            (
                "Unavailable",
                "The store cannot serve the request right now (a full disk, a lost \
                 database connection) or the process is shutting down; try again after \
                 Retry-After.",
                Some(json!({"Retry-After": retry_after.clone()})),
            ),
        ] {
            let mut response = json!({
                "description": description,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            });
            if let Some(headers) = headers {
                response["headers"] = headers;
            }
            responses.insert(name.into(), response);
        }
    }
}

fn error_schema() -> Value {
    json!({
        "type": "object",
        "description": "Every error answer of the API.",
        "required": ["error"],
        "additionalProperties": false,
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "additionalProperties": false,
                "properties": {
                    "code": {"type": "string", "description": "Stable, machine-readable: invalid_argument, not_found, unavailable …"},
                    "message": {"type": "string", "description": "What went wrong, for people."}
                }
            }
        }
    })
}

fn name_schema() -> Value {
    json!({
        "type": "string",
        "description": "A topic or subscription name: letters, digits, '.', '_' and '-', \
                        1 to 255 characters, not '.' or '..'.",
        "minLength": 1,
        "maxLength": redrive_core::names::MAX_NAME_LEN,
        "pattern": NAME_PATTERN,
    })
}

fn attribute(min_length: usize) -> Value {
    json!({
        "type": "string",
        "minLength": min_length,
        "maxLength": redrive_core::event::MAX_ATTRIBUTE_LEN,
        "pattern": ATTRIBUTE_PATTERN,
    })
}

/// The CloudEvents JSON format as the server reads it.
fn cloud_event_schema() -> Value {
    json!({
        "type": "object",
        "description": "A CloudEvent in the JSON format (structured mode). Members other than \
                        the attributes below are extension attributes: lower-case letters and \
                        digits, 1 to 20 characters; a string, number or boolean (null: unset).",
        "required": ["specversion", "id", "source", "type"],
        "properties": {
            "specversion": {"type": "string", "enum": [redrive_core::event::SPECVERSION]},
            "id": attribute(1),
            "source": attribute(1),
            "type": attribute(1),
            "subject": {"oneOf": [attribute(1), {"type": "null"}]},
            "time": {"oneOf": [{"type": "string", "format": "date-time"}, {"type": "null"}]},
            "datacontenttype": {"oneOf": [
                {"type": "string", "pattern": r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+/[!#$%&'*+.^_`|~0-9A-Za-z-]+(\s*;[\t -~]*)?$"},
                {"type": "null"}
            ]},
            "dataschema": {"oneOf": [attribute(1), {"type": "null"}]},
            "data": {"description": "The payload, any JSON value."},
            "data_base64": {"oneOf": [{"type": "string", "format": "byte"}, {"type": "null"}]},
        },
        "patternProperties": {
            "^[a-z0-9]{1,20}$": {"oneOf": [
                attribute(0),
                {"type": "number"},
                {"type": "boolean"},
                {"type": "null"}
            ]}
        },
        "additionalProperties": false,
    })
}

/// Publish reads its body three ways; OpenAPI cannot tie the `ce-*`
/// headers to the binary mode's media types, so they are optional here
/// and the description says when they are needed.
fn describe_publish(operation: &mut Map<String, Value>, limits: &Limits) {
    operation.insert(
        "requestBody".into(),
        json!({
            "required": true,
            "description": format!(
                "Structured mode (application/cloudevents+json: one event), a batch \
                 (application/cloudevents-batch+json: 1 to {} events), or binary mode: any \
                 other media type is the event's data and its attributes travel in ce-* \
                 headers (ce-specversion, ce-id, ce-source and ce-type required). At most \
                 {} bytes.",
                limits.max_batch_events, limits.max_publish_bytes
            ),
            "content": {
                "application/cloudevents+json": {"schema": {"$ref": "#/components/schemas/CloudEvent"}},
                "application/cloudevents-batch+json": {"schema": {"$ref": "#/components/schemas/CloudEventBatch"}},
                "*/*": {"schema": {"description": "Binary mode: the event's data, as is."}}
            }
        }),
    );
    let parameters = operation.entry("parameters").or_insert_with(|| json!([]));
    if let Some(parameters) = parameters.as_array_mut() {
        for (name, description) in [
            ("ce-specversion", "Binary mode (required there): `1.0`."),
            (
                "ce-id",
                "Binary mode (required there): the event id, unique per source.",
            ),
            (
                "ce-source",
                "Binary mode (required there): the event source.",
            ),
            ("ce-type", "Binary mode (required there): the event type."),
        ] {
            // Structured mode and batches ignore them, whatever they hold:
            // the schema cannot say more than "a string".
            let schema = json!({"type": "string"});
            parameters.push(json!({
                "name": name,
                "in": "header",
                "required": false,
                "description": description,
                "schema": schema,
            }));
        }
    }
}

/// Path parameters are exactly the `{…}` segments of the route, each a
/// non-empty string (a name where the route carries a name).
fn fix_parameters(path: &str, operation: &mut Map<String, Value>) {
    let segments = path_parameters(path);
    let parameters = operation.entry("parameters").or_insert_with(|| json!([]));
    let Some(parameters) = parameters.as_array_mut() else {
        return;
    };
    parameters
        .retain(|p| p["in"] != "path" || segments.contains(&p["name"].as_str().unwrap_or("")));
    for parameter in parameters.iter_mut() {
        let schema = match (path, parameter["name"].as_str().unwrap_or("")) {
            ("/v1/subscriptions/{name}/deliveries", "state") => {
                Some(json!({"$ref": "#/components/schemas/DeliveryState"}))
            }
            ("/v1/subscriptions/{name}/deliveries", "reason") => {
                Some(json!({"$ref": "#/components/schemas/FailureReason"}))
            }
            ("/v1/subscriptions/{name}/deliveries", "limit") => Some(
                json!({"type": "integer", "minimum": 1, "maximum": super::deliveries::MAX_PAGE}),
            ),
            ("/v1/subscriptions/{name}/deliveries", "cursor") => {
                Some(json!({"type": "string", "minLength": 1}))
            }
            ("/v1/subscriptions/{name}/journal", "limit") => Some(
                json!({"type": "integer", "minimum": 1, "maximum": super::lifecycle::MAX_JOURNAL_PAGE}),
            ),
            ("/v1/subscriptions/{name}/journal", "since") => {
                Some(json!({"type": "integer", "format": "int64", "minimum": 0}))
            }
            _ => None,
        };
        if let Some(schema) = schema {
            parameter["schema"] = schema;
        }
    }
    for segment in &segments {
        let schema = if *segment == "name" {
            json!({"$ref": "#/components/schemas/Name"})
        } else {
            json!({"type": "string", "minLength": 1})
        };
        match parameters
            .iter_mut()
            .find(|p| p["in"] == "path" && p["name"] == *segment)
        {
            Some(parameter) => parameter["schema"] = schema,
            None => parameters.push(json!({
                "name": segment,
                "in": "path",
                "required": true,
                "schema": schema,
            })),
        }
    }
    if parameters.is_empty() {
        operation.remove("parameters");
    }
}

/// The `{…}` segments of an OpenAPI or axum route.
pub fn path_parameters(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
        .collect()
}

/// The answers every guarded route can give, and the error body on every
/// error answer.
fn add_error_responses(path: &str, method: &str, operation: &mut Map<String, Value>) {
    let has_body = operation.contains_key("requestBody");
    let has_parameters = operation
        .get("parameters")
        .and_then(Value::as_array)
        .is_some_and(|p| !p.is_empty());
    let responses = operation.entry("responses").or_insert_with(|| json!({}));
    let Some(responses) = responses.as_object_mut() else {
        return;
    };
    if !path.starts_with("/v1/") {
        return;
    }
    let existing: Vec<String> = responses.keys().cloned().collect();
    let mut add = |status: &str, name: &str| {
        let reference = json!({"$ref": format!("#/components/responses/{name}")});
        match responses.get_mut(status) {
            // A route-specific description is kept; the body is the API's.
            Some(existing) if existing.get("description").is_some() => {
                existing["content"] =
                    json!({"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}});
                if let Some(headers) = standard_headers(name) {
                    existing["headers"] = headers;
                }
            }
            _ => {
                responses.insert(status.into(), reference);
            }
        }
    };
    add("401", "Unauthorized");
    add("403", "Forbidden");
    add("408", "RequestTimeout");
    add("431", "HeadersTooLarge");
    add("503", "Unavailable");
    if has_body || has_parameters {
        add("400", "BadRequest");
    }
    if has_body {
        add("413", "PayloadTooLarge");
    }
    if path == "/v1/topics/{name}/events" && method == "post" {
        add("429", "TooManyRequests");
    }
    for (status, name) in [("404", "NotFound"), ("409", "Conflict"), ("410", "Gone")] {
        if existing.iter().any(|s| s == status) {
            add(status, name);
        }
    }
}

fn standard_headers(name: &str) -> Option<Value> {
    match name {
        "Unavailable" | "TooManyRequests" => Some(json!({"Retry-After": {
            "description": "Seconds to wait before trying again.",
            "schema": {"type": "integer", "minimum": 1}
        }})),
        _ => None,
    }
}

/// Request bodies are as strict as the server: no unknown fields, no
/// `null` where the server wants an object, names as names.
fn tighten_request_schemas(document: &mut Value) {
    let Some(schemas) = document
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    let name = json!({"$ref": "#/components/schemas/Name"});
    if let Some(topic) = schemas.get_mut("CreateTopic") {
        topic["properties"]["name"] = name.clone();
        topic["additionalProperties"] = json!(false);
    }
    if let Some(token) = schemas.get_mut("CreateToken") {
        token["properties"]["name"]["maxLength"] = json!(super::security::MAX_TOKEN_NAME);
        token["properties"]["name"]["pattern"] = json!(TOKEN_NAME_PATTERN);
        token["properties"]["scope"]["pattern"] = json!(SCOPE_PATTERN);
    }
    if let Some(rotate) = schemas.get_mut("RotateSecret") {
        rotate["properties"]["secret"] = json!({"oneOf": [
            {"type": "string", "pattern": SECRET_PATTERN},
            {"type": "null"}
        ]});
    }
    if let Some(redrive) = schemas.get_mut("RedriveBody") {
        let time = json!({"oneOf": [{"type": "string", "format": "date-time"}, {"type": "null"}]});
        redrive["properties"]["states"] = json!({"oneOf": [
            {"type": "array", "minItems": 1, "items": {"type": "string", "enum": ["failed", "scheduled"]}},
            {"type": "null"}
        ]});
        redrive["properties"]["reasons"]["items"] =
            json!({"$ref": "#/components/schemas/FailureReason"});
        redrive["properties"]["since"] = time.clone();
        redrive["properties"]["until"] = time;
    }
    if let Some(apply) = schemas.get_mut("ApplyRequest") {
        apply["additionalProperties"] = json!(false);
        apply["properties"]["topics"]["items"] = json!({
            "type": "object",
            "required": ["name"],
            "additionalProperties": false,
            "properties": {"name": name.clone()},
        });
        apply["properties"]["subscriptions"]["items"] =
            json!({"$ref": "#/components/schemas/SubscriptionRequest"});
    }
    // Answers embed the spec in `Subscription` (allOf with the status), so
    // the strict copies that requests take are schemas of their own.
    if let Some(spec) = schemas.get("SubscriptionSpec").cloned() {
        let mut request = spec;
        request["additionalProperties"] = json!(false);
        request["properties"]["name"] = name.clone();
        request["properties"]["topic"] = name.clone();
        request["properties"]["dead_letter_topic"] =
            json!({"oneOf": [name.clone(), {"type": "null"}]});
        // A JSON merge patch (RFC 7386): the fields to change, `null`
        // restores a field's default; the name cannot change.
        let mut patch = json!({
            "type": "object",
            "description": "The fields to change, as a JSON merge patch (RFC 7386): null \
                            restores a field's default. The name cannot change.",
            "additionalProperties": false,
            "properties": {},
        });
        if let Some(properties) = request["properties"].as_object() {
            for (field, schema) in properties {
                let optional = match field.as_str() {
                    // Required fields can be replaced, not removed.
                    "name" | "topic" | "endpoint" => schema.clone(),
                    _ => json!({"oneOf": [schema, {"type": "null"}]}),
                };
                patch["properties"][field] = optional;
            }
        }
        schemas.insert("SubscriptionRequest".into(), request);
        schemas.insert("SubscriptionPatch".into(), patch);
    }
}

/// Bodies the server reads as one JSON object (or, where it says so,
/// nothing at all), never `null`.
fn fix_request_body(path: &str, method: &str, operation: &mut Map<String, Value>) {
    let schema = match (method, path) {
        ("post", "/v1/subscriptions") => Some(("SubscriptionRequest", true)),
        ("patch", "/v1/subscriptions/{name}") => Some(("SubscriptionPatch", true)),
        // An empty body means every default.
        ("post", "/v1/subscriptions/{name}/secret/rotate") => Some(("RotateSecret", false)),
        ("post", "/v1/subscriptions/{name}/redrive") => Some(("RedriveBody", false)),
        _ => None,
    };
    if let Some((schema, required)) = schema {
        operation.insert(
            "requestBody".into(),
            json!({
                "required": required,
                "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}
            }),
        );
    }
}

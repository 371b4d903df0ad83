//! What an endpoint receives: the CloudEvents HTTP binding, outbound.

use crate::event::CloudEvent;

/// Headers of binary mode: `ce-id`, `ce-source`, `ce-type`, `ce-specversion`,
/// optional `ce-time`, `ce-subject`, `ce-dataschema`, `ce-<extension>`, values
/// percent-encoded as the binding requires, and `content-type` (the event's
/// `datacontenttype`, `application/json` when it has none and carries data).
pub fn binary_headers(event: &CloudEvent) -> Vec<(String, String)> {
    let _ = event;
    todo!()
}

/// The event in structured mode (`application/cloudevents+json`).
pub fn structured_body(event: &CloudEvent) -> Vec<u8> {
    let _ = event;
    todo!()
}

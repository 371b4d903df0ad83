use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use redrive_core::event::media_type::Carried;
use redrive_core::event::{self, CloudEvent, EventError, EventLimits};
use redrive_store::PublishOutcome;
use serde::Serialize;
use utoipa::ToSchema;

use super::extract::body_bytes;
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct PublishResponse {
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<PublishOutcome>,
}

/// Accepts a CloudEvent in structured mode (`application/cloudevents+json`),
/// a batch (`application/cloudevents-batch+json`), or binary mode (`ce-*`
/// headers). Answers once the events are durably stored.
#[utoipa::path(post, path = "/v1/topics/{name}/events", request_body = Object,
    responses((status = 202, body = PublishResponse), (status = 400), (status = 404), (status = 413)))]
pub async fn publish(
    State(state): State<AppState>,
    Path(topic): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<PublishResponse>), ApiError> {
    let body = body_bytes(body)?;
    let events =
        parse_events(&headers, &body).map_err(|err| ApiError::invalid(&err.field, err.message))?;
    if events.len() > state.limits.max_batch_events {
        return Err(ApiError::bad_request(format!(
            "a batch may hold at most {} events; this one has {}",
            state.limits.max_batch_events,
            events.len()
        )));
    }
    check_limits(&events, &state.limits.event)?;
    let outcomes = state
        .store
        .publish(&topic, events, state.clock.now())
        .await?;
    state.ops.store_writes.succeeded();
    crate::metrics::published(&topic, &outcomes);
    Ok((
        StatusCode::ACCEPTED,
        Json(PublishResponse { events: outcomes }),
    ))
}

/// 413 for an event carrying more than this server accepts; a batch is
/// refused whole, naming the event.
fn check_limits(events: &[CloudEvent], limits: &EventLimits) -> Result<(), ApiError> {
    for (index, event) in events.iter().enumerate() {
        if let Err(err) = event.check_limits(limits) {
            let at = if events.len() > 1 {
                format!("[{index}].")
            } else {
                String::new()
            };
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "event_too_large",
                format!("{at}{err}"),
            ));
        }
    }
    Ok(())
}

fn parse_events(headers: &HeaderMap, body: &[u8]) -> Result<Vec<CloudEvent>, EventError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    match event::media_type::carried(content_type) {
        Carried::Structured => Ok(vec![event::parse_structured(body)?]),
        Carried::Batch => event::parse_batch(body),
        Carried::Other
            if headers.contains_key("ce-specversion") || headers.contains_key("ce-id") =>
        {
            let pairs = headers
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_bytes()));
            Ok(vec![event::parse_binary(pairs, body)?])
        }
        _ => Err(EventError {
            field: "content-type".into(),
            message: format!(
                "{content_type:?} carries no CloudEvent: send application/cloudevents+json, \
                 application/cloudevents-batch+json, or binary mode with ce-* headers"
            ),
        }),
    }
}

//! `POST /v1/apply`: bring topics and subscriptions to a declared state
//! (what `redrive apply -f redrive.toml` and the importers send).

use axum::Json;
use axum::extract::State;
use jiff::Timestamp;
use redrive_core::config::{Desired, TopicDecl};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::extract::ApiJson;
use super::subscriptions::spec_from_json;
use super::{ApiError, AppState};
use crate::config::{self, Change};

#[derive(Deserialize, ToSchema)]
pub struct ApplyRequest {
    /// Delete topics and subscriptions not listed.
    #[serde(default)]
    pub prune: bool,
    /// Only plan: report the changes without making them.
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub topics: Vec<Value>,
    /// Subscriptions as `POST /v1/subscriptions` takes them.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub subscriptions: Vec<Value>,
}

#[derive(Serialize, ToSchema)]
pub struct ApplyResponse {
    pub changes: Vec<Change>,
}

#[utoipa::path(post, path = "/v1/apply", request_body = ApplyRequest,
    responses((status = 200, body = ApplyResponse), (status = 400)))]
pub async fn apply(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<ApplyResponse>, ApiError> {
    // serde would read a JSON array as the struct's fields in order.
    if !body.is_object() {
        return Err(ApiError::bad_request(
            "the body must be a JSON object with topics and subscriptions",
        ));
    }
    let request: ApplyRequest = serde_json::from_value(body)
        .map_err(|err| ApiError::bad_request(format!("invalid JSON body: {err}")))?;
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            serde_json::from_value::<TopicDecl>(topic)
                .map_err(|err| ApiError::bad_request(format!("invalid topic: {err}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let subscriptions = request
        .subscriptions
        .into_iter()
        .map(spec_from_json)
        .collect::<Result<Vec<_>, _>>()?;
    let desired = Desired {
        prune: request.prune,
        topics,
        subscriptions,
    };
    let changes = config::apply(
        &*state.store,
        &desired,
        &state.security.endpoint_policy,
        request.dry_run,
        Timestamp::now(),
    )
    .await?;
    if !request.dry_run {
        state.subscriptions_changed.notify_one();
    }
    Ok(Json(ApplyResponse { changes }))
}

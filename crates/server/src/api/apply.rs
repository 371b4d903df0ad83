//! `POST /v1/apply`: bring topics and subscriptions to a declared state
//! (what `redrive apply -f redrive.toml` and the importers send).

use axum::Json;
use axum::extract::State;
use redrive_core::config::{Desired, TopicDecl};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::extract::{ApiJson, from_value};
use super::subscriptions::spec_from_json;
use crate::declared::{self, Change};
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
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
    /// Subscriptions as `POST /v1/subscriptions` takes them; the read-only
    /// fields a GET adds (health, paused, timestamps) are ignored, so a
    /// subscription read from the API can be applied back.
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
    let request: ApplyRequest = from_value(body, "invalid JSON body")?;
    let topics = request
        .topics
        .into_iter()
        .enumerate()
        .map(|(i, topic)| {
            from_value::<TopicDecl>(topic, "invalid topic").map_err(|err| within("topics", i, err))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let subscriptions = request
        .subscriptions
        .into_iter()
        .enumerate()
        .map(|(i, mut subscription)| {
            redrive_core::split_read_only(&mut subscription);
            spec_from_json(subscription).map_err(|err| within("subscriptions", i, err))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let desired = Desired {
        prune: request.prune,
        topics,
        subscriptions,
    };
    let changes = declared::apply(
        &*state.store,
        &desired,
        &state.security.endpoint_policy,
        request.dry_run,
        state.clock.now(),
    )
    .await?;
    if !request.dry_run {
        state.announce_subscription_change();
    }
    Ok(Json(ApplyResponse { changes }))
}

/// Says which entry of a list an error is about.
fn within(list: &str, index: usize, mut err: ApiError) -> ApiError {
    err.message = format!("{list}[{index}]: {}", err.message);
    err
}

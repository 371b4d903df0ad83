use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use redrive_core::Topic;
use redrive_core::names::validate_name;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::ApiJson;
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTopic {
    pub name: String,
}

#[derive(Serialize, ToSchema)]
pub struct TopicList {
    pub topics: Vec<Topic>,
}

#[utoipa::path(post, path = "/v1/topics", request_body = CreateTopic,
    responses((status = 201, body = Topic), (status = 400), (status = 409)))]
pub async fn create(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateTopic>,
) -> Result<(StatusCode, Json<Topic>), ApiError> {
    validate_name("topic", &body.name).map_err(|err| ApiError::invalid("name", err))?;
    let topic = state
        .store
        .create_topic(&body.name, state.clock.now())
        .await?;
    Ok((StatusCode::CREATED, Json(topic)))
}

#[utoipa::path(get, path = "/v1/topics", responses((status = 200, body = TopicList)))]
pub async fn list(State(state): State<AppState>) -> Result<Json<TopicList>, ApiError> {
    Ok(Json(TopicList {
        topics: state.store.list_topics().await?,
    }))
}

#[utoipa::path(get, path = "/v1/topics/{name}", responses((status = 200, body = Topic), (status = 404)))]
pub async fn get(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Topic>, ApiError> {
    Ok(Json(state.store.get_topic(&name).await?))
}

#[utoipa::path(delete, path = "/v1/topics/{name}",
    responses((status = 204), (status = 404), (status = 409, description = "the topic still has subscriptions")))]
pub async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.store.delete_topic(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

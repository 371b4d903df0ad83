//! Endpoint health by hand: pause and resume pushes to a subscription, and
//! enable one that was disabled (or is unstable) so its backlog flows again.

use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json, Router};

use super::subscriptions::SubscriptionAnswer;

use crate::actions;
use crate::error::ApiError;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/subscriptions/{name}/pause", post(pause))
        .route("/v1/subscriptions/{name}/resume", post(resume))
        .route("/v1/subscriptions/{name}/enable", post(enable))
}

/// Stops pushes to the subscription; its deliveries keep their place
/// (retention still applies) until it is resumed.
#[utoipa::path(post, path = "/v1/subscriptions/{name}/pause",
    responses((status = 200, body = SubscriptionAnswer), (status = 404)))]
pub async fn pause(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<SubscriptionAnswer>, ApiError> {
    set_paused(state, &name, true).await
}

/// Resumes pushes to a paused subscription.
#[utoipa::path(post, path = "/v1/subscriptions/{name}/resume",
    responses((status = 200, body = SubscriptionAnswer), (status = 404)))]
pub async fn resume(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<SubscriptionAnswer>, ApiError> {
    set_paused(state, &name, false).await
}

async fn set_paused(
    state: AppState,
    name: &str,
    paused: bool,
) -> Result<Json<SubscriptionAnswer>, ApiError> {
    let subscription = actions::set_paused_by_hand(&state, name, paused).await?;
    Ok(Json(SubscriptionAnswer::new(&state, subscription)))
}

/// Makes the subscription healthy: a disabled one gets pushes again and
/// its backlog is delivered; an unstable one starts its count over. A
/// healthy one is left as it is.
#[utoipa::path(post, path = "/v1/subscriptions/{name}/enable",
    responses((status = 200, body = SubscriptionAnswer), (status = 404)))]
pub async fn enable(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<SubscriptionAnswer>, ApiError> {
    let subscription = actions::enable_by_hand(&state, &name).await?;
    Ok(Json(SubscriptionAnswer::new(&state, subscription)))
}

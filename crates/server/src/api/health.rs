//! Endpoint health by hand: pause and resume pushes to a subscription, and
//! enable one that was disabled (or is unstable) so its backlog flows again.

use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json, Router};
use jiff::Timestamp;
use redrive_core::{Health, Subscription};

use super::subscriptions::SubscriptionAnswer;
use redrive_store::{HealthChange, StoreError};

use super::{ApiError, AppState};

/// How often `enable` retries when the evaluator changes the health between
/// its read and its write.
const ENABLE_TRIES: usize = 5;

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
    let subscription = set_paused_by_hand(&state, name, paused).await?;
    Ok(Json(SubscriptionAnswer::new(&state, subscription)))
}

/// Pauses or resumes pushes (the API and the console both do it).
pub(crate) async fn set_paused_by_hand(
    state: &AppState,
    name: &str,
    paused: bool,
) -> Result<Subscription, StoreError> {
    let subscription = state.store.set_paused(name, paused).await?;
    tracing::info!(subscription = %name, paused, "pushes paused or resumed by hand");
    state.subscriptions_changed.notify_one();
    Ok(subscription)
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
    let subscription = enable_by_hand(&state, &name).await?;
    Ok(Json(SubscriptionAnswer::new(&state, subscription)))
}

/// Makes a disabled or unstable subscription healthy so its backlog flows.
pub(crate) async fn enable_by_hand(
    state: &AppState,
    name: &str,
) -> Result<Subscription, StoreError> {
    for _ in 0..ENABLE_TRIES {
        let current = state.store.get_subscription(name).await?;
        if current.status.health == Health::Healthy {
            return Ok(current);
        }
        let change = HealthChange {
            subscription: name.to_owned(),
            from: current.status.health,
            to: Health::Healthy,
            reason: "enabled by hand".into(),
            now: Timestamp::now(),
        };
        if let Some(enabled) = state.store.change_health(change).await? {
            tracing::info!(subscription = %name, from = current.status.health.as_str(),
                "subscription enabled by hand");
            state.subscriptions_changed.notify_one();
            return Ok(enabled);
        }
    }
    Err(StoreError::Conflict(format!(
        "the health of subscription {name:?} keeps changing; try again"
    )))
}

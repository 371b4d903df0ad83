use axum::Json;
use axum::extract::{Path, State};
use redrive_core::{Attempt, Delivery, DeliveryState, FailureReason};
use redrive_store::DeliverySearch;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::ApiQuery;
use crate::error::ApiError;
use crate::state::AppState;

const DEFAULT_PAGE: u32 = 50;
pub(crate) const MAX_PAGE: u32 = 1000;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// `scheduled`, `in_flight`, `delivered` or `failed`.
    pub state: Option<String>,
    /// A failure reason, e.g. `retries_exhausted`.
    pub reason: Option<String>,
    /// Page size (default 50, at most 1000).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryList {
    pub deliveries: Vec<Delivery>,
    pub next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryDetail {
    #[serde(flatten)]
    pub delivery: Delivery,
    /// The event in CloudEvents JSON format.
    #[schema(value_type = Object)]
    pub event: serde_json::Value,
    /// Every attempt, oldest first. Not named `attempts`: that key is the
    /// delivery's attempt count, as in lists.
    pub attempt_log: Vec<Attempt>,
}

#[utoipa::path(get, path = "/v1/subscriptions/{name}/deliveries", params(ListParams),
    responses((status = 200, body = DeliveryList), (status = 400), (status = 404)))]
pub async fn list(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<DeliveryList>, ApiError> {
    let delivery_state = params
        .state
        .as_deref()
        .map(|s| {
            DeliveryState::parse(s).ok_or_else(|| {
                ApiError::invalid(
                    "state",
                    format!("{s:?} is not one of scheduled, in_flight, delivered, failed"),
                )
            })
        })
        .transpose()?;
    let reason = params
        .reason
        .as_deref()
        .map(|r| {
            FailureReason::parse(r).ok_or_else(|| {
                let known: Vec<_> = FailureReason::ALL.iter().map(|r| r.as_str()).collect();
                ApiError::invalid(
                    "reason",
                    format!("{r:?} is not one of {}", known.join(", ")),
                )
            })
        })
        .transpose()?;
    let limit = params.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::invalid(
            "limit",
            format!("must be between 1 and {MAX_PAGE}"),
        ));
    }
    // A 404 for an unknown subscription, not an empty page.
    state.store.get_subscription(&name).await?;
    let page = state
        .store
        .search_deliveries(DeliverySearch {
            subscription: name,
            state: delivery_state,
            reason,
            limit,
            cursor: params.cursor,
            ..Default::default()
        })
        .await?;
    Ok(Json(DeliveryList {
        deliveries: page.deliveries,
        next_cursor: page.next_cursor,
    }))
}

#[utoipa::path(get, path = "/v1/deliveries/{id}",
    responses((status = 200, body = DeliveryDetail), (status = 404)))]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<DeliveryDetail>, ApiError> {
    let detail = state.store.get_delivery(&id).await?;
    Ok(Json(DeliveryDetail {
        delivery: detail.delivery,
        event: detail.event.to_structured_json(),
        attempt_log: detail.attempts,
    }))
}

/// Attempts the delivery now, also when it has failed.
#[utoipa::path(post, path = "/v1/deliveries/{id}/retry",
    responses((status = 200, body = Delivery), (status = 404), (status = 409, description = "in flight")))]
pub async fn retry(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Delivery>, ApiError> {
    Ok(Json(state.store.retry_now(&id, state.clock.now()).await?))
}

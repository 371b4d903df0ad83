//! HTTP API v1: JSON in, JSON out, every error as
//! `{"error": {"code": "...", "message": "..."}}`.

mod apply;
mod deliveries;
mod events;
mod extract;
mod health;
mod lifecycle;
mod openapi;
mod openapi_truth;
mod ops;
pub(crate) mod request_logging;
mod security;
mod subscriptions;
mod topics;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

pub use openapi::document_json as openapi_document;
pub use openapi_truth::path_parameters;

use crate::state::AppState;

/// Bodies of every route but publish stay small.
const MAX_ADMIN_BODY_BYTES: usize = 64 * 1024;
const MAX_APPLY_BODY_BYTES: usize = 4 * 1024 * 1024;

/// The API's routes: `/v1`, the OpenAPI document and the operations
/// endpoints. `crate::app` adds the console and the guards.
pub fn routes(state: &AppState) -> Router<AppState> {
    let publish = Router::new()
        .route("/v1/topics/{name}/events", post(events::publish))
        .layer(DefaultBodyLimit::max(state.limits.max_publish_bytes))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            ops::refuse_while_draining,
        ));
    let admin = Router::new()
        .route("/v1/topics", get(topics::list).post(topics::create))
        .route("/v1/topics/{name}", get(topics::get).delete(topics::delete))
        .route(
            "/v1/subscriptions",
            get(subscriptions::list).post(subscriptions::create),
        )
        .route(
            "/v1/subscriptions/{name}",
            get(subscriptions::get)
                .patch(subscriptions::update)
                .delete(subscriptions::delete),
        )
        .route("/v1/subscriptions/{name}/deliveries", get(deliveries::list))
        .route("/v1/deliveries/{id}", get(deliveries::get))
        .route("/v1/deliveries/{id}/retry", post(deliveries::retry))
        .route("/v1/deliveries/{id}/cancel", post(lifecycle::cancel))
        .route("/v1/subscriptions/{name}/redrive", post(lifecycle::redrive))
        .route("/v1/subscriptions/{name}/journal", get(lifecycle::journal))
        .route("/v1/jobs/{id}", get(lifecycle::job))
        .merge(health::routes())
        .route(
            "/v1/tokens",
            get(security::list_tokens).post(security::create_token),
        )
        .route(
            "/v1/tokens/{id}",
            axum::routing::delete(security::delete_token),
        )
        .route("/v1/subscriptions/{name}/secret", get(security::get_secret))
        .route(
            "/v1/subscriptions/{name}/secret/rotate",
            post(security::rotate_secret),
        )
        .layer(DefaultBodyLimit::max(MAX_ADMIN_BODY_BYTES));
    // Declared configurations list many subscriptions at once.
    let declared = Router::new()
        .route("/v1/apply", post(apply::apply))
        .layer(DefaultBodyLimit::max(MAX_APPLY_BODY_BYTES));
    Router::new()
        .merge(publish)
        .merge(admin)
        .merge(declared)
        .route("/healthz", get(ops::healthz))
        .route("/openapi.json", get(openapi::document))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/v1/admin/backup", post(ops::backup))
}

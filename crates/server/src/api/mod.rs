//! HTTP API v1: JSON in, JSON out, every error as
//! `{"error": {"code": "...", "message": "..."}}`.

mod apply;
mod deliveries;
mod error;
mod events;
mod extract;
mod health;
mod lifecycle;
mod openapi;
mod openapi_truth;
mod ops;
mod request_logging;
mod security;
mod subscriptions;
mod topics;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use redrive_store::Store;
use tokio::sync::Notify;

pub use error::ApiError;
pub(crate) use health::{enable_by_hand, set_paused_by_hand};
pub(crate) use lifecycle::redrive_in_background;
pub use openapi::document_json as openapi_document;
pub use openapi_truth::path_parameters;
pub(crate) use subscriptions::pushes_held;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    /// Tells the dispatcher that subscriptions changed.
    pub subscriptions_changed: Arc<Notify>,
    pub limits: Limits,
    /// Background jobs (large redrives).
    pub jobs: crate::jobs::Jobs,
    /// Tokens, sessions, signing secrets, network policy and rate limits.
    pub security: crate::security::Security,
    /// Draining, dispatcher liveness, backup staging.
    pub ops: Arc<crate::ops::OpsState>,
}

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest publish body, in bytes.
    pub max_publish_bytes: usize,
    /// Most events in one batch publish.
    pub max_batch_events: usize,
    /// What one event may carry (extensions, attribute bytes).
    pub event: redrive_core::event::EventLimits,
    /// Redrives matching at most this many deliveries finish before the
    /// answer; larger ones run as a background job.
    pub redrive_inline_limit: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_publish_bytes: 1024 * 1024,
            max_batch_events: 1000,
            event: Default::default(),
            redrive_inline_limit: 1000,
        }
    }
}

/// Bodies of every route but publish stay small.
const MAX_ADMIN_BODY_BYTES: usize = 64 * 1024;
const MAX_APPLY_BODY_BYTES: usize = 4 * 1024 * 1024;

pub fn router(state: AppState) -> Router {
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
    let router = Router::new()
        .merge(publish)
        .merge(admin)
        .merge(declared)
        .merge(crate::console::router())
        .route("/healthz", get(ops::healthz))
        .route("/openapi.json", get(openapi::document))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/v1/admin/backup", post(ops::backup))
        .merge(crate::security::console::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            error::note_store_failures,
        ))
        // Outermost last: limits first, then who is asking.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::security::console::console_guard,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::security::auth::api_guard,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::security::limits::request_guard,
        ))
        .with_state(state);
    request_logging::layer(router)
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::NOT_FOUND,
        "not_found",
        format!("no route for {}", uri.path()),
    )
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
}

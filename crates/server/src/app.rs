//! The application: the API's and the console's routes behind the security
//! layers, over one `AppState`. Both front ends are thin and parallel; what
//! they both do lives in `crate::actions`, how failures answer in
//! `crate::error`.

use axum::Router;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::Response;

pub use crate::state::{AppState, Limits};

use crate::error::{ApiError, StoreUnavailable};

/// Every route of the server, with its guards, its store-failure notes and
/// its request log.
pub fn router(state: AppState) -> Router {
    let router = Router::new()
        .merge(crate::api::routes(&state))
        .merge(crate::console::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            front_door,
        ))
        .with_state(state);
    crate::api::request_logging::layer(router)
}

/// Every request's way in and out, as one layer: the security guards, the
/// route, then the store failure behind the answer, if any, is reported
/// (once per interval, with a count) and readiness looks at the store's
/// writes.
async fn front_door(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let response = crate::security::guard(&state.security, request, next).await;
    if let Some(StoreUnavailable(err)) = response.extensions().get::<StoreUnavailable>() {
        state.ops.store_writes.failed(err);
    }
    response
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(format!("no route for {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
}

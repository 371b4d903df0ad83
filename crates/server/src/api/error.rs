use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use redrive_store::StoreError;
use serde_json::json;

/// An API error: the one place where failures become HTTP statuses.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// The store failure behind a 503 that passes by itself (a full disk):
    /// the answer then says when to retry, and the failure is logged.
    pub store_unavailable: Option<StoreError>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            store_unavailable: None,
        }
    }

    /// A 400 naming the field at fault.
    pub fn invalid(field: &str, problem: impl std::fmt::Display) -> Self {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            format!("{field}: {problem}"),
        )
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_argument", message)
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", err.to_string())
            }
            StoreError::Conflict(message) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", message)
            }
            StoreError::Invalid(message) => ApiError::bad_request(message),
            // Logged once per interval by `note_store_failures`, which
            // finds the failure on the response.
            StoreError::Unavailable(ref message) => ApiError {
                store_unavailable: Some(err.clone()),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    format!("{message}; try again later"),
                )
            },
            StoreError::Backend(message) => {
                tracing::error!(error = %message, "store failure");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the store failed; see the server log",
                )
            }
        }
    }
}

/// How long a client should wait before retrying a request the store could
/// not serve (`Retry-After` of every 503 `unavailable`).
pub const RETRY_AFTER_SECONDS: u64 = 1;

/// Marks a response whose request the store failed with a transient error,
/// for `note_store_failures`.
#[derive(Clone, Debug)]
pub struct StoreUnavailable(pub StoreError);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message}});
        let mut response = (self.status, Json(body)).into_response();
        if let Some(err) = self.store_unavailable {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(RETRY_AFTER_SECONDS),
            );
            response.extensions_mut().insert(StoreUnavailable(err));
        }
        response
    }
}

/// Reports the store failures behind answers (once per interval, with a
/// count) and makes readiness look at the store's writes.
pub async fn note_store_failures(
    axum::extract::State(state): axum::extract::State<super::AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let response = next.run(request).await;
    if let Some(StoreUnavailable(err)) = response.extensions().get::<StoreUnavailable>() {
        state.ops.store_writes.failed(err);
    }
    response
}

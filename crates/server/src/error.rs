//! Failures as HTTP answers: the one place where a failure gets its status.
//! The same failure renders as JSON for the API (`ApiError`) and as a page
//! for the console (`PageError`, rendered by the console).

use std::marker::PhantomData;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use redrive_store::StoreError;
use serde_json::json;

/// A failure with its status, rendered by `R` (`Json` or `Page`).
pub struct Failure<R> {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// The store failure behind a 503 that passes by itself (a full disk):
    /// the answer then says when to retry, and the failure is logged.
    pub store_unavailable: Option<StoreError>,
    render: PhantomData<R>,
}

/// Renders a failure as `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug)]
pub struct Json;

/// Renders a failure as a console page.
#[derive(Debug)]
pub struct Page;

/// An API error: JSON.
pub type ApiError = Failure<Json>;

/// A console error: an HTML page with the same status.
pub type PageError = Failure<Page>;

impl<R> std::fmt::Debug for Failure<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Failure")
            .field("status", &self.status)
            .field("code", &self.code)
            .field("message", &self.message)
            .field("store_unavailable", &self.store_unavailable)
            .finish()
    }
}

impl<R> Failure<R> {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Failure {
            status,
            code,
            message: message.into(),
            store_unavailable: None,
            render: PhantomData,
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Failure::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// The same failure, rendered another way.
    pub fn rendered_as<T>(self) -> Failure<T> {
        Failure {
            status: self.status,
            code: self.code,
            message: self.message,
            store_unavailable: self.store_unavailable,
            render: PhantomData,
        }
    }

    /// Adds what a client needs to retry a 503 the store caused, and marks
    /// the response for `app::front_door`.
    fn finish(self, mut response: Response) -> Response {
        if let Some(err) = self.store_unavailable {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(RETRY_AFTER_SECONDS),
            );
            response.extensions_mut().insert(StoreUnavailable(err));
        }
        response
    }

    /// A 400 naming the field at fault.
    pub fn invalid(field: &str, problem: impl std::fmt::Display) -> Self {
        Failure::new(
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            format!("{field}: {problem}"),
        )
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Failure::new(StatusCode::BAD_REQUEST, "invalid_argument", message)
    }
}

impl<R> From<StoreError> for Failure<R> {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound { .. } => Failure::not_found(err.to_string()),
            StoreError::Conflict(message) => {
                Failure::new(StatusCode::CONFLICT, "conflict", message)
            }
            StoreError::Invalid(message) => Failure::bad_request(message),
            // Logged once per interval by `app::front_door`, which
            // finds the failure on the response.
            StoreError::Unavailable(ref message) => Failure {
                store_unavailable: Some(err.clone()),
                ..Failure::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    format!("{message}; try again later"),
                )
            },
            StoreError::Backend(message) => {
                tracing::error!(error = %message, "store failure");
                Failure::new(
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
/// for `app::front_door`.
#[derive(Clone, Debug)]
pub struct StoreUnavailable(pub StoreError);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message}});
        let response = (self.status, axum::Json(body)).into_response();
        self.finish(response)
    }
}

impl PageError {
    /// Renders the failure with `page`, the console's page for its status
    /// and message.
    pub fn into_page(self, page: impl FnOnce(StatusCode, &str) -> Response) -> Response {
        let response = page(self.status, &self.message);
        self.finish(response)
    }
}

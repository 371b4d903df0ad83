//! Request ids and the request span: every log line an API request causes
//! carries its method, path and `x-request-id` (taken from the client when
//! it sends one, made up otherwise, and echoed in the response).

use axum::Router;
use axum::http::{HeaderValue, Request};
use tower_http::request_id::RequestId;
use tower_http::trace::{DefaultOnFailure, DefaultOnRequest, DefaultOnResponse, TraceLayer};
use tracing::{Level, Span};

#[derive(Clone, Copy, Default)]
pub struct MakeRequestId;

impl tower_http::request_id::MakeRequestId for MakeRequestId {
    fn make_request_id<B>(&mut self, _request: &Request<B>) -> Option<RequestId> {
        let id = uuid::Uuid::now_v7().simple().to_string();
        HeaderValue::from_str(&id).ok().map(RequestId::new)
    }
}

fn request_span<B>(request: &Request<B>) -> Span {
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    // The path only: query strings may carry tokens.
    tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        request_id,
    )
}

/// Adds request ids and request logging around `router`. Responses are
/// logged at debug (publishes are too many for info); so are 5xx answers,
/// whose causes are logged where they arise (the refused publishes of a
/// shutdown would otherwise flood the log with errors).
pub fn layer<S>(router: Router<S>) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    router
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span as fn(&Request<axum::body::Body>) -> Span)
                .on_request(DefaultOnRequest::new().level(Level::DEBUG))
                .on_response(DefaultOnResponse::new().level(Level::DEBUG))
                .on_failure(DefaultOnFailure::new().level(Level::DEBUG)),
        )
        .layer(tower_http::request_id::PropagateRequestIdLayer::x_request_id())
        .layer(tower_http::request_id::SetRequestIdLayer::x_request_id(
            MakeRequestId,
        ))
}

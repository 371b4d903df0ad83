//! axum glue: [`Delivery`] as an extractor, [`Outcome`] as a response.
//!
//! Put the [`Verifier`] in the router's state (or anything it can be
//! taken from with `FromRef`); a handler then receives verified, decoded
//! deliveries only, and answers with an [`Outcome`]. A request that fails
//! verification is answered 401 (400 when it is not a CloudEvent) before
//! the handler is called.
//!
//! ```
//! use axum::{Router, routing::post};
//! use redrive_receiver::{Delivery, Outcome, Verifier};
//!
//! async fn orders(delivery: Delivery) -> Outcome {
//!     match delivery.event.ty.as_str() {
//!         "order.created" => Outcome::Processed,
//!         other => Outcome::reject(format!("unknown type {other}")),
//!     }
//! }
//!
//! let verifier = Verifier::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
//! let app: Router = Router::new().route("/orders", post(orders)).with_state(verifier);
//! ```

use std::time::SystemTime;

use axum::body::Bytes;
use axum::extract::{FromRef, FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::{Delivery, Headers, Outcome, Verifier, receive};

impl<S> FromRequest<S> for Delivery
where
    S: Send + Sync,
    Verifier: FromRef<S>,
{
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Delivery, Response> {
        let verifier = Verifier::from_ref(state);
        let headers = Headers::from(request.headers());
        let body = Bytes::from_request(request, state)
            .await
            .map_err(IntoResponse::into_response)?;
        receive(&verifier, &headers, &body, SystemTime::now()).map_err(|err| {
            tracing::warn!(error = %err, kind = err.kind(), "push refused");
            Outcome::Invalid(err).into_response()
        })
    }
}

impl IntoResponse for Outcome {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, axum::Json(self.body())).into_response();
        if let Some(seconds) = self.retry_after_header()
            && let Ok(value) = HeaderValue::from_str(&seconds)
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

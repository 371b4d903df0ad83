//! Extractors that answer bad input with the API's JSON errors, not axum's
//! plain-text rejections.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use redrive_core::strict::InputError;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::ApiError;

/// A JSON body parsed strictly; errors name the line, column and field,
/// and an unknown field is refused with the fields known there.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let body = body_bytes(Bytes::from_request(req, state).await)?;
        parse_json(&body).map(ApiJson)
    }
}

pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request("the request needs a JSON body"));
    }
    redrive_core::strict::from_slice(body).map_err(|err| input_error("invalid JSON body", err))
}

/// Reads a `T` strictly from a JSON value already parsed.
pub fn from_value<T: DeserializeOwned>(value: Value, what: &str) -> Result<T, ApiError> {
    redrive_core::strict::from_value(value).map_err(|err| input_error(what, err))
}

/// A 400 for refused input: an unknown field in the words every input uses,
/// anything else after `what` (`invalid subscription: timeout: …`).
pub fn input_error(what: &str, err: InputError) -> ApiError {
    match err {
        InputError::UnknownField { .. } => ApiError::bad_request(err.to_string()),
        InputError::Invalid { .. } => ApiError::bad_request(format!("{what}: {err}")),
    }
}

/// Maps body-reading failures, notably the size limit, to API errors.
pub fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request body is larger than this server accepts",
            )
        } else {
            ApiError::bad_request(format!("cannot read the body: {}", rejection.body_text()))
        }
    })
}

/// Query parameters; unknown or malformed ones are a 400.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| ApiQuery(value))
            .map_err(|rejection| {
                ApiError::bad_request(format!("invalid query: {}", rejection.body_text()))
            })
    }
}

//! API tokens and subscriptions' signing secrets (admin only).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use jiff::Timestamp;
use redrive_core::security::{Scope, SigningSecret};
use redrive_store::TokenRecord;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::{ApiJson, parse_json};
use crate::error::ApiError;
use crate::security::auth;
use crate::state::AppState;

/// Longest token label.
pub(crate) const MAX_TOKEN_NAME: usize = 200;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// `admin`, `read` or `publish:TOPIC`.
    #[schema(value_type = String, example = "publish:orders")]
    pub scope: Scope,
    /// Who holds it, what for.
    #[serde(default)]
    pub name: String,
}

#[derive(Serialize, ToSchema)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    #[schema(value_type = String)]
    pub scope: Scope,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

impl From<TokenRecord> for TokenInfo {
    fn from(record: TokenRecord) -> Self {
        TokenInfo {
            id: record.id,
            name: record.name,
            scope: record.scope,
            created_at: record.created_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub info: TokenInfo,
    /// The token itself: shown only in this answer.
    pub token: String,
}

#[derive(Serialize, ToSchema)]
pub struct TokenList {
    pub tokens: Vec<TokenInfo>,
}

fn internal(err: anyhow::Error) -> ApiError {
    tracing::error!(error = %format!("{err:#}"), "security operation failed");
    if let Some(store) = err.downcast_ref::<redrive_store::StoreError>() {
        return store.clone().into();
    }
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "the operation failed; see the server log",
    )
}

#[utoipa::path(post, path = "/v1/tokens", request_body = CreateToken,
    responses((status = 201, body = CreatedToken), (status = 400), (status = 401), (status = 403)))]
pub async fn create_token(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateToken>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    if body.name.len() > MAX_TOKEN_NAME || body.name.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "name",
            format!("at most {MAX_TOKEN_NAME} bytes, no control characters"),
        ));
    }
    let (token, record) =
        auth::new_token(body.name, body.scope, state.clock.now()).map_err(internal)?;
    state.store.create_token(record.clone()).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            info: record.into(),
            token,
        }),
    ))
}

#[utoipa::path(get, path = "/v1/tokens", responses((status = 200, body = TokenList)))]
pub async fn list_tokens(State(state): State<AppState>) -> Result<Json<TokenList>, ApiError> {
    let tokens = state.store.list_tokens().await?;
    Ok(Json(TokenList {
        tokens: tokens.into_iter().map(TokenInfo::from).collect(),
    }))
}

#[utoipa::path(delete, path = "/v1/tokens/{id}", responses((status = 204), (status = 404)))]
pub async fn delete_token(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.store.delete_token(&id).await?;
    state.security.sessions.revoke(&id);
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct SecretAnswer {
    /// `whsec_` + base64: the key of `webhook-signature`.
    pub secret: String,
    /// Until when a secret replaced by a rotation also signs (the latest
    /// of them, when several rotations fell within the grace period).
    #[schema(value_type = Option<String>, format = DateTime)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_valid_until: Option<Timestamp>,
}

#[utoipa::path(get, path = "/v1/subscriptions/{name}/secret",
    responses((status = 200, body = SecretAnswer), (status = 404)))]
pub async fn get_secret(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<SecretAnswer>, ApiError> {
    state.store.get_subscription(&name).await?;
    let keys = state
        .security
        .secrets
        .keys(&name, state.clock.now())
        .await
        .map_err(internal)?;
    let now = state.clock.now();
    Ok(Json(SecretAnswer {
        secret: keys.current.to_string(),
        previous_valid_until: keys.previous_valid_until(now),
    }))
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct RotateSecret {
    /// The new secret (`whsec_` + base64 of 24 to 64 bytes); generated when absent.
    pub secret: Option<String>,
}

/// Makes a new secret current; the old one keeps signing (both signatures
/// are sent) for the server's grace period.
#[utoipa::path(post, path = "/v1/subscriptions/{name}/secret/rotate", request_body = Option<RotateSecret>,
    responses((status = 200, body = SecretAnswer), (status = 400), (status = 404)))]
pub async fn rotate_secret(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<SecretAnswer>, ApiError> {
    let request: RotateSecret = if body.iter().all(u8::is_ascii_whitespace) {
        RotateSecret::default()
    } else {
        parse_json(&body)?
    };
    let new = request
        .secret
        .map(|text| text.parse::<SigningSecret>())
        .transpose()
        .map_err(|err| ApiError::invalid("secret", err))?;
    state.store.get_subscription(&name).await?;
    let now = state.clock.now();
    let keys = state
        .security
        .secrets
        .rotate(&name, new, state.security.rotation_grace, now)
        .await
        .map_err(internal)?;
    state.announce_subscription_change();
    Ok(Json(SecretAnswer {
        secret: keys.current.to_string(),
        previous_valid_until: keys.previous_valid_until(now),
    }))
}

//! Bearer tokens. The admin token comes from the operator (or is generated
//! at first start); scoped tokens (`rdv_<id>_<secret>`) are created through
//! the API and stored as a SHA-256 of their secret. Every comparison runs in
//! constant time, so response timing reveals nothing about a token.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::Timestamp;
use redrive_core::security::{Permission, Scope};
use redrive_store::{Store, StoreError, TokenRecord};
use subtle::ConstantTimeEq;

use super::Security;
use crate::error::ApiError;

pub const TOKEN_PREFIX: &str = "rdv_";
/// Shortest admin token an operator may choose.
const MIN_ADMIN_TOKEN_LEN: usize = 16;

/// Who made a request, once authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// Rate limits count per this key (a token id, `admin` or `anonymous`).
    pub key: String,
    pub scope: Scope,
}

pub struct Auth {
    /// SHA-256 of the admin token; `None` when authentication is off.
    admin_hash: Option<[u8; 32]>,
    store: Arc<dyn Store>,
}

pub fn check_admin_token(token: &str) -> anyhow::Result<()> {
    if token.len() < MIN_ADMIN_TOKEN_LEN {
        anyhow::bail!("the API token must be at least {MIN_ADMIN_TOKEN_LEN} characters");
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        anyhow::bail!("the API token may hold only visible ASCII characters, no spaces");
    }
    Ok(())
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

impl Auth {
    pub fn disabled(store: Arc<dyn Store>) -> Auth {
        Auth {
            admin_hash: None,
            store,
        }
    }

    pub fn with_admin(token: &str, store: Arc<dyn Store>) -> Auth {
        Auth {
            admin_hash: Some(sha256(token.as_bytes())),
            store,
        }
    }

    pub fn enabled(&self) -> bool {
        self.admin_hash.is_some()
    }

    /// The principal a token stands for; 401 for anything unknown.
    pub async fn authenticate(&self, token: &str) -> Result<Principal, ApiError> {
        let Some(admin_hash) = &self.admin_hash else {
            return Ok(anonymous());
        };
        if bool::from(sha256(token.as_bytes()).ct_eq(admin_hash)) {
            return Ok(Principal {
                key: "admin".into(),
                scope: Scope::Admin,
            });
        }
        let invalid = || unauthenticated("the token is not valid: unknown, deleted or mistyped");
        let Some((id, secret)) = token
            .strip_prefix(TOKEN_PREFIX)
            .and_then(|rest| rest.split_once('_'))
        else {
            return Err(invalid());
        };
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(invalid());
        }
        let record = match self.store.get_token(id).await {
            Ok(record) => record,
            Err(StoreError::NotFound { .. }) => return Err(invalid()),
            Err(err) => return Err(err.into()),
        };
        if bool::from(sha256(secret.as_bytes()).ct_eq(record.secret_hash.as_slice())) {
            Ok(Principal {
                key: record.id,
                scope: record.scope,
            })
        } else {
            Err(invalid())
        }
    }

    /// Authenticates a request's `Authorization: Bearer` header.
    pub async fn authenticate_request(&self, headers: &HeaderMap) -> Result<Principal, ApiError> {
        if !self.enabled() {
            return Ok(anonymous());
        }
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Err(unauthenticated(
                "this route needs a token: send the header `Authorization: Bearer <token>`",
            ));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                let (scheme, token) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .ok_or_else(|| unauthenticated("the Authorization header must be `Bearer <token>`"))?;
        self.authenticate(token).await
    }
}

fn anonymous() -> Principal {
    Principal {
        key: "anonymous".into(),
        scope: Scope::Admin,
    }
}

/// A new scoped token: what to hand out once, and what to store.
pub fn new_token(
    name: String,
    scope: Scope,
    now: Timestamp,
) -> anyhow::Result<(String, TokenRecord)> {
    let id: String = super::random_bytes::<8>()?
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let secret = URL_SAFE_NO_PAD.encode(super::random_bytes::<32>()?);
    let token = format!("{TOKEN_PREFIX}{id}_{secret}");
    let record = TokenRecord {
        id,
        name,
        scope,
        secret_hash: sha256(secret.as_bytes()).to_vec(),
        created_at: now,
    };
    Ok((token, record))
}

/// What a request needs, from its method and path alone (so routes added
/// anywhere under `/v1` are guarded without registering anything).
pub fn permission_for(method: &Method, path: &str) -> Permission {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        (&Method::POST, ["v1", "topics", topic, "events"]) => Permission::Publish {
            topic: (*topic).to_owned(),
        },
        (_, ["v1", "tokens", ..]) | (_, ["v1", "subscriptions", _, "secret", ..]) => {
            Permission::Admin
        }
        (&Method::GET | &Method::HEAD, _) => Permission::Read,
        _ => Permission::Admin,
    }
}

pub fn unauthenticated(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
}

pub fn forbidden(principal: &Principal, needed: &Permission) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "permission_denied",
        format!(
            "this token (scope {}) does not have {needed}",
            principal.scope
        ),
    )
}

/// Guards every `/v1` route and `/metrics`, which names every topic and
/// subscription (the console has its own guard): 401 without a valid token,
/// 403 when its scope falls short, 429 when a token publishes faster than
/// its rate. `/healthz`, `/readyz` (load balancers probe them without
/// credentials) and `/openapi.json` stay open.
pub async fn authorize_api(security: &Security, mut request: Request) -> Result<Request, Response> {
    let path = request.uri().path();
    if !(path.starts_with("/v1/") || path == "/metrics") {
        return Ok(request);
    }
    let principal = match security.auth.authenticate_request(request.headers()).await {
        Ok(principal) => principal,
        Err(err) => return Err(with_challenge(err.into_response())),
    };
    let needed = permission_for(request.method(), request.uri().path());
    if !principal.scope.allows(&needed) {
        return Err(forbidden(&principal, &needed).into_response());
    }
    if matches!(needed, Permission::Publish { .. })
        && let Err(retry_after) = security.publish_limiter.check(&principal.key)
    {
        return Err(super::limits::rate_limited(retry_after));
    }
    request.extensions_mut().insert(principal);
    Ok(request)
}

fn with_challenge(mut response: Response) -> Response {
    if response.status() == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"redrive\""),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_follow_method_and_path() {
        let publish = |t: &str| Permission::Publish { topic: t.into() };
        assert_eq!(
            permission_for(&Method::POST, "/v1/topics/orders/events"),
            publish("orders")
        );
        assert_eq!(permission_for(&Method::GET, "/v1/topics"), Permission::Read);
        assert_eq!(
            permission_for(&Method::GET, "/v1/subscriptions/s/deliveries"),
            Permission::Read
        );
        assert_eq!(
            permission_for(&Method::POST, "/v1/topics"),
            Permission::Admin
        );
        assert_eq!(
            permission_for(&Method::GET, "/v1/tokens"),
            Permission::Admin
        );
        assert_eq!(
            permission_for(&Method::GET, "/v1/subscriptions/s/secret"),
            Permission::Admin
        );
        assert_eq!(
            permission_for(&Method::DELETE, "/v1/topics/orders"),
            Permission::Admin
        );
        assert_eq!(permission_for(&Method::GET, "/console/x"), Permission::Read);
        assert_eq!(permission_for(&Method::GET, "/metrics"), Permission::Read);
        assert_eq!(
            permission_for(&Method::POST, "/console/x"),
            Permission::Admin
        );
    }
}

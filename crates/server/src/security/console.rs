//! Console sign-in and CSRF protection.
//!
//! A person signs in once with a token at `/console/login`; the server keeps
//! a session and hands the browser an opaque `HttpOnly`, `Secure`,
//! `SameSite=Strict` cookie scoped to `/console`. Every `/console` request
//! passes [`authorize_console`]: without a session a page redirects to the
//! sign-in form; a `read` session may only view; any other method must
//! carry the session's CSRF token, as the form field `csrf_token` or the
//! header `x-csrf-token`.
//!
//! Console handlers take a [`ConsoleSession`] and put
//! [`ConsoleSession::csrf_field`] inside every `<form method="post">`:
//!
//! ```ignore
//! async fn page(session: ConsoleSession) -> Html<String> {
//!     Html(format!(r#"<form method="post" action="/console/x">{}<button>Go</button></form>"#,
//!         session.csrf_field()))
//! }
//! ```

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::{Body, to_bytes};
use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use redrive_core::security::Scope;
use subtle::ConstantTimeEq;

use super::Security;
use super::auth::{self, Principal};
use crate::error::ApiError;

pub const COOKIE: &str = "redrive_session";
pub const CSRF_FIELD: &str = "csrf_token";
pub const CSRF_HEADER: &str = "x-csrf-token";
pub(crate) const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Largest console form read for its CSRF field.
pub(crate) const MAX_FORM_BYTES: usize = 64 * 1024;

/// The signed-in person of a console request.
#[derive(Clone, Debug)]
pub struct ConsoleSession {
    scope: Scope,
    csrf_token: String,
    /// Signed in through the sign-in form (a session cookie), so there is
    /// a session to sign out of.
    signed_in: bool,
}

impl ConsoleSession {
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// Whether this session may change things (show write buttons).
    pub fn can_write(&self) -> bool {
        self.scope == Scope::Admin
    }

    pub fn csrf_token(&self) -> &str {
        &self.csrf_token
    }

    /// The CSRF token for forms that change things, or `None` for a
    /// session that may only read: its pages offer no such form, since
    /// the guard would refuse it anyway.
    pub fn write_csrf(&self) -> Option<&str> {
        self.can_write().then_some(self.csrf_token.as_str())
    }

    /// The CSRF token of the sign-out form, for a browser signed in with a
    /// session cookie; `None` when there is nothing to sign out of.
    pub fn sign_out_csrf(&self) -> Option<&str> {
        self.signed_in.then_some(self.csrf_token.as_str())
    }

    /// The hidden input every console form must carry.
    pub fn csrf_field(&self) -> String {
        format!(
            r#"<input type="hidden" name="{CSRF_FIELD}" value="{}">"#,
            self.csrf_token
        )
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ConsoleSession {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<ConsoleSession>()
            .cloned()
            .ok_or_else(|| auth::unauthenticated("sign in at /console/login"))
    }
}

struct Session {
    principal: Principal,
    csrf_token: String,
    expires: Instant,
}

/// Console sessions, in memory: a restart signs everyone out.
pub struct Sessions {
    sessions: Mutex<HashMap<String, Session>>,
    /// The CSRF token of console pages when authentication is off.
    anonymous_csrf: String,
}

impl Sessions {
    pub fn new() -> anyhow::Result<Sessions> {
        Ok(Sessions {
            sessions: Mutex::default(),
            anonymous_csrf: URL_SAFE_NO_PAD.encode(super::random_bytes::<32>()?),
        })
    }

    pub(crate) fn create(&self, principal: Principal) -> anyhow::Result<String> {
        let id = URL_SAFE_NO_PAD.encode(super::random_bytes::<32>()?);
        let csrf_token = URL_SAFE_NO_PAD.encode(super::random_bytes::<32>()?);
        if let Ok(mut sessions) = self.sessions.lock() {
            let now = Instant::now();
            sessions.retain(|_, s| s.expires > now);
            sessions.insert(
                id.clone(),
                Session {
                    principal,
                    csrf_token,
                    expires: now + SESSION_LIFETIME,
                },
            );
        }
        Ok(id)
    }

    fn get(&self, id: &str) -> Option<(Principal, String)> {
        let sessions = self.sessions.lock().ok()?;
        let session = sessions.get(id)?;
        (session.expires > Instant::now())
            .then(|| (session.principal.clone(), session.csrf_token.clone()))
    }

    pub(crate) fn end(&self, id: &str) {
        if let Ok(mut sessions) = self.sessions.lock() {
            sessions.remove(id);
        }
    }

    /// Signs out every session opened with the token `key` (it was deleted).
    pub fn revoke(&self, key: &str) {
        if let Ok(mut sessions) = self.sessions.lock() {
            sessions.retain(|_, s| s.principal.key != key);
        }
    }
}

pub(crate) fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
}

/// A browser's cross-site request carries a foreign `Origin`; refuse it.
pub(crate) fn same_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    let (Some(origin), Some(host)) = (headers.get(header::ORIGIN), headers.get(header::HOST))
    else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or("");
    let origin_host = origin.split_once("://").map(|(_, rest)| rest).unwrap_or("");
    if origin_host.as_bytes() == host.as_bytes() {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "cross_origin",
            format!("a request from {origin:?} may not change this console"),
        ))
    }
}

fn csrf_refused() -> Response {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "csrf_token_invalid",
        "the form's CSRF token is missing or stale; reload the page and try again",
    )
    .into_response()
}

/// Guards `/console` (see the module documentation).
pub async fn authorize_console(security: &Security, request: Request) -> Result<Request, Response> {
    let path = request.uri().path();
    // The sign-in page and the static assets it needs (its stylesheet and
    // script) are open: they hold nothing but what the binary ships.
    if !(path == "/console" || path.starts_with("/console/"))
        || path.starts_with("/console/login")
        || (path.starts_with("/console/assets/") && request.method() == Method::GET)
    {
        return Ok(request);
    }
    let unsafe_method = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );

    // A bearer header (scripts, tests) needs no CSRF token: browsers never
    // add it to a cross-site request.
    let (principal, csrf_token, needs_csrf, signed_in) = if !security.auth.enabled() {
        (
            Principal {
                key: "anonymous".into(),
                scope: Scope::Admin,
            },
            security.sessions.anonymous_csrf.clone(),
            unsafe_method,
            false,
        )
    } else if request.headers().contains_key(header::AUTHORIZATION) {
        match security.auth.authenticate_request(request.headers()).await {
            Ok(principal) => (principal, String::new(), false, false),
            Err(err) => return Err(err.into_response()),
        }
    } else {
        match session_cookie(request.headers()).and_then(|id| security.sessions.get(&id)) {
            Some((principal, csrf)) => (principal, csrf, unsafe_method, true),
            None if unsafe_method => {
                return Err(auth::unauthenticated(
                    "the console session ended; sign in again at /console/login",
                )
                .into_response());
            }
            None => {
                let target = request
                    .uri()
                    .path_and_query()
                    .map(|p| p.as_str().to_owned())
                    .unwrap_or_default();
                let mut login = String::from("/console/login?next=");
                login.extend(form_urlencoded::byte_serialize(target.as_bytes()));
                return Err(Redirect::to(&login).into_response());
            }
        }
    };
    // Signing out changes nothing but the session itself: a read-only
    // session may do it too.
    let needed = if request.uri().path() == "/console/logout" {
        redrive_core::security::Permission::Read
    } else {
        auth::permission_for(request.method(), request.uri().path())
    };
    if !principal.scope.allows(&needed) {
        return Err(auth::forbidden(&principal, &needed).into_response());
    }
    let mut request = request;
    if needs_csrf {
        if let Err(err) = same_origin(request.headers()) {
            return Err(err.into_response());
        }
        let (given, rebuilt) = match csrf_of(request).await {
            Ok(found) => found,
            Err(response) => return Err(response),
        };
        request = rebuilt;
        let valid =
            given.is_some_and(|given| bool::from(given.as_bytes().ct_eq(csrf_token.as_bytes())));
        if !valid {
            return Err(csrf_refused());
        }
    }
    request.extensions_mut().insert(ConsoleSession {
        scope: principal.scope.clone(),
        csrf_token,
        signed_in,
    });
    request.extensions_mut().insert(principal);
    Ok(request)
}

/// The CSRF token of a request (header, or form field of a urlencoded
/// body), with the request rebuilt around the body it had to read.
async fn csrf_of(request: Request) -> Result<(Option<String>, Request), Response> {
    if let Some(value) = request.headers().get(CSRF_HEADER) {
        let token = value.to_str().ok().map(str::to_owned);
        return Ok((token, request));
    }
    let is_form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return Ok((None, request));
    }
    let (parts, body) = request.into_parts();
    let bytes = to_bytes(body, MAX_FORM_BYTES).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the form is larger than the console accepts",
        )
        .into_response()
    })?;
    let token = form_urlencoded::parse(&bytes)
        .find(|(name, _)| name == CSRF_FIELD)
        .map(|(_, value)| value.into_owned());
    Ok((token, Request::from_parts(parts, Body::from(bytes))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; redrive_session=abc; b=2"),
        );
        assert_eq!(session_cookie(&headers).as_deref(), Some("abc"));
    }
}

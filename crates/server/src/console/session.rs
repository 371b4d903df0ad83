//! Signing in to the console and out of it (the sessions themselves and the
//! guard live in `crate::security::console`).

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use crate::error::ApiError;
use crate::security::console::{
    COOKIE, ConsoleSession, MAX_FORM_BYTES, SESSION_LIFETIME, same_origin, session_cookie,
};
use crate::state::AppState;

/// Sign-in and sign-out routes (everything else under `/console` belongs
/// to the console itself).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/login", get(login_form).post(login))
        .route("/console/logout", post(logout))
        .route("/console/session", get(session_info))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_FORM_BYTES))
}

/// The signed-in session, for pages that send changes with `fetch` and the
/// `x-csrf-token` header. Same-origin only: the cookie is `SameSite=Strict`
/// and no CORS headers are ever sent.
async fn session_info(session: ConsoleSession) -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({
        "scope": session.scope().to_string(),
        "csrf_token": session.csrf_token(),
    }))
}

#[derive(serde::Deserialize, Default)]
pub struct LoginQuery {
    next: Option<String>,
}

/// Only console paths are valid targets after sign-in (no open redirect).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(path)
            if path.starts_with("/console")
                && !path.starts_with("/console/login")
                && !path.contains("//")
                && !path.contains('\\') =>
        {
            path.to_owned()
        }
        _ => "/console".to_owned(),
    }
}

fn login_page(next: &str, error: Option<&str>) -> Html<String> {
    Html(super::views::login(next, error).into_string())
}

async fn login_form(query: axum::extract::Query<LoginQuery>) -> Html<String> {
    login_page(&safe_next(query.next.as_deref()), None)
}

#[derive(serde::Deserialize)]
pub struct LoginForm {
    token: String,
    next: Option<String>,
}

async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::extract::Form(form): axum::extract::Form<LoginForm>,
) -> Response {
    let next = safe_next(form.next.as_deref());
    if let Err(err) = same_origin(&headers) {
        return err.into_response();
    }
    let principal = match state.security.auth.authenticate(form.token.trim()).await {
        Ok(principal) => principal,
        Err(err) => {
            tracing::info!("console sign-in refused");
            return (
                StatusCode::UNAUTHORIZED,
                login_page(&next, Some(&err.message)),
            )
                .into_response();
        }
    };
    if !principal
        .scope
        .allows(&redrive_core::security::Permission::Read)
    {
        return (
            StatusCode::FORBIDDEN,
            login_page(
                &next,
                Some("this token may only publish; the console needs a read or admin token"),
            ),
        )
            .into_response();
    }
    let id = match state.security.sessions.create(principal) {
        Ok(id) => id,
        Err(err) => {
            tracing::error!(error = %err, "cannot open a console session");
            return ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "cannot open a session",
            )
            .into_response();
        }
    };
    let cookie = format!(
        "{COOKIE}={id}; Path=/console; HttpOnly; Secure; SameSite=Strict; Max-Age={}",
        SESSION_LIFETIME.as_secs()
    );
    let mut response = Redirect::to(&next).into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(id) = session_cookie(&headers) {
        state.security.sessions.end(&id);
    }
    let mut response = Redirect::to("/console/login").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "redrive_session=; Path=/console; HttpOnly; Secure; SameSite=Strict; Max-Age=0",
        ),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_console_paths_are_redirect_targets() {
        assert_eq!(
            safe_next(Some("/console/deliveries?x=1")),
            "/console/deliveries?x=1"
        );
        for bad in [
            "https://evil.example/",
            "//evil.example",
            "/v1/tokens",
            "/console//evil",
            "/console/login",
        ] {
            assert_eq!(safe_next(Some(bad)), "/console", "{bad}");
        }
        assert_eq!(safe_next(None), "/console");
    }
}

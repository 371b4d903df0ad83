//! The console over plain HTTP (no browser needed): redirects, status
//! codes of its error pages, embedded assets, and its buttons' routes.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{Endpoint, Reply, Server, event, subscription};
use serde_json::json;

/// A script's client: the admin token as a bearer header (no CSRF token
/// needed), redirects left visible.
fn no_redirects() -> reqwest::Client {
    redrive_testkit::api::client(Some(common::TOKEN))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client")
}

/// A browser's client before it signs in: no token, redirects visible.
fn anonymous_no_redirects() -> reqwest::Client {
    redrive_testkit::api::client(None)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client")
}

async fn page(server: &Server, path: &str) -> (u16, String, String) {
    let response = no_redirects()
        .get(server.url(path))
        .send()
        .await
        .expect("the console answers");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, content_type, response.text().await.expect("a body"))
}

#[tokio::test]
async fn the_root_redirects_to_the_console() {
    let server = Server::start().await;
    let response = no_redirects()
        .get(server.url("/"))
        .send()
        .await
        .expect("an answer");
    assert!(response.status().is_redirection());
    assert_eq!(response.headers()["location"], "/console");
    let (status, content_type, body) = page(&server, "/console").await;
    assert_eq!(status, 200);
    assert_eq!(content_type, "text/html; charset=utf-8");
    assert!(body.contains("No topics yet.") || body.contains("redrive.system"));
}

#[tokio::test]
async fn unknown_pages_and_ids_answer_a_404_page() {
    let server = Server::start().await;
    for path in [
        "/console/deliveries/no-such-id",
        "/console/subscriptions/no-such-subscription",
        "/console/subscriptions/no-such-subscription/rows",
        "/console/deliveries/no-such-id/live",
        "/console/no/such/page",
        "/console/assets/nothing.css",
        "/console/policy?subscription=nobody",
    ] {
        let (status, content_type, body) = page(&server, path).await;
        assert_eq!(status, 404, "{path}");
        assert!(
            content_type.starts_with("text/html"),
            "{path}: {content_type}"
        );
        assert!(body.contains("Not found"), "{path}: {body}");
    }
}

#[tokio::test]
async fn bad_filters_answer_a_400_page_saying_why() {
    let server = Server::start().await;
    server.create_topic("orders").await;
    server
        .create_subscription(subscription(
            "hooks",
            "orders",
            "http://127.0.0.1:9/x",
            json!({}),
        ))
        .await;
    for (query, says) in [
        ("status=abc", "status: \"abc\" is not an HTTP status code"),
        ("status=700", "is not an HTTP status code"),
        ("state=lost", "state: \"lost\" is not one of"),
        ("reason=whim", "reason: \"whim\" is not one of"),
        ("since=yesterday", "since: \"yesterday\" is neither a time"),
        ("cursor=forged", "is not one this server gave"),
    ] {
        let (status, _, body) =
            page(&server, &format!("/console/subscriptions/hooks?{query}")).await;
        assert_eq!(status, 400, "{query}");
        assert!(
            body.contains(&says.replace('"', "&quot;")),
            "{query}: {body}"
        );
    }
    let (status, _, body) = page(
        &server,
        "/console/policy?policy=%7B%22retry_limit%22%3A-1%7D",
    )
    .await;
    assert_eq!(status, 400);
    assert!(body.contains("policy:"), "{body}");
    let (status, _, _) = page(&server, "/console/policy?count=0").await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn pages_load_nothing_from_elsewhere() {
    let server = Server::start().await;
    server.create_topic("orders").await;
    server
        .create_subscription(subscription(
            "hooks",
            "orders",
            "http://127.0.0.1:9/x",
            json!({}),
        ))
        .await;
    for path in [
        "/console",
        "/console/subscriptions/hooks",
        "/console/policy",
    ] {
        let (status, _, body) = page(&server, path).await;
        assert_eq!(status, 200, "{path}");
        for external in [
            "src=\"http",
            "href=\"http",
            "src=\"//",
            "href=\"//",
            "@import",
        ] {
            assert!(!body.contains(external), "{path} loads {external}…");
        }
    }
    for (asset, content_type) in [
        ("console.css", "text/css; charset=utf-8"),
        ("console.js", "text/javascript; charset=utf-8"),
    ] {
        let (status, served_type, body) = page(&server, &format!("/console/assets/{asset}")).await;
        assert_eq!(status, 200);
        assert_eq!(served_type, content_type);
        assert!(!body.contains("http://") && !body.contains("https://"));
    }
}

#[tokio::test]
async fn redrive_failed_puts_failed_deliveries_back_on_their_way() {
    let healed = Arc::new(AtomicBool::new(false));
    let endpoint = {
        let healed = healed.clone();
        Endpoint::start(move |_, _| {
            if healed.load(Ordering::SeqCst) {
                Reply::ok()
            } else {
                Reply::status(500)
            }
        })
        .await
    };
    let server = Server::start().await;
    server.create_topic("orders").await;
    server
        .create_subscription(subscription(
            "hooks",
            "orders",
            &endpoint.url,
            json!({"retry_policy": {"backoff": {"kind": "immediate"}, "retry_limit": 0}}),
        ))
        .await;
    server.publish_ok("orders", &event("e1", "t")).await;
    let failed = server.wait_all_ended("hooks", 1).await;
    assert_eq!(failed[0]["state"], "failed");
    healed.store(true, Ordering::SeqCst);

    let response = no_redirects()
        .post(server.url("/console/subscriptions/hooks/redrive"))
        .send()
        .await
        .expect("the button's route answers");
    assert!(response.status().is_redirection(), "{}", response.status());
    assert_eq!(
        response.headers()["location"],
        "/console/subscriptions/hooks?redriven=1"
    );
    let id = failed[0]["id"].as_str().expect("an id");
    server.wait_for_state(id, "delivered").await;
    let (_, _, body) = page(&server, "/console/subscriptions/hooks?redriven=1").await;
    assert!(
        body.contains("Redrive started: 1 failed delivery is due again."),
        "{body}"
    );

    let response = no_redirects()
        .post(server.url("/console/subscriptions/nobody/redrive"))
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status().as_u16(), 404);
}

#[tokio::test]
async fn pause_resume_and_enable_buttons_change_the_subscription() {
    let endpoint = Endpoint::start(|_, _| Reply::ok()).await;
    let server = Server::start().await;
    server.create_topic("orders").await;
    server
        .create_subscription(subscription("hooks", "orders", &endpoint.url, json!({})))
        .await;
    let (_, _, body) = page(&server, "/console/subscriptions/hooks").await;
    assert!(body.contains(r#"action="/console/subscriptions/hooks/pause""#));
    assert!(!body.contains(r#"action="/console/subscriptions/hooks/resume""#));
    assert!(!body.contains(r#"action="/console/subscriptions/hooks/enable""#));

    let paused_flag = |server: &Server| {
        let request = server.http.get(server.url("/v1/subscriptions/hooks"));
        async move {
            let body: serde_json::Value = request
                .send()
                .await
                .expect("the API answers")
                .json()
                .await
                .expect("JSON");
            body["paused"].clone()
        }
    };
    for (button, paused, shown) in [("pause", true, "resume"), ("resume", false, "pause")] {
        let response = no_redirects()
            .post(server.url(&format!("/console/subscriptions/hooks/{button}")))
            .send()
            .await
            .expect("the button's route answers");
        assert!(response.status().is_redirection(), "{}", response.status());
        assert_eq!(
            response.headers()["location"],
            "/console/subscriptions/hooks"
        );
        assert_eq!(paused_flag(&server).await, paused, "after {button}");
        let (_, _, body) = page(&server, "/console/subscriptions/hooks").await;
        assert!(
            body.contains(&format!(r#"action="/console/subscriptions/hooks/{shown}""#)),
            "after {button} the page offers {shown}"
        );
    }

    // Enabling a healthy subscription changes nothing and says so by
    // leaving it healthy; an unknown one is a 404 page.
    let response = no_redirects()
        .post(server.url("/console/subscriptions/hooks/enable"))
        .send()
        .await
        .expect("the button's route answers");
    assert!(response.status().is_redirection(), "{}", response.status());
    let response = no_redirects()
        .post(server.url("/console/subscriptions/nope/pause"))
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status().as_u16(), 404);
}

/// Signs in at `/console/login` with `token`; the session cookie
/// (`name=value`) and its CSRF token.
async fn sign_in(server: &Server, token: &str) -> (String, String) {
    let http = anonymous_no_redirects();
    let form = form_urlencoded::Serializer::new(String::new())
        .append_pair("token", token)
        .finish();
    let signed_in = http
        .post(server.url("/console/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .expect("the sign-in answers");
    assert!(
        signed_in.status().is_redirection(),
        "{}",
        signed_in.status()
    );
    let cookie = signed_in.headers()["set-cookie"]
        .to_str()
        .expect("a cookie")
        .split(';')
        .next()
        .expect("name=value")
        .to_owned();
    let session: serde_json::Value = http
        .get(server.url("/console/session"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("the session answers")
        .json()
        .await
        .expect("JSON");
    let csrf = session["csrf_token"].as_str().expect("a CSRF token");
    (cookie, csrf.to_owned())
}

#[tokio::test]
async fn a_read_only_session_sees_no_write_buttons_and_cannot_post_them() {
    let endpoint = Endpoint::start(|_, _| Reply::status(500)).await;
    let server = Server::start().await;
    server.create_topic("orders").await;
    server
        .create_subscription(subscription(
            "hooks",
            "orders",
            &endpoint.url,
            json!({"retry_policy": {"backoff": {"kind": "immediate"}, "retry_limit": 0}}),
        ))
        .await;
    server.publish_ok("orders", &event("e1", "t")).await;
    let failed = server.wait_all_ended("hooks", 1).await;
    let id = failed[0]["id"].as_str().expect("an id").to_owned();
    let (status, created) = server
        .post("/v1/tokens", json!({"scope": "read", "name": "viewer"}))
        .await;
    assert_eq!(status.as_u16(), 201, "{created}");
    let read_token = created["token"].as_str().expect("the token");

    let http = anonymous_no_redirects();
    let pages = [
        "/console/subscriptions/hooks".to_owned(),
        "/console/subscriptions/hooks/rows".to_owned(),
        format!("/console/deliveries/{id}"),
        format!("/console/deliveries/{id}/live"),
    ];
    // Forms that change something: all but the sign-out button's.
    let forms = |body: &str| {
        body.matches(r#"method="post""#).count()
            - body.matches(r#"action="/console/logout""#).count()
    };
    for (token, writes) in [(common::TOKEN, true), (read_token, false)] {
        let (cookie, _) = sign_in(&server, token).await;
        for path in &pages {
            let response = http
                .get(server.url(path))
                .header("cookie", &cookie)
                .send()
                .await
                .expect("the page answers");
            assert_eq!(response.status().as_u16(), 200, "{path}");
            let body = response.text().await.expect("a body");
            assert_eq!(forms(&body) > 0, writes, "{token:.8}… {path}: {body}");
            assert_eq!(body.contains("Retry now"), writes, "{path}");
            // Every whole page, not the refreshed fragments, offers to sign out.
            assert_eq!(
                body.contains(
                    r#"<button class="secondary" id="sign-out" type="submit">Sign out</button>"#
                ),
                !path.ends_with("/rows") && !path.ends_with("/live"),
                "{path}"
            );
        }
    }

    // The buttons' routes refuse the read-only session even with its CSRF
    // token; it may still sign out.
    let (cookie, csrf) = sign_in(&server, read_token).await;
    for route in [
        "/console/subscriptions/hooks/redrive".to_owned(),
        "/console/subscriptions/hooks/pause".to_owned(),
        "/console/subscriptions/hooks/resume".to_owned(),
        "/console/subscriptions/hooks/enable".to_owned(),
        format!("/console/deliveries/{id}/retry"),
    ] {
        let response = http
            .post(server.url(&route))
            .header("cookie", &cookie)
            .header("x-csrf-token", &csrf)
            .send()
            .await
            .expect("the route answers");
        assert_eq!(response.status().as_u16(), 403, "{route}");
    }
    let (_, body) = server.get("/v1/subscriptions/hooks").await;
    assert_eq!(body["paused"], false, "{body}");
    let (_, detail) = server.get(&format!("/v1/deliveries/{id}")).await;
    assert_eq!(detail["state"], "failed", "{detail}");
    let out = http
        .post(server.url("/console/logout"))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .expect("the sign-out answers");
    assert_eq!(out.status().as_u16(), 303);
}

#[tokio::test]
async fn subscription_and_policy_pages_say_whether_push_backoff_applies() {
    let server = Server::start().await;
    server.create_topic("orders").await;
    for (name, extra) in [
        ("exact", json!({})),
        ("pubsub-like", json!({"retry_policy": {"preset": "pubsub"}})),
    ] {
        server
            .create_subscription(subscription(name, "orders", "http://127.0.0.1:9/x", extra))
            .await;
    }
    let shown = |body: &str| {
        let start = body
            .find("id=\"push-backoff\"")
            .expect("a push backoff line");
        body[start..]
            .split('<')
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    let (_, _, body) = page(&server, "/console/subscriptions/exact").await;
    assert!(
        shown(&body).contains("off — every retry starts when"),
        "{body}"
    );
    let (_, _, body) = page(&server, "/console/subscriptions/pubsub-like").await;
    assert!(shown(&body).contains("on — after failures"), "{body}");

    for (query, says) in [
        ("subscription=exact", "push backoff off"),
        ("subscription=pubsub-like", "push backoff on"),
        ("", "push backoff off"),
        // A typed policy: what a new subscription with it gets.
        (
            "policy=%7B%22preset%22%3A%22eventarc%22%7D",
            "push backoff on",
        ),
        (
            "policy=%7B%22preset%22%3A%22cloud-tasks%22%7D",
            "push backoff off",
        ),
    ] {
        let (status, _, body) = page(&server, &format!("/console/policy?{query}")).await;
        assert_eq!(status, 200, "{query}");
        assert!(shown(&body).contains(says), "{query}: {}", shown(&body));
    }
}

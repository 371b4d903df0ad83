//! The console over plain HTTP (no browser needed): redirects, status
//! codes of its error pages, embedded assets, and its buttons' routes.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{Endpoint, Reply, Server, event, subscription};
use serde_json::json;

/// A script's client: the admin token as a bearer header (no CSRF token
/// needed), redirects left visible.
fn no_redirects() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {}", common::TOKEN)
            .parse()
            .expect("a header value"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
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

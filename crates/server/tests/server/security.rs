//! The trust boundary end to end: tokens and scopes, console sign-in and
//! CSRF, signed pushes checked by an independent verifier, secret rotation,
//! SSRF refusals, input limits and slow clients.

use crate::common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::*;
use redrive_core::security::{EndpointPolicy, parse_networks};
use redrive_server::app::Limits;
use redrive_server::security::SecurityOptions;
use reqwest::StatusCode as Status;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A server without the tests' allow-list: redrive's defaults.
async fn default_policy_server() -> Server {
    Server::start_secured(
        Limits::default(),
        quick_sweeper(),
        SecurityOptions {
            endpoint_policy: EndpointPolicy::default(),
            ..test_security()
        },
    )
    .await
}

/// URL-encoded forms, as a browser posts them.
trait FormBody {
    fn form_body(self, pairs: &[(&str, &str)]) -> Self;
}

impl FormBody for reqwest::RequestBuilder {
    fn form_body(self, pairs: &[(&str, &str)]) -> Self {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        self.header("content-type", "application/x-www-form-urlencoded")
            .body(body)
    }
}

fn anonymous() -> reqwest::Client {
    redrive_testkit::api::client(None)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client")
}

async fn call(request: reqwest::RequestBuilder) -> (Status, Value, reqwest::header::HeaderMap) {
    let response = request.send().await.expect("the API answers");
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.expect("a body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body, headers)
}

async fn create_token(server: &Server, scope: &str) -> String {
    let (status, body) = server
        .post("/v1/tokens", json!({"scope": scope, "name": "tests"}))
        .await;
    assert_eq!(status, Status::CREATED, "{body}");
    assert_eq!(body["scope"], scope);
    body["token"].as_str().expect("the token").to_owned()
}

// ---------------------------------------------------------------------------
// Tokens and scopes
// ---------------------------------------------------------------------------

#[tokio::test]
async fn without_a_valid_token_every_v1_route_is_401_with_a_clear_message() {
    let server = Server::start().await;
    let http = anonymous();
    for path in ["/v1/topics", "/v1/subscriptions", "/v1/tokens"] {
        let (status, body, headers) = call(http.get(server.url(path))).await;
        assert_eq!(status, Status::UNAUTHORIZED, "{path}: {body}");
        assert_eq!(body["error"]["code"], "unauthenticated");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("Authorization: Bearer"),
            "{body}"
        );
        assert!(headers.contains_key("www-authenticate"));
    }
    let (status, body, _) = call(
        http.post(server.url("/v1/topics"))
            .bearer_auth("rdv_0123456789abcdef_not-the-secret")
            .json(&json!({"name": "x"})),
    )
    .await;
    assert_eq!(status, Status::UNAUTHORIZED, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not valid")
    );
    let (status, _, _) = call(
        http.get(server.url("/v1/topics"))
            .header("authorization", "Basic dXNlcjpwYXNz"),
    )
    .await;
    assert_eq!(status, Status::UNAUTHORIZED);
    // Health and the API description stay public.
    let (status, _, _) = call(http.get(server.url("/healthz"))).await;
    assert_eq!(status, Status::OK);
    let (status, _, _) = call(http.get(server.url("/openapi.json"))).await;
    assert_eq!(status, Status::OK);
}

#[tokio::test]
async fn metrics_need_a_read_token_while_health_and_readiness_stay_open() {
    let server = Server::start().await;
    server.create_topic("orders").await;
    let http = anonymous();
    let (status, body, headers) = call(http.get(server.url("/metrics"))).await;
    assert_eq!(status, Status::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"]["code"], "unauthenticated");
    assert!(headers.contains_key("www-authenticate"));
    let publisher = create_token(&server, "publish:orders").await;
    let (status, body, _) = call(http.get(server.url("/metrics")).bearer_auth(&publisher)).await;
    assert_eq!(status, Status::FORBIDDEN, "{body}");
    let reader = create_token(&server, "read").await;
    let (status, body, _) = call(http.get(server.url("/metrics")).bearer_auth(&reader)).await;
    assert_eq!(status, Status::OK, "{body}");
    assert!(body.as_str().unwrap().contains("redrive_"), "{body}");
    for open in ["/healthz", "/readyz", "/openapi.json"] {
        let (status, body, _) = call(http.get(server.url(open))).await;
        assert_eq!(status, Status::OK, "{open}: {body}");
    }
}

#[tokio::test]
async fn a_publish_token_publishes_only_to_its_topic() {
    let server = Server::start().await;
    server.create_topic("orders").await;
    server.create_topic("other").await;
    let token = create_token(&server, "publish:orders").await;
    let http = anonymous();
    let publish = |topic: &str| {
        http.post(server.url(&format!("/v1/topics/{topic}/events")))
            .bearer_auth(&token)
            .header("content-type", "application/cloudevents+json")
            .body(event("e1", "t").to_string())
    };
    let (status, body, _) = call(publish("orders")).await;
    assert_eq!(status, Status::ACCEPTED, "{body}");
    let (status, body, _) = call(publish("other")).await;
    assert_eq!(status, Status::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "permission_denied");
    assert_eq!(
        body["error"]["message"],
        "this token (scope publish:orders) does not have permission to publish to topic \"other\""
    );
    let (status, _, _) = call(http.get(server.url("/v1/topics")).bearer_auth(&token)).await;
    assert_eq!(status, Status::FORBIDDEN);
}

#[tokio::test]
async fn a_read_token_reads_but_cannot_write_or_see_secrets() {
    let server = Server::start().await;
    server.create_topic("orders").await;
    let endpoint = Endpoint::ok().await;
    server
        .create_subscription(subscription("s", "orders", &endpoint.url, json!({})))
        .await;
    let token = create_token(&server, "read").await;
    let http = anonymous();
    let (status, body, _) = call(http.get(server.url("/v1/topics")).bearer_auth(&token)).await;
    assert_eq!(status, Status::OK, "{body}");
    let (status, _, _) = call(
        http.get(server.url("/v1/subscriptions/s/deliveries"))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(status, Status::OK);
    for request in [
        http.post(server.url("/v1/topics"))
            .json(&json!({"name": "x"})),
        http.delete(server.url("/v1/subscriptions/s")),
        http.post(server.url("/v1/topics/orders/events"))
            .header("content-type", "application/cloudevents+json")
            .body(event("e1", "t").to_string()),
        http.get(server.url("/v1/subscriptions/s/secret")),
        http.get(server.url("/v1/tokens")),
        http.post(server.url("/v1/tokens"))
            .json(&json!({"scope": "admin"})),
    ] {
        let (status, body, _) = call(request.bearer_auth(&token)).await;
        assert_eq!(status, Status::FORBIDDEN, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("this token (scope read) does not have"),
            "{body}"
        );
    }
}

#[tokio::test]
async fn tokens_are_listed_without_secrets_and_stop_working_when_deleted() {
    let server = Server::start().await;
    let token = create_token(&server, "read").await;
    let (status, list) = server.get("/v1/tokens").await;
    assert_eq!(status, Status::OK);
    let listed = &list["tokens"][0];
    assert_eq!(listed["scope"], "read");
    assert!(listed.get("token").is_none(), "{list}");
    // `rdv_<id>_<secret>`: the secret is base64url and may itself hold
    // `_`, so it is everything after the id (its last `_`-part can be a
    // single character that any listing contains).
    let secret = token.splitn(3, '_').nth(2).unwrap();
    assert!(secret.len() >= 40, "{token}");
    assert!(!list.to_string().contains(secret), "{list}");
    let id = listed["id"].as_str().unwrap();

    let http = anonymous();
    let (status, _, _) = call(http.get(server.url("/v1/topics")).bearer_auth(&token)).await;
    assert_eq!(status, Status::OK);
    // The right id with a wrong secret is refused.
    let forged = format!("rdv_{id}_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    let (status, _, _) = call(http.get(server.url("/v1/topics")).bearer_auth(&forged)).await;
    assert_eq!(status, Status::UNAUTHORIZED);

    let (status, _) = server.delete(&format!("/v1/tokens/{id}")).await;
    assert_eq!(status, Status::NO_CONTENT);
    let (status, _, _) = call(http.get(server.url("/v1/topics")).bearer_auth(&token)).await;
    assert_eq!(status, Status::UNAUTHORIZED);

    let (status, body) = server
        .post("/v1/tokens", json!({"scope": "publish:a b"}))
        .await;
    assert_eq!(status, Status::BAD_REQUEST, "{body}");
    let (status, _) = server.post("/v1/tokens", json!({"scope": "root"})).await;
    assert_eq!(status, Status::BAD_REQUEST);
}

// ---------------------------------------------------------------------------
// Console sign-in and CSRF
// ---------------------------------------------------------------------------

#[tokio::test]
async fn the_console_signs_in_once_with_a_cookie_and_checks_csrf() {
    let server = Server::start().await;
    let http = anonymous();

    let response = http
        .get(server.url("/console/deliveries"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), Status::SEE_OTHER);
    assert_eq!(
        response.headers()["location"],
        "/console/login?next=%2Fconsole%2Fdeliveries"
    );
    let form = http.get(server.url("/console/login")).send().await.unwrap();
    assert_eq!(form.status(), Status::OK);
    let form = form.text().await.unwrap();
    assert!(form.contains(r#"name="token""#));
    // The sign-in page is styled: its stylesheet and script come without a
    // session, and nothing else does.
    assert!(
        form.contains(r#"href="/console/assets/console.css""#),
        "{form}"
    );
    for asset in ["console.css", "console.js"] {
        let response = http
            .get(server.url(&format!("/console/assets/{asset}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), Status::OK, "{asset}");
    }
    for path in ["/console", "/console/policy", "/console/assets-not/x"] {
        let response = http.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), Status::SEE_OTHER, "{path}");
    }

    let refused = http
        .post(server.url("/console/login"))
        .form_body(&[("token", "wrong-token-wrong-token")])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), Status::UNAUTHORIZED);
    assert!(refused.headers().get("set-cookie").is_none());

    let signed_in = http
        .post(server.url("/console/login"))
        .form_body(&[("token", TOKEN), ("next", "/console/deliveries")])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), Status::SEE_OTHER);
    assert_eq!(signed_in.headers()["location"], "/console/deliveries");
    let cookie = signed_in.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/console"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    let session = cookie.split(';').next().unwrap().to_owned();

    // With the cookie, console requests get through (to whatever route).
    let (status, body, _) = call(
        http.get(server.url("/console/session"))
            .header("cookie", &session),
    )
    .await;
    assert_eq!(status, Status::OK, "{body}");
    assert_eq!(body["scope"], "admin");
    let csrf = body["csrf_token"].as_str().unwrap().to_owned();

    // A form without the CSRF token, or with another one, is refused.
    for token in ["", "forged"] {
        let (status, body, _) = call(
            http.post(server.url("/console/logout"))
                .header("cookie", &session)
                .form_body(&[("csrf_token", token)]),
        )
        .await;
        assert_eq!(status, Status::FORBIDDEN, "{body}");
        assert_eq!(body["error"]["code"], "csrf_token_invalid");
    }
    // A cross-site form is refused even with the token.
    let (status, _, _) = call(
        http.post(server.url("/console/logout"))
            .header("cookie", &session)
            .header("origin", "https://evil.example")
            .form_body(&[("csrf_token", csrf.as_str())]),
    )
    .await;
    assert_eq!(status, Status::FORBIDDEN);

    let out = http
        .post(server.url("/console/logout"))
        .header("cookie", &session)
        .form_body(&[("csrf_token", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), Status::SEE_OTHER);
    let after = http
        .get(server.url("/console/session"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), Status::SEE_OTHER, "the session ended");
}

#[tokio::test]
async fn a_publish_token_cannot_sign_in_to_the_console() {
    let server = Server::start().await;
    let token = create_token(&server, "publish:orders").await;
    let response = anonymous()
        .post(server.url("/console/login"))
        .form_body(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), Status::FORBIDDEN);
    assert!(response.headers().get("set-cookie").is_none());
}

// ---------------------------------------------------------------------------
// Signed deliveries
// ---------------------------------------------------------------------------

/// HMAC-SHA256 written from RFC 2104 over a plain SHA-256, so the check
/// does not share code with the signer.
fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let sha = |data: &[u8]| {
        ring::digest::digest(&ring::digest::SHA256, data)
            .as_ref()
            .to_vec()
    };
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&sha(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner: Vec<u8> = block.iter().map(|b| b ^ 0x36).collect();
    inner.extend_from_slice(message);
    let mut outer: Vec<u8> = block.iter().map(|b| b ^ 0x5c).collect();
    outer.extend_from_slice(&sha(&inner));
    sha(&outer)
}

/// A receiver's verification, from the Standard Webhooks specification:
/// the secret is base64 after `whsec_`; the signed content is
/// `{webhook-id}.{webhook-timestamp}.{body}`; the header holds
/// space-separated `v1,<base64>` signatures, any of which may match.
fn verify_independently(
    secret: &str,
    id: &str,
    timestamp: &str,
    body: &[u8],
    header: &str,
) -> bool {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").expect("a whsec_ secret"))
        .expect("base64");
    let mut content = format!("{id}.{timestamp}.").into_bytes();
    content.extend_from_slice(body);
    let expected = STANDARD.encode(hmac_sha256(&key, &content));
    header
        .split(' ')
        .any(|part| part.strip_prefix("v1,") == Some(expected.as_str()))
}

#[test]
fn the_independent_verifier_accepts_the_published_test_vector() {
    assert!(verify_independently(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "1614265330",
        br#"{"test": 2432232314}"#,
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    ));
    assert!(!verify_independently(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "1614265331",
        br#"{"test": 2432232314}"#,
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    ));
}

fn signatures(received: &Received) -> Vec<String> {
    received
        .header("webhook-signature")
        .expect("a webhook-signature header")
        .split(' ')
        .map(str::to_owned)
        .collect()
}

fn verifies(secret: &str, received: &Received) -> bool {
    verify_independently(
        secret,
        received.header("webhook-id").unwrap(),
        received.header("webhook-timestamp").unwrap(),
        &received.body,
        received.header("webhook-signature").unwrap(),
    )
}

#[tokio::test]
async fn pushes_are_signed_and_rotation_signs_with_both_secrets_during_the_grace_period() {
    let server = Server::start().await;
    server.create_topic("orders").await;
    let endpoint = Endpoint::ok().await;
    server
        .create_subscription(subscription("s", "orders", &endpoint.url, json!({})))
        .await;
    let (status, body) = server.get("/v1/subscriptions/s/secret").await;
    assert_eq!(status, Status::OK, "{body}");
    let first = body["secret"].as_str().unwrap().to_owned();
    assert!(first.starts_with("whsec_"));

    server.publish_ok("orders", &event("e1", "t")).await;
    let received = endpoint.wait_for(1).await;
    assert_eq!(signatures(&received[0]).len(), 1);
    assert!(verifies(&first, &received[0]), "{:?}", received[0].headers);

    // Rotate to a secret of our choosing.
    let chosen = format!("whsec_{}", STANDARD.encode([42u8; 32]));
    let (status, body) = server
        .post(
            "/v1/subscriptions/s/secret/rotate",
            json!({"secret": chosen}),
        )
        .await;
    assert_eq!(status, Status::OK, "{body}");
    assert_eq!(body["secret"], chosen.as_str());
    let until = timestamp(&body["previous_valid_until"]);
    let in_a_day = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24);
    assert!(
        (until.as_second() - in_a_day.as_second()).abs() < 60,
        "{until}"
    );
    let (_, body) = server.get("/v1/subscriptions/s/secret").await;
    assert_eq!(body["secret"], chosen.as_str());

    server.publish_ok("orders", &event("e2", "t")).await;
    let received = endpoint.wait_for(2).await;
    let during = &received[1];
    assert_eq!(signatures(during).len(), 2, "{:?}", during.headers);
    assert!(verifies(&chosen, during));
    assert!(verifies(&first, during));

    // A day later only the new secret signs.
    server.clock.advance(Duration::from_secs(25 * 3600));
    server.publish_ok("orders", &event("e3", "t")).await;
    let received = endpoint.wait_for(3).await;
    let after = &received[2];
    assert_eq!(signatures(after).len(), 1, "{:?}", after.headers);
    assert!(verifies(&chosen, after));
    assert!(!verifies(&first, after));

    let (status, body) = server
        .post(
            "/v1/subscriptions/s/secret/rotate",
            json!({"secret": "whsec_short"}),
        )
        .await;
    assert_eq!(status, Status::BAD_REQUEST, "{body}");
    let (status, body) = server
        .post("/v1/subscriptions/nope/secret/rotate", json!({}))
        .await;
    assert_eq!(status, Status::NOT_FOUND, "{body}");
    // Without a body a fresh secret is generated.
    let response = server
        .http
        .post(server.url("/v1/subscriptions/s/secret/rotate"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), Status::OK);
    let body: Value = response.json().await.unwrap();
    assert_ne!(body["secret"], chosen.as_str());
}

#[tokio::test]
async fn a_second_rotation_within_the_grace_keeps_the_first_secret_signing() {
    let server = Server::start().await;
    server.create_topic("orders").await;
    let endpoint = Endpoint::ok().await;
    server
        .create_subscription(subscription("s", "orders", &endpoint.url, json!({})))
        .await;
    let (_, body) = server.get("/v1/subscriptions/s/secret").await;
    let mut secrets = vec![body["secret"].as_str().unwrap().to_owned()];
    // Four rotations in a row: the three latest replaced secrets keep
    // signing beside the current one, the oldest is let go.
    for _ in 0..4 {
        let (status, body) = server
            .post("/v1/subscriptions/s/secret/rotate", json!({}))
            .await;
        assert_eq!(status, Status::OK, "{body}");
        secrets.push(body["secret"].as_str().unwrap().to_owned());
    }
    server.publish_ok("orders", &event("e1", "t")).await;
    let received = endpoint.wait_for(1).await;
    assert_eq!(
        signatures(&received[0]).len(),
        4,
        "{:?}",
        received[0].headers
    );
    for secret in &secrets[1..] {
        assert!(verifies(secret, &received[0]), "{secret}");
    }
    assert!(!verifies(&secrets[0], &received[0]));

    // Past the grace only the current secret signs.
    server.clock.advance(Duration::from_secs(25 * 3600));
    server.publish_ok("orders", &event("e2", "t")).await;
    let received = endpoint.wait_for(2).await;
    assert_eq!(
        signatures(&received[1]).len(),
        1,
        "{:?}",
        received[1].headers
    );
    assert!(verifies(&secrets[4], &received[1]));
}

/// Base64 of 32 bytes: a secret key, and another one.
const SECRET_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const OTHER_SECRET_KEY: &str = "HxAREhMUFRYXGBkaGxwdHh8AAQIDBAUGBwgJCgsMDQ4=";

fn with_secret_key(key: &'static str) -> impl FnOnce(&mut redrive_server::ServeOptions) {
    move |options| options.security.secret_key = Some(key.to_owned())
}

#[tokio::test]
async fn a_server_that_cannot_read_the_signing_secret_sends_nothing_and_spends_no_attempt() {
    let endpoint = Endpoint::ok().await;
    let server = Server::start_tuned(
        Limits::default(),
        quick_sweeper(),
        with_secret_key(SECRET_KEY),
    )
    .await;
    server.create_topic("orders").await;
    server
        .create_subscription(subscription("s", "orders", &endpoint.url, json!({})))
        .await;
    let (_, body) = server.get("/v1/subscriptions/s/secret").await;
    let secret = body["secret"].as_str().unwrap().to_owned();

    // Started again with another key: the stored secret does not open.
    let server = server.restart(with_secret_key(OTHER_SECRET_KEY)).await;
    server.publish_ok("orders", &event("e1", "t")).await;
    let published = jiff::Timestamp::now();
    let held = wait_for_hold(&server, "s", "signing_secret_unreadable").await;
    let detail = held["pushes_held"]["detail"].as_str().unwrap();
    assert!(detail.contains("secret key"), "{detail}");
    let pause = timestamp(&held["pushes_held"]["until"]).duration_since(published);
    assert!(
        pause > jiff::SignedDuration::from_secs(25) && pause <= jiff::SignedDuration::from_secs(31),
        "held for {pause}: {held:#}"
    );
    // Another event while held waits too; neither was sent nor attempted.
    server.publish_ok("orders", &event("e2", "t")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let waiting = server.deliveries("s").await;
    assert_eq!(waiting.len(), 2);
    for delivery in &waiting {
        assert_eq!(delivery["state"], "scheduled", "{delivery}");
        assert_eq!(delivery["attempts"], 0, "{delivery}");
        assert!(
            timestamp(&delivery["next_attempt_at"]) <= jiff::Timestamp::now(),
            "{delivery}"
        );
        let detail = server.delivery(delivery["id"].as_str().unwrap()).await;
        assert_eq!(detail["attempt_log"], json!([]), "{detail:#}");
    }
    assert_eq!(endpoint.count(), 0);

    // The right key again: both go out, signed, as first attempts.
    let server = server.restart(with_secret_key(SECRET_KEY)).await;
    let received = endpoint.wait_for(2).await;
    for push in &received {
        assert!(verifies(&secret, push), "{:?}", push.headers);
    }
    let delivered = server.wait_all_ended("s", 2).await;
    for delivery in &delivered {
        assert_eq!(delivery["state"], "delivered", "{delivery}");
        assert_eq!(delivery["attempts"], 1, "{delivery}");
    }
    let (_, body) = server.get("/v1/subscriptions/s").await;
    assert_eq!(body["pushes_held"], Value::Null, "{body}");
}

#[tokio::test]
async fn signing_secrets_are_encrypted_at_rest() {
    use redrive_server::security::{SecretBook, SecretCipher};
    use redrive_store::{SqliteStore, Store};
    let dir = tempfile::tempdir().unwrap();
    let store: std::sync::Arc<dyn Store> =
        std::sync::Arc::new(SqliteStore::open(dir.path(), jiff::Timestamp::now()).unwrap());
    let now = jiff::Timestamp::now();
    store.create_topic("orders", now).await.unwrap();
    store
        .create_subscription(redrive_store::conformance::spec("s", "orders"), now)
        .await
        .unwrap();
    let book = SecretBook::new(store.clone(), SecretCipher::new(&[5; 32]).unwrap());
    book.create_for("s", now).await.unwrap();
    let secret = book.keys("s", now).await.unwrap().current.to_string();
    let encoded = secret.trim_start_matches("whsec_");
    let raw = STANDARD.decode(encoded).unwrap();
    drop(book);
    drop(store);
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(encoded), "the secret is stored in the clear");
        assert!(!bytes.windows(raw.len()).any(|w| w == raw.as_slice()));
    }
}

// ---------------------------------------------------------------------------
// SSRF
// ---------------------------------------------------------------------------

#[tokio::test]
async fn local_and_metadata_endpoints_are_refused_by_default_and_allowed_by_the_list() {
    let endpoints = [
        "http://169.254.169.254/latest/meta-data",
        "http://127.0.0.1/",
        "http://[::1]/",
        "http://localhost:9/",
    ];
    let server = default_policy_server().await;
    server.create_topic("orders").await;
    for (i, endpoint) in endpoints.iter().enumerate() {
        let (status, body) = server
            .post(
                "/v1/subscriptions",
                subscription(&format!("s{i}"), "orders", endpoint, json!({})),
            )
            .await;
        assert_eq!(status, Status::BAD_REQUEST, "{endpoint}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.starts_with("endpoint: "), "{message}");
        assert!(message.contains("--allow-endpoint-networks"), "{message}");
    }
    // An update to such an endpoint is refused too.
    server
        .create_subscription(subscription(
            "ok",
            "orders",
            "http://93.184.216.34/hook",
            json!({}),
        ))
        .await;
    let (status, body) = server
        .patch(
            "/v1/subscriptions/ok",
            json!({"endpoint": "http://10.0.0.1/"}),
        )
        .await;
    assert_eq!(status, Status::BAD_REQUEST, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("private")
    );

    let allowing = Server::start_secured(
        Limits::default(),
        quick_sweeper(),
        SecurityOptions {
            endpoint_policy: EndpointPolicy {
                allow: parse_networks("127.0.0.0/8,::1/128,169.254.0.0/16").unwrap(),
                https_only: false,
            },
            ..test_security()
        },
    )
    .await;
    allowing.create_topic("orders").await;
    for (i, endpoint) in endpoints.iter().enumerate() {
        allowing
            .create_subscription(subscription(
                &format!("s{i}"),
                "orders",
                endpoint,
                json!({}),
            ))
            .await;
    }
}

/// Endpoints redrive refuses by default, one of each kind, literal IPv4 and
/// IPv6 forms that embed IPv4 (NAT64, 6to4, IPv4-compatible and -translated).
const FORBIDDEN_ENDPOINTS: [&str; 9] = [
    "http://127.0.0.1:9/hook",
    "http://10.0.0.1/hook",
    "http://169.254.169.254/latest/meta-data",
    "http://0.0.0.0:8080/",
    "http://[::1]/",
    "http://[64:ff9b::a9fe:a9fe]/",
    "http://[::127.0.0.1]:9/",
    "http://[::ffff:0:7f00:1]:9/",
    "http://[2002:a00:1::]/",
];

fn assert_refuses_endpoint(endpoint: &str, status: Status, body: &Value) {
    assert_eq!(status, Status::BAD_REQUEST, "{endpoint}: {body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("endpoint: "), "{endpoint}: {message}");
    assert!(
        message.contains("--allow-endpoint-networks"),
        "{endpoint}: {message}"
    );
}

#[tokio::test]
async fn create_patch_and_apply_refuse_the_same_forbidden_endpoints() {
    let server = default_policy_server().await;
    server.create_topic("orders").await;
    server
        .create_subscription(subscription(
            "ok",
            "orders",
            "http://93.184.216.34/hook",
            json!({}),
        ))
        .await;
    for endpoint in FORBIDDEN_ENDPOINTS {
        let spec = subscription("s", "orders", endpoint, json!({}));
        let (status, body) = server.post("/v1/subscriptions", spec.clone()).await;
        assert_refuses_endpoint(endpoint, status, &body);

        let (status, body) = server
            .patch("/v1/subscriptions/ok", json!({ "endpoint": endpoint }))
            .await;
        assert_refuses_endpoint(endpoint, status, &body);

        for dry_run in [true, false] {
            let (status, body) = server
                .post(
                    "/v1/apply",
                    json!({
                        "dry_run": dry_run,
                        "topics": [{"name": "orders"}],
                        "subscriptions": [spec],
                    }),
                )
                .await;
            assert_refuses_endpoint(endpoint, status, &body);
            let message = body["error"]["message"].as_str().unwrap();
            assert!(message.starts_with("subscription \"s\": "), "{message}");
        }
    }
    let (_, body) = server.get("/v1/subscriptions").await;
    let stored: Vec<(&str, &str)> = body["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["endpoint"].as_str().unwrap()))
        .collect();
    assert_eq!(stored, [("ok", "http://93.184.216.34/hook")]);
}

#[tokio::test]
async fn serve_refuses_to_start_on_a_config_with_a_forbidden_endpoint() {
    for endpoint in FORBIDDEN_ENDPOINTS {
        let data = tempfile::tempdir().unwrap();
        let mut spec: redrive_core::SubscriptionSpec =
            redrive_store::conformance::spec("s", "orders");
        spec.endpoint = endpoint.into();
        let options = redrive_server::ServeOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: data.path().join("data"),
            database_url: None,
            limits: Limits::default(),
            dispatcher: Default::default(),
            sweeper: quick_sweeper(),
            health: Default::default(),
            security: SecurityOptions {
                endpoint_policy: EndpointPolicy::default(),
                ..test_security()
            },
            config: Some(redrive_core::config::Desired {
                prune: false,
                topics: vec![redrive_core::config::TopicDecl {
                    name: "orders".into(),
                }],
                subscriptions: vec![spec],
            }),
        };
        let started = redrive_server::serve(
            options,
            |address| panic!("{endpoint}: the server listens on {address}"),
            std::future::ready(()),
        )
        .await;
        let message = format!("{:#}", started.expect_err(endpoint));
        assert!(
            message.contains("cannot apply the configuration file"),
            "{message}"
        );
        assert!(
            message.contains("subscription \"s\": endpoint: "),
            "{endpoint}: {message}"
        );
    }
}

#[tokio::test]
async fn an_embedded_ipv4_literal_stored_earlier_is_blocked_at_connect_time() {
    use redrive_store::SqliteStore;
    use redrive_store::prelude::*;
    // Stored directly, as by an older version: only the connect-time check
    // stands between it and the address it embeds.
    let data = tempfile::tempdir().unwrap();
    let endpoints = [
        "http://[::127.0.0.1]:9/",
        "http://[::ffff:0:7f00:1]:9/",
        "http://[64:ff9b::7f00:1]:9/",
        "http://[2002:7f00:1::]:9/",
    ];
    {
        let now = jiff::Timestamp::now();
        let store = SqliteStore::open(data.path(), now).unwrap();
        store.create_topic("orders", now).await.unwrap();
        for (i, endpoint) in endpoints.iter().enumerate() {
            let mut spec = redrive_store::conformance::spec(&format!("s{i}"), "orders");
            spec.endpoint = (*endpoint).into();
            store.create_subscription(spec, now).await.unwrap();
        }
        store.flush().await.unwrap();
    }
    let dir = data.path().to_owned();
    let server = Server::start_tuned(Limits::default(), quick_sweeper(), move |options| {
        options.data_dir = dir;
        options.database_url = None;
        options.security.endpoint_policy = EndpointPolicy::default();
    })
    .await;
    server.publish_ok("orders", &event("e1", "t")).await;
    for (i, endpoint) in endpoints.iter().enumerate() {
        let delivery = server.only_delivery(&format!("s{i}")).await;
        let detail = server
            .wait_for_state(delivery["id"].as_str().unwrap(), "failed")
            .await;
        let attempts = detail["attempt_log"].as_array().unwrap();
        assert_eq!(attempts.len(), 1, "{endpoint}: {detail:#}");
        assert_eq!(attempts[0]["error"], "blocked", "{endpoint}: {detail:#}");
        let message = attempts[0]["error_message"].as_str().unwrap();
        assert!(
            message.contains("127.0.0.1, a loopback address"),
            "{message}"
        );
    }
}

#[tokio::test]
async fn https_only_refuses_http_endpoints() {
    let server = Server::start_secured(
        Limits::default(),
        quick_sweeper(),
        SecurityOptions {
            endpoint_policy: EndpointPolicy {
                allow: vec![],
                https_only: true,
            },
            ..test_security()
        },
    )
    .await;
    server.create_topic("orders").await;
    let (status, body) = server
        .post(
            "/v1/subscriptions",
            subscription("s", "orders", "http://example.com/hook", json!({})),
        )
        .await;
    assert_eq!(status, Status::BAD_REQUEST, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("https"));
}

/// A host name other than `localhost` that resolves to loopback here (from
/// /etc/hosts, e.g. the machine's own name).
async fn name_resolving_to_loopback() -> String {
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    let candidates: Vec<String> = hosts
        .lines()
        .map(|line| line.split('#').next().unwrap_or(""))
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let ip: IpAddr = words.next()?.parse().ok()?;
            ip.is_loopback()
                .then(|| words.map(str::to_owned).collect::<Vec<_>>())
        })
        .flatten()
        .filter(|name| name != "localhost" && !name.ends_with(".localhost"))
        .collect();
    for name in candidates {
        let resolved: Vec<_> = match tokio::net::lookup_host((name.as_str(), 80)).await {
            Ok(addrs) => addrs.collect(),
            Err(_) => continue,
        };
        if !resolved.is_empty() && resolved.iter().all(|a| a.ip().is_loopback()) {
            return name;
        }
    }
    panic!("no host name besides localhost resolves to loopback on this machine (/etc/hosts)");
}

#[tokio::test]
async fn a_name_resolving_to_loopback_is_blocked_at_connect_time_and_not_retried() {
    let server = default_policy_server().await;
    server.create_topic("orders").await;
    let endpoint = Endpoint::ok().await;
    let port = endpoint.url.rsplit(':').next().unwrap().to_owned();
    let name = name_resolving_to_loopback().await;
    let url = format!("http://{name}:{port}");
    // A name passes the save-time check: only its resolution can tell.
    server
        .create_subscription(subscription("s", "orders", &url, json!({})))
        .await;
    server.publish_ok("orders", &event("e1", "t")).await;
    let delivery = server.only_delivery("s").await;
    let detail = server
        .wait_for_state(delivery["id"].as_str().unwrap(), "failed")
        .await;
    let attempts = detail["attempt_log"].as_array().unwrap();
    assert_eq!(
        attempts.len(),
        1,
        "a blocked attempt is not retried: {detail:#}"
    );
    assert_eq!(attempts[0]["error"], "blocked");
    let message = attempts[0]["error_message"].as_str().unwrap();
    assert!(message.contains("loopback"), "{message}");
    endpoint.assert_settles_at(0).await;
}

// ---------------------------------------------------------------------------
// Input limits
// ---------------------------------------------------------------------------

#[tokio::test]
async fn oversized_malformed_and_overlong_batches_are_4xx_and_store_nothing() {
    let server = Server::start_with(Limits {
        max_batch_events: 3,
        ..Limits::default()
    })
    .await;
    server.create_topic("orders").await;
    let too_big = vec![b'x'; 1024 * 1024 + 1];
    let (status, body) = server
        .publish_raw("orders", "application/cloudevents+json", too_big)
        .await;
    assert_eq!(status, Status::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["error"]["code"], "payload_too_large");
    let (status, body) = server
        .publish_raw(
            "orders",
            "application/cloudevents+json",
            b"{not json".to_vec(),
        )
        .await;
    assert_eq!(status, Status::BAD_REQUEST, "{body}");
    let events: Vec<Value> = (0..4).map(|i| event(&format!("e{i}"), "t")).collect();
    let (status, body) = server.publish_batch("orders", &events).await;
    assert_eq!(status, Status::BAD_REQUEST, "{body}");
    // One bad event rejects the whole batch: none of it is stored.
    let mut bad = events[..2].to_vec();
    bad.push(json!({"specversion": "1.0", "id": "x"}));
    let (status, body) = server.publish_batch("orders", &bad).await;
    assert_eq!(status, Status::BAD_REQUEST, "{body}");
    let (status, body) = server.publish_batch("orders", &events[..2]).await;
    assert_eq!(status, Status::ACCEPTED, "{body}");
    assert_eq!(
        body["events"][0]["duplicate"], false,
        "nothing of the rejected batch remained"
    );
    let long = "a".repeat(256);
    let (status, _) = server.post("/v1/topics", json!({"name": long})).await;
    assert_eq!(status, Status::BAD_REQUEST);
    let (status, _) = server.post("/v1/topics", json!({"name": "a/b"})).await;
    assert_eq!(status, Status::BAD_REQUEST);
}

/// `event(id)` with `count` string extensions `x0`, `x1`, … of `value`.
fn event_with_extensions(id: &str, count: usize, value: &str) -> Value {
    let mut event = event(id, "t");
    for i in 0..count {
        event[format!("x{i}")] = json!(value);
    }
    event
}

#[tokio::test]
async fn events_beyond_the_extension_and_attribute_limits_are_413_and_store_nothing() {
    let server = Server::start().await;
    server.create_topic("orders").await;
    let endpoint = Endpoint::ok().await;
    server
        .create_subscription(subscription("s", "orders", &endpoint.url, json!({})))
        .await;

    // The finding: ten thousand extensions were accepted, and a binary push
    // of them was answered 431 and retried without end.
    let (status, body) = server
        .publish("orders", &event_with_extensions("many", 10_000, "v"))
        .await;
    assert_eq!(status, Status::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["error"]["code"], "event_too_large");
    assert_eq!(
        body["error"]["message"],
        "extensions: an event may carry at most 50 extension attributes; this one has 10000"
    );
    // Attributes within the count but too long as headers together.
    let mut long = event("long", "t");
    long["subject"] = json!("s".repeat(4000));
    long["type"] = json!("t".repeat(4000));
    let (status, body) = server.publish("orders", &long).await;
    assert_eq!(status, Status::PAYLOAD_TOO_LARGE, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("attributes: an event's attributes may take at most 6144 bytes"),
        "{message}"
    );
    // In a batch the event is named and nothing is stored.
    let batch = [event("b0", "t"), event_with_extensions("b1", 51, "v")];
    let (status, body) = server.publish_batch("orders", &batch).await;
    assert_eq!(status, Status::PAYLOAD_TOO_LARGE, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("[1].extensions: "),
        "{body}"
    );

    // At the limits, a binary-mode push reaches a real HTTP server (hyper
    // keeps at most 100 headers) with every attribute.
    let mut full = event_with_extensions("full", 50, &"v".repeat(60));
    full["subject"] = json!("s".repeat(1500));
    server.publish_ok("orders", &full).await;
    let received = endpoint.wait_for(1).await;
    assert_eq!(received[0].header("ce-id"), Some("full"));
    assert_eq!(received[0].header("ce-x49"), Some("v".repeat(60).as_str()));
    let header_bytes: usize = received[0]
        .headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    assert!(header_bytes < 8 * 1024, "{header_bytes} bytes of headers");
    // Nothing of the refused publishes was stored: the batch's valid event
    // is new, and the only deliveries are of events within the limits.
    server.publish_ok("orders", &event("b0", "t")).await;
    let deliveries = server.wait_all_ended("s", 2).await;
    assert!(
        deliveries.iter().all(|d| d["state"] == "delivered"),
        "{deliveries:#?}"
    );
}

#[tokio::test]
async fn the_event_limits_are_configurable_and_duplicate_members_are_400() {
    let server = Server::start_with(Limits {
        event: redrive_core::event::EventLimits {
            max_extensions: 2,
            max_attribute_bytes: 300,
        },
        ..Limits::default()
    })
    .await;
    server.create_topic("orders").await;
    let (status, body) = server
        .publish("orders", &event_with_extensions("e1", 3, "v"))
        .await;
    assert_eq!(status, Status::PAYLOAD_TOO_LARGE, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 2")
    );
    server
        .publish_ok("orders", &event_with_extensions("e2", 2, "v"))
        .await;
    let mut long = event("e3", "t");
    long["subject"] = json!("s".repeat(300));
    let (status, body) = server.publish("orders", &long).await;
    assert_eq!(status, Status::PAYLOAD_TOO_LARGE, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 300 bytes")
    );

    let duplicate = br#"{"specversion":"1.0","id":"d1","id":"d2","source":"/s","type":"t"}"#;
    for (content_type, body) in [
        ("application/cloudevents+json", duplicate.to_vec()),
        (
            "application/cloudevents-batch+json",
            [b"[".as_slice(), duplicate, b"]"].concat(),
        ),
    ] {
        let (status, answer) = server.publish_raw("orders", content_type, body).await;
        assert_eq!(status, Status::BAD_REQUEST, "{content_type}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("the member \"id\" appears twice"),
            "{message}"
        );
    }
}

#[tokio::test]
async fn too_many_or_too_large_headers_are_431() {
    let server = Server::start().await;
    let mut request = server.http.get(server.url("/v1/topics"));
    for i in 0..70 {
        request = request.header(format!("x-extra-{i}"), "1");
    }
    let (status, body) = server.send(request).await;
    assert_eq!(status, Status::REQUEST_HEADER_FIELDS_TOO_LARGE, "{body}");
    assert_eq!(body["error"]["code"], "headers_too_large");
    let request = server
        .http
        .get(server.url("/v1/topics"))
        .header("x-big", "x".repeat(20_000));
    let (status, _) = server.send(request).await;
    assert_eq!(status, Status::REQUEST_HEADER_FIELDS_TOO_LARGE);
}

#[tokio::test]
async fn a_token_publishing_too_fast_gets_429_with_retry_after() {
    let server = Server::start_secured(
        Limits::default(),
        quick_sweeper(),
        SecurityOptions {
            publish_rate: "2/s".parse().unwrap(),
            ..test_security()
        },
    )
    .await;
    server.create_topic("orders").await;
    server.publish_ok("orders", &event("e1", "t")).await;
    server.publish_ok("orders", &event("e2", "t")).await;
    let response = server
        .http
        .post(server.url("/v1/topics/orders/events"))
        .header("content-type", "application/cloudevents+json")
        .body(event("e3", "t").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), Status::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    // Other routes are not limited, and the bucket refills.
    let (status, _) = server.get("/v1/topics").await;
    assert_eq!(status, Status::OK);
    tokio::time::sleep(Duration::from_millis(600)).await;
    server.publish_ok("orders", &event("e3", "t")).await;
}

async fn slow_server() -> Server {
    Server::start_secured(
        Limits::default(),
        quick_sweeper(),
        SecurityOptions {
            header_read_timeout: Duration::from_millis(500),
            request_timeout: Duration::from_millis(700),
            ..test_security()
        },
    )
    .await
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let server = slow_server().await;
    let address = server.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    stream
        .write_all(b"GET /v1/topics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buffer = Vec::new();
    let read = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut buffer)).await;
    assert!(read.is_ok(), "the server kept the slow connection open");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(400) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
}

#[tokio::test]
async fn a_body_that_trickles_in_is_cut_off_with_408() {
    let server = slow_server().await;
    server.create_topic("orders").await;
    let address = server.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    let head = format!(
        "POST /v1/topics/orders/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/cloudevents+json\r\nContent-Length: 100\r\n\r\n{{\"id\":"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut buffer = Vec::new();
    let read = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut buffer)).await;
    assert!(read.is_ok(), "no answer to a trickling body");
    let answer = String::from_utf8_lossy(&buffer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
}

#[tokio::test]
async fn the_openapi_document_describes_tokens_secrets_and_bearer_auth() {
    let server = Server::start().await;
    let (status, document) = server.get("/openapi.json").await;
    assert_eq!(status, Status::OK);
    for path in [
        "/v1/tokens",
        "/v1/tokens/{id}",
        "/v1/subscriptions/{name}/secret",
        "/v1/subscriptions/{name}/secret/rotate",
    ] {
        assert!(document["paths"].get(path).is_some(), "{path} is missing");
    }
    assert_eq!(
        document["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}

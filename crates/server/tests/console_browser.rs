//! The console in a real headless Chromium, driven through chromedriver,
//! against a real server whose deliveries went to a real endpoint.
//!
//! Without `chromium` and `chromedriver` on the PATH these tests are
//! reported ignored, with the reason, unless `REDRIVE_REQUIRE_BROWSER=1`
//! (set by `.ci/run`), in which case they fail (Debian: `apt-get install
//! chromium chromium-driver`). Each page's screenshot goes to
//! `target/console-screenshots/`.

mod common;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Endpoint, PATIENCE, Reply, Server, TOKEN, event, subscription};
use fantoccini::{Client, ClientBuilder, Locator};
use redrive_testkit::{BrowserPrograms, Runtime, trial};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::process::{Child, Command};

/// A headless Chromium session; the driver dies with it.
struct Browser {
    client: Client,
    _driver: Child,
    _profile: TempDir,
}

/// Starts chromedriver and a headless Chromium.
async fn browser(programs: BrowserPrograms) -> Browser {
    let BrowserPrograms {
        chromium,
        chromedriver: driver,
    } = programs;
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new(&driver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("chromedriver starts");
    let deadline = Instant::now() + PATIENCE;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "chromedriver did not listen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let profile = tempfile::tempdir().expect("a browser profile directory");
    let args = [
        "--headless".to_owned(),
        "--no-sandbox".to_owned(),
        "--disable-gpu".to_owned(),
        "--disable-dev-shm-usage".to_owned(),
        "--disable-background-networking".to_owned(),
        "--disable-component-update".to_owned(),
        "--disable-sync".to_owned(),
        "--no-first-run".to_owned(),
        "--window-size=1280,1000".to_owned(),
        format!("--user-data-dir={}", profile.path().display()),
    ];
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({"binary": chromium.display().to_string(), "args": args}),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let client = ClientBuilder::new(connector)
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a Chromium session through chromedriver");
    Browser {
        client,
        _driver: child,
        _profile: profile,
    }
}

fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("console-screenshots")
}

async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("a screenshot");
    let dir = screenshot_dir();
    std::fs::create_dir_all(&dir).expect("the screenshot directory");
    std::fs::write(dir.join(format!("{name}.png")), png).expect("the screenshot is written");
}

/// A server with one subscription, `hooks`, whose endpoint answers by
/// event type: `ok` at once, `flaky` after one 503, `bad` never (500).
/// Three events were delivered: `e-ok`, `e-flaky`, `e-bad`.
async fn seeded() -> (Server, Endpoint) {
    let endpoint = Endpoint::start(|request, earlier| match request.header("ce-type") {
        Some("flaky") if earlier == 0 => Reply::status(503),
        Some("bad") => Reply::status(500).body("<b>broken</b>"),
        _ => Reply::ok(),
    })
    .await;
    let server = Server::start().await;
    server.create_topic("orders").await;
    server
        .create_subscription(subscription(
            "hooks",
            "orders",
            &endpoint.url,
            json!({"retry_policy": {"backoff": {"kind": "fixed", "interval": "0.2s"}, "retry_limit": 1}}),
        ))
        .await;
    for (id, ty) in [("e-ok", "ok"), ("e-flaky", "flaky"), ("e-bad", "bad")] {
        server.publish_ok("orders", &event(id, ty)).await;
    }
    server.wait_all_ended("hooks", 3).await;
    (server, endpoint)
}

/// The console's address as the browser uses it: `localhost`, where the
/// session cookie (`Secure`) is kept over plain http.
fn console_url(server: &Server, path: &str) -> String {
    server.url(path).replacen("127.0.0.1", "localhost", 1)
}

/// Signs the browser in with the test server's admin token.
async fn sign_in(client: &Client, server: &Server) {
    client
        .goto(&console_url(server, "/console/login"))
        .await
        .expect("the sign-in page opens");
    client
        .find(Locator::Css("input#token"))
        .await
        .expect("a token field")
        .send_keys(TOKEN)
        .await
        .expect("the token is typed");
    client
        .find(Locator::Css("form button[type='submit']"))
        .await
        .expect("a sign-in button")
        .click()
        .await
        .expect("the form submits");
    eventually("the sign-in to finish", || async {
        client
            .current_url()
            .await
            .is_ok_and(|url| url.path() == "/console")
    })
    .await;
}

/// Each row's event id with the labels of its icons, as the browser sees
/// the page.
async fn row_marks(client: &Client) -> BTreeMap<String, Vec<String>> {
    let rows = client
        .execute(
            "return Array.from(document.querySelectorAll('tr[data-event]')).map(row => \
               [row.dataset.event, Array.from(row.querySelectorAll('svg[aria-label]')) \
                 .map(svg => svg.getAttribute('aria-label'))]);",
            vec![],
        )
        .await
        .expect("the rows are readable");
    serde_json::from_value::<Vec<(String, Vec<String>)>>(rows)
        .expect("pairs of event id and labels")
        .into_iter()
        .collect()
}

async fn event_ids_shown(client: &Client) -> Vec<String> {
    row_marks(client).await.into_keys().collect()
}

/// Polls the page as the browser has it now (without reloading) until
/// `check` holds.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn subscription_page_flags_the_failed_and_the_retried_deliveries(programs: BrowserPrograms) {
    let browser = browser(programs).await;
    let (server, _endpoint) = seeded().await;
    let client = &browser.client;
    sign_in(client, &server).await;

    client
        .goto(&console_url(&server, "/"))
        .await
        .expect("the root opens");
    assert_eq!(
        client.current_url().await.expect("a URL").path(),
        "/console",
        "the root redirects to the console"
    );
    client
        .find(Locator::Css("tr[data-subscription='hooks']"))
        .await
        .expect("the overview lists the subscription");
    screenshot(client, "overview").await;

    client
        .goto(&console_url(&server, "/console/subscriptions/hooks"))
        .await
        .expect("the subscription page opens");
    let failed = client
        .find_all(Locator::Css("tbody svg[aria-label='failed']"))
        .await
        .expect("icons are searchable");
    assert_eq!(failed.len(), 1, "exactly one failed icon");
    let retried = client
        .find_all(Locator::Css("tbody svg[aria-label='retried']"))
        .await
        .expect("icons are searchable");
    assert_eq!(retried.len(), 2, "exactly two retried icons");
    let marks = row_marks(client).await;
    let expected: BTreeMap<String, Vec<String>> = [
        ("e-ok", vec!["delivered"]),
        ("e-flaky", vec!["retried", "delivered"]),
        ("e-bad", vec!["failed", "retried"]),
    ]
    .into_iter()
    .map(|(id, labels)| {
        (
            id.to_owned(),
            labels.into_iter().map(String::from).collect(),
        )
    })
    .collect();
    assert_eq!(marks, expected);
    screenshot(client, "subscription").await;
    // A phone's width: the same icons, fewer columns.
    client
        .set_window_size(390, 844)
        .await
        .expect("the window narrows");
    assert_eq!(row_marks(client).await, expected);
    screenshot(client, "subscription-phone").await;
    client
        .set_window_size(1280, 1000)
        .await
        .expect("the window widens");

    // The filter form puts its filters in the URL.
    let state = client
        .find(Locator::Css("select[name='state']"))
        .await
        .expect("a state filter");
    state
        .select_by_value("failed")
        .await
        .expect("failed is a state");
    client
        .find(Locator::Css("form.filters button[type='submit']"))
        .await
        .expect("a filter button")
        .click()
        .await
        .expect("the filter applies");
    eventually("the failed filter in the URL", || async {
        client
            .current_url()
            .await
            .is_ok_and(|url| url.query() == Some("state=failed"))
    })
    .await;
    assert_eq!(event_ids_shown(client).await, ["e-bad"]);
    screenshot(client, "subscription-filtered").await;

    for (query, expected) in [
        ("type=ok", vec!["e-ok"]),
        ("status=500", vec!["e-bad"]),
        ("state=delivered&type=flaky", vec!["e-flaky"]),
        ("reason=retries_exhausted", vec!["e-bad"]),
        ("since=1h", vec!["e-bad", "e-flaky", "e-ok"]),
    ] {
        client
            .goto(&console_url(
                &server,
                &format!("/console/subscriptions/hooks?{query}"),
            ))
            .await
            .expect("a shared link opens");
        assert_eq!(event_ids_shown(client).await, expected, "filter {query}");
    }
    client
        .goto(&console_url(
            &server,
            "/console/subscriptions/hooks?type=nothing-like-this",
        ))
        .await
        .expect("an empty filter opens");
    client
        .find(Locator::Css("#deliveries-empty"))
        .await
        .expect("an empty state says nothing matches");

    // The list refreshes itself: a new delivery shows without a reload.
    client
        .goto(&console_url(&server, "/console/subscriptions/hooks"))
        .await
        .expect("the subscription page opens");
    server.publish_ok("orders", &event("e-late", "ok")).await;
    eventually("the new delivery to appear", || async {
        event_ids_shown(client).await.contains(&"e-late".to_owned())
    })
    .await;

    client
        .goto(&console_url(&server, "/console/policy?subscription=hooks"))
        .await
        .expect("the policy preview opens");
    let end = client
        .find(Locator::Css("#schedule-end"))
        .await
        .expect("the schedule says how it ends")
        .text()
        .await
        .expect("its text");
    assert_eq!(end, "no more retries: retry limit 1 reached");
    screenshot(client, "policy").await;

    client
        .goto(&console_url(
            &server,
            "/console/deliveries/no-such-delivery",
        ))
        .await
        .expect("the 404 page opens");
    client
        .find(Locator::Css("#not-found"))
        .await
        .expect("a 404 page");
    screenshot(client, "not-found").await;
    browser.client.close().await.expect("the session ends");
}

async fn retry_now_adds_an_attempt_visible_on_the_delivery_page(programs: BrowserPrograms) {
    let browser = browser(programs).await;
    let (server, endpoint) = seeded().await;
    let client = &browser.client;
    sign_in(client, &server).await;
    let deliveries = server.deliveries("hooks").await;
    let ok: &Value = deliveries
        .iter()
        .find(|d| d["event_id"] == "e-ok")
        .expect("the e-ok delivery");
    let id = ok["id"].as_str().expect("an id");
    let sent_before = endpoint.received().len();

    client
        .goto(&console_url(&server, &format!("/console/deliveries/{id}")))
        .await
        .expect("the delivery page opens");
    let attempts = client
        .find_all(Locator::Css("li[data-attempt]"))
        .await
        .expect("attempts are listed");
    assert_eq!(attempts.len(), 1);
    client
        .find(Locator::Css("button[name='retry']"))
        .await
        .expect("a retry-now button")
        .click()
        .await
        .expect("the button submits");
    eventually("a second attempt on the delivery page", || async {
        client
            .find_all(Locator::Css("li[data-attempt='2']"))
            .await
            .is_ok_and(|found| found.len() == 1)
    })
    .await;
    assert_eq!(
        client.current_url().await.expect("a URL").path(),
        format!("/console/deliveries/{id}")
    );
    assert_eq!(endpoint.received().len(), sent_before + 1, "one more push");
    // The summary follows without a reload: delivered again, now retried.
    eventually("the delivery to show as retried and delivered", || async {
        client
            .execute(
                "return Array.from(document.querySelectorAll('#delivery-live svg[aria-label]')) \
                   .map(svg => svg.getAttribute('aria-label'));",
                vec![],
            )
            .await
            .is_ok_and(|labels| labels == json!(["retried", "delivered"]))
    })
    .await;
    screenshot(client, "delivery").await;
    browser.client.close().await.expect("the session ends");
}

fn main() -> std::process::ExitCode {
    let need = redrive_testkit::browser();
    redrive_testkit::run(vec![
        trial(
            "subscription_page_flags_the_failed_and_the_retried_deliveries",
            &need,
            Runtime::CurrentThread,
            subscription_page_flags_the_failed_and_the_retried_deliveries,
        ),
        trial(
            "retry_now_adds_an_attempt_visible_on_the_delivery_page",
            &need,
            Runtime::CurrentThread,
            retry_now_adds_an_attempt_visible_on_the_delivery_page,
        ),
    ])
}

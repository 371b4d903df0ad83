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

/// Starts chromedriver and a headless Chromium. On a loaded machine a
/// starting chromedriver sometimes drops its first session's connection:
/// that is tried again with a fresh driver, a few times, before failing.
async fn browser(programs: BrowserPrograms) -> Browser {
    let mut last_error = String::new();
    for _ in 0..3 {
        match start_browser(&programs).await {
            Ok(browser) => return browser,
            Err(err) => last_error = err,
        }
    }
    panic!("a Chromium session through chromedriver: {last_error}");
}

async fn start_browser(programs: &BrowserPrograms) -> Result<Browser, String> {
    let BrowserPrograms {
        chromium,
        chromedriver: driver,
    } = programs;
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new(driver)
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
        .map_err(|err| format!("{err:?}"))?;
    Ok(Browser {
        client,
        _driver: child,
        _profile: profile,
    })
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

/// A value read by a script in the page.
async fn script(client: &Client, code: &str) -> Value {
    client
        .execute(code, vec![])
        .await
        .unwrap_or_else(|err| panic!("the script runs: {err}\n{code}"))
}

/// Every `.ident` on the page is one line high (measured against the line
/// height), with its whole value in the title; returns how many there are
/// and how many are cut with an ellipsis.
async fn idents_on_one_line(client: &Client, page: &str) -> (u64, u64) {
    let found = script(
        client,
        "return Array.from(document.querySelectorAll('.ident-text')) \
           .filter(el => el.getClientRects().length > 0) \
           .map(el => ({ text: el.textContent, title: el.getAttribute('title'), \
             height: el.getBoundingClientRect().height, \
             line: parseFloat(getComputedStyle(el).lineHeight), \
             cut: el.scrollWidth > el.clientWidth }));",
    )
    .await;
    let found = found.as_array().expect("a list");
    assert!(!found.is_empty(), "{page}: no ids shown");
    for ident in found {
        let (height, line) = (
            ident["height"].as_f64().expect("a height"),
            ident["line"].as_f64().expect("a line height"),
        );
        assert!(
            height <= line * 1.3,
            "{page}: {ident} wraps ({height}px for a {line}px line)"
        );
        assert_eq!(
            ident["title"], ident["text"],
            "{page}: the title is the whole value"
        );
    }
    let cut = found.iter().filter(|ident| ident["cut"] == true).count();
    (found.len() as u64, cut as u64)
}

const LONG_ID: &str = "evt_2f6c1b0e9a4d4f0e8c1d7b3a5e9f1c2d_from_the_billing_service";
const LONG_TYPE: &str = "com.example.billing.invoice.created.for.customer.account";

async fn held_pushes_one_line_ids_a_styled_sign_in_and_sign_out(programs: BrowserPrograms) {
    let browser = browser(programs).await;
    // The endpoint asks to wait 30s on its first push; with retries 30s
    // apart that wait is honoured whole, holding the subscription's pushes.
    let endpoint = Endpoint::start(|_, earlier| {
        if earlier == 0 {
            Reply::status(503).header("retry-after", "30")
        } else {
            Reply::ok()
        }
    })
    .await;
    let server = Server::start().await;
    server.create_topic("orders").await;
    server
        .create_subscription(subscription(
            "hooks",
            "orders",
            &format!(
                "{}/tenants/0f1e2d3c4b5a69788796a5b4c3d2e1f0/webhooks/invoices",
                endpoint.url
            ),
            json!({"retry_policy": {"backoff": {"kind": "fixed", "interval": "30s"}}}),
        ))
        .await;
    server.publish_ok("orders", &event("e-first", "t")).await;
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (_, body) = server.get("/v1/subscriptions/hooks").await;
        if body["pushes_held"]["reason"] == "retry_after" {
            break;
        }
        assert!(Instant::now() < deadline, "no hold: {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server
        .publish_ok("orders", &event(LONG_ID, LONG_TYPE))
        .await;
    let client = &browser.client;

    // The sign-in page has its stylesheet, at both widths.
    client
        .goto(&console_url(&server, "/console/login"))
        .await
        .expect("the sign-in page opens");
    let style = script(
        client,
        "const card = getComputedStyle(document.querySelector('.login-card')); \
         return [getComputedStyle(document.body).backgroundColor, card.backgroundColor, \
                 card.borderTopLeftRadius, getComputedStyle(document.querySelector('button')).backgroundColor];",
    )
    .await;
    assert_eq!(
        style,
        json!([
            "rgb(246, 247, 249)",
            "rgb(255, 255, 255)",
            "8px",
            "rgb(36, 84, 197)"
        ]),
        "the sign-in page is styled by console.css"
    );
    screenshot(client, "login").await;
    client
        .set_window_size(390, 844)
        .await
        .expect("the window narrows");
    screenshot(client, "login-phone").await;
    client
        .set_window_size(1280, 1000)
        .await
        .expect("the window widens");
    sign_in(client, &server).await;

    // The subscription page says its pushes are held, until when and why;
    // the due delivery says it waits on that.
    client
        .goto(&console_url(&server, "/console/subscriptions/hooks"))
        .await
        .expect("the subscription page opens");
    let banner = client
        .find(Locator::Css("#pushes-held"))
        .await
        .expect("a banner on held pushes")
        .text()
        .await
        .expect("its text");
    assert!(
        banner.starts_with("Pushes held until 20")
            && banner
                .contains(" UTC because the endpoint answered 429 or 503 with Retry-After (a wait"),
        "{banner}"
    );
    let waiting = script(
        client,
        &format!(
            "const note = document.querySelector('tr[data-event=\"{LONG_ID}\"] .waiting'); \
             return [note.textContent, note.title];"
        ),
    )
    .await;
    assert_eq!(waiting[0], "held back: Retry-After", "{waiting}");
    let title = waiting[1].as_str().expect("a title");
    assert!(
        title.starts_with("held back by the endpoint's Retry-After until 20"),
        "{title}"
    );
    for (width, name) in [
        (1280, "held-subscription"),
        (390, "held-subscription-phone"),
    ] {
        client
            .set_window_size(width, 1000)
            .await
            .expect("the window resizes");
        let (shown, cut) = idents_on_one_line(client, name).await;
        assert!(shown >= 3, "{name}: {shown} ids");
        if width == 390 {
            assert!(cut >= 1, "{name}: the long id is cut with an ellipsis");
            // The list, not the page top, is what the phone shot is for.
            script(
                client,
                "document.querySelector('#deliveries').scrollIntoView(); return null;",
            )
            .await;
        } else {
            let overflow = script(
                client,
                "const wrap = document.querySelector('#deliveries').parentElement; \
                 return wrap.scrollWidth - wrap.clientWidth;",
            )
            .await;
            assert_eq!(
                overflow,
                json!(0),
                "{name}: the list fits without scrolling sideways"
            );
        }
        screenshot(client, name).await;
    }
    client
        .set_window_size(1280, 1000)
        .await
        .expect("the window widens");

    // A copy button gives the whole id.
    let copy = client
        .find(Locator::Css(&format!(
            "tr[data-event='{LONG_ID}'] button.copy[data-copy='{LONG_ID}']"
        )))
        .await
        .expect("a copy button beside the id");
    copy.click().await.expect("the button is clicked");
    eventually("the copy button to say it copied", || async {
        script(
            client,
            &format!(
                "const b = document.querySelector('tr[data-event=\"{LONG_ID}\"] button.copy'); \
                 return b ? b.getAttribute('data-copied') : null;"
            ),
        )
        .await
            == json!("true")
    })
    .await;

    // The delivery page too, and the overview flags the hold.
    let id = server
        .deliveries("hooks")
        .await
        .into_iter()
        .find(|d| d["event_id"] == LONG_ID)
        .and_then(|d| d["id"].as_str().map(str::to_owned))
        .expect("the long id's delivery");
    client
        .goto(&console_url(&server, &format!("/console/deliveries/{id}")))
        .await
        .expect("the delivery page opens");
    let next = client
        .find(Locator::Css("#next-attempt"))
        .await
        .expect("the next attempt")
        .text()
        .await
        .expect("its text");
    assert!(
        next.contains("held back by the endpoint's Retry-After until"),
        "{next}"
    );
    for (width, name) in [(1280, "delivery-held"), (390, "delivery-held-phone")] {
        client
            .set_window_size(width, 1000)
            .await
            .expect("the window resizes");
        idents_on_one_line(client, name).await;
        screenshot(client, name).await;
    }
    client
        .set_window_size(1280, 1000)
        .await
        .expect("the window widens");
    client
        .goto(&console_url(&server, "/console"))
        .await
        .expect("the overview opens");
    let held = client
        .find(Locator::Css("tr[data-subscription='hooks'] .badge-held"))
        .await
        .expect("a held badge on the overview")
        .text()
        .await
        .expect("its text");
    assert_eq!(held, "held: Retry-After");
    idents_on_one_line(client, "overview-held").await;
    screenshot(client, "overview-held").await;

    // Sign out: back at the sign-in page, and the console asks again.
    client
        .find(Locator::Css("button#sign-out"))
        .await
        .expect("a sign-out button")
        .click()
        .await
        .expect("the button submits");
    eventually("the sign-in page after signing out", || async {
        client
            .current_url()
            .await
            .is_ok_and(|url| url.path() == "/console/login")
    })
    .await;
    client
        .goto(&console_url(&server, "/console/subscriptions/hooks"))
        .await
        .expect("the page opens");
    assert_eq!(
        client.current_url().await.expect("a URL").path(),
        "/console/login",
        "signed out, the console asks to sign in again"
    );
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
        trial(
            "held_pushes_one_line_ids_a_styled_sign_in_and_sign_out",
            &need,
            Runtime::CurrentThread,
            held_pushes_one_line_ids_a_styled_sign_in_and_sign_out,
        ),
    ])
}

//! One push: the HTTP request an endpoint receives, and what came back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use redrive_core::binding::binary_headers;
use redrive_core::classify::parse_retry_after;
use redrive_core::security::{EndpointPolicy, SigningSecret};
use redrive_core::{AttemptOutcome, ErrorClass, RESPONSE_SNIPPET_BYTES};
use redrive_store::ClaimedDelivery;
use reqwest::header::RETRY_AFTER;

/// What a push observed, before any decision.
#[derive(Debug)]
pub struct PushResult {
    pub started_at: Timestamp,
    pub duration: Duration,
    pub outcome: AttemptOutcome,
    pub error_message: Option<String>,
    pub response_snippet: Option<String>,
}

/// Installs the TLS crypto provider every HTTP client of the process uses.
/// Idempotent: a second install (tests start several servers) is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Builds the outbound HTTP client: pooled, no redirects, no proxies, and
/// a resolver that refuses the addresses `policy` forbids.
pub fn client(policy: Arc<EndpointPolicy>) -> Result<reqwest::Client, reqwest::Error> {
    install_crypto_provider();
    reqwest::Client::builder()
        .dns_resolver(crate::security::ssrf::GuardedResolver::new(policy))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .user_agent(concat!("redrive/", env!("CARGO_PKG_VERSION")))
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(256)
        .build()
}

/// How a push is secured: where it may go, and the secrets that sign it
/// (newest first; none means unsigned).
#[derive(Clone, Copy, Debug)]
pub struct Guard<'a> {
    pub policy: &'a EndpointPolicy,
    pub secrets: &'a [SigningSecret],
}

/// Sends one attempt of `claimed` to `endpoint` and reads at most the
/// response snippet, all within `timeout`.
pub async fn push(
    client: &reqwest::Client,
    endpoint: &str,
    timeout: Duration,
    claimed: &ClaimedDelivery,
    guard: Guard<'_>,
) -> PushResult {
    let started_at = Timestamp::now();
    let clock = Instant::now();
    let delivery = &claimed.delivery;
    // The client resolves host names through the guarded resolver, but a
    // literal address never reaches a resolver: it is checked here.
    let refused = match reqwest::Url::parse(endpoint) {
        Ok(url) => crate::security::ssrf::check_url(guard.policy, &url).err(),
        Err(_) => None,
    };
    if let Some(err) = refused {
        return PushResult {
            started_at,
            duration: clock.elapsed(),
            outcome: AttemptOutcome::Error(ErrorClass::Blocked),
            error_message: Some(format!("blocked by the network policy: {err}")),
            response_snippet: None,
        };
    }
    let body = claimed.event.data.clone().unwrap_or_default();
    let mut request = client
        .post(endpoint)
        .header("webhook-id", &delivery.id)
        .header("webhook-timestamp", started_at.as_second().to_string())
        .header("redrive-attempt", delivery.attempts.to_string());
    if !guard.secrets.is_empty() {
        let signature = redrive_core::security::sign(
            guard.secrets,
            &delivery.id,
            started_at.as_second(),
            &body,
        );
        request = request.header("webhook-signature", signature);
    }
    let mut request = request.body(body);
    for (name, value) in binary_headers(&claimed.event) {
        request = request.header(name, value);
    }
    let exchange = async {
        let response = request.send().await?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(parse_retry_after);
        let snippet = read_snippet(response).await;
        Ok::<_, reqwest::Error>((status, retry_after, snippet))
    };
    let (outcome, error_message, response_snippet) =
        match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok((status, retry_after, snippet))) => (
                AttemptOutcome::Response {
                    status,
                    retry_after,
                },
                None,
                snippet,
            ),
            Ok(Err(err)) => {
                let (class, message) = classify_error(&err);
                (AttemptOutcome::Error(class), Some(message), None)
            }
            Err(_) => (
                AttemptOutcome::Error(ErrorClass::Timeout),
                Some(format!("no answer within {}s", timeout.as_secs_f64())),
                None,
            ),
        };
    PushResult {
        started_at,
        duration: clock.elapsed(),
        outcome,
        error_message,
        response_snippet,
    }
}

/// The first bytes of the body; the rest is not read, so a huge answer
/// costs nothing. A body that breaks off midway keeps what arrived.
async fn read_snippet(mut response: reqwest::Response) -> Option<String> {
    let mut snippet = Vec::new();
    while snippet.len() < RESPONSE_SNIPPET_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => snippet.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    if snippet.is_empty() {
        return None;
    }
    snippet.truncate(RESPONSE_SNIPPET_BYTES);
    Some(String::from_utf8_lossy(&snippet).into_owned())
}

/// Sorts a transport error into timeout, dns, tls, connect or other, from
/// the chain of causes hyper and rustls give.
fn classify_error(err: &reqwest::Error) -> (ErrorClass, String) {
    let mut chain = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        chain.push_str(": ");
        chain.push_str(&cause.to_string());
        source = cause.source();
    }
    if let Some(blocked) = crate::security::ssrf::blocked_in(err) {
        return (ErrorClass::Blocked, blocked);
    }
    let lower = chain.to_ascii_lowercase();
    let class = if err.is_timeout() {
        ErrorClass::Timeout
    } else if lower.contains("dns error") || lower.contains("failed to lookup address") {
        ErrorClass::Dns
    } else if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake")
    {
        ErrorClass::Tls
    } else if err.is_connect()
        || lower.contains("connection reset")
        || lower.contains("connection closed")
    {
        ErrorClass::Connect
    } else {
        ErrorClass::Other
    };
    (class, chain)
}

//! One push: sends the request `redrive_core::outbound` builds (what an
//! endpoint receives) and reads what came back.

use std::time::{Duration, Instant};

use http::header::RETRY_AFTER;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use jiff::Timestamp;
use redrive_core::classify::parse_retry_after;
use redrive_core::dialect::PushContext;
use redrive_core::outbound::Push;
use redrive_core::security::{EndpointPolicy, SigningSecret};
use redrive_core::{AttemptOutcome, ErrorClass, RESPONSE_SNIPPET_BYTES, SubscriptionSpec};
use redrive_store::ClaimedDelivery;

use super::client::{Client, Endpoint, SendError};

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

/// How a push is secured: where it may go, and the secrets that sign it
/// (newest first; none means unsigned).
#[derive(Clone, Copy, Debug)]
pub struct Guard<'a> {
    pub policy: &'a EndpointPolicy,
    pub secrets: &'a [SigningSecret],
}

/// Sends one attempt of `claimed` to the subscription's endpoint (the
/// request as `redrive_core::outbound::request` builds it) and reads at most
/// the response snippet, all within the subscription's timeout. `endpoint`
/// is `spec.endpoint` parsed, or why it does not parse.
pub async fn push(
    client: &Client,
    spec: &SubscriptionSpec,
    endpoint: &Result<Endpoint, String>,
    claimed: &ClaimedDelivery,
    guard: Guard<'_>,
    started_at: Timestamp,
) -> PushResult {
    let timeout = spec.timeout.as_duration();
    let clock = Instant::now();
    let delivery = &claimed.delivery;
    let failed = |class, message| PushResult {
        started_at,
        duration: clock.elapsed(),
        outcome: AttemptOutcome::Error(class),
        error_message: Some(message),
        response_snippet: None,
    };
    let endpoint = match endpoint {
        Ok(endpoint) => endpoint,
        Err(unparsed) => return failed(ErrorClass::Other, unparsed.clone()),
    };
    // The client resolves host names through the guarded resolver, but a
    // literal address never reaches a resolver: it is checked here.
    if let Err(err) = crate::security::ssrf::check_url(guard.policy, &endpoint.url) {
        return failed(
            ErrorClass::Blocked,
            format!("blocked by the network policy: {err}"),
        );
    }
    let outbound = redrive_core::outbound::request(&Push {
        event: &claimed.event,
        payload_format: spec.payload_format,
        headers_profile: spec.headers_profile,
        context: PushContext {
            subscription: &spec.name,
            delivery_id: &delivery.id,
            attempt: delivery.attempts,
            due_at: claimed.due_at,
            published_at: delivery.created_at,
        },
        started_at,
        secrets: guard.secrets,
    });
    let exchange = async {
        let response = client
            .post(endpoint, outbound.headers, outbound.body)
            .await?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(parse_retry_after);
        let snippet = read_snippet(response.into_body()).await;
        Ok::<_, SendError>((status, retry_after, snippet))
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
                let (class, message) = classify_error(&err, endpoint);
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
async fn read_snippet(mut body: Incoming) -> Option<String> {
    let mut snippet = Vec::new();
    while snippet.len() < RESPONSE_SNIPPET_BYTES {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(chunk) = frame.data_ref() {
                    snippet.extend_from_slice(chunk);
                }
            }
            Some(Err(_)) | None => break,
        }
    }
    if snippet.is_empty() {
        return None;
    }
    snippet.truncate(RESPONSE_SNIPPET_BYTES);
    Some(String::from_utf8_lossy(&snippet).into_owned())
}

/// Sorts a transport error into dns, tls, connect or other (a timeout is
/// the push's own, decided before), from the chain of causes hyper and
/// rustls give. The message names the endpoint without its query, user
/// info or fragment: those often carry a token, and the message is stored
/// and shown to every reader.
fn classify_error(err: &SendError, endpoint: &Endpoint) -> (ErrorClass, String) {
    let mut chain = format!("request to {} failed: {err}", endpoint.shown());
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
    let connect = matches!(err, SendError::Transport(err) if err.is_connect());
    let class = if lower.contains("dns error") || lower.contains("failed to lookup address") {
        ErrorClass::Dns
    } else if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake")
    {
        ErrorClass::Tls
    } else if connect || lower.contains("connection reset") || lower.contains("connection closed") {
        ErrorClass::Connect
    } else {
        ErrorClass::Other
    };
    (class, chain)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::dispatcher::client::client;

    #[tokio::test]
    async fn transport_errors_do_not_repeat_the_endpoints_credentials() {
        // Nothing listens on port 1: the connection is refused.
        let endpoint = Endpoint::parse(
            "http://user:pass-secret@127.0.0.1:1/hook?token=query-secret#frag-secret",
        )
        .unwrap();
        let client = client(Arc::new(EndpointPolicy {
            allow: redrive_core::security::parse_networks("127.0.0.0/8").unwrap(),
            https_only: false,
        }))
        .unwrap();
        let err = client
            .post(&endpoint, Vec::new(), Vec::new())
            .await
            .unwrap_err();
        let (class, message) = classify_error(&err, &endpoint);
        assert_eq!(class, ErrorClass::Connect);
        assert!(message.contains("http://127.0.0.1:1/hook"), "{message}");
        assert!(!message.contains("secret"), "{message}");
    }
}

//! The outbound HTTP client pushes go through: hyper's pooled client over
//! rustls, with the platform's certificate verifier, HTTP/1.1 or HTTP/2 as
//! the endpoint offers, no proxies, no redirects, and a resolver that
//! refuses the addresses the network policy forbids. A push is one request
//! and the first bytes of its answer, so nothing sits between the push and
//! hyper: a general-purpose client's layers (redirects, retries, URL
//! parsing at every request) cost about a tenth of the server's CPU.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderName, HeaderValue, USER_AGENT};
use http::{Request, Response, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as PooledClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use redrive_core::security::EndpointPolicy;
use rustls_platform_verifier::BuilderVerifierExt;
use url::Url;

use crate::security::ssrf::GuardedResolver;

/// How long an idle connection to an endpoint is kept for the next push.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Most idle connections kept per endpoint host.
const POOL_MAX_IDLE_PER_HOST: usize = 256;
/// TCP keepalive on pooled connections: probes after 15 s idle, every
/// 15 s, three unanswered close it; and a connection whose sent data goes
/// unacknowledged for 30 s is closed. A dead endpoint host is noticed on a
/// pooled connection rather than at the push's timeout.
const KEEPALIVE: Duration = Duration::from_secs(15);
const KEEPALIVE_RETRIES: u32 = 3;
#[cfg(any(target_os = "android", target_os = "fuchsia", target_os = "linux"))]
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);
/// Times a request an HTTP/2 endpoint refused unprocessed is sent again.
const NACK_RETRIES: usize = 2;

type Connector = HttpsConnector<HttpConnector<GuardedResolver>>;

/// The pushes' client; clones share one connection pool.
#[derive(Clone)]
pub struct Client {
    inner: PooledClient<Connector, Full<Bytes>>,
}

/// Builds the client, which trusts the certificates the platform trusts.
pub fn client(policy: Arc<EndpointPolicy>) -> Result<Client, rustls::Error> {
    super::push::install_crypto_provider();
    let tls = rustls::ClientConfig::builder()
        .with_platform_verifier()?
        .with_no_client_auth();
    Ok(with_tls(policy, tls))
}

fn with_tls(policy: Arc<EndpointPolicy>, tls: rustls::ClientConfig) -> Client {
    let mut http = HttpConnector::new_with_resolver(GuardedResolver::new(policy));
    // `https` is for the TLS layer around it to handle.
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_keepalive(Some(KEEPALIVE));
    http.set_keepalive_interval(Some(KEEPALIVE));
    http.set_keepalive_retries(Some(KEEPALIVE_RETRIES));
    #[cfg(any(target_os = "android", target_os = "fuchsia", target_os = "linux"))]
    http.set_tcp_user_timeout(Some(TCP_USER_TIMEOUT));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    let inner = PooledClient::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
        .pool_timer(TokioTimer::new())
        .build(connector);
    Client { inner }
}

impl Client {
    /// POSTs `body` with `headers` to `endpoint`. The endpoint's user info
    /// goes as basic authentication, and a `user-agent` and `accept` are
    /// added unless `headers` has them. A request an HTTP/2 endpoint
    /// refused before processing it (a stream refused, or the connection
    /// closing gracefully) is sent again, at most twice: no attempt of the
    /// delivery's was made.
    pub async fn post(
        &self,
        endpoint: &Endpoint,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> Result<Response<Incoming>, SendError> {
        let body = Bytes::from(body);
        let mut headers = request_headers(endpoint, headers)?;
        // Only HTTP/2 refuses a request unprocessed, and only `https`
        // endpoints speak it here (by ALPN).
        let retries = if endpoint.uri.scheme() == Some(&http::uri::Scheme::HTTPS) {
            NACK_RETRIES
        } else {
            0
        };
        let mut nacks = 0;
        loop {
            let last_try = nacks == retries;
            let mut request = Request::post(endpoint.uri.clone())
                .body(Full::new(body.clone()))
                .map_err(SendError::Request)?;
            *request.headers_mut() = if last_try {
                std::mem::take(&mut headers)
            } else {
                headers.clone()
            };
            match self.inner.request(request).await {
                Err(err) if !last_try && refused_unprocessed(&err) => nacks += 1,
                answered => return answered.map_err(SendError::Transport),
            }
        }
    }
}

/// The request's headers: the endpoint's basic authentication, the
/// dialect's `headers`, and a `user-agent` and `accept` unless those set them.
fn request_headers(
    endpoint: &Endpoint,
    headers: Vec<(String, String)>,
) -> Result<HeaderMap, SendError> {
    let mut map = HeaderMap::with_capacity(headers.len() + 3);
    if let Some(authorization) = &endpoint.authorization {
        map.append(AUTHORIZATION, authorization.clone());
    }
    for (name, value) in headers {
        let name = match known_name(&name) {
            Some(known) => known,
            None => HeaderName::try_from(name).map_err(|err| SendError::Request(err.into()))?,
        };
        let value = HeaderValue::try_from(value).map_err(|err| SendError::Request(err.into()))?;
        map.append(name, value);
    }
    map.entry(USER_AGENT).or_insert_with(|| {
        HeaderValue::from_static(concat!("redrive/", env!("CARGO_PKG_VERSION")))
    });
    map.entry(ACCEPT)
        .or_insert_with(|| HeaderValue::from_static("*/*"));
    Ok(map)
}

/// The header names every push of a dialect sends, made once: a name made
/// from a string is checked and copied, for each header of each push.
fn known_name(name: &str) -> Option<HeaderName> {
    static KNOWN: LazyLock<Vec<HeaderName>> = LazyLock::new(|| {
        [
            "webhook-id",
            "webhook-timestamp",
            "webhook-signature",
            "redrive-attempt",
            "content-type",
            "ce-id",
            "ce-source",
            "ce-type",
            "ce-specversion",
            "ce-time",
            "ce-subject",
            "ce-dataschema",
        ]
        .into_iter()
        .map(HeaderName::from_static)
        .collect()
    });
    KNOWN.iter().find(|known| known.as_str() == name).cloned()
}

/// Whether an HTTP/2 endpoint refused the request without processing it:
/// it reset the stream with `REFUSED_STREAM`, or closed the connection
/// gracefully (`GOAWAY` with `NO_ERROR`) before the request was taken.
fn refused_unprocessed(err: &hyper_util::client::legacy::Error) -> bool {
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        if let Some(err) = cause.downcast_ref::<h2::Error>() {
            return err.is_remote()
                && ((err.is_go_away() && err.reason() == Some(h2::Reason::NO_ERROR))
                    || (err.is_reset() && err.reason() == Some(h2::Reason::REFUSED_STREAM)));
        }
        source = cause.source();
    }
    false
}

/// Why a push's request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The request could not be made (a header the endpoint's dialect
    /// built is not valid HTTP).
    #[error("invalid request: {0}")]
    Request(http::Error),
    /// Connecting, sending or reading the answer's head failed.
    #[error(transparent)]
    Transport(hyper_util::client::legacy::Error),
}

/// A subscription's endpoint, parsed once: the URL without its user info
/// (for the network policy's checks and for messages), the URI requested,
/// and the basic authentication the user info stands for.
#[derive(Debug)]
pub struct Endpoint {
    pub url: Url,
    uri: Uri,
    authorization: Option<HeaderValue>,
}

impl Endpoint {
    /// Parses `endpoint`; the error says why it is not a URL a push can go to.
    pub fn parse(endpoint: &str) -> Result<Endpoint, String> {
        let mut url =
            Url::parse(endpoint).map_err(|err| format!("{endpoint:?} is not a URL: {err}"))?;
        let authorization = take_credentials(&mut url);
        let uri = Uri::try_from(url.as_str())
            .map_err(|err| format!("{endpoint:?} is not a URL to send to: {err}"))?;
        Ok(Endpoint {
            url,
            uri,
            authorization: authorization
                .map(|(user, password)| basic_authorization(&user, password.as_deref())),
        })
    }

    /// Scheme, host, port and path: what identifies the endpoint without
    /// what may authenticate to it (user info, query, fragment).
    pub fn shown(&self) -> String {
        let mut shown = self.url.clone();
        shown.set_query(None);
        shown.set_fragment(None);
        shown.to_string()
    }
}

/// Removes the user info from `url`, as written (percent-encoded).
fn take_credentials(url: &mut Url) -> Option<(String, Option<String>)> {
    if url.username().is_empty() && url.password().is_none() {
        return None;
    }
    let credentials = (url.username().to_owned(), url.password().map(str::to_owned));
    let _ = url.set_username("");
    let _ = url.set_password(None);
    Some(credentials)
}

/// `Basic` credentials for user info as a URL carries it (percent-encoded).
fn basic_authorization(user: &str, password: Option<&str>) -> HeaderValue {
    use base64::Engine;
    let decode = |text: &str| {
        percent_encoding::percent_decode_str(text)
            .decode_utf8_lossy()
            .into_owned()
    };
    let pair = format!(
        "{}:{}",
        decode(user),
        password.map(decode).unwrap_or_default()
    );
    let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
    let mut value = HeaderValue::try_from(format!("Basic {encoded}"))
        .unwrap_or_else(|_| HeaderValue::from_static("Basic"));
    value.set_sensitive(true);
    value
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use http_body_util::BodyExt;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use redrive_core::security::parse_networks;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    use super::*;

    const CA: &[u8] = include_bytes!("testdata/endpoint-ca.pem");
    const CERT: &[u8] = include_bytes!("testdata/endpoint-cert.pem");
    const KEY: &[u8] = include_bytes!("testdata/endpoint-key.pem");

    fn loopback_policy() -> Arc<EndpointPolicy> {
        Arc::new(EndpointPolicy {
            allow: parse_networks("127.0.0.0/8").unwrap(),
            https_only: false,
        })
    }

    /// TLS for a test endpoint on 127.0.0.1 (its certificate signed by the
    /// test CA), offering `alpn`.
    fn tls_acceptor(alpn: &[&[u8]]) -> tokio_rustls::TlsAcceptor {
        super::super::push::install_crypto_provider();
        let mut config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from_pem_slice(CERT).unwrap()],
                PrivateKeyDer::from_pem_slice(KEY).unwrap(),
            )
            .unwrap();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }

    /// An HTTPS endpoint offering `alpn`; it answers each request with the
    /// HTTP version and the `authorization` it came with.
    async fn https_endpoint(alpn: &[&[u8]]) -> SocketAddr {
        let acceptor = tls_acceptor(alpn);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                    let service = service_fn(|request: Request<Incoming>| async move {
                        let seen = format!(
                            "{:?} {}",
                            request.version(),
                            request
                                .headers()
                                .get(AUTHORIZATION)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("-")
                        );
                        Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::from(seen))))
                    });
                    let io = TokioIo::new(tls);
                    if h2 {
                        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                            .serve_connection(io, service)
                            .await;
                    } else {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(io, service)
                            .await;
                    }
                });
            }
        });
        addr
    }

    fn trusting_the_test_ca() -> Client {
        super::super::push::install_crypto_provider();
        let provider = rustls::crypto::CryptoProvider::get_default()
            .unwrap()
            .clone();
        let verifier = rustls_platform_verifier::Verifier::new_with_extra_roots(
            [CertificateDer::from_pem_slice(CA).unwrap()],
            provider,
        )
        .unwrap();
        let tls = rustls::ClientConfig::builder()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        with_tls(loopback_policy(), tls)
    }

    async fn answer(client: &Client, endpoint: &str) -> Result<String, SendError> {
        let endpoint = Endpoint::parse(endpoint).unwrap();
        let response = client.post(&endpoint, Vec::new(), b"{}".to_vec()).await?;
        assert_eq!(response.status(), 200);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn https_endpoints_get_http2_when_they_offer_it_and_http1_otherwise() {
        let client = trusting_the_test_ca();
        let both = https_endpoint(&[b"h2", b"http/1.1"]).await;
        let answer_h2 = answer(&client, &format!("https://ann:pw@{both}/hook")).await;
        // "ann:pw"
        assert_eq!(answer_h2.unwrap(), "HTTP/2.0 Basic YW5uOnB3");
        let http1 = https_endpoint(&[b"http/1.1"]).await;
        let answer_h1 = answer(&client, &format!("https://{http1}/hook")).await;
        assert_eq!(answer_h1.unwrap(), "HTTP/1.1 -");
    }

    /// An HTTP/2 endpoint that refuses the first `refusals` requests it
    /// gets (`REFUSED_STREAM`) and answers the others; also how many came.
    async fn refusing_endpoint(
        refusals: usize,
    ) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let acceptor = tls_acceptor(&[b"h2"]);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(AtomicUsize::new(0));
        let counted = seen.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let Ok(tls) = acceptor.clone().accept(tcp).await else {
                    continue;
                };
                let counted = counted.clone();
                tokio::spawn(async move {
                    let Ok(mut connection) = h2::server::handshake(tls).await else {
                        return;
                    };
                    while let Some(Ok((_, mut respond))) = connection.accept().await {
                        if counted.fetch_add(1, Ordering::SeqCst) < refusals {
                            respond.send_reset(h2::Reason::REFUSED_STREAM);
                        } else {
                            let _ = respond.send_response(Response::new(()), true);
                        }
                    }
                });
            }
        });
        (addr, seen)
    }

    #[tokio::test]
    async fn a_request_an_http2_endpoint_refused_unprocessed_is_sent_again_twice_at_most() {
        use std::sync::atomic::Ordering;
        let client = trusting_the_test_ca();
        let (twice, seen) = refusing_endpoint(2).await;
        let endpoint = Endpoint::parse(&format!("https://{twice}/hook")).unwrap();
        let response = client
            .post(&endpoint, Vec::new(), Vec::new())
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(seen.load(Ordering::SeqCst), 3);

        let (always, seen) = refusing_endpoint(usize::MAX).await;
        let endpoint = Endpoint::parse(&format!("https://{always}/hook")).unwrap();
        let err = client
            .post(&endpoint, Vec::new(), Vec::new())
            .await
            .unwrap_err();
        assert!(format!("{err:?}").contains("REFUSED_STREAM"), "{err:?}");
        assert_eq!(seen.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_certificate_the_platform_does_not_trust_is_refused() {
        let client = client(loopback_policy()).unwrap();
        let endpoint = https_endpoint(&[b"http/1.1"]).await;
        let err = answer(&client, &format!("https://{endpoint}/hook"))
            .await
            .unwrap_err();
        let chain = format!("{:?}", err);
        assert!(
            chain.to_ascii_lowercase().contains("certificate"),
            "{chain}"
        );
    }

    #[test]
    fn user_info_becomes_basic_authentication_and_leaves_the_uri() {
        let endpoint = Endpoint::parse("https://ann:s%40cret@example.com:8443/hook?x=1").unwrap();
        assert_eq!(
            endpoint.uri.to_string(),
            "https://example.com:8443/hook?x=1"
        );
        // "ann:s@cret"
        assert_eq!(
            endpoint.authorization.as_ref().unwrap(),
            "Basic YW5uOnNAY3JldA=="
        );
        assert_eq!(endpoint.url.as_str(), "https://example.com:8443/hook?x=1");
        assert_eq!(endpoint.shown(), "https://example.com:8443/hook");

        let plain = Endpoint::parse("http://127.0.0.1:9000/hook").unwrap();
        assert!(plain.authorization.is_none());
        assert_eq!(plain.uri.to_string(), "http://127.0.0.1:9000/hook");

        assert!(Endpoint::parse("not a url").is_err());
    }
}

//! Server-side request forgery defence. Endpoints are checked when a
//! subscription is saved (a clear 400 for literal addresses and local
//! names), and again at connect time: a resolver that drops forbidden
//! addresses (so a name that later resolves to 127.0.0.1 is still refused),
//! plus a check of literal IPs, which the HTTP client never resolves.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::dns::Name;
use redrive_core::security::{EndpointPolicy, NetworkError};
use url::Url;

/// An endpoint the network policy refused.
#[derive(Debug)]
pub struct Blocked(pub String);

impl fmt::Display for Blocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "blocked by the network policy: {}", self.0)
    }
}

impl StdError for Blocked {}

/// Checks a URL's scheme and literal host. Host names are checked when they
/// resolve, except names that always mean this machine.
pub fn check_url(policy: &EndpointPolicy, url: &Url) -> Result<(), NetworkError> {
    policy.check_scheme(url.scheme())?;
    let Some(host) = url.host_str() else {
        return Ok(());
    };
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    match literal.parse::<IpAddr>() {
        Ok(ip) => policy.check_ip(ip),
        Err(_) => policy.check_host_name(host),
    }
}

/// The create/update check of a subscription's endpoint: a 400 naming the
/// refused address. (The URL itself was validated before.)
pub fn check_endpoint(
    policy: &EndpointPolicy,
    endpoint: &str,
) -> Result<(), crate::error::ApiError> {
    let url = Url::parse(endpoint).map_err(|err| {
        crate::error::ApiError::invalid("endpoint", format!("{endpoint:?} is not a URL: {err}"))
    })?;
    check_url(policy, &url).map_err(|err| crate::error::ApiError::invalid("endpoint", err))
}

/// Resolves with the system resolver, then keeps only permitted addresses.
#[derive(Clone)]
pub struct GuardedResolver {
    policy: Arc<EndpointPolicy>,
}

impl GuardedResolver {
    pub fn new(policy: Arc<EndpointPolicy>) -> GuardedResolver {
        GuardedResolver { policy }
    }
}

type ResolveError = Box<dyn StdError + Send + Sync>;

impl tower_service::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = ResolveError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, ResolveError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ResolveError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let policy = self.policy.clone();
        Box::pin(async move { resolve(&policy, name.as_str()).await.map(Vec::into_iter) })
    }
}

/// The permitted addresses `host` resolves to (port 0: the connector sets
/// the endpoint's).
async fn resolve(policy: &EndpointPolicy, host: &str) -> Result<Vec<SocketAddr>, ResolveError> {
    policy
        .check_host_name(host)
        .map_err(|err| Box::new(Blocked(err.to_string())) as ResolveError)?;
    let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host, 0))
        .await
        .map_err(|err| Box::new(err) as ResolveError)?
        .collect();
    let mut refusal = None;
    let allowed: Vec<SocketAddr> = resolved
        .into_iter()
        .filter(|addr| match policy.check_ip(addr.ip()) {
            Ok(()) => true,
            Err(err) => {
                refusal.get_or_insert(err);
                false
            }
        })
        .collect();
    if allowed.is_empty()
        && let Some(err) = refusal
    {
        return Err(Box::new(Blocked(format!("{host:?} resolves to {err}"))));
    }
    Ok(allowed)
}

/// The policy's refusal inside a transport error, if that is what it is.
pub fn blocked_in(err: &(dyn StdError + 'static)) -> Option<String> {
    let mut source: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(cause) = source {
        if let Some(blocked) = cause.downcast_ref::<Blocked>() {
            return Some(blocked.to_string());
        }
        source = cause.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn literal_and_local_endpoints_are_refused_by_default() {
        let policy = EndpointPolicy::default();
        for endpoint in [
            "http://127.0.0.1/",
            "http://[::1]/",
            "http://169.254.169.254/latest/meta-data",
            "http://10.0.0.1:8080/",
            "http://[fe80::1]/",
            "http://0.0.0.0/",
            "http://localhost:9000/",
            "http://[::ffff:127.0.0.1]/",
        ] {
            assert!(check_url(&policy, &url(endpoint)).is_err(), "{endpoint}");
        }
        assert!(check_url(&policy, &url("https://example.com/hook")).is_ok());
        assert!(check_url(&policy, &url("http://93.184.216.34/")).is_ok());
    }

    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_refused_at_resolution() {
        use tower_service::Service;
        let mut resolver = GuardedResolver::new(Arc::new(EndpointPolicy::default()));
        // `localhost` is refused by name; a numeric name goes through the
        // system resolver like any other.
        for host in ["localhost", "127.0.0.1"] {
            let name: Name = host.parse().unwrap();
            let err = match resolver.call(name).await {
                Ok(addrs) => panic!("resolved to {:?}", addrs.collect::<Vec<_>>()),
                Err(err) => err,
            };
            assert!(blocked_in(err.as_ref()).is_some(), "{err}");
        }
    }
}

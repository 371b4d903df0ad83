//! The trust boundary: who may call the API (tokens, console sessions,
//! CSRF), where pushes may go (network policy at connect time), how
//! endpoints recognise genuine pushes (signatures with encrypted secrets),
//! and how much a client may send (limits, slow-client timeouts, rates).

pub mod auth;
pub mod console;
pub mod files;
pub mod limits;
pub mod secrets;
pub mod ssrf;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use redrive_core::security::{EndpointPolicy, RequestRate};
use redrive_store::Store;

pub use auth::{Auth, Principal};
pub use console::{ConsoleSession, Sessions};
pub use secrets::{SecretBook, SecretCipher};

/// How the API's admin token is chosen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdminToken {
    /// Read from `DATA/api-token`, generated there at first start.
    Generated,
    /// Given by the operator (`--api-token`, `REDRIVE_API_TOKEN`).
    Given(String),
    /// No authentication at all (`--insecure-no-auth`), for experiments.
    InsecureNoAuth,
}

#[derive(Clone, Debug)]
pub struct SecurityOptions {
    pub admin_token: AdminToken,
    pub endpoint_policy: EndpointPolicy,
    /// Base64 of 32 bytes (`REDRIVE_SECRET_KEY`); else `DATA/secret.key`.
    pub secret_key: Option<String>,
    /// How long a rotated-out signing secret keeps signing.
    pub rotation_grace: Duration,
    /// Publish requests per token.
    pub publish_rate: RequestRate,
    /// A client must send its request headers within this time.
    pub header_read_timeout: Duration,
    /// A request (its body included) must arrive and be answered within this time.
    pub request_timeout: Duration,
}

impl Default for SecurityOptions {
    fn default() -> Self {
        SecurityOptions {
            admin_token: AdminToken::Generated,
            endpoint_policy: EndpointPolicy::default(),
            secret_key: None,
            rotation_grace: Duration::from_secs(24 * 3600),
            // No limit unless one is set: the store's own pace bounds how
            // fast publishes are accepted, and a fixed figure would either
            // cap a fast machine or protect nothing on a slow one.
            publish_rate: RequestRate::UNLIMITED,
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// What the API and the dispatcher share of the trust boundary, as one
/// pointer: cloning it must stay cheap, since the request path does.
#[derive(Clone)]
pub struct Security(Arc<SecurityParts>);

pub struct SecurityParts {
    pub auth: Arc<Auth>,
    pub sessions: Arc<Sessions>,
    pub secrets: Arc<SecretBook>,
    pub endpoint_policy: Arc<EndpointPolicy>,
    pub rotation_grace: Duration,
    pub publish_limiter: Arc<limits::RateLimiter>,
    pub request_timeout: Duration,
}

impl std::ops::Deref for Security {
    type Target = SecurityParts;

    fn deref(&self) -> &SecurityParts {
        &self.0
    }
}

/// The guards in front of every route, run by the application's one
/// middleware layer (each layer clones the stack inside it and boxes a
/// future for every request): headers within limits (431), then, within
/// the request timeout (408, covering the body's arrival and the answer),
/// the API's tokens and the console's sessions.
pub async fn guard(security: &Security, request: Request, next: Next) -> Response {
    if let Some(refused) = limits::oversized_headers(&request) {
        return refused;
    }
    let timeout = security.request_timeout;
    let guarded = async {
        let request = match auth::authorize_api(security, request).await {
            Ok(request) => request,
            Err(refused) => return refused,
        };
        match console::authorize_console(security, request).await {
            Ok(request) => next.run(request).await,
            Err(refused) => refused,
        }
    };
    match tokio::time::timeout(timeout, guarded).await {
        Ok(response) => response,
        Err(_) => limits::timed_out(timeout),
    }
}

/// What `serve` tells the operator once at start.
pub struct Startup {
    pub security: Security,
    /// A freshly generated admin token, to print once.
    pub generated_token: Option<String>,
}

impl Security {
    /// Reads or creates the admin token and the secret key in `data_dir`.
    pub fn start(
        options: &SecurityOptions,
        data_dir: &Path,
        store: Arc<dyn Store>,
    ) -> anyhow::Result<Startup> {
        let (auth, generated_token) = match &options.admin_token {
            AdminToken::InsecureNoAuth => {
                tracing::warn!(
                    "authentication is OFF (--insecure-no-auth): anyone who reaches this \
                     port can publish, read and change everything"
                );
                (Auth::disabled(store.clone()), None)
            }
            AdminToken::Given(token) => {
                auth::check_admin_token(token)?;
                (Auth::with_admin(token, store.clone()), None)
            }
            AdminToken::Generated => {
                let (token, generated) = files::admin_token(data_dir)?;
                (
                    Auth::with_admin(&token, store.clone()),
                    generated.then_some(token),
                )
            }
        };
        let key = match &options.secret_key {
            Some(encoded) => files::decode_key(encoded).context(
                "REDRIVE_SECRET_KEY must be the base64 of 32 bytes (openssl rand -base64 32)",
            )?,
            None => files::secret_key(data_dir)?,
        };
        let cipher = SecretCipher::new(&key)?;
        Ok(Startup {
            security: Security(Arc::new(SecurityParts {
                auth: Arc::new(auth),
                sessions: Arc::new(Sessions::new()?),
                secrets: Arc::new(SecretBook::new(store, cipher)),
                endpoint_policy: Arc::new(options.endpoint_policy.clone()),
                rotation_grace: options.rotation_grace,
                publish_limiter: Arc::new(limits::RateLimiter::new(options.publish_rate)),
                request_timeout: options.request_timeout,
            })),
            generated_token,
        })
    }
}

/// Fresh random bytes from the operating system.
pub fn random_bytes<const N: usize>() -> anyhow::Result<[u8; N]> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; N];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("the operating system's random source failed"))?;
    Ok(bytes)
}

//! `serve`'s security flags, and the `tokens` and signing-secret commands.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use redrive_core::HumanDuration;
use redrive_core::security::{EndpointPolicy, IpNetwork, RequestRate, parse_networks};
use redrive_server::security::{AdminToken, SecurityOptions};
use serde_json::json;

use crate::client::{Client, segment};
use crate::output::{self, View};

#[derive(Args)]
pub struct SecurityArgs {
    /// The admin API token. Without it, one is generated at first start into
    /// DATA/api-token (mode 0600) and printed once.
    #[arg(long, env = "REDRIVE_API_TOKEN", hide_env_values = true)]
    api_token: Option<String>,
    /// Turn authentication off (local experiments only; logs a warning).
    #[arg(long, env = "REDRIVE_INSECURE_NO_AUTH", conflicts_with = "api_token")]
    insecure_no_auth: bool,
    /// Networks endpoints may be in although loopback, private, link-local,
    /// multicast or unspecified, e.g. 127.0.0.0/8,10.0.0.0/8.
    #[arg(long, env = "REDRIVE_ALLOW_ENDPOINT_NETWORKS", value_parser = networks, default_value = "")]
    allow_endpoint_networks: Networks,
    /// Accept only https endpoints.
    #[arg(long, env = "REDRIVE_ENDPOINT_HTTPS_ONLY")]
    endpoint_https_only: bool,
    /// Key that encrypts signing secrets at rest: base64 of 32 bytes
    /// (`openssl rand -base64 32`). Without it, DATA/secret.key is used,
    /// generated at first start.
    #[arg(long, env = "REDRIVE_SECRET_KEY", hide_env_values = true)]
    secret_key: Option<String>,
    /// How long a rotated-out signing secret keeps signing, beside the new one.
    #[arg(long, env = "REDRIVE_SECRET_ROTATION_GRACE", default_value = "24h")]
    secret_rotation_grace: HumanDuration,
    /// Publish requests each token may make, e.g. 20000/s or 6000/m; none by
    /// default (a limit is for sharing a server fairly among producers: the
    /// store's own pace already bounds how fast publishes are accepted).
    #[arg(long, env = "REDRIVE_PUBLISH_RATE_LIMIT", default_value = "unlimited")]
    publish_rate_limit: RequestRate,
    /// Most events in one batch publish.
    #[arg(long, env = "REDRIVE_MAX_BATCH_EVENTS", default_value_t = 1000)]
    pub max_batch_events: usize,
    /// Most extension attributes on one event.
    #[arg(long, env = "REDRIVE_MAX_EVENT_EXTENSIONS", default_value_t = 50)]
    pub max_event_extensions: usize,
    /// Most bytes an event's attributes may take as the headers of a
    /// binary-mode push (`ce-*` and `content-type` lines, percent-encoded).
    #[arg(long, env = "REDRIVE_MAX_EVENT_ATTRIBUTE_BYTES", default_value_t = 6 * 1024)]
    pub max_event_attribute_bytes: usize,
    /// A client must send its request headers within this time.
    #[arg(long, env = "REDRIVE_HEADER_READ_TIMEOUT", default_value = "10s")]
    header_read_timeout: HumanDuration,
    /// A request, its body included, must arrive and be answered within this time.
    #[arg(long, env = "REDRIVE_REQUEST_TIMEOUT", default_value = "30s")]
    request_timeout: HumanDuration,
}

#[derive(Clone, Debug)]
struct Networks(Vec<IpNetwork>);

fn networks(text: &str) -> Result<Networks, String> {
    parse_networks(text)
        .map(Networks)
        .map_err(|err| err.to_string())
}

impl SecurityArgs {
    /// The server's options, and a token generated now (with its file) to
    /// show once.
    pub fn options(
        &self,
        data_dir: &Path,
    ) -> anyhow::Result<(SecurityOptions, Option<(String, PathBuf)>)> {
        let mut generated = None;
        let admin_token = if self.insecure_no_auth {
            AdminToken::InsecureNoAuth
        } else if let Some(token) = &self.api_token {
            AdminToken::Given(token.clone())
        } else {
            std::fs::create_dir_all(data_dir)
                .with_context(|| format!("cannot create {}", data_dir.display()))?;
            let (token, fresh) = redrive_server::security::files::admin_token(data_dir)?;
            if fresh {
                generated = Some((token.clone(), data_dir.join("api-token")));
            }
            AdminToken::Given(token)
        };
        if self.header_read_timeout.as_duration().is_zero()
            || self.request_timeout.as_duration().is_zero()
        {
            anyhow::bail!("--header-read-timeout and --request-timeout must be more than 0s");
        }
        let options = SecurityOptions {
            admin_token,
            endpoint_policy: EndpointPolicy {
                allow: self.allow_endpoint_networks.0.clone(),
                https_only: self.endpoint_https_only,
            },
            secret_key: self.secret_key.clone(),
            rotation_grace: self.secret_rotation_grace.as_duration(),
            publish_rate: self.publish_rate_limit,
            header_read_timeout: self.header_read_timeout.as_duration(),
            request_timeout: self.request_timeout.as_duration(),
        };
        Ok((options, generated))
    }
}

#[derive(Subcommand)]
pub enum TokensCommand {
    /// Create a token; its secret is printed once.
    Create {
        /// admin, read, or publish:TOPIC.
        #[arg(long, value_parser = scope_arg)]
        scope: String,
        /// Who holds it, what for.
        #[arg(long, default_value = "")]
        name: String,
    },
    /// List tokens (without their secrets).
    List,
    /// Delete a token; it stops working at once.
    Delete { id: String },
}

/// Checks a scope before anything is sent; clap names the flag and value.
fn scope_arg(value: &str) -> Result<String, String> {
    value
        .parse::<redrive_core::security::Scope>()
        .map(|scope| scope.to_string())
        .map_err(|err| err.to_string())
}

pub async fn tokens(client: &Client, command: TokensCommand) -> anyhow::Result<()> {
    let (answer, view) = match command {
        TokensCommand::Create { scope, name } => {
            let created = client
                .post("/v1/tokens", Some(json!({"scope": scope, "name": name})))
                .await?;
            if output::is_table() {
                let token = created["token"].as_str().unwrap_or_default();
                println!(
                    "created token {} with scope {}; its secret is shown only now:\n{token}",
                    created["id"].as_str().unwrap_or_default(),
                    created["scope"].as_str().unwrap_or_default(),
                );
                return Ok(());
            }
            (created, View::Fields)
        }
        TokensCommand::List => (client.get("/v1/tokens").await?, View::Tokens),
        TokensCommand::Delete { id } => {
            client
                .delete(&format!("/v1/tokens/{}", segment(&id)))
                .await?;
            println!("deleted token {id}");
            return Ok(());
        }
    };
    output::print(&answer, view)
}

#[derive(Args)]
pub struct RotateSecretArgs {
    pub name: String,
    /// The new secret (whsec_ + base64); generated when absent.
    #[arg(long)]
    pub secret: Option<String>,
}

pub async fn secret(client: &Client, name: &str) -> anyhow::Result<serde_json::Value> {
    client
        .get(&format!("/v1/subscriptions/{}/secret", segment(name)))
        .await
}

pub async fn rotate(client: &Client, args: RotateSecretArgs) -> anyhow::Result<serde_json::Value> {
    let body = match args.secret {
        Some(secret) => json!({ "secret": secret }),
        None => json!({}),
    };
    client
        .post(
            &format!("/v1/subscriptions/{}/secret/rotate", segment(&args.name)),
            Some(body),
        )
        .await
}

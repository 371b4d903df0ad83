//! Client commands: each one API call, its answer printed as JSON.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};

use crate::client::{Client, segment};

#[derive(Subcommand)]
pub enum TopicsCommand {
    /// Create a topic.
    Create { name: String },
    /// List topics.
    List,
    /// Delete a topic (it must have no subscriptions).
    Delete { name: String },
}

#[derive(Subcommand)]
pub enum SubscriptionsCommand {
    /// Create a push subscription.
    Create(Box<CreateSubscription>),
    /// List subscriptions.
    List,
    /// Show one subscription.
    Get { name: String },
    /// Delete a subscription with its deliveries.
    Delete { name: String },
    /// Put failed (or scheduled) deliveries back to scheduled with a fresh
    /// attempt budget, showing progress.
    Redrive(crate::lifecycle::RedriveArgs),
    /// Read the events that matched a subscription, oldest first.
    Journal(crate::lifecycle::JournalArgs),
    /// Stop pushes to a subscription; its deliveries wait (retention applies).
    Pause { name: String },
    /// Resume pushes to a paused subscription.
    Resume { name: String },
    /// Make a disabled or unstable subscription healthy; its backlog flows.
    Enable { name: String },
    /// Print the subscription's signing secret (admin).
    Secret { name: String },
    /// Rotate the signing secret; the old one keeps signing for the grace period.
    RotateSecret(crate::security::RotateSecretArgs),
}

#[derive(Args)]
pub struct CreateSubscription {
    pub name: String,
    /// Topic to read from.
    #[arg(long)]
    pub topic: String,
    /// URL that receives the pushes.
    #[arg(long)]
    pub endpoint: String,
    /// Only events of this type (a trailing * matches a prefix).
    #[arg(long)]
    pub filter_type: Option<String>,
    /// Only events from this source (a trailing * matches a prefix).
    #[arg(long)]
    pub filter_source: Option<String>,
    /// Only events with this subject (a trailing * matches a prefix).
    #[arg(long)]
    pub filter_subject: Option<String>,
    /// Retry policy as JSON, or @FILE holding it, e.g.
    /// '{"backoff": {"kind": "fixed", "interval": "10s"}, "retry_limit": 5}'.
    #[arg(long)]
    pub retry_policy: Option<String>,
    /// Push timeout, e.g. 30s.
    #[arg(long)]
    pub timeout: Option<String>,
    /// Pushes in flight at once to this endpoint.
    #[arg(long)]
    pub max_concurrency: Option<u32>,
    /// Topic that receives events this subscription fails to deliver.
    #[arg(long)]
    pub dead_letter_topic: Option<String>,
    /// Most attempts per delivery (5-100; 5 when a dead-letter topic is set).
    #[arg(long)]
    pub max_delivery_attempts: Option<u32>,
    /// How long an undelivered event is tried after publish, e.g. 7d.
    #[arg(long)]
    pub message_retention: Option<String>,
    /// Endpoint health policy as JSON, or @FILE holding it, e.g.
    /// '{"window": "1h", "min_attempts": 20, "auto_disable": false}'.
    #[arg(long)]
    pub health_policy: Option<String>,
    /// Start the retry policy from a preset (see `redrive policy presets`);
    /// --retry-policy fields override it.
    #[arg(long, value_name = "NAME")]
    pub preset: Option<String>,
    /// Pushes per second, minute, hour or day, e.g. 5/s, 1/m, 2000/d; 0 pauses.
    #[arg(long)]
    pub rate: Option<String>,
    /// Burst size with --rate (1-500, default 5).
    #[arg(long)]
    pub bucket_size: Option<u32>,
    /// cloudevents-binary (default), cloudevents-structured or pubsub-push.
    #[arg(long)]
    pub payload_format: Option<String>,
    /// standard (default) or appengine (adds X-AppEngine-Task* headers).
    #[arg(long)]
    pub headers_profile: Option<String>,
    /// Pub/Sub's push backoff: after failures pushes slow down and pause, so
    /// retries may start later than the policy says [default: the
    /// preset's, else off].
    #[arg(long, value_enum, value_name = "ON|OFF")]
    pub push_backoff: Option<crate::explain::OnOff>,
}

#[derive(Args)]
pub struct PublishArgs {
    pub topic: String,
    /// The event's type attribute.
    #[arg(long = "type")]
    pub ty: String,
    /// The event's source attribute.
    #[arg(long)]
    pub source: String,
    /// The event's id (default: a new UUID).
    #[arg(long)]
    pub id: Option<String>,
    /// The event's subject attribute.
    #[arg(long)]
    pub subject: Option<String>,
    /// JSON data, or @FILE holding it.
    #[arg(long)]
    pub data: Option<String>,
}

#[derive(Subcommand)]
pub enum DeliveriesCommand {
    /// List a subscription's deliveries, newest first.
    List {
        subscription: String,
        /// scheduled, in_flight, delivered or failed.
        #[arg(long)]
        state: Option<String>,
        /// How many to show.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Show a delivery with its event and every attempt (`attempt_log`).
    Get { id: String },
    /// Attempt a delivery now, also when it has failed.
    Retry { id: String },
    /// End a scheduled delivery as failed (cancelled).
    Cancel { id: String },
}

pub async fn topics(client: &Client, command: TopicsCommand) -> anyhow::Result<()> {
    let answer = match command {
        TopicsCommand::Create { name } => {
            client
                .post("/v1/topics", Some(json!({"name": name})))
                .await?
        }
        TopicsCommand::List => client.get("/v1/topics").await?,
        TopicsCommand::Delete { name } => {
            client
                .delete(&format!("/v1/topics/{}", segment(&name)))
                .await?;
            println!("deleted topic {name}");
            return Ok(());
        }
    };
    print_json(&answer)
}

pub async fn subscriptions(client: &Client, command: SubscriptionsCommand) -> anyhow::Result<()> {
    let answer = match command {
        SubscriptionsCommand::Create(args) => {
            let body = subscription_body(args)?;
            client.post("/v1/subscriptions", Some(body)).await?
        }
        SubscriptionsCommand::List => client.get("/v1/subscriptions").await?,
        SubscriptionsCommand::Get { name } => {
            client
                .get(&format!("/v1/subscriptions/{}", segment(&name)))
                .await?
        }
        SubscriptionsCommand::Delete { name } => {
            client
                .delete(&format!("/v1/subscriptions/{}", segment(&name)))
                .await?;
            println!("deleted subscription {name}");
            return Ok(());
        }
        SubscriptionsCommand::Redrive(args) => {
            return crate::lifecycle::redrive(client, args).await;
        }
        SubscriptionsCommand::Journal(args) => {
            return crate::lifecycle::journal(client, args).await;
        }
        SubscriptionsCommand::Pause { name } => {
            return crate::health::run(client, crate::health::Action::Pause, &name).await;
        }
        SubscriptionsCommand::Resume { name } => {
            return crate::health::run(client, crate::health::Action::Resume, &name).await;
        }
        SubscriptionsCommand::Enable { name } => {
            return crate::health::run(client, crate::health::Action::Enable, &name).await;
        }
        SubscriptionsCommand::Secret { name } => crate::security::secret(client, &name).await?,
        SubscriptionsCommand::RotateSecret(args) => crate::security::rotate(client, args).await?,
    };
    print_json(&answer)
}

fn subscription_body(args: Box<CreateSubscription>) -> anyhow::Result<Value> {
    let mut body = json!({"name": args.name, "topic": args.topic, "endpoint": args.endpoint});
    let mut filter = serde_json::Map::new();
    for (key, value) in [
        ("type", args.filter_type),
        ("source", args.filter_source),
        ("subject", args.filter_subject),
    ] {
        if let Some(value) = value {
            filter.insert(key.into(), value.into());
        }
    }
    if !filter.is_empty() {
        body["filter"] = Value::Object(filter);
    }
    if let Some(policy) = args.retry_policy {
        body["retry_policy"] = json_argument("--retry-policy", &policy)?;
    }
    if let Some(timeout) = args.timeout {
        body["timeout"] = timeout.into();
    }
    if let Some(max) = args.max_concurrency {
        body["max_concurrency"] = max.into();
    }
    if let Some(topic) = args.dead_letter_topic {
        body["dead_letter_topic"] = topic.into();
    }
    if let Some(max) = args.max_delivery_attempts {
        body["max_delivery_attempts"] = max.into();
    }
    if let Some(retention) = args.message_retention {
        body["message_retention"] = retention.into();
    }
    if let Some(policy) = args.health_policy {
        body["health_policy"] = json_argument("--health-policy", &policy)?;
    }
    if let Some(preset) = args.preset {
        match body.get_mut("retry_policy") {
            Some(Value::Object(policy)) => {
                policy.insert("preset".into(), preset.into());
            }
            Some(_) => bail!("--retry-policy must be a JSON object to combine with --preset"),
            None => body["retry_policy"] = json!({"preset": preset}),
        }
    }
    for (key, value) in [
        ("rate", args.rate),
        ("payload_format", args.payload_format),
        ("headers_profile", args.headers_profile),
    ] {
        if let Some(value) = value {
            body[key] = value.into();
        }
    }
    if let Some(size) = args.bucket_size {
        body["bucket_size"] = size.into();
    }
    if let Some(choice) = args.push_backoff {
        body["push_backoff"] = choice.is_on().into();
    }
    Ok(body)
}

pub async fn publish(client: &Client, args: PublishArgs) -> anyhow::Result<()> {
    let mut event = json!({
        "specversion": "1.0",
        "id": args.id.unwrap_or_else(|| uuid::Uuid::now_v7().to_string()),
        "source": args.source,
        "type": args.ty,
    });
    if let Some(subject) = args.subject {
        event["subject"] = subject.into();
    }
    if let Some(data) = args.data {
        event["datacontenttype"] = "application/json".into();
        event["data"] = json_argument("--data", &data)?;
    }
    let path = format!("/v1/topics/{}/events", segment(&args.topic));
    let answer = client
        .send_with_type(Method::POST, &path, "application/cloudevents+json", event)
        .await?;
    print_json(&answer)
}

pub async fn deliveries(client: &Client, command: DeliveriesCommand) -> anyhow::Result<()> {
    let answer = match command {
        DeliveriesCommand::List {
            subscription,
            state,
            limit,
        } => {
            let mut path = format!(
                "/v1/subscriptions/{}/deliveries?limit={limit}",
                segment(&subscription)
            );
            if let Some(state) = state {
                path.push_str(&format!("&state={}", segment(&state)));
            }
            client.get(&path).await?
        }
        DeliveriesCommand::Get { id } => {
            client
                .get(&format!("/v1/deliveries/{}", segment(&id)))
                .await?
        }
        DeliveriesCommand::Retry { id } => {
            client
                .post(&format!("/v1/deliveries/{}/retry", segment(&id)), None)
                .await?
        }
        DeliveriesCommand::Cancel { id } => {
            client
                .post(&format!("/v1/deliveries/{}/cancel", segment(&id)), None)
                .await?
        }
    };
    print_json(&answer)
}

/// Reads a JSON argument given inline or as `@FILE`.
fn json_argument(flag: &str, value: &str) -> anyhow::Result<Value> {
    let text = match value.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(PathBuf::from(path))
            .with_context(|| format!("{flag}: cannot read {path}"))?,
        None => value.to_owned(),
    };
    match serde_json::from_str(&text) {
        Ok(value) => Ok(value),
        Err(err) => bail!("{flag}: not valid JSON: {err}"),
    }
}

pub fn print_json(value: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

//! Configuration as code and imports: `redrive apply -f redrive.toml`,
//! `redrive export`, `redrive import appengine|pubsub FILE`. Each sends the
//! declared topics and subscriptions to `POST /v1/apply` and prints the diff.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand};
use redrive_core::Subscription;
use redrive_core::config::{Desired, ParsedConfig, TopicDecl, parse_toml, to_toml};
use redrive_core::duration::format_duration;
use redrive_core::import::Imported;
use redrive_core::import::appengine::EndpointRule;
use redrive_core::lifecycle::SYSTEM_TOPIC;
use redrive_server::declared::{Change, ChangeKind, check_subscription};
use serde_json::{Value, json};

use crate::client::Client;

#[derive(Args)]
pub struct ApplyArgs {
    /// The redrive.toml to apply.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: PathBuf,
    /// Print the changes without making them.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Subcommand)]
pub enum ImportCommand {
    /// App Engine push queues from queue.xml or queue.yaml: a topic and a
    /// subscription per push queue, named after it.
    Appengine(AppengineArgs),
    /// Pub/Sub push subscriptions as the REST API returns them (JSON).
    Pubsub(PubsubArgs),
}

#[derive(Args)]
pub struct AppengineArgs {
    /// queue.xml or queue.yaml (told apart by their content).
    pub file: PathBuf,
    /// Pushes go to URL/_ah/queue/QUEUE.
    #[arg(
        long,
        value_name = "URL",
        required_unless_present = "endpoint_template"
    )]
    pub endpoint_base: Option<String>,
    /// Pushes go to this URL, with {queue} replaced by the queue's name.
    #[arg(long, value_name = "URL", conflicts_with = "endpoint_base")]
    pub endpoint_template: Option<String>,
    /// Print the plan without changing anything.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Args)]
pub struct PubsubArgs {
    /// A subscription as `gcloud pubsub subscriptions describe --format=json`
    /// or the REST API prints it, or a list of them.
    pub file: PathBuf,
    /// Print the plan without changing anything.
    #[arg(long)]
    pub dry_run: bool,
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Reads and checks a redrive.toml; errors name the file and the line.
pub fn read_config(path: &Path) -> anyhow::Result<ParsedConfig> {
    let text = read(path)?;
    parse_toml(&text, check_subscription).map_err(|err| anyhow!("{}: {err}", path.display()))
}

pub async fn apply(client: &Client, args: ApplyArgs) -> anyhow::Result<()> {
    let parsed = read_config(&args.file)?;
    let changes = send(client, &parsed.desired, args.dry_run)
        .await
        .map_err(|err| {
            // The server names the subscription; the file's line helps more.
            let message = err.to_string();
            let line = parsed
                .subscription_lines
                .iter()
                .find(|(name, _)| message.starts_with(&format!("subscription {name:?}")))
                .map(|(_, line)| *line);
            match line {
                Some(line) => anyhow!("{}: line {line}: {message}", args.file.display()),
                None => err,
            }
        })?;
    print!("{}", render(&changes, args.dry_run));
    Ok(())
}

pub async fn export(client: &Client) -> anyhow::Result<()> {
    let topics = client.get("/v1/topics").await?;
    let subscriptions = client.get("/v1/subscriptions").await?;
    let mut desired = Desired::default();
    for topic in topics["topics"].as_array().into_iter().flatten() {
        let name = topic["name"]
            .as_str()
            .ok_or_else(|| anyhow!("the server listed a topic without a name: {topic}"))?;
        if name != SYSTEM_TOPIC {
            desired.topics.push(TopicDecl {
                name: name.to_owned(),
            });
        }
    }
    for subscription in subscriptions["subscriptions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let subscription: Subscription = serde_json::from_value(subscription.clone())
            .context("the server listed a subscription this redrive can't read")?;
        desired.subscriptions.push(subscription.spec);
    }
    print!("{}", to_toml(&desired)?);
    Ok(())
}

pub async fn import(client: &Client, command: ImportCommand) -> anyhow::Result<()> {
    let (imported, dry_run) = match command {
        ImportCommand::Appengine(args) => {
            let rule = match (args.endpoint_template, args.endpoint_base) {
                (Some(template), _) if !template.contains("{queue}") => {
                    bail!(
                        "--endpoint-template must contain {{queue}}, e.g. https://host/tasks/{{queue}}"
                    )
                }
                (Some(template), _) => EndpointRule::Template(template),
                (None, Some(base)) => EndpointRule::Base(base),
                (None, None) => bail!("give --endpoint-base or --endpoint-template"),
            };
            let content = read(&args.file)?;
            let imported = redrive_core::import::appengine::import(&content, &rule)
                .map_err(|err| anyhow!("{}: {err}", args.file.display()))?;
            (imported, args.dry_run)
        }
        ImportCommand::Pubsub(args) => {
            let content = read(&args.file)?;
            let imported = redrive_core::import::pubsub::import(&content)
                .map_err(|err| anyhow!("{}: {err}", args.file.display()))?;
            (imported, args.dry_run)
        }
    };
    check_imported(&imported)?;
    for note in &imported.notes {
        println!("! {note}");
    }
    let changes = send(client, &imported.desired, dry_run).await?;
    print!("{}", render(&changes, dry_run));
    for spec in &imported.desired.subscriptions {
        println!("  {}", summary(spec));
    }
    Ok(())
}

/// One line on what an imported subscription does.
fn summary(spec: &redrive_core::SubscriptionSpec) -> String {
    let mut parts = vec![format!("timeout {}", format_duration(spec.timeout.0))];
    if let Some(rate) = spec.rate {
        parts.push(format!(
            "rate {rate}, bucket {}",
            spec.effective_bucket_size()
        ));
    }
    parts.push(format!("{} in flight", spec.max_concurrency));
    let policy = &spec.retry_policy;
    if let Some(limit) = policy.retry_limit {
        parts.push(format!("retry limit {limit}"));
    }
    if let Some(age) = policy.age_limit {
        parts.push(format!("age limit {}", format_duration(age.0)));
    }
    if let Some(topic) = &spec.dead_letter_topic {
        parts.push(format!("dead letters to {topic}"));
    }
    if spec.push_backoff {
        parts.push("push backoff on".into());
    }
    format!("{} -> {} ({})", spec.name, spec.endpoint, parts.join(", "))
}

/// The server's checks, before anything is sent.
fn check_imported(imported: &Imported) -> anyhow::Result<()> {
    for spec in &imported.desired.subscriptions {
        check_subscription(spec).map_err(|err| anyhow!("subscription {:?}: {err}", spec.name))?;
    }
    Ok(())
}

async fn send(client: &Client, desired: &Desired, dry_run: bool) -> anyhow::Result<Vec<Change>> {
    let body = json!({
        "prune": desired.prune,
        "dry_run": dry_run,
        "topics": desired.topics,
        "subscriptions": desired.subscriptions,
    });
    let answer: Value = client.post("/v1/apply", Some(body)).await?;
    serde_json::from_value(answer["changes"].clone())
        .context("the server's answer to /v1/apply has no readable changes")
}

/// One line per change, then a count; says so when nothing was changed.
pub fn render(changes: &[Change], dry_run: bool) -> String {
    let mut out = String::new();
    let mut counts = [0usize; 4];
    for change in changes {
        let (mark, word, index) = match change.change {
            ChangeKind::Created => ('+', "created", 0),
            ChangeKind::Changed => ('~', "changed", 1),
            ChangeKind::Unchanged => ('=', "unchanged", 2),
            ChangeKind::Deleted => ('-', "deleted", 3),
        };
        counts[index] += 1;
        let fields = if change.fields.is_empty() {
            String::new()
        } else {
            format!(" ({})", change.fields.join(", "))
        };
        out.push_str(&format!(
            "{mark} {word:<9} {:<12} {}{fields}\n",
            change.resource, change.name
        ));
    }
    out.push_str(&format!(
        "{} created, {} changed, {} unchanged, {} deleted{}\n",
        counts[0],
        counts[1],
        counts[2],
        counts[3],
        if dry_run {
            " (dry run: nothing was changed)"
        } else {
            ""
        }
    ));
    out
}

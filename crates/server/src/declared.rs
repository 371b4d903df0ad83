//! Applies declared topics and subscriptions (`redrive.toml`, imports) to a
//! store: plans every change first, refuses the whole set if any part is
//! invalid, then creates, updates and (with `prune`) deletes.

use std::collections::{HashMap, HashSet};

use jiff::Timestamp;
use redrive_core::SubscriptionSpec;
use redrive_core::config::{Desired, changed_fields};
use redrive_core::lifecycle::SYSTEM_TOPIC;
use redrive_core::security::EndpointPolicy;
use redrive_store::{Store, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Created,
    Changed,
    Unchanged,
    Deleted,
}

/// One line of an apply's diff.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Change {
    /// `topic` or `subscription`.
    pub resource: String,
    pub name: String,
    pub change: ChangeKind,
    /// For a changed subscription, the fields that differ.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
}

/// Why an apply was refused or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The declarations are inconsistent; nothing was changed.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<ApplyError> for ApiError {
    fn from(err: ApplyError) -> Self {
        match err {
            ApplyError::Invalid(message) => ApiError::bad_request(message),
            ApplyError::Store(err) => err.into(),
        }
    }
}

/// Checks a subscription's shape as the API does (the message names the
/// field), for a client to check before sending. Where it may push is the
/// server's own rule: [`apply`] and the API check that too.
pub fn check_subscription(spec: &SubscriptionSpec) -> Result<(), String> {
    crate::validate::subscription_shape(spec).map_err(|err| err.message)
}

/// Brings the store to `desired`. With `dry_run`, only plans. Every check
/// runs before the first write, so an invalid set changes nothing.
pub async fn apply(
    store: &dyn Store,
    desired: &Desired,
    policy: &EndpointPolicy,
    dry_run: bool,
    now: Timestamp,
) -> Result<Vec<Change>, ApplyError> {
    let topics: HashSet<String> = store
        .list_topics()
        .await?
        .into_iter()
        .map(|t| t.name)
        .collect();
    let subscriptions: HashMap<String, SubscriptionSpec> = store
        .list_subscriptions()
        .await?
        .into_iter()
        .map(|s| (s.spec.name.clone(), s.spec))
        .collect();
    let plan = plan(desired, policy, &topics, &subscriptions)?;
    if dry_run {
        return Ok(plan);
    }
    let by_name: HashMap<&str, &SubscriptionSpec> = desired
        .subscriptions
        .iter()
        .map(|s| (s.name.as_str(), s))
        .collect();
    // Topics first (subscriptions and dead-letter topics need them),
    // deletions last, subscriptions before their topics.
    for change in plan.iter().filter(|c| c.resource == "topic") {
        if change.change == ChangeKind::Created {
            store.create_topic(&change.name, now).await?;
        }
    }
    for change in plan.iter().filter(|c| c.resource == "subscription") {
        let spec = by_name.get(change.name.as_str()).map(|s| (*s).clone());
        match (change.change, spec) {
            (ChangeKind::Created, Some(spec)) => {
                store.create_subscription(spec, now).await?;
            }
            (ChangeKind::Changed, Some(spec)) => {
                store.update_subscription(spec, now).await?;
            }
            (ChangeKind::Deleted, _) => store.delete_subscription(&change.name).await?,
            _ => {}
        }
    }
    for change in plan.iter().filter(|c| c.resource == "topic") {
        if change.change == ChangeKind::Deleted {
            store.delete_topic(&change.name).await?;
        }
    }
    let changed = plan.iter().filter(|c| c.change != ChangeKind::Unchanged);
    tracing::info!(changes = changed.count(), "applied the configuration");
    Ok(plan)
}

/// The changes that bring `topics` and `subscriptions` to `desired`.
fn plan(
    desired: &Desired,
    policy: &EndpointPolicy,
    topics: &HashSet<String>,
    subscriptions: &HashMap<String, SubscriptionSpec>,
) -> Result<Vec<Change>, ApplyError> {
    let change = |resource: &str, name: &str, change, fields| Change {
        resource: resource.to_owned(),
        name: name.to_owned(),
        change,
        fields,
    };
    let mut declared_topics = HashSet::new();
    let mut changes = Vec::new();
    for topic in &desired.topics {
        redrive_core::names::validate_name("topic", &topic.name)
            .map_err(|err| ApplyError::Invalid(err.to_string()))?;
        if !declared_topics.insert(topic.name.as_str()) {
            return Err(ApplyError::Invalid(format!(
                "topic {:?} is declared twice",
                topic.name
            )));
        }
        let kind = if topics.contains(&topic.name) {
            ChangeKind::Unchanged
        } else {
            ChangeKind::Created
        };
        changes.push(change("topic", &topic.name, kind, Vec::new()));
    }
    let topic_known =
        |name: &str| declared_topics.contains(name) || (!desired.prune && topics.contains(name));
    let mut declared_subscriptions = HashSet::new();
    for spec in &desired.subscriptions {
        let invalid = |message: String| {
            ApplyError::Invalid(format!("subscription {:?}: {message}", spec.name))
        };
        crate::validate::subscription(spec, policy).map_err(|err| invalid(err.message))?;
        if !declared_subscriptions.insert(spec.name.as_str()) {
            return Err(invalid("declared twice".into()));
        }
        for (field, topic) in [
            ("topic", Some(&spec.topic)),
            ("dead_letter_topic", spec.dead_letter_topic.as_ref()),
        ] {
            if let Some(topic) = topic
                && topic != SYSTEM_TOPIC
                && !topic_known(topic)
            {
                return Err(invalid(format!(
                    "{field} {topic:?} is neither declared nor on the server"
                )));
            }
        }
        let kind = match subscriptions.get(&spec.name) {
            None => (ChangeKind::Created, Vec::new()),
            Some(current) if current.topic != spec.topic => {
                return Err(invalid(format!(
                    "its topic can't change (it is {:?}); delete the subscription first",
                    current.topic
                )));
            }
            Some(current) if current == spec => (ChangeKind::Unchanged, Vec::new()),
            Some(current) => (ChangeKind::Changed, changed_fields(current, spec)),
        };
        changes.push(change("subscription", &spec.name, kind.0, kind.1));
    }
    if desired.prune {
        let mut gone: Vec<&String> = subscriptions
            .keys()
            .filter(|name| !declared_subscriptions.contains(name.as_str()))
            .collect();
        gone.sort();
        for name in gone {
            changes.push(change(
                "subscription",
                name,
                ChangeKind::Deleted,
                Vec::new(),
            ));
        }
        let mut gone: Vec<&String> = topics
            .iter()
            .filter(|name| *name != SYSTEM_TOPIC && !declared_topics.contains(name.as_str()))
            .collect();
        gone.sort();
        for name in gone {
            changes.push(change("topic", name, ChangeKind::Deleted, Vec::new()));
        }
    }
    Ok(changes)
}

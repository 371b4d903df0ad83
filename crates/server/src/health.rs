//! The health evaluator: every interval it reads each subscription's recent
//! attempt counts, applies the subscription's health policy (the pure rule
//! in `redrive_core::health`) and records any change as a compare-and-set,
//! which also announces it on the system topic. It then prunes counts no
//! window needs any more.

use std::sync::Arc;
use std::time::Duration;

use redrive_core::health::MAX_HEALTH_WINDOW;
use redrive_core::{Health, Subscription};
use redrive_store::{HealthChange, Store};
use tokio::sync::{Notify, watch};

use crate::clock::Clock;

#[derive(Clone, Debug)]
pub struct HealthConfig {
    /// Pause between evaluations.
    pub interval: Duration,
    /// The time the evaluator reads.
    pub clock: Clock,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            interval: Duration::from_secs(10),
            clock: Clock::default(),
        }
    }
}

const MIN_INTERVAL: Duration = Duration::from_millis(10);
/// Attempt counts deleted per write while pruning.
const PRUNE_BATCH: u32 = 1000;
/// Counts are kept this much longer than the longest window, so a window
/// that starts mid-minute still finds its first minute.
const PRUNE_MARGIN: Duration = Duration::from_secs(120);

/// Runs until `shutdown` turns true. `subscriptions_changed` is notified
/// after every change so the dispatcher sees it at once.
pub async fn run(
    store: Arc<dyn Store>,
    config: HealthConfig,
    subscriptions_changed: Arc<Notify>,
    writes: Arc<crate::ops::StoreWrites>,
    mut shutdown: watch::Receiver<bool>,
) {
    // A zero interval would spin.
    let interval = config.interval.max(MIN_INTERVAL);
    while !*shutdown.borrow() {
        if evaluate(&*store, &config.clock, &writes).await > 0 {
            subscriptions_changed.notify_one();
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// One pass over every subscription, then a prune. Returns how many
/// subscriptions changed health.
pub async fn evaluate(store: &dyn Store, clock: &Clock, writes: &crate::ops::StoreWrites) -> usize {
    let subscriptions = match store.list_subscriptions().await {
        Ok(subscriptions) => subscriptions,
        Err(err) => {
            writes.report(&err, "cannot load subscriptions to judge their health");
            return 0;
        }
    };
    let mut changed = 0;
    for subscription in &subscriptions {
        match evaluate_one(store, clock, subscription).await {
            Ok(true) => changed += 1,
            Ok(false) => {}
            Err(err) if err.is_transient() => writes.failed(&err),
            Err(err) => tracing::error!(subscription = %subscription.spec.name, error = %err,
                "cannot judge the health of a subscription"),
        }
    }
    prune(store, clock, writes, &subscriptions).await;
    changed
}

async fn evaluate_one(
    store: &dyn Store,
    clock: &Clock,
    subscription: &Subscription,
) -> Result<bool, redrive_store::StoreError> {
    let status = &subscription.status;
    // Disabled stays disabled until someone enables it: nothing to count.
    if status.health == Health::Disabled {
        return Ok(false);
    }
    let policy = &subscription.spec.health_policy;
    let now = clock.now();
    let counts = store
        .count_attempts(&subscription.spec.name, policy.window_start(now))
        .await?;
    let Some(verdict) = policy.evaluate(status.health, status.health_changed_at, counts, now)
    else {
        return Ok(false);
    };
    let change = HealthChange {
        subscription: subscription.spec.name.clone(),
        from: status.health,
        to: verdict.to,
        reason: verdict.reason,
        now,
    };
    let Some(changed) = store.change_health(change).await? else {
        // Someone (an enable, another node) changed it first.
        return Ok(false);
    };
    let name = &subscription.spec.name;
    let reason = changed.status.health_reason.as_deref().unwrap_or_default();
    match verdict.to {
        Health::Healthy => tracing::info!(subscription = %name, reason, "endpoint healthy again"),
        Health::Unstable => tracing::warn!(subscription = %name, reason, "endpoint unstable"),
        Health::Disabled => {
            tracing::warn!(subscription = %name, reason, "endpoint disabled: no more pushes until it is enabled")
        }
    }
    Ok(true)
}

/// Deletes counts older than the longest window any subscription has.
async fn prune(
    store: &dyn Store,
    clock: &Clock,
    writes: &crate::ops::StoreWrites,
    subscriptions: &[Subscription],
) {
    let longest = subscriptions
        .iter()
        .map(|s| s.spec.health_policy.window.as_duration())
        .max()
        .unwrap_or(MAX_HEALTH_WINDOW);
    let Ok(before) = clock.now().checked_sub(longest + PRUNE_MARGIN) else {
        return;
    };
    loop {
        match store.prune_attempt_counts(before, PRUNE_BATCH).await {
            Ok(deleted) if deleted >= u64::from(PRUNE_BATCH) => tokio::task::yield_now().await,
            Ok(_) => break,
            Err(err) => {
                writes.report(&err, "cannot prune attempt counts");
                break;
            }
        }
    }
}

//! What both front ends do, the API and the console alike: each turns the
//! answer into its own form (JSON, a page or a redirect).

use jiff::Timestamp;

use crate::clock::Clock;
use redrive_core::hold::PushesHeld;
use redrive_core::{Health, Subscription};
use redrive_store::{HealthChange, RedriveBatchRequest, RedriveFilter, Store, StoreError};

use crate::jobs::{Job, JobState, Jobs};
use crate::state::AppState;

/// Deliveries moved per write while redriving.
const REDRIVE_BATCH: u32 = 500;

/// How often `enable` retries when the evaluator changes the health between
/// its read and its write.
const ENABLE_TRIES: usize = 5;

/// What holds `subscription`'s pushes back at `now`, as this node sees it.
pub fn pushes_held(
    state: &AppState,
    subscription: &Subscription,
    now: Timestamp,
) -> Option<PushesHeld> {
    let pause = state.push_holds.pause(&subscription.spec.name, now);
    redrive_core::hold::pushes_held(subscription, pause, now)
}

/// Pauses or resumes pushes (the API and the console both do it).
pub async fn set_paused_by_hand(
    state: &AppState,
    name: &str,
    paused: bool,
) -> Result<Subscription, StoreError> {
    let subscription = state.store.set_paused(name, paused).await?;
    tracing::info!(subscription = %name, paused, "pushes paused or resumed by hand");
    state.announce_subscription_change();
    Ok(subscription)
}

/// Makes a disabled or unstable subscription healthy so its backlog flows.
pub async fn enable_by_hand(state: &AppState, name: &str) -> Result<Subscription, StoreError> {
    for _ in 0..ENABLE_TRIES {
        let current = state.store.get_subscription(name).await?;
        if current.status.health == Health::Healthy {
            return Ok(current);
        }
        let change = HealthChange {
            subscription: name.to_owned(),
            from: current.status.health,
            to: Health::Healthy,
            reason: "enabled by hand".into(),
            now: state.clock.now(),
        };
        if let Some(enabled) = state.store.change_health(change).await? {
            tracing::info!(subscription = %name, from = current.status.health.as_str(),
                "subscription enabled by hand");
            state.announce_subscription_change();
            return Ok(enabled);
        }
    }
    Err(StoreError::Conflict(format!(
        "the health of subscription {name:?} keeps changing; try again"
    )))
}

/// How a redrive went.
pub enum Redriven {
    /// Few enough to move before the answer: all `moved` of `total` are
    /// scheduled again.
    Moved { total: u64, moved: u64 },
    /// Too many: `job` moves the `total` deliveries in the background.
    InBackground { total: u64, job: Job },
}

/// Puts the deliveries `filter` matches back to `scheduled`, due now:
/// small sets before returning, large ones as a background job.
pub async fn redrive(
    state: &AppState,
    name: &str,
    filter: RedriveFilter,
) -> Result<Redriven, StoreError> {
    let total = state.store.count_redrivable(filter.clone()).await?;
    if total <= state.limits.redrive_inline_limit {
        let moved = redrive_all(&*state.store, &state.clock, filter, |_| {}).await?;
        return Ok(Redriven::Moved { total, moved });
    }
    let job = state.jobs.start("redrive", name, total, state.clock.now());
    tokio::spawn(run_redrive_job(
        state.store.clone(),
        state.jobs.clone(),
        state.clock.clone(),
        job.id.clone(),
        filter,
    ));
    Ok(Redriven::InBackground { total, job })
}

/// Moves every matching delivery, batch by batch; `progress` learns the
/// running count after each batch.
pub async fn redrive_all(
    store: &dyn Store,
    clock: &Clock,
    filter: RedriveFilter,
    mut progress: impl FnMut(u64),
) -> Result<u64, StoreError> {
    let mut moved = 0;
    let mut after = None;
    loop {
        let batch = store
            .redrive_batch(RedriveBatchRequest {
                filter: filter.clone(),
                after: after.take(),
                limit: REDRIVE_BATCH,
                now: clock.now(),
            })
            .await?;
        moved += batch.moved;
        progress(moved);
        match batch.last_id {
            Some(last) if batch.moved >= u64::from(REDRIVE_BATCH) => after = Some(last),
            _ => return Ok(moved),
        }
    }
}

async fn run_redrive_job(
    store: std::sync::Arc<dyn Store>,
    jobs: Jobs,
    clock: Clock,
    id: String,
    filter: RedriveFilter,
) {
    let outcome = redrive_all(&*store, &clock, filter, |done| {
        jobs.update(&id, |job| job.done = done);
    })
    .await;
    jobs.update(&id, |job| {
        job.finished_at = Some(clock.now());
        match outcome {
            Ok(moved) => {
                job.done = moved;
                job.state = JobState::Succeeded;
            }
            Err(err) => {
                tracing::error!(job = %job.id, error = %err, "redrive job failed");
                job.error = Some(err.to_string());
                job.state = JobState::Failed;
            }
        }
    });
}

//! Prometheus metrics: the names, their descriptions and buckets, and the
//! small helpers the API and the dispatcher record through. Labels are
//! bounded: topic and subscription names (created by operators), states,
//! reasons and outcome classes; never event ids, delivery ids or URLs.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use metrics::{
    Counter, Histogram, counter, describe_counter, describe_gauge, describe_histogram, gauge,
    histogram,
};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;
use redrive_core::{Attempt, Decision, Subscription};
use redrive_store::{PublishOutcome, QueueStats};

pub const EVENTS_PUBLISHED: &str = "redrive_events_published_total";
pub const DELIVERIES_FINISHED: &str = "redrive_deliveries_finished_total";
pub const ATTEMPTS: &str = "redrive_attempts_total";
pub const ATTEMPTS_STARTED: &str = "redrive_attempts_started_total";
pub const ATTEMPT_DURATION: &str = "redrive_attempt_duration_seconds";
pub const RETRIES_SCHEDULED_TOTAL: &str = "redrive_retries_scheduled_total";
pub const DELIVERIES_DUE: &str = "redrive_deliveries_due";
pub const OLDEST_DUE_AGE: &str = "redrive_oldest_due_age_seconds";
pub const RETRIES_SCHEDULED: &str = "redrive_retries_scheduled";
pub const SUBSCRIPTION_HEALTH: &str = "redrive_subscription_health";
pub const SUBSCRIPTION_PAUSED: &str = "redrive_subscription_paused";
pub const DELIVERIES_IN_FLIGHT: &str = "redrive_deliveries_in_flight";
pub const PUSHES_IN_FLIGHT: &str = "redrive_pushes_in_flight";
pub const STORE_COMMIT: &str = "redrive_store_commit_seconds";
pub const STORE_COMMIT_BATCH: &str = "redrive_store_commit_batch_size";
pub const UP: &str = "redrive_up";

const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
const COMMIT_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// Gauges of deleted subscriptions stop being refreshed by scrapes and
/// disappear after this long.
const GAUGE_IDLE: Duration = Duration::from_secs(600);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide recorder, installed on first use. Metrics are global
/// to the process (as Prometheus sees one process as one target).
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        // Fails only on an empty bucket list; summaries are the fallback.
        let builder = with_buckets()
            .unwrap_or_else(|err| {
                tracing::warn!(error = %err, "cannot set histogram buckets");
                PrometheusBuilder::new()
            })
            .idle_timeout(MetricKindMask::GAUGE, Some(GAUGE_IDLE));
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if let Err(err) = metrics::set_global_recorder(recorder) {
            // Only when an embedding program installed its own recorder.
            tracing::warn!(error = %err, "another metrics recorder is installed; /metrics stays empty");
        }
        describe();
        handle
    })
}

fn with_buckets() -> Result<PrometheusBuilder, BuildError> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(ATTEMPT_DURATION.into()), LATENCY_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(STORE_COMMIT.into()), COMMIT_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(STORE_COMMIT_BATCH.into()), BATCH_BUCKETS)
}

fn describe() {
    describe_counter!(
        EVENTS_PUBLISHED,
        "Events accepted by publish, by topic and whether they were duplicates."
    );
    describe_counter!(
        DELIVERIES_FINISHED,
        "Deliveries that reached a final state, by state and failure reason."
    );
    describe_counter!(ATTEMPTS, "Push attempts by subscription and outcome class.");
    describe_counter!(
        ATTEMPTS_STARTED,
        "Attempts this process started, by subscription and how it took their delivery: \
         `claim` from the due queue, or `publish` straight into flight by its own publish."
    );
    describe_histogram!(
        ATTEMPT_DURATION,
        metrics::Unit::Seconds,
        "How long push attempts took, by subscription."
    );
    describe_counter!(
        RETRIES_SCHEDULED_TOTAL,
        "Attempts that ended with a retry scheduled, by subscription."
    );
    describe_gauge!(
        DELIVERIES_DUE,
        "Scheduled deliveries due now and not yet claimed, by subscription."
    );
    describe_gauge!(
        OLDEST_DUE_AGE,
        metrics::Unit::Seconds,
        "How long the longest-waiting due delivery has been due, by subscription."
    );
    describe_gauge!(
        RETRIES_SCHEDULED,
        "Scheduled deliveries that already had an attempt, by subscription."
    );
    describe_gauge!(
        DELIVERIES_IN_FLIGHT,
        "Deliveries claimed and being pushed, by subscription (all processes)."
    );
    describe_gauge!(PUSHES_IN_FLIGHT, "Pushes this process has under way.");
    describe_gauge!(
        SUBSCRIPTION_HEALTH,
        "Endpoint health by subscription: 0 healthy, 1 unstable, 2 disabled."
    );
    describe_gauge!(
        SUBSCRIPTION_PAUSED,
        "1 while a subscription's pushes are paused by hand, else 0."
    );
    describe_histogram!(
        STORE_COMMIT,
        metrics::Unit::Seconds,
        "Duration of each group commit of the embedded store."
    );
    describe_histogram!(
        STORE_COMMIT_BATCH,
        "Writes folded into each group commit of the embedded store."
    );
    describe_gauge!(UP, "1 while the process serves.");
}

/// Counts attempts started, per subscription, on deliveries taken by a
/// claim of the due queue or (`at_publish`) by their own publish.
pub fn attempts_started(at_publish: bool, per_subscription: &HashMap<&str, u32>) {
    let how = if at_publish { "publish" } else { "claim" };
    for (subscription, count) in per_subscription {
        counter!(ATTEMPTS_STARTED, "subscription" => (*subscription).to_owned(), "how" => how)
            .increment(u64::from(*count));
    }
}

/// Counts a publish's events.
pub fn published(topic: &str, outcomes: &[PublishOutcome]) {
    let duplicates = outcomes.iter().filter(|o| o.duplicate).count() as u64;
    let fresh = outcomes.len() as u64 - duplicates;
    if fresh > 0 {
        counter!(EVENTS_PUBLISHED, "topic" => topic.to_owned(), "duplicate" => "false")
            .increment(fresh);
    }
    if duplicates > 0 {
        counter!(EVENTS_PUBLISHED, "topic" => topic.to_owned(), "duplicate" => "true")
            .increment(duplicates);
    }
}

/// The outcome class of an attempt: `2xx`, `3xx`, `4xx`, `5xx`, `1xx`, or
/// the transport error class (`timeout`, `connect`, `dns`, `tls`, …).
pub fn outcome_class(attempt: &Attempt) -> &'static str {
    match (attempt.status, attempt.error) {
        (Some(status), _) => match status / 100 {
            1 => "1xx",
            2 => "2xx",
            3 => "3xx",
            4 => "4xx",
            _ => "5xx",
        },
        (None, Some(class)) => class.as_str(),
        (None, None) => "other",
    }
}

/// Counts one recorded attempt and what it decided.
pub fn attempt_recorded(metrics: &PushMetrics, attempt: &Attempt) {
    metrics.outcome(outcome_class(attempt)).increment(1);
    metrics.duration.record(attempt.duration_ms as f64 / 1000.0);
    match attempt.decision {
        Decision::Delivered => metrics.delivered.increment(1),
        Decision::Failed { reason } => delivery_finished("failed", reason.as_str(), 1),
        Decision::Retry { .. } => metrics.retries.increment(1),
    }
}

/// A subscription's push metrics, registered once per load of the
/// subscriptions: a push records through these handles rather than
/// building its labels and looking them up each time.
pub struct PushMetrics {
    subscription: String,
    duration: Histogram,
    retries: Counter,
    /// Deliveries that ended delivered (of every subscription: the metric
    /// has no subscription label).
    delivered: Counter,
    /// Attempts by outcome class, each registered at its first attempt.
    outcomes: Mutex<Vec<(&'static str, Counter)>>,
}

impl PushMetrics {
    pub fn new(subscription: &str) -> PushMetrics {
        // Handles taken before the recorder is installed would record
        // nowhere.
        handle();
        PushMetrics {
            subscription: subscription.to_owned(),
            duration: histogram!(ATTEMPT_DURATION, "subscription" => subscription.to_owned()),
            retries: counter!(RETRIES_SCHEDULED_TOTAL, "subscription" => subscription.to_owned()),
            delivered: counter!(DELIVERIES_FINISHED, "state" => "delivered", "reason" => "none"),
            outcomes: Mutex::default(),
        }
    }

    fn outcome(&self, class: &'static str) -> Counter {
        let mut known = self.outcomes.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, counter)) = known.iter().find(|(known, _)| *known == class) {
            return counter.clone();
        }
        let counter =
            counter!(ATTEMPTS, "subscription" => self.subscription.clone(), "outcome" => class);
        known.push((class, counter.clone()));
        counter
    }
}

/// Counts deliveries that ended, wherever they ended (a push, retention
/// expiry, a cancel).
pub fn delivery_finished(state: &'static str, reason: &'static str, count: u64) {
    counter!(DELIVERIES_FINISHED, "state" => state, "reason" => reason).increment(count);
}

/// Refreshes the per-subscription gauges; every subscription gets a
/// value, zero when it has no backlog.
pub fn set_subscription_gauges(
    stats: &[QueueStats],
    subscriptions: &[Subscription],
    now: jiff::Timestamp,
) {
    for subscription in subscriptions {
        let name = &subscription.spec.name;
        let found = stats.iter().find(|s| &s.subscription == name);
        gauge!(DELIVERIES_DUE, "subscription" => name.clone())
            .set(found.map_or(0, |s| s.due) as f64);
        let age = found
            .and_then(|s| s.oldest_due_at)
            .map(|due| now.duration_since(due).as_secs_f64().max(0.0))
            .unwrap_or(0.0);
        gauge!(OLDEST_DUE_AGE, "subscription" => name.clone()).set(age);
        gauge!(RETRIES_SCHEDULED, "subscription" => name.clone())
            .set(found.map_or(0, |s| s.retries_scheduled) as f64);
        gauge!(DELIVERIES_IN_FLIGHT, "subscription" => name.clone())
            .set(found.map_or(0, |s| s.in_flight) as f64);
        let health = match subscription.status.health {
            redrive_core::Health::Healthy => 0.0,
            redrive_core::Health::Unstable => 1.0,
            redrive_core::Health::Disabled => 2.0,
        };
        gauge!(SUBSCRIPTION_HEALTH, "subscription" => name.clone()).set(health);
        gauge!(SUBSCRIPTION_PAUSED, "subscription" => name.clone())
            .set(if subscription.status.paused { 1.0 } else { 0.0 });
    }
}

pub fn set_pushes_in_flight(count: usize) {
    gauge!(PUSHES_IN_FLIGHT).set(count as f64);
}

/// The scrape body.
pub fn render() -> String {
    let handle = handle();
    gauge!(UP).set(1.0);
    handle.run_upkeep();
    handle.render()
}

//! The retried subscription and its two waves of pushes: the first
//! attempts, which fail, and the retries, which fall due an interval later.

use std::time::{Duration, Instant};

use anyhow::Context;
use redrive_core::HumanDuration;
use redrive_core::rate::MAX_BUCKET_SIZE;
use serde_json::json;
use std::sync::atomic::Ordering;

use super::super::delivery::generator::{self, Generator, PublisherLog};
use super::super::delivery::process_stats::{self, ProcessSample};
use super::super::delivery::progress;
use super::super::delivery::server::ServerUnderTest;
use super::super::delivery::setup::BenchTopic;
use super::options::Settings;
use super::sink::RetrySink;

/// How often the long phases say where they are.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// And while nothing happens but waiting for the first retry.
const WAITING_PROGRESS_EVERY: Duration = Duration::from_secs(20);
/// How long before the first retry is due the server's CPU is read (the
/// end of its idle time with every retry waiting, the start of the wave).
const BEFORE_FIRST_DUE: Duration = Duration::from_millis(100);

/// Creates the retried subscription, paused: the events are all stored
/// before the first attempt, so the first attempts, and after them the
/// retries, go at one pace throughout. With a due rate the subscription
/// has that rate until [`unpace`] removes it.
pub async fn create_retried(
    settings: &Settings,
    server: &ServerUnderTest,
    run_id: &str,
    endpoint: &str,
) -> anyhow::Result<BenchTopic> {
    let base = server.bases.first().context("the bench has no server")?;
    let mut subscription = json!({
        "endpoint": endpoint,
        "max_concurrency": settings.endpoint_concurrency,
        "retry_policy": {
            "backoff": {
                "kind": "fixed",
                "interval": HumanDuration(settings.retry_interval).to_string(),
            },
        },
    });
    if let Some(rate) = settings.due_rate {
        subscription["rate"] = json!(format!("{rate}/s"));
        // A twentieth of a second's worth: the pace holds over any second
        // (within 5 %), and the limiter reaches its rate (with a hundredth
        // it fell 7 % short).
        subscription["bucket_size"] = json!((rate / 20).clamp(1, MAX_BUCKET_SIZE));
    }
    let retried = BenchTopic::create_with(
        base,
        server.token.as_deref(),
        &format!("bench-{run_id}-retries"),
        subscription,
    )
    .await?;
    retried
        .subscription_call(reqwest::Method::POST, "/pause", None)
        .await
        .context("cannot pause the retried subscription")?;
    Ok(retried)
}

/// Removes the rate the first attempts were paced with: the retries are
/// not paced.
pub async fn unpace(settings: &Settings, retried: &BenchTopic) -> anyhow::Result<()> {
    if settings.due_rate.is_none() {
        return Ok(());
    }
    retried
        .subscription_call(
            reqwest::Method::PATCH,
            "",
            Some(json!({"rate": null, "bucket_size": null})),
        )
        .await
        .context("cannot remove the retried subscription's rate")
}

/// What publishing the events that wait left.
pub struct Loaded {
    pub logs: Vec<PublisherLog>,
    /// The timeout came before every first attempt had failed.
    pub timed_out: bool,
    /// When the bench stopped waiting for first attempts, since the
    /// endpoint's base.
    pub all_failed: Duration,
}

/// Publishes the events to the paused subscription, resumes it, and waits
/// until the endpoint has answered every accepted event's first attempt
/// (or the timeout).
pub async fn load(
    settings: &Settings,
    server: &ServerUnderTest,
    retried: &BenchTopic,
    run_id: &str,
    sink: &RetrySink,
) -> anyhow::Result<Loaded> {
    let load = settings.load();
    let base = server.bases.first().context("the bench has no server")?;
    let client = generator::client(&load, server.token.as_deref())?;
    let url = format!("{base}/v1/topics/{}/events", retried.topic);
    progress(format_args!(
        "bench: publishing {} events in batches of {} to a paused subscription retrying after {}",
        load.events,
        load.batch,
        HumanDuration(settings.retry_interval)
    ));
    let mut generator = Generator::start(&load, client, vec![url], run_id);
    let start = generator.started();
    let deadline = generator.deadline();
    let mut publishing_done = false;
    let mut last_report = Instant::now();
    let timed_out = loop {
        let done = generator.poll_done()?;
        let now = Instant::now();
        let accepted = generator.accepted_events();
        let failed = sink.failed_count.load(Ordering::Relaxed);
        if done && !publishing_done {
            publishing_done = true;
            progress(format_args!(
                "bench: published {accepted} events in {:.1}s; resuming the subscription{}",
                now.duration_since(start).as_secs_f64(),
                match settings.due_rate {
                    Some(rate) => format!(" at {rate} pushes/s"),
                    None => String::new(),
                }
            ));
            resume(retried).await?;
        }
        if publishing_done && failed >= accepted {
            break false;
        }
        if now >= deadline {
            break true;
        }
        if now.duration_since(last_report) >= PROGRESS_EVERY {
            last_report = now;
            progress(format_args!(
                "bench: {:>6.1}s  published {accepted}/{}  first attempts failed {failed}",
                now.duration_since(start).as_secs_f64(),
                load.events
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let all_failed = sink.base().elapsed();
    // Given up while publishing: what was stored is still pushed, so the
    // report has retries to show.
    if !publishing_done && let Err(err) = resume(retried).await {
        progress(format_args!("bench: {err:#}"));
    }
    let logs = if timed_out {
        progress(format_args!(
            "bench: gave up after {} waiting for the first attempts; reporting what arrived",
            HumanDuration(settings.timeout)
        ));
        generator.abort().await
    } else {
        progress(format_args!(
            "bench: every first attempt failed {:.1}s after the first publish",
            start.elapsed().as_secs_f64()
        ));
        generator.join().await?
    };
    Ok(Loaded {
        logs,
        timed_out,
        all_failed,
    })
}

async fn resume(retried: &BenchTopic) -> anyhow::Result<()> {
    retried
        .subscription_call(reqwest::Method::POST, "/resume", None)
        .await
        .context("cannot resume the retried subscription")
}

/// What waiting for the retries saw besides the endpoint's record.
pub struct RetriesWaited {
    pub timed_out: bool,
    /// The server and this process just before the first retry was due
    /// (at once if it already was).
    pub server_at_first_due: anyhow::Result<ProcessSample>,
    pub bench_at_first_due: anyhow::Result<ProcessSample>,
    /// From the call to that sample: the server idle with every retry
    /// waiting.
    pub idle: Duration,
}

/// Waits until every event whose first attempt failed has been retried,
/// or the timeout past the last one's due time.
pub async fn wait_for_retries(
    settings: &Settings,
    server: &ServerUnderTest,
    sink: &RetrySink,
) -> RetriesWaited {
    let called = Instant::now();
    let (first_failed, last_failed) = sink
        .record()
        .iter()
        .filter_map(|times| times.failed)
        .fold(None, |span: Option<(Duration, Duration)>, at| {
            Some(span.map_or((at, at), |(low, high)| (low.min(at), high.max(at))))
        })
        .unwrap_or_default();
    let base = sink.base();
    let first_due = base + first_failed + settings.retry_interval;
    let last_due = base + last_failed + settings.retry_interval;
    let deadline = last_due + settings.timeout;
    let expected = sink.failed_count.load(Ordering::Relaxed);
    progress(format_args!(
        "bench: the first retries fall due in {:.1}s, the last in {:.1}s",
        first_due.saturating_duration_since(called).as_secs_f64(),
        last_due.saturating_duration_since(called).as_secs_f64()
    ));
    let mut at_first_due = None;
    let mut last_report = Instant::now();
    let mut last_count = sink.retried_count.load(Ordering::Relaxed);
    let timed_out = loop {
        let now = Instant::now();
        if at_first_due.is_none() && now + BEFORE_FIRST_DUE >= first_due {
            at_first_due = Some((
                server_sample(server),
                process_stats::sample_self(),
                now.duration_since(called),
            ));
        }
        let retried = sink.retried_count.load(Ordering::Relaxed);
        if retried >= expected {
            break false;
        }
        if now >= deadline {
            progress(format_args!(
                "bench: gave up {} after the last retry was due; reporting what arrived",
                HumanDuration(settings.timeout)
            ));
            break true;
        }
        let since = now.duration_since(last_report);
        if now < first_due {
            if since >= WAITING_PROGRESS_EVERY {
                progress(format_args!(
                    "bench: the first retries fall due in {:.0}s",
                    (first_due - now).as_secs_f64()
                ));
                last_report = now;
            }
        } else if since >= PROGRESS_EVERY {
            progress(format_args!(
                "bench: retries arrived {retried}/{expected} ({:.0}/s), {} more than 1 s late, \
                 at most {:.1} ms after due",
                retried.saturating_sub(last_count) as f64 / since.as_secs_f64(),
                sink.late_count.load(Ordering::Relaxed),
                sink.max_lateness_us.load(Ordering::Relaxed) as f64 / 1e3
            ));
            last_report = now;
            last_count = retried;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (server_at_first_due, bench_at_first_due, idle) = at_first_due.unwrap_or_else(|| {
        (
            server_sample(server),
            process_stats::sample_self(),
            Duration::ZERO,
        )
    });
    RetriesWaited {
        timed_out,
        server_at_first_due,
        bench_at_first_due,
        idle,
    }
}

/// The server's one node, sampled.
pub fn server_sample(server: &ServerUnderTest) -> anyhow::Result<ProcessSample> {
    server
        .sample()?
        .into_iter()
        .next()
        .context("the bench has no server")
}

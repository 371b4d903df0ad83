//! The publish probe: single events to a topic of their own whose
//! subscription pushes to a receiver answering 200 — the delivery bench's
//! server phase — run a few times in a row, so one slow moment of a shared
//! machine does not decide the comparison.

use std::sync::Arc;

use anyhow::Context;

use super::super::delivery::results::ServerResults;
use super::super::delivery::server::ServerUnderTest;
use super::super::delivery::setup::BenchTopic;
use super::super::delivery::sink::{Sink, SinkServer};
use super::super::delivery::{progress, publish_and_wait};
use super::options::Settings;

/// `--probe-runs` probes in a row, each on a topic and receiver of its own
/// (the events' ids repeat from one to the next), named after `key`;
/// `what` says when they run.
pub async fn probes(
    settings: &Settings,
    server: &ServerUnderTest,
    run_id: &str,
    key: &str,
    what: &str,
) -> anyhow::Result<Vec<ServerResults>> {
    let mut results = Vec::with_capacity(settings.probe_runs);
    for index in 0..settings.probe_runs {
        progress(format_args!(
            "bench: publish probe {what}, {}/{} ({} single events)",
            index + 1,
            settings.probe_runs,
            settings.probe_events
        ));
        let name = format!("{run_id}-{key}-{index}");
        results.push(probe(settings, server, &name, run_id).await?);
    }
    Ok(results)
}

/// One probe, until every event is delivered (or the timeout).
pub async fn probe(
    settings: &Settings,
    server: &ServerUnderTest,
    name: &str,
    run_id: &str,
) -> anyhow::Result<ServerResults> {
    let base = server.bases.first().context("the bench has no server")?;
    let sink = Arc::new(Sink::new(settings.probe_events));
    let sink_server = SinkServer::start(sink.clone()).await?;
    let measured = async {
        let topic = BenchTopic::create(
            base,
            server.token.as_deref(),
            name,
            sink_server.address,
            settings.endpoint_concurrency,
        )
        .await?;
        let measured =
            publish_and_wait(&settings.probe(), server, &topic.topic, run_id, &sink).await;
        if settings.database_url.is_some() {
            topic.remove().await;
        }
        measured
    }
    .await;
    sink_server.stop().await;
    measured
}

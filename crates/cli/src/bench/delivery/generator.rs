//! The load generator: concurrent publishers, each with one request open at
//! a time, optionally paced, posting CloudEvents (single or batches). The
//! raw phase and the server phase use it alike; only the URLs differ.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::task::JoinSet;

use super::Settings;

/// What one publisher saw.
#[derive(Default)]
pub struct PublisherLog {
    /// (first event index, events in the request, when the request started
    /// or, paced, was due if that is earlier).
    pub accepted: Vec<(usize, usize, Instant)>,
    /// Latency of every request that was answered, accepted or not.
    pub latencies: Vec<Duration>,
    pub first_start: Option<Instant>,
    pub last_answer: Option<Instant>,
    pub requests: usize,
    pub failed_requests: usize,
    pub failed_events: usize,
    pub first_error: Option<String>,
}

/// What publishers share.
struct Plan {
    client: reqwest::Client,
    /// Requests go to them in turn (one per node).
    urls: Vec<String>,
    content_type: &'static str,
    run_id: String,
    events: usize,
    batch: usize,
    rate: Option<f64>,
    padding: String,
    start: Instant,
    deadline: Instant,
    next_request: AtomicUsize,
    accepted_events: AtomicUsize,
}

/// Publishers at work; [`Generator::finish`] collects their logs.
pub struct Generator {
    plan: Arc<Plan>,
    publishers: JoinSet<PublisherLog>,
    logs: Vec<PublisherLog>,
}

/// The HTTP client the publishers share: one connection per publisher,
/// kept open, the bench's token on every request.
pub fn client(settings: &Settings, token: Option<&str>) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .default_headers(super::setup::auth_headers(token)?)
        .tcp_nodelay(true)
        .pool_max_idle_per_host(settings.publishers)
        .pool_idle_timeout(Duration::from_secs(60))
        .build()
        .context("cannot build the publishing HTTP client")
}

impl Generator {
    /// Starts `settings.publishers` publishers posting `settings.events`
    /// events to `urls`; they stop at the deadline (the timeout from now).
    pub fn start(
        settings: &Settings,
        client: reqwest::Client,
        urls: Vec<String>,
        run_id: &str,
    ) -> Generator {
        let start = Instant::now();
        let plan = Arc::new(Plan {
            client,
            urls,
            content_type: if settings.batch > 1 {
                "application/cloudevents-batch+json"
            } else {
                "application/cloudevents+json"
            },
            run_id: run_id.to_owned(),
            events: settings.events,
            batch: settings.batch,
            rate: settings.rate,
            padding: "x".repeat(settings.payload_bytes),
            start,
            deadline: start + settings.timeout,
            next_request: AtomicUsize::new(0),
            accepted_events: AtomicUsize::new(0),
        });
        let mut publishers = JoinSet::new();
        for _ in 0..settings.publishers {
            publishers.spawn(publisher(plan.clone()));
        }
        Generator {
            plan,
            publishers,
            logs: Vec::with_capacity(settings.publishers),
        }
    }

    pub fn started(&self) -> Instant {
        self.plan.start
    }

    pub fn deadline(&self) -> Instant {
        self.plan.deadline
    }

    /// Events accepted (answered 2xx) so far.
    pub fn accepted_events(&self) -> usize {
        self.plan.accepted_events.load(Ordering::Relaxed)
    }

    /// Collects the publishers that have finished; true once all have.
    pub fn poll_done(&mut self) -> anyhow::Result<bool> {
        while let Some(joined) = self.publishers.try_join_next() {
            self.logs.push(joined.context("a publisher panicked")?);
        }
        Ok(self.publishers.is_empty())
    }

    /// Waits for every publisher (they stop by the deadline at the latest).
    pub async fn join(mut self) -> anyhow::Result<Vec<PublisherLog>> {
        while let Some(joined) = self.publishers.join_next().await {
            self.logs.push(joined.context("a publisher panicked")?);
        }
        Ok(self.logs)
    }

    /// Stops the publishers still running and returns what all of them logged.
    pub async fn abort(mut self) -> Vec<PublisherLog> {
        self.publishers.abort_all();
        while let Some(joined) = self.publishers.join_next().await {
            if let Ok(log) = joined {
                self.logs.push(log);
            }
        }
        self.logs
    }
}

/// Claims the next request until none is left, paced to `rate` if set.
/// It returns rather than fails: errors are counted in its log.
async fn publisher(plan: Arc<Plan>) -> PublisherLog {
    let mut log = PublisherLog::default();
    loop {
        let request = plan.next_request.fetch_add(1, Ordering::Relaxed);
        let first = request.saturating_mul(plan.batch);
        if first >= plan.events {
            break;
        }
        let count = plan.batch.min(plan.events - first);
        let due = plan
            .rate
            .map(|rate| plan.start + Duration::from_secs_f64(first as f64 / rate));
        if let Some(due) = due {
            tokio::time::sleep_until(due.into()).await;
        }
        if Instant::now() >= plan.deadline {
            break;
        }
        let body = plan.body(first, count);
        let started = Instant::now();
        // Paced, an event's latency counts from when it was due: a server
        // too slow for the pace holds the publishers back, and that wait is
        // part of what a producer at this rate would see.
        let since = due.map_or(started, |due| due.min(started));
        log.first_start.get_or_insert(started);
        log.requests += 1;
        let sent = plan
            .client
            .post(&plan.urls[request % plan.urls.len()])
            .header(reqwest::header::CONTENT_TYPE, plan.content_type)
            .body(body)
            .send()
            .await;
        let answer = match sent {
            Ok(response) => {
                let status = response.status();
                let text = response.text().await;
                text.map(|text| (status, text))
            }
            Err(err) => Err(err),
        };
        let answered = Instant::now();
        match answer {
            Ok((status, _)) if status.is_success() => {
                log.latencies.push(answered.duration_since(started));
                log.last_answer = Some(answered);
                log.accepted.push((first, count, since));
                plan.accepted_events.fetch_add(count, Ordering::Relaxed);
            }
            Ok((status, text)) => {
                log.latencies.push(answered.duration_since(started));
                log.failed_requests += 1;
                log.failed_events += count;
                log.first_error
                    .get_or_insert_with(|| format!("{status}: {}", text.trim()));
            }
            Err(err) => {
                log.failed_requests += 1;
                log.failed_events += count;
                log.first_error.get_or_insert_with(|| format!("{err:#}"));
            }
        }
    }
    log
}

impl Plan {
    fn body(&self, first: usize, count: usize) -> String {
        body(&self.run_id, &self.padding, self.batch > 1, first, count)
    }
}

/// Events `first..first + count` as a structured CloudEvent, or a batch.
fn body(run_id: &str, padding: &str, batch: bool, first: usize, count: usize) -> String {
    let mut body = String::with_capacity(count * (160 + padding.len()) + 2);
    if batch {
        body.push('[');
    }
    for index in first..first + count {
        if index > first {
            body.push(',');
        }
        // Writing to a String cannot fail.
        let _ = write!(
            body,
            r#"{{"specversion":"1.0","id":"{index}","source":"/redrive/bench/{run_id}","type":"redrive.bench","datacontenttype":"application/json","data":{{"n":{index},"pad":"{padding}"}}}}"#,
        );
    }
    if batch {
        body.push(']');
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_single_events_or_batches() {
        let single: serde_json::Value =
            serde_json::from_str(&body("r", "xx", false, 7, 1)).unwrap();
        assert_eq!(single["id"], "7");
        assert_eq!(single["source"], "/redrive/bench/r");
        assert_eq!(single["data"]["pad"], "xx");
        let batch: serde_json::Value = serde_json::from_str(&body("r", "", true, 10, 3)).unwrap();
        let ids: Vec<&str> = batch
            .as_array()
            .unwrap()
            .iter()
            .map(|event| event["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["10", "11", "12"]);
    }
}

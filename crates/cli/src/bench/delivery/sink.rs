//! The receiver on 127.0.0.1: it answers every request with 200 at once.
//! Pushes from the server are noted by `ce-id` (when each event first
//! arrived); the raw phase's requests, sent to `/raw` by the same generator
//! with no server in between, are only counted.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use tokio::sync::oneshot;

use super::progress;

/// Where the raw phase posts.
pub const RAW_PATH: &str = "/raw";

/// What the sink saw: for each event (by index, its `ce-id`) the arrival
/// of its first push, and counts of every push.
pub struct Sink {
    first: Mutex<Vec<Option<Instant>>>,
    /// Events seen at least once.
    pub unique: AtomicUsize,
    /// Pushes received, duplicates included.
    pub total: AtomicU64,
    /// Pushes whose `ce-id` is not one of this run's events.
    pub foreign: AtomicU64,
    /// Requests of the raw phase.
    pub raw: AtomicU64,
}

impl Sink {
    pub fn new(events: usize) -> Sink {
        Sink {
            first: Mutex::new(vec![None; events]),
            unique: AtomicUsize::new(0),
            total: AtomicU64::new(0),
            foreign: AtomicU64::new(0),
            raw: AtomicU64::new(0),
        }
    }

    pub fn record(&self, ce_id: Option<&str>, at: Instant) {
        self.total.fetch_add(1, Ordering::Relaxed);
        let index = ce_id.and_then(|id| id.parse::<usize>().ok());
        let Ok(mut first) = self.first.lock() else {
            return;
        };
        match index.and_then(|i| first.get_mut(i)) {
            Some(slot @ None) => {
                *slot = Some(at);
                self.unique.fetch_add(1, Ordering::Relaxed);
            }
            Some(Some(_)) => {}
            None => {
                self.foreign.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The first arrival of each event so far.
    pub fn first_arrivals(&self) -> anyhow::Result<Vec<Option<Instant>>> {
        match self.first.lock() {
            Ok(first) => Ok(first.clone()),
            Err(_) => anyhow::bail!("the sink's record is unreadable (a sink task panicked)"),
        }
    }
}

/// A running sink; stopped by [`SinkServer::stop`] (or, if dropped, when
/// its stop sender goes).
pub struct SinkServer {
    pub address: SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl SinkServer {
    pub async fn start(sink: Arc<Sink>) -> anyhow::Result<SinkServer> {
        let app = Router::new()
            .route(RAW_PATH, axum::routing::post(receive_raw))
            .fallback(receive)
            .with_state(sink);
        SinkServer::serve(app).await
    }

    /// Serves `app` on a free port of 127.0.0.1 (the retries bench's
    /// endpoint is another app).
    pub async fn serve(app: Router) -> anyhow::Result<SinkServer> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("cannot start the sink on 127.0.0.1")?;
        let address = listener
            .local_addr()
            .context("cannot read the sink's address")?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
            if let Err(err) = served {
                progress(format_args!("bench: the sink failed: {err}"));
            }
        });
        Ok(SinkServer {
            address,
            stop,
            task,
        })
    }

    pub async fn stop(self) {
        let _ = self.stop.send(());
        if tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .is_err()
        {
            progress(format_args!("bench: the sink did not stop within 5s"));
        }
    }
}

/// Answers 200 at once. The body is read (so the connection stays reusable)
/// and dropped.
async fn receive(State(sink): State<Arc<Sink>>, headers: HeaderMap, _body: Bytes) -> StatusCode {
    let at = Instant::now();
    let ce_id = headers.get("ce-id").and_then(|value| value.to_str().ok());
    sink.record(ce_id, at);
    StatusCode::OK
}

/// The raw phase's requests: read, counted, answered like a push.
async fn receive_raw(State(sink): State<Arc<Sink>>, _body: Bytes) -> StatusCode {
    sink.raw.fetch_add(1, Ordering::Relaxed);
    StatusCode::OK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sink_counts_first_arrivals_and_duplicates() {
        let sink = Sink::new(3);
        let now = Instant::now();
        sink.record(Some("1"), now);
        sink.record(Some("1"), now + Duration::from_millis(5));
        sink.record(Some("7"), now);
        sink.record(None, now);
        assert_eq!(sink.unique.load(Ordering::Relaxed), 1);
        assert_eq!(sink.total.load(Ordering::Relaxed), 4);
        assert_eq!(sink.foreign.load(Ordering::Relaxed), 2);
        let first = sink.first_arrivals().unwrap();
        assert_eq!(first[1], Some(now));
    }
}

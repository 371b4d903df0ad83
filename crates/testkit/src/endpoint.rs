//! A real webhook endpoint for tests: an HTTP server on 127.0.0.1 that
//! records every request it receives, answers as the test scripts it, and
//! records when (and in which phase of the test) each answer was given.
//!
//! Phases let a test that kills or restarts redrive tell an answer the
//! sender read from one it could not have: a push that arrived and was
//! answered within one phase was acknowledged by a live process; one whose
//! answer came after the phase changed (a kill) may not have been.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

/// How long [`Endpoint::wait_for`] waits for what should happen within a
/// second.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// One request an endpoint received.
#[derive(Clone, Debug)]
pub struct Received {
    /// When the request arrived (its headers were read).
    pub at: Instant,
    /// The endpoint's phase when it arrived ([`Endpoint::set_phase`]).
    pub phase: u8,
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The answer, once given; `None` while it is being answered, and for
    /// good when the sender hung up first.
    pub answered: Option<Answered>,
}

/// When and how a request was answered.
#[derive(Clone, Copy, Debug)]
pub struct Answered {
    pub at: Instant,
    /// The endpoint's phase when the answer went out.
    pub phase: u8,
    pub status: u16,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|value| {
            value
                .to_str()
                .unwrap_or_else(|_| panic!("header {name} is not ASCII"))
        })
    }

    pub fn ce_id(&self) -> &str {
        self.header("ce-id").expect("a ce-id header")
    }

    pub fn attempt(&self) -> u32 {
        self.header("redrive-attempt")
            .expect("a redrive-attempt header")
            .parse()
            .expect("a numeric redrive-attempt")
    }

    /// Answered 200 in the phase it arrived in, and that phase is not
    /// `unsure` (say, while a process is being killed): the sender was
    /// alive to read the answer.
    pub fn acknowledged_unless_in(&self, unsure: u8) -> bool {
        self.answered.is_some_and(|answered| {
            answered.status == 200 && answered.phase == self.phase && self.phase != unsure
        })
    }
}

/// How an endpoint answers one request.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub delay: Duration,
    pub body: String,
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            delay: Duration::ZERO,
            body: String::new(),
            headers: Vec::new(),
        }
    }

    pub fn ok() -> Reply {
        Reply::status(200)
    }

    pub fn after(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }

    pub fn body(mut self, body: &str) -> Reply {
        self.body = body.to_owned();
        self
    }

    pub fn header(mut self, name: &'static str, value: &str) -> Reply {
        self.headers.push((name, value.to_owned()));
        self
    }
}

/// Decides the reply to a request; the second argument counts the earlier
/// requests with the same `webhook-id` (0 for the first attempt).
type Script = dyn Fn(&Received, usize) -> Reply + Send + Sync;

struct EndpointState {
    script: Box<Script>,
    received: Mutex<Log>,
    phase: AtomicU8,
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
}

impl EndpointState {
    /// The log; a test that panicked while holding it left it whole.
    fn log(&self) -> MutexGuard<'_, Log> {
        self.received.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What an endpoint received, with a count per `webhook-id` so that a
/// script's `earlier` costs no scan of thousands of requests.
#[derive(Default)]
struct Log {
    requests: Vec<Received>,
    per_id: HashMap<String, usize>,
}

/// A real HTTP endpoint on 127.0.0.1 that records every request.
#[derive(Clone)]
pub struct Endpoint {
    /// The URL to subscribe (`http://127.0.0.1:PORT/hook`).
    pub url: String,
    state: Arc<EndpointState>,
}

impl Endpoint {
    /// An endpoint that always answers 200.
    pub async fn ok() -> Endpoint {
        Endpoint::start(|_, _| Reply::ok()).await
    }

    /// An endpoint that answers 200 after `latency`.
    pub async fn ok_after(latency: Duration) -> Endpoint {
        Endpoint::start(move |_, _| Reply::ok().after(latency)).await
    }

    pub async fn start(
        script: impl Fn(&Received, usize) -> Reply + Send + Sync + 'static,
    ) -> Endpoint {
        let state = Arc::new(EndpointState {
            script: Box::new(script),
            received: Mutex::default(),
            phase: AtomicU8::new(0),
            in_flight: AtomicUsize::new(0),
            most_in_flight: AtomicUsize::new(0),
        });
        let app = Router::new().fallback(receive).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port on 127.0.0.1");
        let address = listener.local_addr().expect("the endpoint's address");
        tokio::spawn(async move {
            axum::serve(listener, app).await.expect("the endpoint runs");
        });
        Endpoint {
            url: format!("http://{address}/hook"),
            state,
        }
    }

    /// Starts a new phase of the test (they start at 0): requests record
    /// the phase they arrived in and the one they were answered in.
    pub fn set_phase(&self, phase: u8) {
        self.state.phase.store(phase, Ordering::SeqCst);
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.log().requests.clone()
    }

    /// How many requests arrived so far (cheaper than `received`).
    pub fn count(&self) -> usize {
        self.state.log().requests.len()
    }

    /// The ce-ids received, sorted, once per request.
    pub fn ce_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .received()
            .iter()
            .map(|r| r.ce_id().to_owned())
            .collect();
        ids.sort();
        ids
    }

    /// The requests received, grouped by ce-id (`""` for none), each
    /// group in arrival order.
    pub fn by_ce_id(&self) -> BTreeMap<String, Vec<Received>> {
        let mut groups: BTreeMap<String, Vec<Received>> = Default::default();
        for request in self.received() {
            let id = request.header("ce-id").unwrap_or_default().to_owned();
            groups.entry(id).or_default().push(request);
        }
        groups
    }

    /// How many distinct ce-ids arrived.
    pub fn unique(&self) -> usize {
        let log = self.state.log();
        let ids: HashSet<&str> = log
            .requests
            .iter()
            .map(|r| r.header("ce-id").unwrap_or_default())
            .collect();
        ids.len()
    }

    /// The most requests this endpoint ever had open at once.
    pub fn most_in_flight(&self) -> usize {
        self.state.most_in_flight.load(Ordering::SeqCst)
    }

    /// Polls every `every` until `done` holds or `patience` ran out;
    /// whether it holds.
    pub async fn wait_until(
        &self,
        patience: Duration,
        every: Duration,
        done: impl Fn(&Endpoint) -> bool,
    ) -> bool {
        let deadline = Instant::now() + patience;
        while Instant::now() < deadline {
            if done(self) {
                return true;
            }
            tokio::time::sleep(every).await;
        }
        done(self)
    }

    /// Waits until at least `count` requests arrived; returns all of them.
    pub async fn wait_for(&self, count: usize) -> Vec<Received> {
        self.wait_for_within(count, PATIENCE).await
    }

    pub async fn wait_for_within(&self, count: usize, patience: Duration) -> Vec<Received> {
        let deadline = Instant::now() + patience;
        loop {
            if self.count() >= count {
                return self.received();
            }
            if Instant::now() >= deadline {
                let received = self.received();
                panic!(
                    "expected {count} requests within {patience:?}, got {}: {:?}",
                    received.len(),
                    received
                        .iter()
                        .map(|r| r.header("ce-id"))
                        .collect::<Vec<_>>()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits a little and checks that exactly `count` requests arrived, so
    /// that a stray extra push would be seen.
    pub async fn assert_settles_at(&self, count: usize) -> Vec<Received> {
        self.wait_for(count).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
        let received = self.received();
        assert_eq!(
            received.len(),
            count,
            "unexpected extra requests: {:?}",
            received
                .iter()
                .map(|r| (r.header("ce-id"), r.header("redrive-attempt")))
                .collect::<Vec<_>>()
        );
        received
    }
}

/// Decrements the in-flight gauge also when the caller hangs up mid-request.
struct InFlight(Arc<EndpointState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn receive(
    State(state): State<Arc<EndpointState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let now_open = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.most_in_flight.fetch_max(now_open, Ordering::SeqCst);
    let _guard = InFlight(state.clone());
    let request = Received {
        at: Instant::now(),
        phase: state.phase.load(Ordering::SeqCst),
        method,
        path: uri.path().to_owned(),
        headers,
        body,
        answered: None,
    };
    let (reply, index) = {
        let mut log = state.log();
        let webhook_id = request.header("webhook-id").unwrap_or_default().to_owned();
        let seen = log.per_id.entry(webhook_id).or_default();
        let earlier = *seen;
        *seen += 1;
        let reply = (state.script)(&request, earlier);
        log.requests.push(request);
        (reply, log.requests.len() - 1)
    };
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    state.log().requests[index].answered = Some(Answered {
        at: Instant::now(),
        phase: state.phase.load(Ordering::SeqCst),
        status: reply.status,
    });
    let status = StatusCode::from_u16(reply.status).expect("a scripted status code");
    let mut response = (status, reply.body).into_response();
    for (name, value) in reply.headers {
        response.headers_mut().insert(
            name,
            HeaderValue::from_str(&value).expect("a scripted header value"),
        );
    }
    response
}

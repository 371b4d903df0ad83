//! `redrive sink`: a webhook receiver for trying redrive out. It prints what
//! each push carries and can fail the first attempts to show retries.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};

#[derive(clap::Args, Debug)]
pub struct SinkArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: SocketAddr,
    /// Answer 503 to the first N attempts of each delivery (by webhook-id).
    #[arg(long, default_value_t = 0)]
    fail_first: u32,
    /// Status to answer once a delivery is past its failing attempts.
    #[arg(long, default_value_t = 200)]
    status: u16,
}

#[derive(Clone)]
struct Sink {
    fail_first: u32,
    status: StatusCode,
    seen: Arc<Mutex<HashMap<String, u32>>>,
}

pub async fn run(args: SinkArgs) -> anyhow::Result<()> {
    let status = StatusCode::from_u16(args.status)
        .with_context(|| format!("--status {} is not an HTTP status", args.status))?;
    let sink = Sink {
        fail_first: args.fail_first,
        status,
        seen: Arc::default(),
    };
    let app = Router::new().fallback(receive).with_state(sink);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    println!("sink listening on http://{}", args.listen);
    axum::serve(listener, app).await.context("the sink failed")
}

async fn receive(State(sink): State<Sink>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned()
    };
    let webhook_id = header("webhook-id");
    let seen = {
        let Ok(mut seen) = sink.seen.lock() else {
            return StatusCode::INTERNAL_SERVER_ERROR;
        };
        let count = seen.entry(webhook_id.clone()).or_default();
        *count += 1;
        *count
    };
    let status = if seen <= sink.fail_first {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        sink.status
    };
    println!(
        "{} attempt {} ce-id={} ce-type={} webhook-id={} -> {}\n  {}",
        jiff::Timestamp::now(),
        header("redrive-attempt"),
        header("ce-id"),
        header("ce-type"),
        webhook_id,
        status.as_u16(),
        String::from_utf8_lossy(&body)
    );
    status
}

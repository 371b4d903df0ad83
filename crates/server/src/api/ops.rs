//! Operational routes: liveness, readiness, Prometheus metrics, online
//! backups; and the guard that refuses publishes while the process drains.

use axum::Json;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::json;
use tokio::io::AsyncReadExt;

use crate::error::ApiError;
use crate::metrics;
use crate::state::AppState;

/// Bytes read from the backup file per streamed chunk.
const BACKUP_CHUNK: usize = 256 * 1024;

/// The process is alive and answers; says nothing about its store.
pub async fn healthz(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": state.ops.uptime_seconds(),
    }))
}

/// Ready to take traffic: the store answers and takes writes, its schema is
/// fully migrated, the dispatcher runs and the process is not shutting down.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<serde_json::Value>) {
    let (store_ok, store, migrations_ok, migrations) = match state.store.readiness().await {
        Ok(readiness) => {
            let (writable, store) = check_writes(&state).await;
            (
                writable,
                store,
                readiness.migrated(),
                json!({
                    "ok": readiness.migrated(),
                    "schema_version": readiness.schema_version,
                    "latest_schema_version": readiness.latest_schema_version,
                }),
            )
        }
        Err(err) => {
            tracing::warn!(error = %err, "readiness: the store does not answer");
            (
                false,
                json!({"ok": false, "error": err.to_string()}),
                false,
                json!({"ok": false}),
            )
        }
    };
    let dispatcher_ok = state.ops.dispatcher_running();
    let draining = state.ops.draining();
    let ready = store_ok && migrations_ok && dispatcher_ok && !draining;
    let (status, word) = match (ready, draining) {
        (true, _) => (StatusCode::OK, "ready"),
        (false, true) => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
        (false, false) => (StatusCode::SERVICE_UNAVAILABLE, "not_ready"),
    };
    (
        status,
        Json(json!({
            "status": word,
            "checks": {
                "store": store,
                "migrations": migrations,
                "dispatcher": {"ok": dispatcher_ok},
                "shutting_down": draining,
            },
        })),
    )
}

/// A store that answers reads may still fail every write (a full disk):
/// readiness commits a small write too, and reports what it met.
async fn check_writes(state: &AppState) -> (bool, serde_json::Value) {
    match state.store.check_writes().await {
        Ok(()) => {
            state.ops.store_writes.succeeded();
            (true, json!({"ok": true, "writable": true}))
        }
        Err(err) => {
            if err.is_transient() {
                state.ops.store_writes.failed(&err);
            } else {
                tracing::warn!(error = %err, "readiness: a store write failed");
            }
            (
                false,
                json!({"ok": false, "writable": false, "error": err.to_string()}),
            )
        }
    }
}

/// Prometheus text exposition. The backlog gauges are read from the store
/// at scrape time, so they are exact whichever process did the work.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let now = state.clock.now();
    match (
        state.store.queue_stats(now).await,
        state.store.list_subscriptions().await,
    ) {
        (Ok(stats), Ok(subscriptions)) => {
            metrics::set_subscription_gauges(&stats, &subscriptions, now);
        }
        (Err(err), _) | (_, Err(err)) => {
            // The counters are still worth serving; the gauges keep their
            // last values.
            tracing::warn!(error = %err, "metrics: cannot read the backlog");
        }
    }
    metrics::set_pushes_in_flight(state.ops.pushes_in_flight());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics::render(),
    )
        .into_response()
}

/// A consistent copy of the embedded store, streamed as a SQLite file. The
/// copy is staged next to the database and unlinked once opened, so nothing
/// is left behind even if the client goes away mid-download (a crash before
/// then is cleaned up at the next start).
#[utoipa::path(post, path = "/v1/admin/backup",
    responses((status = 200, description = "the SQLite database file", content_type = "application/vnd.sqlite3"),
        (status = 503)))]
pub async fn backup(State(state): State<AppState>) -> Result<Response, ApiError> {
    let staged = crate::backup_staging::staged_path(&state.ops.staging_dir);
    let started = std::time::Instant::now();
    state.store.backup_into(&staged).await?;
    let opened = tokio::fs::File::open(&staged).await;
    if let Err(err) = tokio::fs::remove_file(&staged).await {
        tracing::warn!(path = %staged.display(), error = %err, "cannot remove a staged backup");
    }
    let file = opened.map_err(|err| {
        tracing::error!(path = %staged.display(), error = %err, "cannot open the staged backup");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "backup_failed",
            "the backup was written but cannot be read back",
        )
    })?;
    let size = file.metadata().await.map(|m| m.len()).ok();
    tracing::info!(
        bytes = size,
        seconds = started.elapsed().as_secs_f64(),
        "backup taken"
    );
    let chunks = futures::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let mut buffer = vec![0; BACKUP_CHUNK];
        match file.read(&mut buffer).await {
            Ok(0) => None,
            Ok(read) => {
                buffer.truncate(read);
                Some((Ok::<_, std::io::Error>(buffer), Some(file)))
            }
            Err(err) => Some((Err(err), None)),
        }
    });
    let mut response = Response::new(Body::from_stream(chunks.boxed()));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/vnd.sqlite3"),
    );
    headers.insert(
        header::CONTENT_DISPOSITION,
        header::HeaderValue::from_static("attachment; filename=\"redrive-backup.db\""),
    );
    if let Some(size) = size {
        headers.insert(header::CONTENT_LENGTH, header::HeaderValue::from(size));
    }
    Ok(response)
}

/// Refuses publishes once shutdown begins: the dispatcher is stopping, so
/// an event accepted now would wait for the next start; a 503 sends the
/// client (or its load balancer) to a process that pushes.
pub async fn refuse_while_draining(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if state.ops.draining() {
        let mut response = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "this redrive process is shutting down; publish again to another or after restart",
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
        return response;
    }
    next.run(request).await
}

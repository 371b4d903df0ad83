//! The web console: server-rendered pages under `/console` with embedded
//! assets (no CDN, no front-end build). Thin like the API: it reads the
//! store, asks `redrive-core` what to show, and renders.

pub mod links;
mod session;
pub mod views;

use std::time::Duration;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use jiff::{SignedDuration, Timestamp};
use maud::Markup;
use redrive_core::duration::parse_duration;
use redrive_core::{DeliveryState, FailureReason, RetryPolicy};
use redrive_store::{DeliverySearch, OutcomeBucketsQuery, RedriveFilter, Store, StoreError};
use serde::Deserialize;

use crate::actions::{self, Redriven};
use crate::error::PageError;
use crate::security::console::ConsoleSession;
use crate::state::AppState;
use links::Filters;
use views::{DeliveryRows, Frame, Waits};

/// Rows per page of a delivery list.
const PAGE_SIZE: u32 = 50;
/// The overview's chart: 24 buckets of an hour.
const CHART_BUCKETS: i64 = 24;
const CHART_BUCKET: Duration = Duration::from_secs(3600);
/// Retries the policy preview lists unless asked otherwise (as the CLI).
const DEFAULT_PREVIEW_COUNT: usize = 20;
const MAX_PREVIEW_COUNT: usize = 200;

/// The console's routes; `/` redirects to it.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/console") }))
        .route("/console", get(overview))
        .route("/console/", get(|| async { Redirect::to("/console") }))
        .route("/console/fragments/overview", get(overview_fragment))
        .route("/console/subscriptions/{name}", get(subscription))
        .route("/console/subscriptions/{name}/rows", get(subscription_rows))
        .route(
            "/console/subscriptions/{name}/redrive",
            post(redrive_failed),
        )
        .route("/console/subscriptions/{name}/pause", post(pause))
        .route("/console/subscriptions/{name}/resume", post(resume))
        .route("/console/subscriptions/{name}/enable", post(enable))
        .route("/console/deliveries/{id}", get(delivery))
        .route("/console/deliveries/{id}/live", get(delivery_live))
        .route("/console/deliveries/{id}/retry", post(retry_now))
        .route("/console/policy", get(policy))
        .route("/console/assets/{file}", get(asset))
        .route("/console/{*rest}", get(unknown_page))
        .merge(session::routes())
}

/// A console failure renders as a page for its status.
impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        self.into_page(|status, message| {
            let page = match status {
                StatusCode::NOT_FOUND => views::not_found(message),
                StatusCode::BAD_REQUEST => views::error_page("Bad request", message),
                StatusCode::CONFLICT => views::error_page("Not now", message),
                _ => views::error_page("Something went wrong", message),
            };
            (status, html(page)).into_response()
        })
    }
}

fn html(markup: Markup) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        markup.into_string(),
    )
        .into_response()
}

type PageResult = Result<Response, PageError>;

async fn asset(Path(file): Path<String>) -> Response {
    let (body, content_type) = match file.as_str() {
        "console.css" => (
            include_str!("assets/console.css"),
            "text/css; charset=utf-8",
        ),
        "console.js" => (
            include_str!("assets/console.js"),
            "text/javascript; charset=utf-8",
        ),
        _ => return PageError::not_found(format!("no asset {file:?}")).into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        body,
    )
        .into_response()
}

async fn unknown_page(uri: axum::http::Uri) -> PageError {
    PageError::not_found(format!("There is no console page at {}.", uri.path()))
}

// ---------------------------------------------------------------------------
// Overview
// ---------------------------------------------------------------------------

/// The frame of a page shown to `session`: a sign-out button when it is a
/// signed-in browser's.
fn frame(session: &ConsoleSession) -> Frame {
    Frame {
        sign_out: session.sign_out_csrf().map(str::to_owned),
    }
}

/// What may hold `subscription`'s due deliveries back, as this node knows.
fn waits_of(state: &AppState, subscription: &redrive_core::Subscription) -> Waits {
    let now = state.clock.now();
    Waits {
        held: actions::pushes_held(state, subscription, now),
        rate: subscription.spec.rate,
        now,
    }
}

async fn load_overview(state: &AppState) -> Result<views::Overview, PageError> {
    let store = &*state.store;
    let now = state.clock.now();
    let topics = store.list_topics().await?;
    let mut subscriptions = Vec::new();
    for sub in store.list_subscriptions().await? {
        let name = sub.spec.name.clone();
        let hour_ago = now - SignedDuration::from_hours(1);
        let day_ago = now - SignedDuration::from_hours(24);
        let last_hour = store.count_deliveries_by_state(&name, hour_ago).await?;
        let last_day = store.count_deliveries_by_state(&name, day_ago).await?;
        // Buckets aligned to the hour so the chart does not shift on every refresh.
        let until = now
            .as_second()
            .div_euclid(3600)
            .saturating_add(1)
            .saturating_mul(3600);
        let until = Timestamp::from_second(until).unwrap_or(now);
        let from = until - SignedDuration::from_hours(CHART_BUCKETS);
        let buckets = store
            .outcome_buckets(OutcomeBucketsQuery {
                subscription: name.clone(),
                from,
                until,
                width: CHART_BUCKET,
            })
            .await?;
        subscriptions.push(views::SubscriptionSummary {
            health: health_of(&sub),
            health_reason: sub.status.health_reason.clone(),
            held: actions::pushes_held(state, &sub, now),
            paused: sub.status.paused,
            name,
            topic: sub.spec.topic.clone(),
            endpoint: sub.spec.endpoint.clone(),
            last_hour,
            last_day,
            buckets,
        });
    }
    Ok(views::Overview {
        topics: topics.into_iter().map(|t| t.name).collect(),
        subscriptions,
    })
}

/// The endpoint health badge of a subscription.
fn health_of(subscription: &redrive_core::Subscription) -> String {
    subscription.status.health.as_str().into()
}

async fn overview(State(state): State<AppState>, session: ConsoleSession) -> PageResult {
    let data = load_overview(&state).await?;
    Ok(html(views::overview(&data, &frame(&session))))
}

async fn overview_fragment(State(state): State<AppState>) -> PageResult {
    let data = load_overview(&state).await?;
    Ok(html(views::overview_topics(&data)))
}

// ---------------------------------------------------------------------------
// Subscription
// ---------------------------------------------------------------------------

/// Query parameters of a subscription's list. Every field is text so a
/// bad value shows as a message on the page, not a bare rejection.
#[derive(Debug, Default, Deserialize)]
pub struct ListParams {
    #[serde(default)]
    state: String,
    #[serde(default)]
    reason: String,
    #[serde(default, rename = "type")]
    event_type: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    #[serde(default)]
    cursor: String,
    /// Set by the redrive button: how many deliveries it put back.
    #[serde(default)]
    redriven: String,
}

impl ListParams {
    fn filters(&self) -> Filters {
        Filters {
            state: self.state.trim().to_owned(),
            reason: self.reason.trim().to_owned(),
            event_type: self.event_type.trim().to_owned(),
            status: self.status.trim().to_owned(),
            since: self.since.trim().to_owned(),
            until: self.until.trim().to_owned(),
        }
    }
}

/// Reads a time filter: an RFC 3339 instant, a `YYYY-MM-DDTHH:MM[:SS]`
/// civil time taken as UTC, or a duration meaning that long ago (`1h`).
pub fn parse_time(field: &str, text: &str, now: Timestamp) -> Result<Timestamp, String> {
    if let Ok(ts) = text.parse::<Timestamp>() {
        return Ok(ts);
    }
    if let Ok(civil) = text.parse::<jiff::civil::DateTime>() {
        return civil
            .to_zoned(jiff::tz::TimeZone::UTC)
            .map(|zoned| zoned.timestamp())
            .map_err(|err| format!("{field}: {err}"));
    }
    if let Ok(ago) = parse_duration(text) {
        let ago = SignedDuration::try_from(ago).map_err(|err| format!("{field}: {err}"))?;
        return now
            .checked_sub(ago)
            .map_err(|_| format!("{field}: {text:?} reaches before any representable time"));
    }
    Err(format!(
        "{field}: {text:?} is neither a time (2026-01-02T15:04Z) nor a duration ago (1h)"
    ))
}

fn search_from(name: &str, params: &ListParams, now: Timestamp) -> Result<DeliverySearch, String> {
    let f = params.filters();
    let state = match f.state.as_str() {
        "" => None,
        s => Some(DeliveryState::parse(s).ok_or_else(|| {
            format!("state: {s:?} is not one of scheduled, in_flight, delivered, failed")
        })?),
    };
    let reason = match f.reason.as_str() {
        "" => None,
        r => Some(FailureReason::parse(r).ok_or_else(|| {
            let known: Vec<_> = FailureReason::ALL.iter().map(|r| r.as_str()).collect();
            format!("reason: {r:?} is not one of {}", known.join(", "))
        })?),
    };
    let status = match f.status.as_str() {
        "" => None,
        s => Some(
            s.parse::<u16>()
                .ok()
                .filter(|code| (100..=599).contains(code))
                .ok_or_else(|| format!("status: {s:?} is not an HTTP status code (100–599)"))?,
        ),
    };
    let since = (!f.since.is_empty())
        .then(|| parse_time("since", &f.since, now))
        .transpose()?;
    let until = (!f.until.is_empty())
        .then(|| parse_time("until", &f.until, now))
        .transpose()?;
    Ok(DeliverySearch {
        subscription: name.to_owned(),
        state,
        reason,
        event_type: (!f.event_type.is_empty()).then(|| f.event_type.clone()),
        status,
        since,
        until,
        limit: PAGE_SIZE,
        cursor: (!params.cursor.is_empty()).then(|| params.cursor.clone()),
    })
}

fn query_params(
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<ListParams, PageError> {
    params
        .map(|Query(params)| params)
        .map_err(|err| PageError::bad_request(err.body_text()))
}

/// The rows for `params`, or why the filters are wrong (then no rows).
async fn load_rows(
    store: &dyn Store,
    name: &str,
    params: &ListParams,
    session: &ConsoleSession,
    waits: Waits,
) -> Result<(DeliveryRows, Option<String>), PageError> {
    let filters = params.filters();
    let now = waits.now;
    let mut rows = DeliveryRows {
        subscription: name.to_owned(),
        deliveries: Vec::new(),
        filters,
        next_cursor: None,
        paged: !params.cursor.is_empty(),
        csrf: session.write_csrf().map(str::to_owned),
        waits,
    };
    let search = match search_from(name, params, now) {
        Ok(search) => search,
        Err(problem) => return Ok((rows, Some(problem))),
    };
    match store.search_deliveries(search).await {
        Ok(page) => {
            rows.deliveries = page.deliveries;
            rows.next_cursor = page.next_cursor;
            Ok((rows, None))
        }
        Err(StoreError::Invalid(problem)) => Ok((rows, Some(problem))),
        Err(err) => Err(err.into()),
    }
}

async fn subscription(
    State(state): State<AppState>,
    session: ConsoleSession,
    Path(name): Path<String>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> PageResult {
    let params = query_params(params)?;
    let sub = match state.store.get_subscription(&name).await {
        Err(StoreError::NotFound { .. }) => {
            return Err(PageError::not_found(format!(
                "There is no subscription named {name:?}."
            )));
        }
        other => other?,
    };
    let waits = waits_of(&state, &sub);
    let held = waits.held.clone();
    let (rows, filter_error) = load_rows(&*state.store, &name, &params, &session, waits).await?;
    let status = if filter_error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let page = views::SubscriptionPage {
        health: health_of(&sub),
        health_reason: sub.status.health_reason.clone(),
        held,
        paused: sub.status.paused,
        push_backoff: sub.spec.push_backoff,
        name,
        topic: sub.spec.topic,
        endpoint: sub.spec.endpoint,
        filters: rows.filters.clone(),
        rows,
        filter_error,
        redriven: params.redriven.trim().parse().ok(),
    };
    Ok((status, html(views::subscription(&page, &frame(&session)))).into_response())
}

async fn subscription_rows(
    State(state): State<AppState>,
    session: ConsoleSession,
    Path(name): Path<String>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> PageResult {
    let params = query_params(params)?;
    let sub = state.store.get_subscription(&name).await?;
    let waits = waits_of(&state, &sub);
    let (rows, filter_error) = load_rows(&*state.store, &name, &params, &session, waits).await?;
    if let Some(problem) = filter_error {
        return Err(PageError::bad_request(problem));
    }
    Ok(html(views::delivery_rows(&rows)))
}

/// Redrives every failed delivery of the subscription, in the background
/// when there are many, then shows the subscription's failed list.
async fn redrive_failed(State(state): State<AppState>, Path(name): Path<String>) -> PageResult {
    state.store.get_subscription(&name).await?;
    let filter = RedriveFilter::new(name.clone());
    let total = match actions::redrive(&state, &name, filter).await? {
        Redriven::Moved { total, .. } | Redriven::InBackground { total, .. } => total,
    };
    tracing::info!(subscription = %name, total, "redrive of failed deliveries from the console");
    Ok(Redirect::to(&links::redriven(&name, total)).into_response())
}

async fn pause(State(state): State<AppState>, Path(name): Path<String>) -> PageResult {
    actions::set_paused_by_hand(&state, &name, true).await?;
    Ok(Redirect::to(&links::subscription(&name)).into_response())
}

async fn resume(State(state): State<AppState>, Path(name): Path<String>) -> PageResult {
    actions::set_paused_by_hand(&state, &name, false).await?;
    Ok(Redirect::to(&links::subscription(&name)).into_response())
}

async fn enable(State(state): State<AppState>, Path(name): Path<String>) -> PageResult {
    actions::enable_by_hand(&state, &name).await?;
    Ok(Redirect::to(&links::subscription(&name)).into_response())
}

// ---------------------------------------------------------------------------
// Delivery
// ---------------------------------------------------------------------------

async fn delivery(
    State(state): State<AppState>,
    session: ConsoleSession,
    Path(id): Path<String>,
) -> PageResult {
    let detail = match state.store.get_delivery(&id).await {
        Err(StoreError::NotFound { .. }) => {
            return Err(PageError::not_found(format!(
                "There is no delivery with id {id:?}."
            )));
        }
        other => other?,
    };
    let waits = delivery_waits(&state, &detail.delivery).await?;
    Ok(html(views::delivery(
        &detail.delivery,
        &detail.event,
        &detail.attempts,
        session.write_csrf(),
        &waits,
        &frame(&session),
    )))
}

async fn delivery_live(
    State(state): State<AppState>,
    session: ConsoleSession,
    Path(id): Path<String>,
) -> PageResult {
    let detail = state.store.get_delivery(&id).await?;
    let waits = delivery_waits(&state, &detail.delivery).await?;
    Ok(html(views::delivery_live(
        &detail.delivery,
        &detail.attempts,
        session.write_csrf(),
        &waits,
    )))
}

/// What may hold a delivery back: its subscription's holds, read only when
/// the delivery is waiting at all.
async fn delivery_waits(
    state: &AppState,
    delivery: &redrive_core::Delivery,
) -> Result<Waits, PageError> {
    let now = state.clock.now();
    if redrive_core::hold::delivery_waiting(delivery, None, None, now).is_none() {
        return Ok(Waits {
            now,
            ..Waits::default()
        });
    }
    match state.store.get_subscription(&delivery.subscription).await {
        Ok(sub) => Ok(waits_of(state, &sub)),
        // Deleted meanwhile: nothing holds it any more.
        Err(StoreError::NotFound { .. }) => Ok(Waits {
            now,
            ..Waits::default()
        }),
        Err(err) => Err(err.into()),
    }
}

async fn retry_now(State(state): State<AppState>, Path(id): Path<String>) -> PageResult {
    state.store.retry_now(&id, state.clock.now()).await?;
    tracing::info!(delivery = %id, "retry requested from the console");
    Ok(Redirect::to(&links::delivery(&id)).into_response())
}

// ---------------------------------------------------------------------------
// Policy preview
// ---------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
pub struct PolicyParams {
    #[serde(default)]
    policy: String,
    #[serde(default)]
    count: String,
    /// Show this subscription's policy.
    #[serde(default)]
    subscription: String,
}

async fn policy(
    State(state): State<AppState>,
    session: ConsoleSession,
    params: Result<Query<PolicyParams>, QueryRejection>,
) -> PageResult {
    let params = params
        .map(|Query(params)| params)
        .map_err(|err| PageError::bad_request(err.body_text()))?;
    let subscriptions = state.store.list_subscriptions().await?;
    let names = subscriptions.iter().map(|s| s.spec.name.clone()).collect();
    let mut push_backoff = (false, "the default without a preset".to_owned());
    let mut retention = (
        redrive_core::lifecycle::DEFAULT_MESSAGE_RETENTION,
        "every subscription's default".to_owned(),
    );
    let input = if !params.subscription.is_empty() {
        let sub = subscriptions
            .iter()
            .find(|s| s.spec.name == params.subscription)
            .ok_or_else(|| {
                PageError::not_found(format!(
                    "There is no subscription named {:?}.",
                    params.subscription
                ))
            })?;
        push_backoff = (
            sub.spec.push_backoff,
            format!("subscription {}'s setting", sub.spec.name),
        );
        retention = (
            sub.spec.message_retention.as_duration(),
            format!("subscription {}'s message_retention", sub.spec.name),
        );
        serde_json::to_string_pretty(&sub.spec.retry_policy)
            .map_err(|err| PageError::bad_request(format!("cannot show the policy: {err}")))?
    } else if params.policy.trim().is_empty() {
        serde_json::to_string_pretty(&RetryPolicy::default())
            .map_err(|err| PageError::bad_request(format!("cannot show the policy: {err}")))?
    } else {
        params.policy.clone()
    };
    let count = match params.count.trim() {
        "" => Ok(DEFAULT_PREVIEW_COUNT),
        text => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_PREVIEW_COUNT).contains(n))
            .ok_or_else(|| format!("count: must be a number from 1 to {MAX_PREVIEW_COUNT}")),
    };
    let parsed = count.clone().and_then(|count| {
        let policy: RetryPolicy =
            serde_json::from_str(&input).map_err(|err| format!("policy: {err}"))?;
        policy
            .validate()
            .map_err(|err| format!("policy: {}: {}", err.field, err.message))?;
        Ok((count, policy))
    });
    // A typed policy says what a new subscription with it would get.
    if let Ok((_, policy)) = &parsed
        && params.subscription.is_empty()
        && let Some(name) = &policy.preset
        && let Ok(preset) = redrive_core::presets::preset(name)
    {
        push_backoff = (
            preset.push_backoff,
            format!("what preset {} brings", preset.name),
        );
        if let Some(kept) = preset.message_retention {
            retention = (kept, format!("what preset {} brings", preset.name));
        }
    }
    let outcome = parsed.map(|(count, policy)| policy.schedule_within(count, retention.0));
    let status = if outcome.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    let page = views::PolicyPage {
        input,
        count: count.unwrap_or(DEFAULT_PREVIEW_COUNT),
        subscriptions: names,
        outcome,
        push_backoff: push_backoff.0,
        push_backoff_source: push_backoff.1,
        retention: retention.0,
        retention_source: retention.1,
    };
    Ok((status, html(views::policy(&page, &frame(&session)))).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-11-23T12:00:00Z".parse().expect("a time")
    }

    #[test]
    fn time_filters_take_instants_civil_times_and_durations_ago() {
        let parse = |text| parse_time("since", text, now());
        assert_eq!(
            parse("2026-11-23T10:30:00Z"),
            Ok("2026-11-23T10:30:00Z".parse().expect("a time"))
        );
        assert_eq!(
            parse("2026-11-23T10:30"),
            Ok("2026-11-23T10:30:00Z".parse().expect("a time")),
            "a civil time is UTC"
        );
        assert_eq!(
            parse("90m"),
            Ok("2026-11-23T10:30:00Z".parse().expect("a time"))
        );
        let err = parse("yesterday").expect_err("not a time");
        assert!(err.starts_with("since: \"yesterday\""), "{err}");
    }

    #[test]
    fn empty_filters_are_no_filters_and_bad_ones_are_named() {
        let search = search_from("s", &ListParams::default(), now()).expect("no filters");
        assert!(search.state.is_none() && search.status.is_none() && search.cursor.is_none());
        let params = ListParams {
            status: " 503 ".into(),
            event_type: "order.created".into(),
            ..Default::default()
        };
        let search = search_from("s", &params, now()).expect("valid filters");
        assert_eq!(search.status, Some(503));
        assert_eq!(search.event_type.as_deref(), Some("order.created"));
        let params = ListParams {
            state: "done".into(),
            ..Default::default()
        };
        let err = search_from("s", &params, now()).expect_err("an unknown state");
        assert!(err.starts_with("state:"), "{err}");
    }
}

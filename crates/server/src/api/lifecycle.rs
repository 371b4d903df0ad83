//! The failure lifecycle over HTTP: redrive (inline or as a background job),
//! jobs, the journal, and cancelling a delivery.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use jiff::Timestamp;
use redrive_core::{Delivery, DeliveryState, FailureReason, SubscriptionSpec};
use redrive_store::{JournalQuery, RedriveFilter, Store, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::{ApiQuery, body_bytes};
use crate::actions::{self, Redriven};
use crate::error::ApiError;
use crate::jobs::Job;
use crate::state::AppState;

const DEFAULT_JOURNAL_PAGE: u32 = 100;
pub(crate) const MAX_JOURNAL_PAGE: u32 = 1000;

/// Refuses a dead-letter topic that does not exist, naming the field.
pub(crate) async fn check_dead_letter_topic(
    store: &dyn Store,
    spec: &SubscriptionSpec,
) -> Result<(), ApiError> {
    let Some(topic) = &spec.dead_letter_topic else {
        return Ok(());
    };
    match store.get_topic(topic).await {
        Ok(_) => Ok(()),
        Err(StoreError::NotFound { .. }) => Err(ApiError::invalid(
            "dead_letter_topic",
            format!("topic {topic:?} does not exist; create it first"),
        )),
        Err(err) => Err(err.into()),
    }
}

/// Which deliveries to redrive; every field is optional.
#[derive(Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedriveBody {
    /// `failed` and/or `scheduled` (default `["failed"]`).
    #[serde(default)]
    pub states: Option<Vec<String>>,
    /// Failure reasons, e.g. `["retries_exhausted"]` (default: any).
    #[serde(default)]
    pub reasons: Vec<String>,
    /// Only events published at or after this time (RFC 3339).
    #[serde(default)]
    pub since: Option<String>,
    /// Only events published before this time (RFC 3339).
    #[serde(default)]
    pub until: Option<String>,
    /// Only events of this type.
    #[serde(default, rename = "type")]
    pub event_type: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct RedriveResponse {
    /// Deliveries that matched when the redrive started.
    pub total: u64,
    /// Deliveries moved back to `scheduled` (absent while a job runs).
    pub moved: Option<u64>,
    /// The background job, for a set larger than the inline limit.
    pub job: Option<Job>,
}

fn filter_from(subscription: String, body: RedriveBody) -> Result<RedriveFilter, ApiError> {
    let mut filter = RedriveFilter::new(subscription);
    if let Some(states) = body.states {
        filter.states = states
            .iter()
            .map(|s| {
                DeliveryState::parse(s)
                    .filter(|state| RedriveFilter::REDRIVABLE.contains(state))
                    .ok_or_else(|| {
                        ApiError::invalid(
                            "states",
                            format!("{s:?} can't be redriven; use failed or scheduled"),
                        )
                    })
            })
            .collect::<Result<_, _>>()?;
        if filter.states.is_empty() {
            return Err(ApiError::invalid("states", "name at least one state"));
        }
    }
    filter.reasons = body
        .reasons
        .iter()
        .map(|r| {
            FailureReason::parse(r).ok_or_else(|| {
                let known: Vec<_> = FailureReason::ALL.iter().map(|r| r.as_str()).collect();
                ApiError::invalid(
                    "reasons",
                    format!("{r:?} is not one of {}", known.join(", ")),
                )
            })
        })
        .collect::<Result<_, _>>()?;
    let time = |field: &str, value: Option<String>| {
        value
            .map(|v| {
                v.parse::<Timestamp>().map_err(|err| {
                    ApiError::invalid(field, format!("{v:?} is not an RFC 3339 time: {err}"))
                })
            })
            .transpose()
    };
    filter.since = time("since", body.since)?;
    filter.until = time("until", body.until)?;
    filter.event_type = body.event_type;
    Ok(filter)
}

/// Puts matching deliveries back to `scheduled`, due now, with a fresh
/// attempt budget. Small sets move before the answer (200); larger ones
/// move in a background job (202) to poll at `/v1/jobs/{id}`.
#[utoipa::path(post, path = "/v1/subscriptions/{name}/redrive", request_body = Option<RedriveBody>,
    responses((status = 200, body = RedriveResponse), (status = 202, body = RedriveResponse),
        (status = 400), (status = 404)))]
pub async fn redrive(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<RedriveResponse>), ApiError> {
    let body = body_bytes(body)?;
    let body: RedriveBody = if body.iter().all(u8::is_ascii_whitespace) {
        RedriveBody::default()
    } else {
        super::extract::parse_json(&body)?
    };
    let filter = filter_from(name.clone(), body)?;
    let answer = match actions::redrive(&state, &name, filter).await? {
        Redriven::Moved { total, moved } => (
            StatusCode::OK,
            RedriveResponse {
                total,
                moved: Some(moved),
                job: None,
            },
        ),
        Redriven::InBackground { total, job } => (
            StatusCode::ACCEPTED,
            RedriveResponse {
                total,
                moved: None,
                job: Some(job),
            },
        ),
    };
    Ok((answer.0, Json(answer.1)))
}

#[utoipa::path(get, path = "/v1/jobs/{id}", responses((status = 200, body = Job), (status = 404)))]
pub async fn job(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Job>, ApiError> {
    state.jobs.get(&id).map(Json).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("job {id:?} not found (jobs are kept in memory until the server restarts)"),
        )
    })
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct JournalParams {
    /// The `position` of the last entry already read (or the `next` of the
    /// previous page). Absent: from the oldest event kept.
    pub since: Option<i64>,
    /// Page size (default 100, at most 1000).
    pub limit: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct JournalEntry {
    pub position: i64,
    pub delivery_id: String,
    pub state: DeliveryState,
    /// The event in CloudEvents JSON format.
    #[schema(value_type = Object)]
    pub event: serde_json::Value,
}

#[derive(Serialize, ToSchema)]
pub struct JournalPage {
    pub entries: Vec<JournalEntry>,
    /// Pass as `since` for the next page; the same `since` again when the
    /// page is empty (nothing new yet).
    pub next: i64,
}

/// The events that matched the subscription, oldest first, whatever their
/// delivery's state: a pull fallback while a webhook is down. A `since`
/// older than what retention kept answers 410.
#[utoipa::path(get, path = "/v1/subscriptions/{name}/journal", params(JournalParams),
    responses((status = 200, body = JournalPage), (status = 400), (status = 404),
        (status = 410, description = "the position is older than retention")))]
pub async fn journal(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiQuery(params): ApiQuery<JournalParams>,
) -> Result<Json<JournalPage>, ApiError> {
    let limit = params.limit.unwrap_or(DEFAULT_JOURNAL_PAGE);
    if limit == 0 || limit > MAX_JOURNAL_PAGE {
        return Err(ApiError::invalid(
            "limit",
            format!("must be between 1 and {MAX_JOURNAL_PAGE}"),
        ));
    }
    if params.since.is_some_and(|since| since < 0) {
        return Err(ApiError::invalid("since", "must not be negative"));
    }
    let page = state
        .store
        .journal(JournalQuery {
            subscription: name,
            since: params.since,
            limit,
        })
        .await?;
    if let Some(since) = params.since
        && since < page.purged_through
    {
        return Err(ApiError::new(
            StatusCode::GONE,
            "gone",
            format!(
                "position {since} is older than retention: entries through {} were purged; \
                 read again without since",
                page.purged_through
            ),
        ));
    }
    let next = page
        .entries
        .last()
        .map(|e| e.position)
        .or(params.since)
        .unwrap_or(page.purged_through);
    Ok(Json(JournalPage {
        entries: page
            .entries
            .into_iter()
            .map(|e| JournalEntry {
                position: e.position,
                delivery_id: e.delivery.id,
                state: e.delivery.state,
                event: e.event.to_structured_json(),
            })
            .collect(),
        next,
    }))
}

/// Ends a scheduled delivery as `failed / cancelled` (dead-lettered when
/// the subscription has a dead-letter topic).
#[utoipa::path(post, path = "/v1/deliveries/{id}/cancel",
    responses((status = 200, body = Delivery), (status = 404),
        (status = 409, description = "in flight or already ended")))]
pub async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Delivery>, ApiError> {
    let delivery = state.store.cancel_delivery(&id, state.clock.now()).await?;
    crate::metrics::delivery_finished("failed", "cancelled", 1);
    Ok(Json(delivery))
}

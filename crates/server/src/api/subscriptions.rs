use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use jiff::Timestamp;
use redrive_core::hold::PushesHeld;
use redrive_core::{EffectiveSettings, Subscription, SubscriptionSpec};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::extract::{ApiJson, from_value, parse_json};
use crate::error::ApiError;
use crate::state::AppState;
use crate::validate;

#[derive(Serialize, ToSchema)]
pub struct SubscriptionList {
    pub subscriptions: Vec<SubscriptionAnswer>,
}

/// A subscription as the API answers with it: its settings as written (the
/// defaults of plain fields filled in) and status, the values in force for
/// every setting with a default, and whether its pushes are held back right
/// now.
#[derive(Serialize, ToSchema)]
pub struct SubscriptionAnswer {
    #[serde(flatten)]
    pub subscription: Subscription,
    /// Output only: the values in force for every setting that has a
    /// default, whether written or left out (`bucket_size` 5 with a rate,
    /// `max_delivery_attempts` 5 with a dead-letter topic, …). The settings
    /// themselves keep what was written, so an answer sent back pins no
    /// default.
    pub effective: EffectiveSettings,
    /// Output only: what holds the subscription's pushes back now, until
    /// when and why, or `null`. A pause by hand, health `disabled` and a
    /// `rate` of 0 hold on every node; push backoff and `Retry-After` pauses
    /// are kept by each node's dispatcher, so this is the answering node's.
    pub pushes_held: Option<PushesHeld>,
}

impl SubscriptionAnswer {
    /// `subscription` with the holds `state`'s node knows of.
    pub fn new(state: &AppState, subscription: Subscription) -> SubscriptionAnswer {
        let pushes_held = crate::actions::pushes_held(state, &subscription, state.clock.now());
        SubscriptionAnswer {
            effective: subscription.spec.effective(),
            subscription,
            pushes_held,
        }
    }
}

#[utoipa::path(post, path = "/v1/subscriptions", request_body = SubscriptionSpec,
    responses((status = 201, body = SubscriptionAnswer), (status = 400), (status = 404, description = "unknown topic"), (status = 409)))]
pub async fn create(
    State(state): State<AppState>,
    ApiJson(mut body): ApiJson<Value>,
) -> Result<(StatusCode, Json<SubscriptionAnswer>), ApiError> {
    if let Some(field) = redrive_core::split_read_only(&mut body).keys().next() {
        return Err(ApiError::invalid(
            field,
            "is set by the server, not by a request; leave it out",
        ));
    }
    let spec = spec_from_json(body)?;
    validate::subscription(&spec, &state.security.endpoint_policy)?;
    super::lifecycle::check_dead_letter_topic(&*state.store, &spec).await?;
    let subscription = state
        .store
        .create_subscription(spec, state.clock.now())
        .await?;
    if let Err(err) = state
        .security
        .secrets
        .create_for(&subscription.spec.name, subscription.created_at)
        .await
    {
        // The dispatcher generates it before the first push instead.
        tracing::warn!(subscription = %subscription.spec.name, error = %format!("{err:#}"),
            "cannot store the new subscription's signing secret yet");
    }
    state.announce_subscription_change();
    Ok((
        StatusCode::CREATED,
        Json(SubscriptionAnswer::new(&state, subscription)),
    ))
}

#[utoipa::path(get, path = "/v1/subscriptions", responses((status = 200, body = SubscriptionList)))]
pub async fn list(State(state): State<AppState>) -> Result<Json<SubscriptionList>, ApiError> {
    let subscriptions = state.store.list_subscriptions().await?;
    Ok(Json(SubscriptionList {
        subscriptions: subscriptions
            .into_iter()
            .map(|subscription| SubscriptionAnswer::new(&state, subscription))
            .collect(),
    }))
}

#[utoipa::path(get, path = "/v1/subscriptions/{name}",
    responses((status = 200, body = SubscriptionAnswer), (status = 404)))]
pub async fn get(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<SubscriptionAnswer>, ApiError> {
    let subscription = state.store.get_subscription(&name).await?;
    Ok(Json(SubscriptionAnswer::new(&state, subscription)))
}

/// A JSON merge patch (RFC 7386) over the subscription's spec. The
/// read-only fields a GET answers with may come back unchanged, so a
/// subscription read, edited and sent whole is accepted.
#[utoipa::path(patch, path = "/v1/subscriptions/{name}", request_body = Object,
    responses((status = 200, body = SubscriptionAnswer), (status = 400), (status = 404)))]
pub async fn update(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<SubscriptionAnswer>, ApiError> {
    let patch: Value = parse_json(&body)?;
    if !patch.is_object() {
        return Err(ApiError::bad_request(
            "the body must be a JSON object of the fields to change",
        ));
    }
    let current = state.store.get_subscription(&name).await?;
    let mut merged = serde_json::to_value(&current.spec)
        .map_err(|err| ApiError::bad_request(format!("cannot merge: {err}")))?;
    let mut patch = patch;
    check_read_only(&current, redrive_core::split_read_only(&mut patch))?;
    // The alias would sit beside the stored field and read as a duplicate.
    if let Some(fields) = patch.as_object_mut()
        && let Some(value) = fields.remove("max_concurrent_requests")
    {
        fields.insert("max_concurrency".into(), value);
    }
    redrive_core::presets::expand_subscription(&mut patch)
        .map_err(|err| ApiError::invalid("retry_policy.preset", err))?;
    if patch.pointer("/retry_policy/preset").is_some() {
        // A new preset replaces the policy: merged into the old one, the old
        // fields would override the preset.
        if let Some(fields) = merged.as_object_mut() {
            fields.remove("retry_policy");
        }
    }
    merge_patch(&mut merged, &patch);
    let spec = spec_from_json(merged)?;
    if spec.name != name {
        return Err(ApiError::invalid("name", "a subscription can't be renamed"));
    }
    validate::subscription(&spec, &state.security.endpoint_policy)?;
    super::lifecycle::check_dead_letter_topic(&*state.store, &spec).await?;
    let updated = state
        .store
        .update_subscription(spec, state.clock.now())
        .await?;
    state.announce_subscription_change();
    Ok(Json(SubscriptionAnswer::new(&state, updated)))
}

#[utoipa::path(delete, path = "/v1/subscriptions/{name}", responses((status = 204), (status = 404)))]
pub async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.store.delete_subscription(&name).await?;
    state.announce_subscription_change();
    Ok(StatusCode::NO_CONTENT)
}

/// A subscription from its JSON form, with its retry preset's settings
/// filled in where it leaves them out.
pub fn spec_from_json(mut body: Value) -> Result<SubscriptionSpec, ApiError> {
    redrive_core::presets::expand_subscription(&mut body)
        .map_err(|err| ApiError::invalid("retry_policy.preset", err))?;
    from_value(body, "invalid subscription")
}

/// Read-only fields sent back must be as the server has them: a change
/// there would otherwise be ignored silently. What the answer computes
/// when it is made (`pushes_held`) may have changed since, and is ignored.
fn check_read_only(
    current: &Subscription,
    sent: serde_json::Map<String, Value>,
) -> Result<(), ApiError> {
    if sent.is_empty() {
        return Ok(());
    }
    let current = serde_json::to_value(current)
        .map_err(|err| ApiError::bad_request(format!("cannot compare: {err}")))?;
    for (field, value) in sent {
        if Subscription::ANSWER_ONLY_FIELDS.contains(&field.as_str()) {
            continue;
        }
        let now = current.get(&field).unwrap_or(&Value::Null);
        let same = match (now, &value) {
            // Times compare as instants, whatever precision was sent.
            (Value::String(a), Value::String(b)) if a != b => {
                match (a.parse::<Timestamp>(), b.parse::<Timestamp>()) {
                    (Ok(a), Ok(b)) => a == b,
                    _ => false,
                }
            }
            _ => now == &value,
        };
        if !same {
            let how = match &field[..] {
                "paused" => "; use POST /v1/subscriptions/{name}/pause or /resume",
                "health" | "health_reason" | "health_changed_at" => {
                    "; use POST /v1/subscriptions/{name}/enable to make it healthy"
                }
                _ => "",
            };
            return Err(ApiError::invalid(
                &field,
                format!("is set by the server and can't be changed by a PATCH{how}"),
            ));
        }
    }
    Ok(())
}

/// RFC 7386: objects merge recursively, `null` removes, anything else replaces.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    if let Value::Object(target) = target {
        for (key, value) in patch {
            if value.is_null() {
                target.remove(key);
            } else {
                merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::merge_patch;
    use serde_json::json;

    #[test]
    fn merge_patch_replaces_merges_and_removes() {
        let mut target = json!({"a": 1, "b": {"c": 2, "d": 3}, "e": [1]});
        merge_patch(
            &mut target,
            &json!({"a": 5, "b": {"c": null, "x": 1}, "e": [2, 3]}),
        );
        assert_eq!(target, json!({"a": 5, "b": {"d": 3, "x": 1}, "e": [2, 3]}));
    }
}

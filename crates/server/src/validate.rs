//! Checks of user input that need more than the core's pure rules.

use redrive_core::SubscriptionSpec;
use redrive_core::names::validate_name;
use redrive_core::security::EndpointPolicy;

use crate::error::ApiError;

/// Longest push timeout a subscription may ask for.
const MAX_TIMEOUT_SECS: u64 = 600;
const MAX_CONCURRENCY: u32 = 10_000;

/// The one check of a subscription, whichever way it comes in (create,
/// PATCH, `POST /v1/apply`, `serve --config`, the importers through apply):
/// its shape, then whether this server may push to its endpoint.
pub(crate) fn subscription(
    spec: &SubscriptionSpec,
    policy: &EndpointPolicy,
) -> Result<(), ApiError> {
    subscription_shape(spec)?;
    crate::security::ssrf::check_endpoint(policy, &spec.endpoint)
}

/// Everything but the network policy, which only the server knows (a
/// client checks this much before sending).
pub(crate) fn subscription_shape(spec: &SubscriptionSpec) -> Result<(), ApiError> {
    validate_name("subscription", &spec.name).map_err(|err| ApiError::invalid("name", err))?;
    validate_name("topic", &spec.topic).map_err(|err| ApiError::invalid("topic", err))?;
    endpoint(&spec.endpoint)?;
    spec.retry_policy
        .validate()
        .map_err(|err| ApiError::invalid("retry_policy", err))?;
    let timeout = spec.timeout.as_duration();
    if timeout.is_zero() || timeout.as_secs() > MAX_TIMEOUT_SECS {
        return Err(ApiError::invalid(
            "timeout",
            format!("must be more than 0s and at most {MAX_TIMEOUT_SECS}s"),
        ));
    }
    if spec.max_concurrency == 0 || spec.max_concurrency > MAX_CONCURRENCY {
        return Err(ApiError::invalid(
            "max_concurrency",
            format!("must be between 1 and {MAX_CONCURRENCY}"),
        ));
    }
    if let Some(topic) = &spec.dead_letter_topic {
        validate_name("topic", topic).map_err(|err| ApiError::invalid("dead_letter_topic", err))?;
    }
    spec.validate_lifecycle()
        .map_err(|err| ApiError::invalid(err.field, err.message))?;
    spec.health_policy
        .validate()
        .map_err(|err| ApiError::invalid(err.field, err.message))?;
    spec.validate_push()
        .map_err(|err| ApiError::invalid(err.field, err.message))?;
    spec.filter
        .validate()
        .map_err(|err| ApiError::invalid("filter", err))
}

fn endpoint(endpoint: &str) -> Result<(), ApiError> {
    let url = url::Url::parse(endpoint).map_err(|err| {
        ApiError::invalid("endpoint", format!("{endpoint:?} is not a URL: {err}"))
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ApiError::invalid(
            "endpoint",
            format!(
                "scheme {:?} is not supported; use http or https",
                url.scheme()
            ),
        ));
    }
    if url.host().is_none() {
        return Err(ApiError::invalid("endpoint", "the URL has no host"));
    }
    Ok(())
}

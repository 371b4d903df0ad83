//! Limits on what one client may send: header count and size, how long a
//! request may take to arrive, and how fast a token may publish.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use redrive_core::security::RequestRate;

use crate::error::ApiError;

/// Most request headers accepted (below hyper's own hard limit of 100, so
/// the client gets a JSON answer rather than a bare 431).
pub const MAX_HEADERS: usize = 64;
/// Most bytes of header names and values together.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Token buckets per key: `count` requests of burst, refilled at the rate.
pub struct RateLimiter {
    rate: RequestRate,
    buckets: Mutex<HashMap<String, Bucket>>,
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Buckets kept before idle ones are dropped.
const MAX_BUCKETS: usize = 10_000;

impl RateLimiter {
    pub fn new(rate: RequestRate) -> RateLimiter {
        RateLimiter {
            rate,
            buckets: Mutex::default(),
        }
    }

    /// Takes one request from `key`'s bucket, or says how long to wait.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        if self.rate.is_unlimited() {
            return Ok(());
        }
        let capacity = f64::from(self.rate.count);
        let per_second = self.rate.per_second();
        let now = Instant::now();
        let Ok(mut buckets) = self.buckets.lock() else {
            // A poisoned lock only means another request panicked mid-update.
            return Ok(());
        };
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(key) {
            buckets
                .retain(|_, b| now.duration_since(b.updated).as_secs_f64() * per_second < capacity);
        }
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: capacity,
            updated: now,
        });
        let elapsed = now.duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_second).min(capacity);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / per_second))
        }
    }
}

pub fn rate_limited(retry_after: Duration) -> Response {
    let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
    let mut response = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!("this token publishes faster than the server allows; retry in {seconds}s"),
    )
    .into_response();
    if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// 431 for a request whose headers are too many or too large.
pub fn oversized_headers(request: &Request) -> Option<Response> {
    let headers = request.headers();
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if headers.len() > MAX_HEADERS || bytes > MAX_HEADER_BYTES {
        return Some(
            ApiError::new(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers_too_large",
                format!(
                    "the request has {} headers of {bytes} bytes; at most {MAX_HEADERS} headers \
                     of {MAX_HEADER_BYTES} bytes are accepted",
                    headers.len()
                ),
            )
            .into_response(),
        );
    }
    None
}

/// The answer to a request not received and answered within `timeout`.
pub fn timed_out(timeout: Duration) -> Response {
    let mut response = ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "request_timeout",
        format!(
            "the request was not received and answered within {}s",
            timeout.as_secs_f64()
        ),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_asks_to_wait() {
        let limiter = RateLimiter::new("3/s".parse().unwrap());
        for _ in 0..3 {
            assert_eq!(limiter.check("a"), Ok(()));
        }
        let wait = limiter.check("a").unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(334),
            "{wait:?}"
        );
        // Another key has its own bucket.
        assert_eq!(limiter.check("b"), Ok(()));
    }

    #[test]
    fn unlimited_never_refuses() {
        let limiter = RateLimiter::new(RequestRate::UNLIMITED);
        for _ in 0..10_000 {
            assert_eq!(limiter.check("a"), Ok(()));
        }
    }
}

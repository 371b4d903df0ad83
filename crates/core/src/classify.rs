//! What an attempt's outcome means: success, worth retrying, or final.

use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Why an attempt got no HTTP answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// No complete answer within the subscription's timeout.
    Timeout,
    /// The connection was refused or reset.
    Connect,
    /// The endpoint's host name did not resolve.
    Dns,
    /// The TLS handshake failed.
    Tls,
    /// The process stopped while the attempt was under way.
    Interrupted,
    /// Anything else (a malformed answer, a protocol error).
    Other,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Timeout => "timeout",
            ErrorClass::Connect => "connect",
            ErrorClass::Dns => "dns",
            ErrorClass::Tls => "tls",
            ErrorClass::Interrupted => "interrupted",
            ErrorClass::Other => "other",
        }
    }
}

/// A `Retry-After` header's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryAfter {
    Delay(Duration),
    At(Timestamp),
}

/// Parses `Retry-After: 120` or `Retry-After: Wed, 21 Oct 2015 07:28:00 GMT`.
/// Anything else is ignored (`None`), as HTTP asks.
pub fn parse_retry_after(value: &str) -> Option<RetryAfter> {
    let _ = value;
    todo!()
}

/// What came back from one push.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptOutcome {
    Response {
        status: u16,
        retry_after: Option<RetryAfter>,
    },
    Error(ErrorClass),
}

/// How a policy reads an outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Success,
    Retryable,
    /// Never retried (a final status code).
    Final,
}

/// A status code or a range of them, written `404`, `"4xx"` or `"500-599"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StatusRange {
    pub first: u16,
    pub last: u16,
}

impl StatusRange {
    pub fn contains(self, status: u16) -> bool {
        (self.first..=self.last).contains(&status)
    }
}

impl Serialize for StatusRange {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let _ = serializer;
        todo!()
    }
}

impl<'de> Deserialize<'de> for StatusRange {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let _ = deserializer;
        todo!()
    }
}

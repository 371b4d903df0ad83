//! What an attempt's outcome means: success, worth retrying, or final.

use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::retry::policy::RetryPolicy;

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
    /// Refused before connecting: the endpoint resolved to an address the
    /// server's network policy forbids. Never retried.
    Blocked,
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
            ErrorClass::Blocked => "blocked",
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
///
/// Delta-seconds are one or more digits (no sign, no fraction); a value too
/// large for a `Duration` saturates, since the policy caps it anyway. Dates
/// are read as RFC 2822, which covers HTTP's IMF-fixdate.
pub fn parse_retry_after(value: &str) -> Option<RetryAfter> {
    static DATE_PARSER: jiff::fmt::rfc2822::DateTimeParser =
        jiff::fmt::rfc2822::DateTimeParser::new();
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        let secs = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(RetryAfter::Delay(Duration::from_secs(secs)));
    }
    DATE_PARSER.parse_timestamp(value).ok().map(RetryAfter::At)
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

/// Why a status range was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid status range {input:?}: {reason}")]
pub struct StatusRangeError {
    pub input: String,
    pub reason: String,
}

impl StatusRange {
    /// The lowest and highest status codes a range may name.
    pub const VALID: std::ops::RangeInclusive<u16> = 100..=599;

    /// The range `first..=last`, checked like a parsed one.
    pub fn new(first: u16, last: u16) -> Result<StatusRange, StatusRangeError> {
        let range = StatusRange { first, last };
        range.check().map_err(|reason| StatusRangeError {
            input: range.to_string(),
            reason,
        })?;
        Ok(range)
    }

    /// One status code.
    pub fn single(status: u16) -> Result<StatusRange, StatusRangeError> {
        StatusRange::new(status, status)
    }

    /// A class such as 4xx (`class` = 4).
    pub fn class(class: u16) -> Result<StatusRange, StatusRangeError> {
        StatusRange::new(
            class.saturating_mul(100),
            class.saturating_mul(100).saturating_add(99),
        )
    }

    /// Why the range is unusable, if it is: codes outside 100..=599 or a
    /// reversed range. The fields are public, so a value built by hand may
    /// need this.
    pub fn check(self) -> Result<(), String> {
        for code in [self.first, self.last] {
            if !Self::VALID.contains(&code) {
                return Err(format!("{code} is not an HTTP status code (100-599)"));
            }
        }
        if self.first > self.last {
            return Err(format!(
                "the range starts after it ends ({} > {})",
                self.first, self.last
            ));
        }
        Ok(())
    }
}

/// `404`, `4xx` or `500-503`: the shortest form that names the range.
impl std::fmt::Display for StatusRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else if self.first.is_multiple_of(100) && self.last == self.first.saturating_add(99) {
            write!(f, "{}xx", self.first / 100)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// Reads `404`, `4xx` (or `4XX`) and `500-599`.
impl std::str::FromStr for StatusRange {
    type Err = StatusRangeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fail = |reason: String| StatusRangeError {
            input: s.to_string(),
            reason,
        };
        let code = |text: &str| {
            let text = text.trim();
            if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
                return Err(fail(
                    "expected a status code (404), a class (4xx) or a range (500-599)".into(),
                ));
            }
            text.parse::<u16>()
                .map_err(|_| fail(format!("{text} is not an HTTP status code (100-599)")))
        };
        let text = s.trim();
        let range = match text.as_bytes() {
            [class @ b'0'..=b'9', b'x' | b'X', b'x' | b'X'] => {
                let first = u16::from(class - b'0') * 100;
                StatusRange {
                    first,
                    last: first + 99,
                }
            }
            _ => match text.split_once('-') {
                Some((first, last)) => StatusRange {
                    first: code(first)?,
                    last: code(last)?,
                },
                None => {
                    let status = code(text)?;
                    StatusRange {
                        first: status,
                        last: status,
                    }
                }
            },
        };
        range.check().map_err(fail)?;
        Ok(range)
    }
}

impl Serialize for StatusRange {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.first == self.last {
            serializer.serialize_u16(self.first)
        } else {
            serializer.collect_str(self)
        }
    }
}

impl<'de> Deserialize<'de> for StatusRange {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StatusRangeVisitor)
    }
}

struct StatusRangeVisitor;

impl serde::de::Visitor<'_> for StatusRangeVisitor {
    type Value = StatusRange;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a status code (404), a class (\"4xx\") or a range (\"500-599\")")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<StatusRange, E> {
        v.parse().map_err(E::custom)
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<StatusRange, E> {
        let status = u16::try_from(v)
            .ok()
            .filter(|s| StatusRange::VALID.contains(s))
            .ok_or_else(|| {
                E::custom(format!(
                    "invalid status range {v}: {v} is not an HTTP status code (100-599)"
                ))
            })?;
        StatusRange::single(status).map_err(E::custom)
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<StatusRange, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) => Err(E::custom(format!(
                "invalid status range {v}: {v} is not an HTTP status code (100-599)"
            ))),
        }
    }
}

impl RetryPolicy {
    /// How this policy reads an outcome.
    ///
    /// A response is a success when it is 2xx (unless `success_codes_only`)
    /// or one of `success_codes`;
    /// otherwise it is final when it matches `final_codes`, or when
    /// `retry_codes` is set and it matches none of them; anything else is
    /// retried. Every error without a response (timeouts, refused
    /// connections, an interrupted attempt) is retried, except one the
    /// network policy blocked: asking again gets the same answer.
    pub fn classify(&self, outcome: &AttemptOutcome) -> Verdict {
        let status = match *outcome {
            AttemptOutcome::Error(ErrorClass::Blocked) => return Verdict::Final,
            AttemptOutcome::Error(_) => return Verdict::Retryable,
            AttemptOutcome::Response { status, .. } => status,
        };
        let in_any = |ranges: &[StatusRange]| ranges.iter().any(|r| r.contains(status));
        let listed_retryable = self.retry_codes.as_deref().is_none_or(&in_any);
        let plain_success = (200..=299).contains(&status) && !self.success_codes_only;
        if plain_success || self.success_codes.contains(&status) {
            Verdict::Success
        } else if in_any(&self.final_codes) || !listed_retryable {
            Verdict::Final
        } else {
            Verdict::Retryable
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(first: u16, last: u16) -> StatusRange {
        StatusRange { first, last }
    }

    fn response(status: u16) -> AttemptOutcome {
        AttemptOutcome::Response {
            status,
            retry_after: None,
        }
    }

    #[test]
    fn retry_after_reads_delta_seconds() {
        assert_eq!(
            parse_retry_after("120"),
            Some(RetryAfter::Delay(Duration::from_secs(120)))
        );
        assert_eq!(
            parse_retry_after(" 0 "),
            Some(RetryAfter::Delay(Duration::ZERO))
        );
    }

    #[test]
    fn a_blocked_attempt_is_final() {
        let policy = RetryPolicy::default();
        assert_eq!(
            policy.classify(&AttemptOutcome::Error(ErrorClass::Blocked)),
            Verdict::Final
        );
        assert_eq!(ErrorClass::Blocked.as_str(), "blocked");
    }

    #[test]
    fn retry_after_saturates_huge_delta_seconds() {
        assert_eq!(
            parse_retry_after("99999999999999999999999"),
            Some(RetryAfter::Delay(Duration::from_secs(u64::MAX)))
        );
    }

    #[test]
    fn retry_after_reads_an_imf_fixdate() {
        let expected: Timestamp = "2015-10-21T07:28:00Z".parse().unwrap();
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(RetryAfter::At(expected))
        );
    }

    #[test]
    fn retry_after_ignores_anything_else() {
        for value in [
            "",
            "  ",
            "-5",
            "+5",
            "1.5",
            "120s",
            "soon",
            "Wed, 21 Oct 2015 07:28:00 GMT garbage",
            "Thu, 21 Oct 2015 07:28:00 GMT",
            "2015-10-21T07:28:00Z",
        ] {
            assert_eq!(parse_retry_after(value), None, "{value:?}");
        }
    }

    #[test]
    fn status_range_reads_a_number_a_string_a_class_and_a_range() {
        let parse = |json: &str| serde_json::from_str::<StatusRange>(json).unwrap();
        assert_eq!(parse("404"), range(404, 404));
        assert_eq!(parse("\"404\""), range(404, 404));
        assert_eq!(parse("\"4xx\""), range(400, 499));
        assert_eq!(parse("\"5XX\""), range(500, 599));
        assert_eq!(parse("\"500-599\""), range(500, 599));
        assert_eq!(parse("\"500-503\""), range(500, 503));
        assert_eq!(parse("\" 502 - 504 \""), range(502, 504));
        assert_eq!(parse("\"429-429\""), range(429, 429));
    }

    #[test]
    fn status_range_rejects_codes_outside_100_to_599_and_reversed_ranges() {
        let message = |json: &str| {
            serde_json::from_str::<StatusRange>(json)
                .unwrap_err()
                .to_string()
        };
        assert!(message("99").contains("99 is not an HTTP status code (100-599)"));
        assert!(message("600").contains("600 is not an HTTP status code (100-599)"));
        assert!(message("70000").contains("70000 is not an HTTP status code"));
        assert!(message("-404").contains("-404 is not an HTTP status code"));
        assert!(message("\"6xx\"").contains("600 is not an HTTP status code"));
        assert!(message("\"0xx\"").contains("0 is not an HTTP status code"));
        assert!(message("\"599-500\"").contains("the range starts after it ends (599 > 500)"));
        assert!(message("\"99999\"").contains("99999 is not an HTTP status code"));
    }

    #[test]
    fn status_range_rejects_garbage() {
        for json in [
            "\"\"",
            "\"4x\"",
            "\"4xxx\"",
            "\"abc\"",
            "\"500-\"",
            "\"-500\"",
            "\"1-2-3\"",
            "\"+404\"",
            "404.5",
            "true",
            "null",
        ] {
            assert!(
                serde_json::from_str::<StatusRange>(json).is_err(),
                "{json} should be rejected"
            );
        }
    }

    #[test]
    fn status_range_serializes_in_its_shortest_form() {
        let json = |r: StatusRange| serde_json::to_string(&r).unwrap();
        assert_eq!(json(range(404, 404)), "404");
        assert_eq!(json(range(400, 499)), "\"4xx\"");
        assert_eq!(json(range(500, 599)), "\"5xx\"");
        assert_eq!(json(range(500, 503)), "\"500-503\"");
        assert_eq!(json(range(450, 549)), "\"450-549\"");
    }

    #[test]
    fn status_range_json_round_trips() {
        let ranges = vec![range(404, 404), range(400, 499), range(500, 503)];
        let text = serde_json::to_string(&ranges).unwrap();
        assert_eq!(text, r#"[404,"4xx","500-503"]"#);
        assert_eq!(
            serde_json::from_str::<Vec<StatusRange>>(&text).unwrap(),
            ranges
        );
    }

    #[test]
    fn status_range_constructors_validate() {
        assert_eq!(StatusRange::single(410).unwrap(), range(410, 410));
        assert_eq!(StatusRange::class(4).unwrap(), range(400, 499));
        assert_eq!(StatusRange::new(500, 504).unwrap(), range(500, 504));
        assert_eq!(
            StatusRange::new(504, 500).unwrap_err().to_string(),
            "invalid status range \"504-500\": the range starts after it ends (504 > 500)"
        );
        assert!(StatusRange::single(0).is_err());
        assert!(StatusRange::class(6).is_err());
        assert!(StatusRange::class(u16::MAX).is_err());
    }

    #[test]
    fn status_range_contains_both_ends() {
        let r = range(500, 503);
        assert!(!r.contains(499));
        assert!(r.contains(500));
        assert!(r.contains(503));
        assert!(!r.contains(504));
    }

    #[test]
    fn default_policy_treats_2xx_as_success_and_retries_everything_else() {
        let policy = RetryPolicy::default();
        for status in [200, 201, 204, 299] {
            assert_eq!(
                policy.classify(&response(status)),
                Verdict::Success,
                "{status}"
            );
        }
        for status in [100, 102, 199, 300, 301, 400, 404, 410, 429, 500, 503, 599] {
            assert_eq!(
                policy.classify(&response(status)),
                Verdict::Retryable,
                "{status}"
            );
        }
    }

    #[test]
    fn every_error_class_is_retryable() {
        let policy = RetryPolicy {
            retry_codes: Some(vec![range(429, 429)]),
            final_codes: vec![range(400, 599)],
            ..RetryPolicy::default()
        };
        for class in [
            ErrorClass::Timeout,
            ErrorClass::Connect,
            ErrorClass::Dns,
            ErrorClass::Tls,
            ErrorClass::Interrupted,
            ErrorClass::Other,
        ] {
            assert_eq!(
                policy.classify(&AttemptOutcome::Error(class)),
                Verdict::Retryable,
                "{class:?}"
            );
        }
    }

    #[test]
    fn success_codes_add_to_2xx() {
        let policy = RetryPolicy {
            success_codes: vec![102],
            ..RetryPolicy::default()
        };
        assert_eq!(policy.classify(&response(102)), Verdict::Success);
        assert_eq!(policy.classify(&response(204)), Verdict::Success);
        assert_eq!(policy.classify(&response(101)), Verdict::Retryable);
    }

    #[test]
    fn final_codes_are_never_retried() {
        let policy = RetryPolicy {
            final_codes: vec![range(400, 400), range(404, 404), range(410, 410)],
            ..RetryPolicy::default()
        };
        assert_eq!(policy.classify(&response(400)), Verdict::Final);
        assert_eq!(policy.classify(&response(404)), Verdict::Final);
        assert_eq!(policy.classify(&response(410)), Verdict::Final);
        assert_eq!(policy.classify(&response(409)), Verdict::Retryable);
        assert_eq!(policy.classify(&response(500)), Verdict::Retryable);
    }

    #[test]
    fn retry_codes_make_every_other_failure_final_and_final_codes_win() {
        let policy = RetryPolicy {
            retry_codes: Some(vec![range(429, 429), range(500, 599)]),
            final_codes: vec![range(505, 505)],
            ..RetryPolicy::default()
        };
        assert_eq!(policy.classify(&response(429)), Verdict::Retryable);
        assert_eq!(policy.classify(&response(500)), Verdict::Retryable);
        assert_eq!(policy.classify(&response(503)), Verdict::Retryable);
        assert_eq!(policy.classify(&response(505)), Verdict::Final);
        assert_eq!(policy.classify(&response(404)), Verdict::Final);
        assert_eq!(policy.classify(&response(302)), Verdict::Final);
        assert_eq!(policy.classify(&response(200)), Verdict::Success);
    }

    #[test]
    fn empty_retry_codes_retry_only_errors() {
        let policy = RetryPolicy {
            retry_codes: Some(Vec::new()),
            ..RetryPolicy::default()
        };
        assert_eq!(policy.classify(&response(503)), Verdict::Final);
        assert_eq!(
            policy.classify(&AttemptOutcome::Error(ErrorClass::Timeout)),
            Verdict::Retryable
        );
    }

    #[test]
    fn success_wins_over_final_codes() {
        let policy = RetryPolicy {
            success_codes: vec![102],
            final_codes: vec![range(100, 299)],
            ..RetryPolicy::default()
        };
        assert_eq!(policy.classify(&response(102)), Verdict::Success);
        assert_eq!(policy.classify(&response(200)), Verdict::Success);
        assert_eq!(policy.classify(&response(101)), Verdict::Final);
    }
}

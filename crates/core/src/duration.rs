//! Durations as users write them: `"30s"`, `"10m"`, `"0.5h"`, `"2d"`, `"600s"`, `"1.5"`
//! (plain seconds), or a JSON number of seconds.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A duration that reads from `"30s"`-style strings or numbers of seconds and
/// writes itself as seconds with an `s` suffix (`"0.1s"`, `"3600s"`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HumanDuration(pub Duration);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason}")]
pub struct DurationError {
    pub input: String,
    pub reason: String,
}

impl HumanDuration {
    pub const fn from_secs(secs: u64) -> Self {
        HumanDuration(Duration::from_secs(secs))
    }

    pub const fn from_millis(ms: u64) -> Self {
        HumanDuration(Duration::from_millis(ms))
    }

    pub fn as_duration(self) -> Duration {
        self.0
    }
}

/// Parses `"30s"`, `"10m"`, `"0.5h"`, `"2d"`, `"600s"`, `"100ms"` or plain seconds.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let _ = input;
    todo!()
}

/// Compact human form for tables: `"100ms"`, `"10s"`, `"2m 40s"`, `"1h"`, `"1d 2h"`.
pub fn format_duration(d: Duration) -> String {
    let _ = d;
    todo!()
}

impl Serialize for HumanDuration {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let _ = serializer;
        todo!()
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let _ = deserializer;
        todo!()
    }
}

impl utoipa::PartialSchema for HumanDuration {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some(
                "A duration: \"30s\", \"10m\", \"0.5h\", \"2d\", or a number of seconds",
            ))
            .examples([serde_json::json!("10s")])
            .into()
    }
}

impl utoipa::ToSchema for HumanDuration {}

//! Conversions between SQLite values and domain values.

use jiff::Timestamp;
use redrive_core::{Attempt, CloudEvent, Decision, Delivery};
use rusqlite::Row;
use serde::de::DeserializeOwned;

pub(crate) fn timestamp(ms: i64) -> rusqlite::Result<Timestamp> {
    Timestamp::from_millisecond(ms).map_err(|err| conversion(Box::new(err)))
}

fn opt_timestamp(ms: Option<i64>) -> rusqlite::Result<Option<Timestamp>> {
    ms.map(timestamp).transpose()
}

fn conversion(err: Box<dyn std::error::Error + Send + Sync>) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, err)
}

/// Reads a snake_case enum stored as its serde name.
pub(crate) fn parse_enum<T: DeserializeOwned>(text: &str) -> rusqlite::Result<T> {
    serde_json::from_value(serde_json::Value::String(text.to_owned()))
        .map_err(|err| conversion(Box::new(err)))
}

fn opt_enum<T: DeserializeOwned>(text: Option<String>) -> rusqlite::Result<Option<T>> {
    text.as_deref().map(parse_enum).transpose()
}

pub(crate) use crate::stored::{DELIVERY_COLUMN_COUNT, DELIVERY_COLUMNS, millis};

pub(crate) fn delivery(row: &Row<'_>) -> rusqlite::Result<Delivery> {
    let state: String = row.get(5)?;
    Ok(Delivery {
        id: row.get(0)?,
        subscription: row.get(1)?,
        event_id: row.get(2)?,
        event_source: row.get(3)?,
        event_type: row.get(4)?,
        state: parse_enum(&state)?,
        attempts: row.get(6)?,
        next_attempt_at: opt_timestamp(row.get(7)?)?,
        first_attempt_at: opt_timestamp(row.get(8)?)?,
        last_attempt_at: opt_timestamp(row.get(9)?)?,
        last_status: row.get(10)?,
        last_error: opt_enum(row.get(11)?)?,
        failure_reason: opt_enum(row.get(12)?)?,
        created_at: timestamp(row.get(13)?)?,
        updated_at: timestamp(row.get(14)?)?,
        dead_letter_event: row.get(15)?,
        attempts_before_redrive: row.get(16)?,
        redriven_at: opt_timestamp(row.get(17)?)?,
    })
}

/// A delivery and its event from a row of `DELIVERY_COLUMNS` followed by
/// the event's `attributes` and `data`.
pub(crate) fn delivery_with_event(row: &Row<'_>) -> rusqlite::Result<(Delivery, CloudEvent)> {
    let delivery = delivery(row)?;
    let attributes: String = row.get(DELIVERY_COLUMN_COUNT)?;
    let event = event(&attributes, row.get(DELIVERY_COLUMN_COUNT + 1)?)?;
    Ok((delivery, event))
}

/// Rebuilds an event from its stored attributes (JSON) and data.
pub(crate) fn event(attributes: &str, data: Option<Vec<u8>>) -> rusqlite::Result<CloudEvent> {
    let mut event: CloudEvent =
        serde_json::from_str(attributes).map_err(|err| conversion(Box::new(err)))?;
    event.data = data;
    Ok(event)
}

pub(crate) use crate::stored::ATTEMPT_COLUMNS;

pub(crate) fn attempt(row: &Row<'_>) -> rusqlite::Result<Attempt> {
    let decision: String = row.get(7)?;
    let decision: Decision =
        serde_json::from_str(&decision).map_err(|err| conversion(Box::new(err)))?;
    let (number, kind) = crate::lifecycle::attempt_number(row.get(0)?)
        .ok_or_else(|| conversion(Box::new(crate::lifecycle::BadAttemptNumber)))?;
    Ok(Attempt {
        number,
        kind,
        started_at: timestamp(row.get(1)?)?,
        duration_ms: u64::try_from(row.get::<_, i64>(2)?).unwrap_or(0),
        status: row.get(3)?,
        error: opt_enum(row.get(4)?)?,
        error_message: row.get(5)?,
        response_snippet: row.get(6)?,
        decision,
    })
}

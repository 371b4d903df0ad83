//! Conversions between PostgreSQL rows and domain values. Times are stored
//! as milliseconds since the epoch (`bigint`), as on SQLite, so both
//! backends compare and order them the same way.

use jiff::Timestamp;
use redrive_core::{Attempt, CloudEvent, Decision, Delivery};
use serde::de::DeserializeOwned;
use tokio_postgres::Row;

use super::pg_error;
use crate::{Result, StoreError};

pub(crate) use crate::sqlite::rows::{enum_name, millis};

pub(crate) fn timestamp(ms: i64) -> Result<Timestamp> {
    Timestamp::from_millisecond(ms)
        .map_err(|err| StoreError::Backend(format!("stored time {ms} is out of range: {err}")))
}

fn opt_timestamp(ms: Option<i64>) -> Result<Option<Timestamp>> {
    ms.map(timestamp).transpose()
}

pub(crate) fn parse_enum<T: DeserializeOwned>(text: &str) -> Result<T> {
    Ok(serde_json::from_value(serde_json::Value::String(
        text.to_owned(),
    ))?)
}

fn opt_enum<T: DeserializeOwned>(text: Option<String>) -> Result<Option<T>> {
    text.as_deref().map(parse_enum).transpose()
}

fn unsigned(value: i32, column: &str) -> Result<u32> {
    u32::try_from(value)
        .map_err(|_| StoreError::Backend(format!("stored {column} {value} is negative")))
}

fn status(value: Option<i32>) -> Result<Option<u16>> {
    value
        .map(|v| {
            u16::try_from(v)
                .map_err(|_| StoreError::Backend(format!("stored status {v} is invalid")))
        })
        .transpose()
}

/// Reads a column, naming it when the stored type is not the expected one.
pub(crate) fn get<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a Row,
    index: usize,
) -> Result<T> {
    row.try_get(index).map_err(pg_error)
}

/// Columns read by [`delivery`], in order; `d` is deliveries, `e` events.
pub(crate) use crate::sqlite::rows::{DELIVERY_COLUMN_COUNT, DELIVERY_COLUMNS};

pub(crate) fn delivery(row: &Row) -> Result<Delivery> {
    let state: String = get(row, 5)?;
    Ok(Delivery {
        id: get(row, 0)?,
        subscription: get(row, 1)?,
        event_id: get(row, 2)?,
        event_source: get(row, 3)?,
        event_type: get(row, 4)?,
        state: parse_enum(&state)?,
        attempts: unsigned(get(row, 6)?, "attempts")?,
        next_attempt_at: opt_timestamp(get(row, 7)?)?,
        first_attempt_at: opt_timestamp(get(row, 8)?)?,
        last_attempt_at: opt_timestamp(get(row, 9)?)?,
        last_status: status(get(row, 10)?)?,
        last_error: opt_enum(get(row, 11)?)?,
        failure_reason: opt_enum(get(row, 12)?)?,
        created_at: timestamp(get(row, 13)?)?,
        updated_at: timestamp(get(row, 14)?)?,
        dead_letter_event: get(row, 15)?,
        attempts_before_redrive: unsigned(get(row, 16)?, "attempts_before_redrive")?,
        redriven_at: opt_timestamp(get(row, 17)?)?,
    })
}

/// Rebuilds an event from its stored attributes (JSON) and data, read at
/// `index` and `index + 1`.
pub(crate) fn event(row: &Row, index: usize) -> Result<CloudEvent> {
    let attributes: &str = get(row, index)?;
    let mut event: CloudEvent = serde_json::from_str(attributes)?;
    event.data = get(row, index + 1)?;
    Ok(event)
}

pub(crate) const ATTEMPT_COLUMNS: &str = crate::sqlite::rows::ATTEMPT_COLUMNS;

pub(crate) fn attempt(row: &Row) -> Result<Attempt> {
    let decision: &str = get(row, 7)?;
    let decision: Decision = serde_json::from_str(decision)?;
    let stored: i32 = get(row, 0)?;
    let (number, kind) = crate::lifecycle::attempt_number(i64::from(stored))
        .ok_or_else(|| StoreError::Backend(format!("stored attempt number {stored} is invalid")))?;
    Ok(Attempt {
        number,
        kind,
        started_at: timestamp(get(row, 1)?)?,
        duration_ms: u64::try_from(get::<i64>(row, 2)?).unwrap_or(0),
        status: status(get(row, 3)?)?,
        error: opt_enum(get(row, 4)?)?,
        error_message: get(row, 5)?,
        response_snippet: get(row, 6)?,
        decision,
    })
}

/// A count or limit as PostgreSQL's `bigint`.
pub(crate) fn big(value: impl TryInto<i64>) -> i64 {
    value.try_into().unwrap_or(i64::MAX)
}

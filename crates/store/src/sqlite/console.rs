//! The console's reads on SQLite, each served by an index of the
//! migration below so they stay fast on subscriptions with many deliveries.

use jiff::Timestamp;
use redrive_core::DeliveryState;
use rusqlite::Connection;
use rusqlite::types::Value;

use super::rows::{self, DELIVERY_COLUMNS, millis, parse_enum, timestamp};
use crate::console::*;
use crate::{Result, StoreError};

/// Every list orders by `(created_at, id)` descending within a
/// subscription; each filter has an index with that suffix, so a page is a
/// range scan whatever the depth. Counts and buckets read covering indexes.
pub(super) const CONSOLE_INDEXES: &str = r#"
-- The console: newest-first delivery lists, filtered, keyset paged.
CREATE INDEX deliveries_recent
    ON deliveries (subscription, created_at, id, state);
CREATE INDEX deliveries_recent_by_state
    ON deliveries (subscription, state, created_at, id);
CREATE INDEX deliveries_recent_by_status
    ON deliveries (subscription, last_status, created_at, id)
    WHERE last_status IS NOT NULL;
-- Delivered vs failed over time, by when each ended.
CREATE INDEX deliveries_ended
    ON deliveries (subscription, updated_at, state)
    WHERE state IN ('delivered', 'failed');
"#;

fn cursor_text(created_at: Timestamp, id: &str) -> String {
    format!("{}~{id}", millis(created_at))
}

fn parse_cursor(cursor: &str) -> Result<(i64, String)> {
    cursor
        .split_once('~')
        .and_then(|(ms, id)| Some((ms.parse::<i64>().ok()?, id.to_owned())))
        .ok_or_else(|| {
            StoreError::Invalid(format!("cursor {cursor:?} is not one this server gave"))
        })
}

/// The statement a search runs and its parameters, or `None` when no
/// delivery can match. Kept apart from running it so the plan tests explain
/// the very statement the console runs.
pub(crate) fn search_statement(query: &DeliverySearch) -> Result<Option<(String, Vec<Value>)>> {
    let mut sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM deliveries d JOIN events e ON e.seq = d.event_seq
         WHERE d.subscription = ?1"
    );
    let mut args: Vec<Value> = vec![query.subscription.clone().into()];
    let mut push = |sql: &mut String, clause: &str, value: Value| {
        args.push(value);
        sql.push_str(&clause.replace('?', &format!("?{}", args.len())));
    };
    let state = match (query.state, query.reason) {
        (_, Some(_)) => Some(DeliveryState::Failed),
        (state, None) => state,
    };
    if let (Some(asked), Some(_)) = (query.state, query.reason)
        && asked != DeliveryState::Failed
    {
        // Only failed deliveries carry a reason: nothing can match.
        return Ok(None);
    }
    if let Some(state) = state {
        push(
            &mut sql,
            " AND d.state = ?",
            state.as_str().to_owned().into(),
        );
    }
    if let Some(reason) = query.reason {
        push(
            &mut sql,
            " AND d.failure_reason = ?",
            reason.as_str().to_owned().into(),
        );
    }
    if let Some(status) = query.status {
        push(&mut sql, " AND d.last_status = ?", i64::from(status).into());
    }
    if let Some(ty) = &query.event_type {
        push(&mut sql, " AND e.type = ?", ty.clone().into());
    }
    if let Some(since) = query.since {
        push(&mut sql, " AND d.created_at >= ?", millis(since).into());
    }
    if let Some(until) = query.until {
        push(&mut sql, " AND d.created_at < ?", millis(until).into());
    }
    if let Some(cursor) = &query.cursor {
        let (ms, id) = parse_cursor(cursor)?;
        args.push(ms.into());
        args.push(id.into());
        let n = args.len();
        sql.push_str(&format!(" AND (d.created_at, d.id) < (?{}, ?{n})", n - 1));
    }
    args.push(i64::from(page_limit(query) + 1).into());
    sql.push_str(&format!(
        " ORDER BY d.created_at DESC, d.id DESC LIMIT ?{}",
        args.len()
    ));
    Ok(Some((sql, args)))
}

fn page_limit(query: &DeliverySearch) -> u32 {
    query.limit.max(1)
}

pub(super) fn search_in(conn: &Connection, query: &DeliverySearch) -> Result<DeliverySearchPage> {
    let Some((sql, args)) = search_statement(query)? else {
        return Ok(DeliverySearchPage::default());
    };
    let limit = page_limit(query);
    let mut deliveries = conn
        .prepare_cached(&sql)?
        .query_map(rusqlite::params_from_iter(args), rows::delivery)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let next_cursor = if deliveries.len() > limit as usize {
        deliveries.truncate(limit as usize);
        deliveries.last().map(|d| cursor_text(d.created_at, &d.id))
    } else {
        None
    };
    Ok(DeliverySearchPage {
        deliveries,
        next_cursor,
    })
}

/// The statement counting a subscription's deliveries by state, and its
/// parameters.
pub(crate) fn count_by_state_statement(
    subscription: &str,
    since: Timestamp,
) -> (&'static str, Vec<Value>) {
    (
        "SELECT state, COUNT(*) FROM deliveries INDEXED BY deliveries_recent
         WHERE subscription = ?1 AND created_at >= ?2 GROUP BY state",
        vec![subscription.to_owned().into(), millis(since).into()],
    )
}

pub(super) fn count_by_state_in(
    conn: &Connection,
    subscription: &str,
    since: Timestamp,
) -> Result<StateCounts> {
    let mut counts = StateCounts::default();
    let (sql, args) = count_by_state_statement(subscription, since);
    let mut statement = conn.prepare_cached(sql)?;
    let rows = statement.query_map(rusqlite::params_from_iter(args), |row| {
        let state: String = row.get(0)?;
        let count: i64 = row.get(1)?;
        Ok((parse_enum::<DeliveryState>(&state)?, count))
    })?;
    for row in rows {
        let (state, count) = row?;
        counts.add(state, u64::try_from(count).unwrap_or(0));
    }
    Ok(counts)
}

/// The statement counting ended deliveries per bucket of `width` over
/// `[from, until)` (milliseconds), and its parameters.
pub(crate) fn outcome_buckets_statement(
    subscription: &str,
    from: i64,
    until: i64,
    width: i64,
) -> (&'static str, Vec<Value>) {
    (
        "SELECT (updated_at - ?2) / ?4, state, COUNT(*) FROM deliveries INDEXED BY deliveries_ended
         WHERE subscription = ?1 AND state IN ('delivered', 'failed')
           AND updated_at >= ?2 AND updated_at < ?3
         GROUP BY 1, 2",
        vec![
            subscription.to_owned().into(),
            from.into(),
            until.into(),
            width.into(),
        ],
    )
}

pub(super) fn outcome_buckets_in(
    conn: &Connection,
    query: &OutcomeBucketsQuery,
) -> Result<Vec<OutcomeBucket>> {
    let width = i64::try_from(query.width.as_millis()).unwrap_or(i64::MAX);
    let from = millis(query.from);
    let until = millis(query.until);
    if width <= 0 || until <= from {
        return Err(StoreError::Invalid(
            "buckets need a positive width and a range that ends after it starts".into(),
        ));
    }
    // Both differences are positive here.
    let count = (until.abs_diff(from)).div_ceil(width.unsigned_abs());
    if count > MAX_OUTCOME_BUCKETS {
        return Err(StoreError::Invalid(format!(
            "{count} buckets asked for; at most {MAX_OUTCOME_BUCKETS}"
        )));
    }
    let mut buckets = (0..count as i64)
        .map(|i| {
            Ok(OutcomeBucket {
                start: timestamp(from + i * width)?,
                delivered: 0,
                failed: 0,
            })
        })
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let (sql, args) = outcome_buckets_statement(&query.subscription, from, until, width);
    let mut statement = conn.prepare_cached(sql)?;
    let rows = statement.query_map(rusqlite::params_from_iter(args), |row| {
        let index: i64 = row.get(0)?;
        let state: String = row.get(1)?;
        let count: i64 = row.get(2)?;
        Ok((index, state, count))
    })?;
    for row in rows {
        let (index, state, count) = row?;
        let count = u64::try_from(count).unwrap_or(0);
        if let Some(bucket) = usize::try_from(index).ok().and_then(|i| buckets.get_mut(i)) {
            match state.as_str() {
                "delivered" => bucket.delivered += count,
                _ => bucket.failed += count,
            }
        }
    }
    Ok(buckets)
}

#[cfg(test)]
mod plans;

//! The console's reads on SQLite, each served by an index of the
//! migration below so they stay fast on subscriptions with many deliveries.

use async_trait::async_trait;
use jiff::Timestamp;
use redrive_core::DeliveryState;
use rusqlite::Connection;
use rusqlite::types::Value;

use super::SqliteStore;
use super::rows::{self, DELIVERY_COLUMNS, millis, parse_enum};
use crate::ConsoleStore;
use crate::Result;
use crate::console::*;

/// The statement a search runs and its parameters, or `None` when no
/// delivery can match. Kept apart from running it so the plan tests explain
/// the very statement the console runs.
///
/// A search of every state reads the subscription's range of each state in
/// `deliveries_recent_by_state` and merges the four, newest first: SQLite
/// keeps no index of a subscription's deliveries by age alone, which every
/// publish would write (0012).
pub(crate) fn search_statement(query: &DeliverySearch) -> Result<Option<(String, Vec<Value>)>> {
    let mut filters = String::new();
    let mut args: Vec<Value> = vec![query.subscription.clone().into()];
    let mut push = |sql: &mut String, clause: &str, value: Value| {
        args.push(value);
        sql.push_str(&clause.replace('?', &format!("?{}", args.len())));
    };
    let Ok(state) = query.state_filter() else {
        return Ok(None);
    };
    if let Some(state) = state {
        push(
            &mut filters,
            " AND d.state = ?",
            state.as_str().to_owned().into(),
        );
    }
    if let Some(reason) = query.reason {
        push(
            &mut filters,
            " AND d.failure_reason = ?",
            reason.as_str().to_owned().into(),
        );
    }
    if let Some(status) = query.status {
        push(
            &mut filters,
            " AND d.last_status = ?",
            i64::from(status).into(),
        );
    }
    if let Some(ty) = &query.event_type {
        push(&mut filters, " AND e.type = ?", ty.clone().into());
    }
    if let Some(since) = query.since {
        push(&mut filters, " AND d.created_at >= ?", millis(since).into());
    }
    if let Some(until) = query.until {
        push(&mut filters, " AND d.created_at < ?", millis(until).into());
    }
    if let Some((ms, id)) = query.after()? {
        args.push(ms.into());
        args.push(id.into());
        let n = args.len();
        filters.push_str(&format!(" AND (d.created_at, d.id) < (?{}, ?{n})", n - 1));
    }
    args.push(i64::from(query.page_limit() + 1).into());
    let limit = args.len();
    let select = |extra: &str| {
        format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries d JOIN events e ON e.seq = d.event_seq
             WHERE d.subscription = ?1{extra}{filters}"
        )
    };
    let sql = if state.is_some() {
        format!(
            "{} ORDER BY d.created_at DESC, d.id DESC LIMIT ?{limit}",
            select("")
        )
    } else {
        let arms: Vec<String> = DeliveryState::ALL
            .iter()
            .map(|state| select(&format!(" AND d.state = '{}'", state.as_str())))
            .collect();
        format!(
            "{} {} LIMIT ?{limit}",
            arms.join(" UNION ALL "),
            merged_newest_first()
        )
    };
    Ok(Some((sql, args)))
}

pub(super) fn search_deliveries(
    conn: &Connection,
    query: &DeliverySearch,
) -> Result<DeliverySearchPage> {
    let Some((sql, args)) = search_statement(query)? else {
        return Ok(DeliverySearchPage::default());
    };
    let deliveries = conn
        .prepare_cached(&sql)?
        .query_map(rusqlite::params_from_iter(args), rows::delivery)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(DeliverySearchPage::from_rows(
        deliveries,
        query.page_limit(),
    ))
}

/// Every delivery state, as an SQL list: counts by state name them all so
/// that `deliveries_recent_by_state` is read as one range per state.
const EVERY_STATE: &str = "('scheduled', 'in_flight', 'delivered', 'failed')";

/// The statement counting a subscription's deliveries by state, and its
/// parameters.
pub(crate) fn count_by_state_statement(
    subscription: &str,
    since: Timestamp,
) -> (String, Vec<Value>) {
    (
        format!(
            "SELECT state, COUNT(*) FROM deliveries INDEXED BY deliveries_recent_by_state
             WHERE subscription = ?1 AND state IN {EVERY_STATE} AND created_at >= ?2
             GROUP BY state"
        ),
        vec![subscription.to_owned().into(), millis(since).into()],
    )
}

pub(super) fn count_deliveries_by_state(
    conn: &Connection,
    subscription: &str,
    since: Timestamp,
) -> Result<StateCounts> {
    let mut counts = StateCounts::default();
    let (sql, args) = count_by_state_statement(subscription, since);
    let mut statement = conn.prepare_cached(&sql)?;
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

pub(super) fn outcome_buckets(
    conn: &Connection,
    query: &OutcomeBucketsQuery,
) -> Result<Vec<OutcomeBucket>> {
    let mut grid = BucketGrid::new(query)?;
    let (sql, args) =
        outcome_buckets_statement(&query.subscription, grid.from, grid.until, grid.width);
    let mut statement = conn.prepare_cached(sql)?;
    let rows = statement.query_map(rusqlite::params_from_iter(args), |row| {
        let index: i64 = row.get(0)?;
        let state: String = row.get(1)?;
        let count: i64 = row.get(2)?;
        Ok((index, state, count))
    })?;
    for row in rows {
        let (index, state, count) = row?;
        grid.add(index, &state, count);
    }
    Ok(grid.into_buckets())
}

#[async_trait]
impl ConsoleStore for SqliteStore {
    async fn search_deliveries(&self, query: DeliverySearch) -> Result<DeliverySearchPage> {
        self.readers
            .read(move |conn| search_deliveries(conn, &query))
            .await
    }

    async fn count_deliveries_by_state(
        &self,
        subscription: &str,
        since: Timestamp,
    ) -> Result<StateCounts> {
        let subscription = subscription.to_owned();
        self.readers
            .read(move |conn| count_deliveries_by_state(conn, &subscription, since))
            .await
    }

    async fn outcome_buckets(&self, query: OutcomeBucketsQuery) -> Result<Vec<OutcomeBucket>> {
        self.readers
            .read(move |conn| outcome_buckets(conn, &query))
            .await
    }
}

#[cfg(test)]
mod plans;

#[cfg(test)]
mod every_state_tests {
    use redrive_core::DeliveryState;

    #[test]
    fn every_state_lists_each_delivery_state_once() {
        let listed: Vec<&str> = super::EVERY_STATE
            .trim_matches(|c| c == '(' || c == ')')
            .split(", ")
            .map(|quoted| quoted.trim_matches('\''))
            .collect();
        let known: Vec<&str> = DeliveryState::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(listed, known);
    }
}

//! The console's reads on PostgreSQL, each served by an index of the
//! migration below (the same shapes as on SQLite).

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use jiff::Timestamp;
use redrive_core::DeliveryState;
use tokio_postgres::types::ToSql;

use super::rows::{self, DELIVERY_COLUMNS, big, get, millis, parse_enum};
use super::{PostgresStore, pg_error};
use crate::ConsoleStore;
use crate::Result;
use crate::console::*;

/// Parameters of a console statement, owned so they outlive its building.
pub(crate) type Params = Vec<Box<dyn ToSql + Sync + Send>>;

/// The statement a search runs and its parameters, or `None` when no
/// delivery can match. Kept apart from running it so the plan tests explain
/// the very statement the console runs.
///
/// A search of every state reads a page from the subscription's range of
/// each state in `deliveries_recent_by_state` and merges the four, newest
/// first: PostgreSQL keeps no index of a subscription's deliveries by age
/// alone, which every version of every delivery row would write (0012).
/// Each state's part is limited on its own so that it is planned as an
/// ordered index range (a limit on the whole union alone would let the
/// planner read and sort each state's every row).
pub(crate) fn search_statement(query: &DeliverySearch) -> Result<Option<(String, Params)>> {
    let Ok(state) = query.state_filter() else {
        return Ok(None);
    };
    let mut filters = String::new();
    let mut args: Params = vec![Box::new(query.subscription.clone())];
    let mut push = |sql: &mut String, clause: &str, value: Box<dyn ToSql + Sync + Send>| {
        args.push(value);
        sql.push_str(&clause.replace('?', &format!("${}", args.len())));
    };
    if let Some(state) = state {
        push(&mut filters, " AND d.state = ?", Box::new(state.as_str()));
    }
    if let Some(reason) = query.reason {
        push(
            &mut filters,
            " AND d.failure_reason = ?",
            Box::new(reason.as_str()),
        );
    }
    if let Some(status) = query.status {
        push(
            &mut filters,
            " AND d.last_status = ?",
            Box::new(i32::from(status)),
        );
    }
    if let Some(ty) = &query.event_type {
        push(&mut filters, " AND e.type = ?", Box::new(ty.clone()));
    }
    if let Some(since) = query.since {
        push(
            &mut filters,
            " AND d.created_at >= ?",
            Box::new(millis(since)),
        );
    }
    if let Some(until) = query.until {
        push(
            &mut filters,
            " AND d.created_at < ?",
            Box::new(millis(until)),
        );
    }
    if let Some((ms, id)) = query.after()? {
        args.push(Box::new(ms));
        args.push(Box::new(id));
        let n = args.len();
        filters.push_str(&format!(" AND (d.created_at, d.id) < (${}, ${n})", n - 1));
    }
    args.push(Box::new(big(query.page_limit() + 1)));
    let limit = args.len();
    let page = |extra: &str| {
        format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries d JOIN events e ON e.seq = d.event_seq
             WHERE d.subscription = $1{extra}{filters}
             ORDER BY d.created_at DESC, d.id DESC LIMIT ${limit}"
        )
    };
    let sql = if state.is_some() {
        page("")
    } else {
        let arms: Vec<String> = DeliveryState::ALL
            .iter()
            .map(|state| {
                format!(
                    "({})",
                    page(&format!(" AND d.state = '{}'", state.as_str()))
                )
            })
            .collect();
        format!(
            "{} {} LIMIT ${limit}",
            arms.join(" UNION ALL "),
            merged_newest_first()
        )
    };
    Ok(Some((sql, args)))
}

/// Borrows owned parameters the way the client takes them.
pub(crate) fn borrowed(args: &Params) -> Vec<&(dyn ToSql + Sync)> {
    args.iter()
        .map(|arg| arg.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

pub(super) async fn search(
    client: &impl GenericClient,
    query: &DeliverySearch,
) -> Result<DeliverySearchPage> {
    let Some((sql, args)) = search_statement(query)? else {
        return Ok(DeliverySearchPage::default());
    };
    let params = borrowed(&args);
    let stmt = client.prepare_cached(&sql).await.map_err(pg_error)?;
    let found = client.query(&stmt, &params).await.map_err(pg_error)?;
    let deliveries = found
        .iter()
        .map(rows::delivery)
        .collect::<Result<Vec<_>>>()?;
    Ok(DeliverySearchPage::from_rows(
        deliveries,
        query.page_limit(),
    ))
}

/// The statement counting a subscription's deliveries by state, and its
/// parameters.
pub(crate) fn count_by_state_statement(
    subscription: &str,
    since: jiff::Timestamp,
) -> (&'static str, Params) {
    (
        "SELECT state, COUNT(*) FROM deliveries
         WHERE subscription = $1 AND created_at >= $2 GROUP BY state",
        vec![Box::new(subscription.to_owned()), Box::new(millis(since))],
    )
}

pub(super) async fn count_by_state(
    client: &impl GenericClient,
    subscription: &str,
    since: jiff::Timestamp,
) -> Result<StateCounts> {
    let (sql, args) = count_by_state_statement(subscription, since);
    let stmt = client.prepare_cached(sql).await.map_err(pg_error)?;
    let found = client
        .query(&stmt, &borrowed(&args))
        .await
        .map_err(pg_error)?;
    let mut counts = StateCounts::default();
    for row in &found {
        let state: String = get(row, 0)?;
        let count: i64 = get(row, 1)?;
        counts.add(parse_enum(&state)?, u64::try_from(count).unwrap_or(0));
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
) -> (&'static str, Params) {
    (
        "SELECT (updated_at - $2) / $4, state, COUNT(*) FROM deliveries
         WHERE subscription = $1 AND state IN ('delivered', 'failed')
           AND updated_at >= $2 AND updated_at < $3
         GROUP BY 1, 2",
        vec![
            Box::new(subscription.to_owned()),
            Box::new(from),
            Box::new(until),
            Box::new(width),
        ],
    )
}

pub(super) async fn outcome_buckets(
    client: &impl GenericClient,
    query: &OutcomeBucketsQuery,
) -> Result<Vec<OutcomeBucket>> {
    let mut grid = BucketGrid::new(query)?;
    let (sql, args) =
        outcome_buckets_statement(&query.subscription, grid.from, grid.until, grid.width);
    let stmt = client.prepare_cached(sql).await.map_err(pg_error)?;
    let found = client
        .query(&stmt, &borrowed(&args))
        .await
        .map_err(pg_error)?;
    for row in &found {
        let index: i64 = get(row, 0)?;
        let state: String = get(row, 1)?;
        grid.add(index, &state, get(row, 2)?);
    }
    Ok(grid.into_buckets())
}

#[async_trait]
impl ConsoleStore for PostgresStore {
    async fn search_deliveries(
        &self,
        query: crate::DeliverySearch,
    ) -> Result<crate::DeliverySearchPage> {
        let client = self.client().await?;
        search(&client, &query).await
    }

    async fn count_deliveries_by_state(
        &self,
        subscription: &str,
        since: Timestamp,
    ) -> Result<crate::StateCounts> {
        let client = self.client().await?;
        count_by_state(&client, subscription, since).await
    }

    async fn outcome_buckets(
        &self,
        query: crate::OutcomeBucketsQuery,
    ) -> Result<Vec<crate::OutcomeBucket>> {
        let client = self.client().await?;
        outcome_buckets(&client, &query).await
    }
}

#[cfg(test)]
mod plans;

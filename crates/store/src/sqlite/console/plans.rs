//! Every console query on SQLite is an index range: `EXPLAIN QUERY PLAN` of
//! each statement the console runs (every filter combination of a search,
//! the counts by state, the outcome buckets) on a migrated store shows no
//! full scan of a history table, no page sorts its rows instead of walking
//! an index in order, and each single-filter search reads through the index
//! made for its filter. A plan, unlike a timing, does not depend on how busy
//! the machine is.

use rusqlite::Connection;
use rusqlite::types::Value;

use super::{count_by_state_statement, outcome_buckets_statement, search_statement};
use crate::SqliteStore;
use crate::console_plans::{WATCHED_TABLES, every_search, expected_index, noon};
use crate::sqlite::DATABASE_FILE;
use crate::sqlite::rows::millis;

/// The table a `SCAN` step reads, through the aliases the console uses.
fn scanned_table(detail: &str) -> Option<&str> {
    let rest = detail.strip_prefix("SCAN ")?;
    let rest = rest.strip_prefix("TABLE ").unwrap_or(rest);
    let name = rest.split_whitespace().next()?;
    Some(match name {
        "d" => "deliveries",
        "e" => "events",
        other => other,
    })
}

const CANNOT_EXPLAIN: &str = "cannot explain";

/// The plan's steps; an error (a dropped index named by `INDEXED BY`) is
/// reported as the query's only step, which no check accepts.
fn plan(conn: &Connection, sql: &str, args: &[Value]) -> Vec<String> {
    let explained = conn
        .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
        .and_then(|mut statement| {
            statement
                .query_map(rusqlite::params_from_iter(args), |row| {
                    row.get::<_, String>(3)
                })?
                .collect::<rusqlite::Result<Vec<_>>>()
        });
    explained.unwrap_or_else(|err| vec![format!("{CANNOT_EXPLAIN}: {err}")])
}

/// What is wrong with a plan, if anything: a full scan of a history table
/// (through an index or not: both read every row), or a page whose order
/// comes from sorting every matching row.
fn problems(steps: &[String], paged: bool) -> Vec<String> {
    let mut found = Vec::new();
    for step in steps {
        if step.starts_with(CANNOT_EXPLAIN) {
            found.push(step.clone());
        }
        if let Some(table) = scanned_table(step)
            && WATCHED_TABLES.contains(&table)
        {
            found.push(format!("full scan of {table}: {step}"));
        }
        if paged && step.contains("TEMP B-TREE FOR") && step.contains("ORDER BY") {
            found.push(format!(
                "the page is sorted, not read in index order: {step}"
            ));
        }
    }
    found
}

fn check(conn: &Connection, name: &str, sql: &str, args: &[Value], paged: bool) -> Vec<String> {
    let steps = plan(conn, sql, args);
    let found = problems(&steps, paged);
    if found.is_empty() {
        println!("{name}: {}", steps.join(" | "));
        return Vec::new();
    }
    vec![format!(
        "{name}:\n  {}\n  plan:\n    {}\n  sql: {sql}",
        found.join("\n  "),
        steps.join("\n    ")
    )]
}

#[test]
fn every_console_query_is_an_index_range() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), noon()).unwrap();
    let conn = Connection::open(dir.path().join(DATABASE_FILE)).unwrap();
    let mut failures = Vec::new();
    let mut explained = 0;
    for (name, search) in every_search() {
        let Some((sql, args)) = search_statement(&search).unwrap() else {
            continue;
        };
        explained += 1;
        failures.extend(check(&conn, &name, &sql, &args, true));
        if let Some(index) = expected_index(&name) {
            let steps = plan(&conn, &sql, &args);
            if !steps
                .iter()
                .any(|step| step.contains(&format!("INDEX {index} ")))
            {
                failures.push(format!(
                    "{name}: does not use {index}\n  plan:\n    {}",
                    steps.join("\n    ")
                ));
            }
        }
    }
    let (sql, args) = count_by_state_statement("s1", noon());
    failures.extend(check(&conn, "counts by state", &sql, &args, false));
    let (sql, args) =
        outcome_buckets_statement("s1", millis(noon()) - 86_400_000, millis(noon()), 3_600_000);
    failures.extend(check(&conn, "outcome buckets", sql, &args, false));
    drop(store);
    // All 128 combinations: the state asked is `failed`, which a reason
    // allows, so none is answered without a query.
    assert_eq!(explained, 128);
    assert!(
        failures.is_empty(),
        "console queries that are not index ranges:\n{}",
        failures.join("\n")
    );
}

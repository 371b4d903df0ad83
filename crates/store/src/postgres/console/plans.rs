//! Every console query on PostgreSQL is an index range: `EXPLAIN` of each
//! statement the console runs (every filter combination of a search, the
//! counts by state, the outcome buckets), on a connection where sequential
//! scans and sorts cost more than anything else, shows no sequential scan
//! of a history table or of one of its day partitions, no index of
//! `deliveries` read beyond one subscription, no page sorted instead of read
//! in index order, and each single-filter search reading through the index
//! made for its filter.
//! The planner still picks a disabled path when nothing else can serve the
//! query, so any such node means a missing index. Each statement is
//! explained with custom and with generic plans, as prepared statements
//! switch to the latter after a few runs.

use std::collections::HashMap;

use serde_json::Value as Json;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls};

use super::{Params, count_by_state_statement, outcome_buckets_statement, search_statement};
use crate::console_plans::{WATCHED_TABLES, every_search, expected_index, noon};
use crate::postgres::explain::{index_parents, prepared_plan, store_for_plans};
use crate::postgres::rows::millis;

/// Each watched table and each of its partitions, mapped to the table.
async fn watched_relations(client: &Client) -> HashMap<String, String> {
    let mut relations: HashMap<String, String> = WATCHED_TABLES
        .iter()
        .map(|table| (table.to_string(), table.to_string()))
        .collect();
    let watched: Vec<String> = WATCHED_TABLES.iter().map(|t| t.to_string()).collect();
    let partitions = client
        .query(
            "SELECT c.relname::text, p.relname::text FROM pg_inherits i
             JOIN pg_class c ON c.oid = i.inhrelid
             JOIN pg_class p ON p.oid = i.inhparent
             WHERE p.relname = ANY($1) AND p.relnamespace = current_schema()::regnamespace",
            &[&watched],
        )
        .await
        .unwrap();
    for row in partitions {
        relations.insert(row.get(0), row.get(1));
    }
    relations
}

/// A parameter as SQL text. `EXECUTE` takes no bound parameters, so the
/// test's own values (numbers and plain words) are written out, from their
/// `Debug` form: quoted for text, bare for numbers.
fn literal(arg: &(dyn ToSql + Sync + Send)) -> Result<String, String> {
    let shown = format!("{arg:?}");
    match shown.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        Some(text) if !text.contains(['\'', '\\', '"']) => Ok(format!("'{text}'")),
        Some(_) => Err(format!("{shown} is no plain word")),
        None if shown.parse::<i64>().is_ok() => Ok(shown),
        None => Err(format!("{shown} is neither text nor a number")),
    }
}

/// Explains `sql` as the store runs it, with `args` written out.
async fn explain(client: &Client, sql: &str, args: &Params) -> Result<Json, String> {
    let values = args
        .iter()
        .map(|arg| literal(arg.as_ref()))
        .collect::<Result<Vec<_>, _>>()?;
    prepared_plan(client, sql, &values.join(", ")).await
}

/// What a plan does wrong, and which partitions of `deliveries` it reads.
#[derive(Default)]
struct Findings {
    problems: Vec<String>,
    delivery_scans: Vec<String>,
    /// The indexes those scans read, named as on the partitioned table.
    delivery_indexes: Vec<String>,
}

fn inspect(node: &Json, catalog: &Catalog, paged: bool, found: &mut Findings) {
    let relations = &catalog.relations;
    let kind = node["Node Type"].as_str().unwrap_or_default();
    let relation = node["Relation Name"].as_str().unwrap_or_default();
    if let Some(table) = relations.get(relation) {
        if table == "deliveries" {
            found.delivery_scans.push(relation.to_owned());
            if let Some(index) = node["Index Name"].as_str() {
                let parent = catalog
                    .index_parents
                    .get(index)
                    .map_or(index, String::as_str);
                found.delivery_indexes.push(parent.to_owned());
            }
        }
        match kind {
            "Seq Scan" => found
                .problems
                .push(format!("sequential scan of {relation} ({table})")),
            "Index Scan" | "Index Only Scan" => {
                let condition = node["Index Cond"].as_str().unwrap_or_default();
                let index = node["Index Name"].as_str().unwrap_or_default();
                // A delivery list is always one subscription's: an index
                // range that does not start there reads every subscription.
                let bounded = if table == "deliveries" {
                    condition.contains("subscription")
                } else {
                    !condition.is_empty()
                };
                if !bounded {
                    found.problems.push(format!(
                        "{index} on {relation} is not a range of one subscription \
                         (condition: {condition:?})"
                    ));
                }
            }
            _ => {}
        }
    }
    if kind == "Bitmap Index Scan" && node["Index Cond"].as_str().is_none_or(str::is_empty) {
        found.problems.push(format!(
            "bitmap of {} without a condition",
            node["Index Name"].as_str().unwrap_or_default()
        ));
    }
    if paged && (kind == "Sort" || kind == "Incremental Sort") {
        found
            .problems
            .push("the page is sorted, not read in index order".to_owned());
    }
    for child in node["Plans"].as_array().into_iter().flatten() {
        inspect(child, catalog, paged, found);
    }
}

/// The plan's nodes on one line, outermost first, for the test's output.
fn outline(node: &Json, into: &mut Vec<String>) {
    let mut step = node["Node Type"].as_str().unwrap_or_default().to_owned();
    if let Some(index) = node["Index Name"].as_str() {
        step.push_str(&format!(" using {index}"));
    }
    if let Some(relation) = node["Relation Name"].as_str() {
        step.push_str(&format!(" on {relation}"));
    }
    if let Some(cond) = node["Index Cond"].as_str() {
        step.push_str(&format!(" [{cond}]"));
    }
    into.push(step);
    for child in node["Plans"].as_array().into_iter().flatten() {
        outline(child, into);
    }
}

/// Names the plans use, resolved to the tables and indexes of the schema.
struct Catalog {
    relations: HashMap<String, String>,
    index_parents: HashMap<String, String>,
}

struct Checker {
    client: Client,
    catalog: Catalog,
    failures: Vec<String>,
}

impl Checker {
    /// Explains one statement; returns the partitions of `deliveries` its
    /// plan reads.
    async fn check(
        &mut self,
        mode: &str,
        name: &str,
        sql: &str,
        args: &Params,
        paged: bool,
    ) -> Vec<String> {
        let plan = match explain(&self.client, sql, args).await {
            Ok(plan) => plan,
            Err(err) => {
                self.failures
                    .push(format!("{name} ({mode}): {err}\n  sql: {sql}"));
                return Vec::new();
            }
        };
        let mut found = Findings::default();
        inspect(&plan, &self.catalog, paged, &mut found);
        if let Some(index) = expected_index(name)
            && (found.delivery_indexes.is_empty()
                || found.delivery_indexes.iter().any(|used| used != index))
        {
            found.problems.push(format!(
                "reads deliveries through {:?}, not only {index}",
                found.delivery_indexes
            ));
        }
        let mut steps = Vec::new();
        outline(&plan, &mut steps);
        println!("{name} ({mode}): {}", steps.join(" | "));
        if !found.problems.is_empty() {
            self.failures.push(format!(
                "{name} ({mode}):\n  {}\n  plan:\n    {}\n  sql: {sql}",
                found.problems.join("\n  "),
                steps.join("\n    ")
            ));
        }
        found.delivery_scans
    }
}

// A unit test (it reads the statements the backend builds), where the
// standard harness can only ignore it by name; CI runs it with `--ignored`.
#[tokio::test]
#[ignore = "needs PostgreSQL: set REDRIVE_TEST_DATABASE_URL and pass --ignored"]
async fn every_console_query_is_an_index_range() {
    let (schema, store) = store_for_plans().await;
    let config: tokio_postgres::Config = schema.url.parse().unwrap();
    let (client, connection) = config.connect(NoTls).await.unwrap();
    tokio::spawn(connection);
    client
        .batch_execute("SET enable_seqscan = off; SET enable_sort = off")
        .await
        .unwrap();
    let relations = watched_relations(&client).await;
    let partitions: Vec<String> = relations
        .iter()
        .filter(|(relation, table)| *table == "deliveries" && *relation != "deliveries")
        .map(|(relation, _)| relation.clone())
        .collect();
    assert!(
        partitions.len() > 1,
        "deliveries has day partitions: {partitions:?}"
    );
    let index_parents = index_parents(&client).await;
    let mut checker = Checker {
        client,
        catalog: Catalog {
            relations,
            index_parents,
        },
        failures: Vec::new(),
    };
    for mode in ["force_custom_plan", "force_generic_plan"] {
        checker
            .client
            .batch_execute(&format!("SET plan_cache_mode = {mode}"))
            .await
            .unwrap();
        for (name, search) in every_search() {
            let Some((sql, args)) = search_statement(&search).unwrap() else {
                continue;
            };
            let read = checker.check(mode, &name, &sql, &args, true).await;
            if name == "search (no filter)" {
                // Ids carry no creation time the planner can prune by: a page
                // reads every partition, each through its own index.
                for partition in partitions.iter().filter(|p| !read.contains(p)) {
                    checker.failures.push(format!(
                        "{name} ({mode}) does not read {partition}: it read {read:?}"
                    ));
                }
            }
        }
        let (sql, args) = count_by_state_statement("s1", noon());
        checker
            .check(mode, "counts by state", sql, &args, false)
            .await;
        let (sql, args) =
            outcome_buckets_statement("s1", millis(noon()) - 86_400_000, millis(noon()), 3_600_000);
        checker
            .check(mode, "outcome buckets", sql, &args, false)
            .await;
    }
    drop(store);
    assert!(
        checker.failures.is_empty(),
        "console queries that are not index ranges:\n{}",
        checker.failures.join("\n")
    );
}

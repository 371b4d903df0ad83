//! Test support for the plan tests: the plan PostgreSQL makes for a
//! statement the way the store runs it, as a prepared statement, so that
//! `plan_cache_mode` picks a custom or a generic plan (an `EXPLAIN` of the
//! bare statement always plans it with the values at hand).

use std::collections::HashMap;

use serde_json::Value as Json;
use tokio_postgres::types::{FromSql, Type};
use tokio_postgres::{Client, NoTls};

use super::connection::bookkeeping_config;
use super::pg_error;
use super::testing::{TEST_DATABASE_URL, TestSchema};
use crate::PostgresStore;
use crate::console_plans::WATCHED_TABLES;

/// `EXPLAIN (FORMAT JSON)` answers in a `json` column, which the client has
/// no Rust type for without another feature: its binary form is the text.
struct JsonText(String);

impl<'a> FromSql<'a> for JsonText {
    fn from_sql(
        _: &Type,
        raw: &'a [u8],
    ) -> Result<JsonText, Box<dyn std::error::Error + Sync + Send>> {
        Ok(JsonText(String::from_utf8(raw.to_vec())?))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSON
    }
}

/// The plan of `sql` run with `args`, SQL literals separated by commas
/// (`EXECUTE` takes no bound parameters).
pub(crate) async fn prepared_plan(client: &Client, sql: &str, args: &str) -> Result<Json, String> {
    client
        .batch_execute(&format!("PREPARE explained AS {sql}"))
        .await
        .map_err(|err| format!("cannot prepare: {}", pg_error(err)))?;
    let explained = client
        .query_one(
            &format!("EXPLAIN (FORMAT JSON) EXECUTE explained({args})"),
            &[],
        )
        .await;
    client
        .batch_execute("DEALLOCATE explained")
        .await
        .map_err(|err| format!("cannot deallocate: {}", pg_error(err)))?;
    let row = explained.map_err(|err| format!("cannot explain: {}", pg_error(err)))?;
    let JsonText(text) = row.get(0);
    let plans: Json = serde_json::from_str(&text).map_err(|err| err.to_string())?;
    Ok(plans[0]["Plan"].clone())
}

/// A store on a schema of its own, with the day partitions a running
/// store makes (they follow the real clock), for a plan test to explain
/// statements against.
pub(crate) async fn store_for_plans() -> (TestSchema, PostgresStore) {
    let base = TestSchema::database_url()
        .unwrap_or_else(|| panic!("set {TEST_DATABASE_URL} to run this test"));
    let schema = TestSchema::create(&base).await.unwrap();
    let store = PostgresStore::connect(&schema.url, jiff::Timestamp::now())
        .await
        .unwrap();
    (schema, store)
}

/// The pairs of names a catalog query answers, the first as the key.
pub(crate) async fn name_pairs(client: &Client, sql: &str) -> HashMap<String, String> {
    client
        .query(sql, &[])
        .await
        .unwrap_or_else(|err| panic!("{err}\n{sql}"))
        .into_iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

/// Each index of a partition, mapped to the index of the partitioned table
/// it belongs to.
pub(crate) async fn index_parents(client: &Client) -> HashMap<String, String> {
    name_pairs(
        client,
        "SELECT c.relname::text, p.relname::text FROM pg_inherits i
         JOIN pg_class c ON c.oid = i.inhrelid
         JOIN pg_class p ON p.oid = i.inhparent
         WHERE p.relkind = 'I' AND p.relnamespace = current_schema()::regnamespace",
    )
    .await
}

/// A connection to the store's schema with the settings of its
/// bookkeeping connections, whose plans the tests explain.
pub(crate) async fn bookkeeping_connection(schema: &TestSchema) -> Client {
    let config: tokio_postgres::Config = schema.url.parse().unwrap();
    let (client, connection) = bookkeeping_config(&config).connect(NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

/// Whether a table, a partition or an index (by name) is of the history,
/// which grows with every event.
pub(crate) fn is_history(name: &str) -> bool {
    WATCHED_TABLES
        .iter()
        .any(|table| name == *table || name.starts_with(&format!("{table}_")))
}

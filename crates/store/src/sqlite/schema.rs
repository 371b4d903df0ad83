//! The SQLite schema, migrated forward with `PRAGMA user_version`.

use rusqlite::Connection;

use crate::migrations::{Migration, migration};
use crate::{Result, StoreError};

/// Each entry moves the schema one version forward (see `crate::migrations`).
const MIGRATIONS: &[Migration] = &[
    migration!("sqlite", "0001_initial"),
    migration!("sqlite", "0002_failure_lifecycle"),
    migration!("sqlite", "0003_endpoint_health"),
    migration!("sqlite", "0004_console_indexes"),
    migration!("sqlite", "0005_security"),
    migration!("sqlite", "0006_push_backoff"),
    migration!("sqlite", "0007_previous_secrets"),
    migration!("sqlite", "0008_journal_head"),
    migration!("sqlite", "0009_lighter_delivery_indexes"),
    migration!("sqlite", "0010_no_lease_or_retention_index"),
    migration!("sqlite", "0011_fewer_history_indexes"),
    migration!("sqlite", "0012_no_recent_index"),
];

pub(crate) fn migrate(conn: &Connection) -> Result<()> {
    migrate_to(conn, MIGRATIONS.len())
}

/// Migrates forward to `target` (at most the latest version); tests use it
/// to build a schema as an older redrive left it.
pub(crate) fn migrate_to(conn: &Connection, target: usize) -> Result<()> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    let current = usize::try_from(current).unwrap_or(0);
    if current > MIGRATIONS.len() {
        return Err(StoreError::Backend(format!(
            "the database has schema version {current}, newer than this redrive knows ({}); \
             upgrade redrive",
            MIGRATIONS.len()
        )));
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().take(target).skip(current) {
        let sql = migration.sql;
        let version = index + 1;
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {sql}; PRAGMA user_version = {version}; COMMIT;"
        ))
        .map_err(|err| {
            let _ = conn.execute_batch("ROLLBACK");
            StoreError::Backend(format!(
                "schema migration {version} ({}) failed: {err}",
                migration.name
            ))
        })?;
        tracing::info!(version, name = migration.name, "applied schema migration");
    }
    Ok(())
}

/// The version a migration brings the schema to.
/// The version the migration `name` brings the schema to.
#[cfg(test)]
pub(crate) fn version_of(name: &str) -> Option<usize> {
    crate::migrations::version_of(MIGRATIONS, name)
}

/// The schema version a fully migrated database has.
pub(crate) fn latest_version() -> usize {
    MIGRATIONS.len()
}

#[cfg(test)]
mod tests {
    use rusqlite::{Connection, params};

    use super::*;
    use crate::conformance::{event, spec, t0};
    use crate::prelude::*;
    use crate::{JournalQuery, SqliteStore};

    /// A database as the schema before `journal_head` left it, after its
    /// newest events were purged and positions 1 to 3 were handed out again
    /// below a journal floor of 30 (what that schema did).
    fn store_with_reused_positions(dir: &std::path::Path) {
        let conn = Connection::open(dir.join(crate::sqlite::DATABASE_FILE)).unwrap();
        let before = version_of("0008_journal_head").unwrap() - 1;
        migrate_to(&conn, before).unwrap();
        conn.execute(
            "INSERT INTO topics (name, created_at) VALUES ('orders', 0)",
            [],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO subscriptions (name, topic, spec, created_at, updated_at)
             VALUES ('s1', 'orders', ?1, 0, 0)",
            [serde_json::to_string(&spec("s1", "orders")).unwrap()],
        )
        .unwrap();
        for seq in 1..=3_i64 {
            let id = format!("old{seq}");
            let attributes = serde_json::to_string(&event(&id, "t")).unwrap();
            conn.execute(
                "INSERT INTO events (seq, topic, source, id, type, attributes, published_at)
                 VALUES (?1, 'orders', '/tests', ?2, 't', ?3, 0)",
                params![seq, id, attributes],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO deliveries (id, subscription, event_seq, state, created_at,
                                         updated_at)
                 VALUES (?1, 's1', ?2, 'delivered', 0, 0)",
                params![format!("d{seq}"), seq],
            )
            .unwrap();
        }
        conn.execute(
            "INSERT INTO journal_floors (subscription, purged_through) VALUES ('s1', 30)",
            [],
        )
        .unwrap();
    }

    #[tokio::test]
    async fn an_upgraded_store_keeps_its_positions_and_continues_above_every_floor() {
        let dir = tempfile::tempdir().unwrap();
        store_with_reused_positions(dir.path());
        let store = SqliteStore::open(dir.path(), t0()).unwrap();
        let read = |since| JournalQuery {
            subscription: "s1".into(),
            since,
            limit: 100,
        };
        let kept = store.journal(read(None)).await.unwrap();
        let positions = |page: &crate::JournalPage| {
            page.entries
                .iter()
                .map(|e| (e.event.id.clone(), e.position))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            positions(&kept),
            [("old1".into(), 1), ("old2".into(), 2), ("old3".into(), 3)]
        );
        store
            .publish("orders", vec![event("new", "t")], t0())
            .await
            .unwrap();
        // A reader that saw the floor's position before the upgrade sees it.
        let after = store.journal(read(Some(30))).await.unwrap();
        assert_eq!(positions(&after), [("new".into(), 31)]);
        drop(store);

        // The head survives a restart with the newest event purged.
        let conn = Connection::open(dir.path().join(crate::sqlite::DATABASE_FILE)).unwrap();
        conn.execute("DELETE FROM deliveries WHERE event_seq = 31", [])
            .unwrap();
        conn.execute("DELETE FROM events WHERE seq = 31", [])
            .unwrap();
        drop(conn);
        let store = SqliteStore::open(dir.path(), t0()).unwrap();
        store
            .publish("orders", vec![event("newer", "t")], t0())
            .await
            .unwrap();
        let again = store.journal(read(Some(31))).await.unwrap();
        assert_eq!(positions(&again), [("newer".into(), 32)]);
    }

    #[test]
    fn subscriptions_made_before_push_backoff_keep_what_their_preset_brings() {
        let conn = Connection::open_in_memory().unwrap();
        let before = version_of("0006_push_backoff").unwrap() - 1;
        migrate_to(&conn, before).unwrap();
        let specs = [
            ("p", r#"{"name":"p","retry_policy":{"preset":"pubsub"}}"#),
            ("e", r#"{"name":"e","retry_policy":{"preset":"eventarc"}}"#),
            ("a", r#"{"name":"a","retry_policy":{"preset":"appengine"}}"#),
            ("n", r#"{"name":"n","retry_policy":{"retry_limit":3}}"#),
        ];
        for (name, spec) in specs {
            conn.execute(
                "INSERT INTO subscriptions (name, topic, spec, created_at, updated_at)
                 VALUES (?1, 't', ?2, 0, 0)",
                [name, spec],
            )
            .unwrap();
        }
        migrate(&conn).unwrap();
        for (name, wanted) in [
            ("p", Some(true)),
            ("e", Some(true)),
            ("a", None),
            ("n", None),
        ] {
            let spec: String = conn
                .query_row(
                    "SELECT spec FROM subscriptions WHERE name = ?1",
                    [name],
                    |row| row.get(0),
                )
                .unwrap();
            let spec: serde_json::Value = serde_json::from_str(&spec).unwrap();
            assert_eq!(spec["push_backoff"].as_bool(), wanted, "{name}: {spec}");
        }
    }

    #[test]
    fn every_migration_file_is_applied_in_order() {
        crate::migrations::assert_lists_every_file("sqlite", MIGRATIONS);
    }

    /// A store made by the previous version opens, upgrades to the latest
    /// and keeps what it held.
    #[tokio::test]
    async fn a_store_of_the_previous_version_upgrades() {
        let dir = tempfile::tempdir().unwrap();
        {
            let conn = Connection::open(dir.path().join(crate::sqlite::DATABASE_FILE)).unwrap();
            migrate_to(&conn, latest_version() - 1).unwrap();
            conn.execute(
                "INSERT INTO topics (name, created_at) VALUES ('orders', 0)",
                [],
            )
            .unwrap();
        }
        let store = SqliteStore::open(dir.path(), t0()).unwrap();
        let topics = store.list_topics().await.unwrap();
        assert!(topics.iter().any(|t| t.name == "orders"), "{topics:?}");
        drop(store);
        let conn = Connection::open(dir.path().join(crate::sqlite::DATABASE_FILE)).unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .unwrap();
        assert_eq!(usize::try_from(version).unwrap(), latest_version());
    }
}

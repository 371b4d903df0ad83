//! The SQLite schema, migrated forward with `PRAGMA user_version`.

use rusqlite::Connection;

use crate::{Result, StoreError};

/// Each entry moves the schema one version forward; never edit a shipped one.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE topics (
    name        TEXT PRIMARY KEY,
    created_at  INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE subscriptions (
    name        TEXT PRIMARY KEY,
    topic       TEXT NOT NULL,
    spec        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX subscriptions_by_topic ON subscriptions (topic);

CREATE TABLE events (
    seq           INTEGER PRIMARY KEY,
    topic         TEXT NOT NULL,
    source        TEXT NOT NULL,
    id            TEXT NOT NULL,
    type          TEXT NOT NULL,
    attributes    TEXT NOT NULL,
    data          BLOB,
    published_at  INTEGER NOT NULL
);
CREATE UNIQUE INDEX events_identity ON events (topic, source, id);

CREATE TABLE deliveries (
    id                TEXT PRIMARY KEY,
    subscription      TEXT NOT NULL,
    event_seq         INTEGER NOT NULL,
    state             TEXT NOT NULL,
    attempts          INTEGER NOT NULL DEFAULT 0,
    next_attempt_at   INTEGER,
    first_attempt_at  INTEGER,
    last_attempt_at   INTEGER,
    last_status       INTEGER,
    last_error        TEXT,
    failure_reason    TEXT,
    lease_until       INTEGER,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
) WITHOUT ROWID;
-- The due queue: only scheduled rows, so it stays as small as the backlog.
CREATE INDEX deliveries_due ON deliveries (subscription, next_attempt_at)
    WHERE state = 'scheduled';
CREATE INDEX deliveries_leases ON deliveries (lease_until)
    WHERE state = 'in_flight';
CREATE INDEX deliveries_by_subscription ON deliveries (subscription, id);
CREATE INDEX deliveries_by_state ON deliveries (subscription, state, id);

CREATE TABLE attempts (
    delivery_id       TEXT NOT NULL,
    number            INTEGER NOT NULL,
    started_at        INTEGER NOT NULL,
    duration_ms       INTEGER NOT NULL,
    status            INTEGER,
    error             TEXT,
    error_message     TEXT,
    response_snippet  TEXT,
    decision          TEXT NOT NULL,
    PRIMARY KEY (delivery_id, number)
) WITHOUT ROWID;
"#,
    r#"
-- Failure lifecycle: dead-letter links, redrive budgets, retention, purge.
ALTER TABLE deliveries ADD COLUMN dead_letter_event TEXT;
ALTER TABLE deliveries ADD COLUMN attempts_before_redrive INTEGER NOT NULL DEFAULT 0;
-- Retention counts from here when set (the last redrive), else from created_at.
ALTER TABLE deliveries ADD COLUMN retention_from INTEGER;
-- Retention expiry finds the oldest undelivered deliveries without scanning
-- the backlog (the expression must match the sweeper's query exactly).
CREATE INDEX deliveries_retention
    ON deliveries (subscription, COALESCE(retention_from, created_at))
    WHERE state = 'scheduled';
-- The purge walks finished deliveries oldest first.
CREATE INDEX deliveries_finished ON deliveries (updated_at)
    WHERE state IN ('delivered', 'failed');
-- Whether an event is still referenced, and the journal's order.
CREATE INDEX deliveries_by_event ON deliveries (event_seq);
CREATE INDEX deliveries_journal ON deliveries (subscription, event_seq);
-- The highest journal position purged per subscription (for 410 Gone).
CREATE TABLE journal_floors (
    subscription    TEXT PRIMARY KEY,
    purged_through  INTEGER NOT NULL
) WITHOUT ROWID;
"#,
    super::health::MIGRATION,
    super::console::CONSOLE_INDEXES,
    super::security::MIGRATION,
    PUSH_BACKOFF_MIGRATION,
    super::security::PREVIOUS_SECRETS_MIGRATION,
    JOURNAL_HEAD,
];

/// Push backoff became a subscription setting, off unless chosen; the
/// presets that bring it keep it on for subscriptions made before.
const PUSH_BACKOFF_MIGRATION: &str = r#"
UPDATE subscriptions SET spec = json_set(spec, '$.push_backoff', json('true'))
 WHERE json_extract(spec, '$.retry_policy.preset') IN ('pubsub', 'eventarc')
   AND json_type(spec, '$.push_backoff') IS NULL;
"#;

/// Journal positions (`events.seq`) must never be handed out twice, but an
/// `INTEGER PRIMARY KEY` without `AUTOINCREMENT` reuses the highest rowid
/// once the newest events are purged. Rebuilding `events` with
/// `AUTOINCREMENT` would copy the whole table on upgrade; instead the highest
/// position ever handed out is kept in a one-row table that every publish
/// raises. An existing store starts above both its newest event and every
/// journal floor, so positions a reader has already seen are not renumbered
/// and any position already reused stays below what comes next.
const JOURNAL_HEAD: &str = r#"
CREATE TABLE journal_head (
    singleton  INTEGER PRIMARY KEY CHECK (singleton = 1),
    last_seq   INTEGER NOT NULL
);
INSERT INTO journal_head (singleton, last_seq)
SELECT 1, MAX(COALESCE((SELECT MAX(seq) FROM events), 0),
              COALESCE((SELECT MAX(purged_through) FROM journal_floors), 0));
"#;

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
    for (index, sql) in MIGRATIONS.iter().enumerate().take(target).skip(current) {
        let version = index + 1;
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {sql}; PRAGMA user_version = {version}; COMMIT;"
        ))
        .map_err(|err| {
            let _ = conn.execute_batch("ROLLBACK");
            StoreError::Backend(format!("schema migration {version} failed: {err}"))
        })?;
        tracing::info!(version, "applied schema migration");
    }
    Ok(())
}

/// The version a migration brings the schema to.
#[cfg(test)]
pub(crate) fn version_of(migration: &str) -> Option<usize> {
    MIGRATIONS
        .iter()
        .position(|m| *m == migration)
        .map(|index| index + 1)
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
    use crate::{JournalQuery, SqliteStore, Store};

    /// A database as the schema before `journal_head` left it, after its
    /// newest events were purged and positions 1 to 3 were handed out again
    /// below a journal floor of 30 (what that schema did).
    fn store_with_reused_positions(dir: &std::path::Path) {
        let conn = Connection::open(dir.join(crate::sqlite::DATABASE_FILE)).unwrap();
        let before = MIGRATIONS.iter().position(|m| *m == JOURNAL_HEAD).unwrap();
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
        let before = MIGRATIONS
            .iter()
            .position(|m| *m == PUSH_BACKOFF_MIGRATION)
            .unwrap();
        for sql in &MIGRATIONS[..before] {
            conn.execute_batch(sql).unwrap();
        }
        conn.execute_batch(&format!("PRAGMA user_version = {before}"))
            .unwrap();
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
}

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
];

/// Push backoff became a subscription setting, off unless chosen; the
/// presets that bring it keep it on for subscriptions made before.
const PUSH_BACKOFF_MIGRATION: &str = r#"
UPDATE subscriptions SET spec = json_set(spec, '$.push_backoff', json('true'))
 WHERE json_extract(spec, '$.retry_policy.preset') IN ('pubsub', 'eventarc')
   AND json_type(spec, '$.push_backoff') IS NULL;
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
    use super::*;

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

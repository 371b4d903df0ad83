//! The PostgreSQL schema, migrated forward at start. Several nodes may start
//! at once: the whole migration runs in one transaction under an advisory
//! lock, so exactly one of them applies each step and the others find it done.

use tokio_postgres::Client;

use super::pg_error;
use crate::{Result, StoreError};

/// Each entry moves the schema one version forward; never edit a shipped one.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE topics (
    name        text PRIMARY KEY,
    created_at  bigint NOT NULL
);

CREATE TABLE subscriptions (
    name               text PRIMARY KEY,
    topic              text NOT NULL,
    spec               text NOT NULL,
    -- Copied out of the spec so refusing to delete a dead-letter topic is a lookup.
    dead_letter_topic  text,
    created_at         bigint NOT NULL,
    updated_at         bigint NOT NULL
);
CREATE INDEX subscriptions_by_topic ON subscriptions (topic);
CREATE INDEX subscriptions_by_dead_letter_topic ON subscriptions (dead_letter_topic)
    WHERE dead_letter_topic IS NOT NULL;

CREATE TABLE events (
    seq           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic         text NOT NULL,
    source        text NOT NULL,
    id            text NOT NULL,
    type          text NOT NULL,
    attributes    text NOT NULL,
    data          bytea,
    published_at  bigint NOT NULL,
    UNIQUE (topic, source, id)
);

-- Every delivery row is updated a few times in its life: leave room on each
-- page so updates stay on the page, and vacuum after a small share changed,
-- since the hot rows are a small share of a table that keeps history.
CREATE TABLE deliveries (
    id                       text PRIMARY KEY,
    subscription             text NOT NULL,
    event_seq                bigint NOT NULL,
    state                    text NOT NULL,
    attempts                 integer NOT NULL DEFAULT 0,
    next_attempt_at          bigint,
    first_attempt_at         bigint,
    last_attempt_at          bigint,
    last_status              integer,
    last_error               text,
    failure_reason           text,
    lease_until              bigint,
    created_at               bigint NOT NULL,
    updated_at               bigint NOT NULL,
    dead_letter_event        text,
    attempts_before_redrive  integer NOT NULL DEFAULT 0,
    -- Retention counts from here when set (the last redrive), else from created_at.
    retention_from           bigint
) WITH (fillfactor = 80,
        autovacuum_vacuum_scale_factor = 0.02,
        autovacuum_analyze_scale_factor = 0.02,
        autovacuum_vacuum_cost_delay = 1);
-- The due queue: only scheduled rows, so it stays as small as the backlog.
CREATE INDEX deliveries_due ON deliveries (subscription, next_attempt_at)
    WHERE state = 'scheduled';
CREATE INDEX deliveries_leases ON deliveries (lease_until)
    WHERE state = 'in_flight';
CREATE INDEX deliveries_by_subscription ON deliveries (subscription, id);
CREATE INDEX deliveries_by_state ON deliveries (subscription, state, id);
-- The expression must match the retention sweep's query exactly.
CREATE INDEX deliveries_retention
    ON deliveries (subscription, (COALESCE(retention_from, created_at)))
    WHERE state = 'scheduled';
-- The purge walks finished deliveries oldest first.
CREATE INDEX deliveries_finished ON deliveries (updated_at)
    WHERE state IN ('delivered', 'failed');
-- Whether an event is still referenced, and the journal's order.
CREATE INDEX deliveries_by_event ON deliveries (event_seq);
CREATE INDEX deliveries_journal ON deliveries (subscription, event_seq);

CREATE TABLE attempts (
    delivery_id       text NOT NULL,
    number            integer NOT NULL,
    started_at        bigint NOT NULL,
    duration_ms       bigint NOT NULL,
    status            integer,
    error             text,
    error_message     text,
    response_snippet  text,
    decision          text NOT NULL,
    PRIMARY KEY (delivery_id, number)
) WITH (autovacuum_vacuum_scale_factor = 0.02,
        autovacuum_vacuum_insert_scale_factor = 0.05);

-- The highest journal position purged per subscription (for 410 Gone).
CREATE TABLE journal_floors (
    subscription    text PRIMARY KEY,
    purged_through  bigint NOT NULL
);
"#,
    super::security::MIGRATION,
    super::health::MIGRATION,
    super::console::CONSOLE_INDEXES,
    super::partitions::MIGRATION,
    super::rate::MIGRATION,
    super::console::EVENT_TYPE_INDEX,
    PUSH_BACKOFF_MIGRATION,
    super::security::PREVIOUS_SECRETS_MIGRATION,
];

/// Push backoff became a subscription setting, off unless chosen; the
/// presets that bring it keep it on for subscriptions made before.
pub(super) const PUSH_BACKOFF_MIGRATION: &str = r#"
UPDATE subscriptions SET spec = jsonb_set(spec::jsonb, '{push_backoff}', 'true')::text
 WHERE spec::jsonb -> 'retry_policy' ->> 'preset' IN ('pubsub', 'eventarc')
   AND NOT (spec::jsonb ? 'push_backoff');
"#;

/// The advisory lock key of migrations, per schema so that databases
/// holding several redrive schemas migrate them independently.
const LOCK_KEY: &str = "hashtext(current_schema() || '.redrive.migrate')";

/// The schema version this build migrates to.
pub(super) fn latest_version() -> usize {
    MIGRATIONS.len()
}

/// The version a migration brings the schema to.
pub(super) fn version_of(migration: &str) -> Option<usize> {
    MIGRATIONS
        .iter()
        .position(|m| *m == migration)
        .map(|index| index + 1)
}

pub(super) async fn migrate(client: &mut Client) -> Result<()> {
    migrate_to(client, latest_version()).await
}

/// Migrates forward to `target` (at most the latest version); tests use it
/// to build a schema as an older redrive left it.
pub(super) async fn migrate_to(client: &mut Client, target: usize) -> Result<()> {
    let tx = client.transaction().await.map_err(pg_error)?;
    tx.execute(&format!("SELECT pg_advisory_xact_lock({LOCK_KEY})"), &[])
        .await
        .map_err(pg_error)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_version (
             singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
             version    integer NOT NULL
         );
         INSERT INTO schema_version (version) VALUES (0) ON CONFLICT DO NOTHING;",
    )
    .await
    .map_err(pg_error)?;
    let current: i32 = tx
        .query_one("SELECT version FROM schema_version", &[])
        .await
        .map_err(pg_error)?
        .get(0);
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
        tx.batch_execute(sql).await.map_err(|err| {
            StoreError::Backend(format!(
                "schema migration {version} failed: {}",
                pg_error(err)
            ))
        })?;
        tx.execute(
            "UPDATE schema_version SET version = $1",
            &[&i32::try_from(version).unwrap_or(i32::MAX)],
        )
        .await
        .map_err(pg_error)?;
        tracing::info!(version, "applied schema migration");
    }
    tx.commit().await.map_err(pg_error)?;
    Ok(())
}

//! The PostgreSQL schema, migrated forward at start. Several nodes may start
//! at once: the whole migration runs in one transaction under an advisory
//! lock, so exactly one of them applies each step and the others find it done.

use tokio_postgres::Client;

use super::pg_error;
use crate::migrations::{Migration, migration};
use crate::{Result, StoreError};

/// Each entry moves the schema one version forward (see `crate::migrations`).
const MIGRATIONS: &[Migration] = &[
    migration!("postgres", "0001_initial"),
    migration!("postgres", "0002_security"),
    migration!("postgres", "0003_endpoint_health"),
    migration!("postgres", "0004_console_indexes"),
    migration!("postgres", "0005_partitions"),
    migration!("postgres", "0006_rate_buckets"),
    migration!("postgres", "0007_event_type_index"),
    migration!("postgres", "0008_push_backoff"),
    migration!("postgres", "0009_previous_secrets"),
    migration!("postgres", "0010_lighter_delivery_indexes"),
];

/// The advisory lock key of migrations, per schema so that databases
/// holding several redrive schemas migrate them independently.
const LOCK_KEY: &str = "hashtext(current_schema() || '.redrive.migrate')";

/// The schema version this build migrates to.
pub(super) fn latest_version() -> usize {
    MIGRATIONS.len()
}

/// The version the migration `name` brings the schema to.
#[cfg(any(test, feature = "testing"))]
pub(super) fn version_of(name: &str) -> Option<usize> {
    crate::migrations::version_of(MIGRATIONS, name)
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
    for (index, migration) in MIGRATIONS.iter().enumerate().take(target).skip(current) {
        let sql = migration.sql;
        let version = index + 1;
        tx.batch_execute(sql).await.map_err(|err| {
            StoreError::Backend(format!(
                "schema migration {version} ({}) failed: {}",
                migration.name,
                pg_error(err)
            ))
        })?;
        tx.execute(
            "UPDATE schema_version SET version = $1",
            &[&i32::try_from(version).unwrap_or(i32::MAX)],
        )
        .await
        .map_err(pg_error)?;
        tracing::info!(version, name = migration.name, "applied schema migration");
    }
    tx.commit().await.map_err(pg_error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_migration_file_is_applied_in_order() {
        crate::migrations::assert_lists_every_file("postgres", super::MIGRATIONS);
    }
}

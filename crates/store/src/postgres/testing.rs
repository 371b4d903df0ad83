//! Throw-away schemas for tests against a real PostgreSQL: each test gets a
//! schema of its own, with a random name, dropped when the guard drops.

use std::str::FromStr;

use tokio_postgres::NoTls;

/// The variable naming the test database; without it PostgreSQL tests are
/// reported ignored.
pub const TEST_DATABASE_URL: &str = "REDRIVE_TEST_DATABASE_URL";

/// A schema that exists until this guard drops.
pub struct TestSchema {
    base_url: String,
    pub name: String,
    /// The base URL with this schema as the search path.
    pub url: String,
}

impl TestSchema {
    /// The test database URL, when it is set.
    pub fn database_url() -> Option<String> {
        std::env::var(TEST_DATABASE_URL)
            .ok()
            .filter(|url| !url.is_empty())
    }

    /// Creates a fresh schema in the database at `base_url`.
    pub async fn create(base_url: &str) -> Result<TestSchema, String> {
        let name = format!("redrive_test_{}", uuid::Uuid::now_v7().simple());
        // Connections of this test carry the schema's name, so the guard can
        // end them even while the test's runtime is no longer running them.
        let config = tokio_postgres::Config::from_str(base_url)
            .map_err(|err| format!("invalid {TEST_DATABASE_URL}: {err}"))?;
        let (client, connection) = config
            .connect(NoTls)
            .await
            .map_err(|err| format!("cannot connect to {base_url}: {err}"))?;
        let driver = tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .await
            .map_err(|err| format!("cannot create schema {name}: {}", super::pg_error(err)))?;
        drop(client);
        let _ = driver.await;
        let separator = if base_url.contains('?') { '&' } else { '?' };
        let url = format!(
            "{base_url}{separator}options=-c%20search_path%3D{name}&application_name={name}"
        );
        Ok(TestSchema {
            base_url: base_url.to_owned(),
            name,
            url,
        })
    }
}

/// The schema version this build migrates to.
pub fn latest_version() -> usize {
    super::schema::latest_version()
}

/// The schema version just before the history tables were partitioned.
pub fn version_before_partitions() -> usize {
    super::schema::version_of("0005_partitions").map_or(0, |version| version - 1)
}

/// The schema version just before push backoff became a subscription
/// setting.
pub fn version_before_push_backoff() -> usize {
    super::schema::version_of("0008_push_backoff").map_or(0, |version| version - 1)
}

/// The schema version just before signing secrets kept several previous ones.
pub fn version_before_previous_secrets() -> usize {
    super::schema::version_of("0009_previous_secrets").map_or(0, |version| version - 1)
}

/// Migrates the schema at `url` to `version` only, as an older redrive
/// would have left it.
pub async fn migrate_to(url: &str, version: usize) -> Result<(), String> {
    let config = tokio_postgres::Config::from_str(url)
        .map_err(|err| format!("invalid database URL: {err}"))?;
    let (mut client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|err| format!("cannot connect to {url}: {err}"))?;
    let driver = tokio::spawn(connection);
    let migrated = super::schema::migrate_to(&mut client, version)
        .await
        .map_err(|err| err.to_string());
    drop(client);
    let _ = driver.await;
    migrated
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        let base_url = self.base_url.clone();
        let name = self.name.clone();
        // Drop runs inside the test's runtime, which must not block on
        // itself: the schema is dropped from a thread with its own runtime.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|err| err.to_string())?;
            runtime.block_on(async move {
                let config =
                    tokio_postgres::Config::from_str(&base_url).map_err(|err| err.to_string())?;
                let (client, connection) =
                    config.connect(NoTls).await.map_err(|err| err.to_string())?;
                tokio::spawn(connection);
                // A store of the test may still be open, mid-transaction,
                // on a runtime that is blocked on this very drop: end its
                // connections so their locks go, then drop the schema.
                client
                    .execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                         WHERE application_name = $1 AND pid <> pg_backend_pid()",
                        &[&name],
                    )
                    .await
                    .map_err(|err| super::pg_error(err).to_string())?;
                client
                    .batch_execute(&format!(
                        "SET lock_timeout = '10s'; DROP SCHEMA IF EXISTS {name} CASCADE"
                    ))
                    .await
                    .map_err(|err| super::pg_error(err).to_string())
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(err)) => eprintln!("cannot drop test schema {}: {err}", self.name),
            Err(_) => eprintln!("cannot drop test schema {}: the thread panicked", self.name),
        }
    }
}

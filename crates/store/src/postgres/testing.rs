//! Test support for PostgreSQL (feature `testing`): each test gets a
//! schema of its own, with a random name, dropped when the guard drops, and
//! can build a schema as an older redrive left it.

use std::str::FromStr;

use tokio_postgres::NoTls;

use super::ScratchSchema;

/// The variable naming the test database; without it PostgreSQL tests are
/// reported ignored.
pub const TEST_DATABASE_URL: &str = "REDRIVE_TEST_DATABASE_URL";

/// A schema that exists until this guard drops.
pub struct TestSchema(ScratchSchema);

impl TestSchema {
    /// The test database URL, when it is set.
    pub fn database_url() -> Option<String> {
        std::env::var(TEST_DATABASE_URL)
            .ok()
            .filter(|url| !url.is_empty())
    }

    /// Creates a fresh schema in the database at `base_url`.
    pub async fn create(base_url: &str) -> Result<TestSchema, String> {
        ScratchSchema::create(base_url, "redrive_test")
            .await
            .map(TestSchema)
    }
}

impl std::ops::Deref for TestSchema {
    type Target = ScratchSchema;

    fn deref(&self) -> &ScratchSchema {
        &self.0
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

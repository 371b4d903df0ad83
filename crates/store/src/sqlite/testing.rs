//! Test support for SQLite (feature `testing`): each test gets a store in a
//! data directory of its own, removed when the guard drops — the embedded
//! counterpart of PostgreSQL's test schemas.

use std::path::Path;

use jiff::Timestamp;

use super::SqliteStore;

/// A store in a fresh temporary data directory, removed when this guard
/// drops.
pub struct TestStore {
    // Declared first, so dropped first: the store closes its files before
    // the directory holding them goes.
    store: SqliteStore,
    dir: tempfile::TempDir,
}

impl TestStore {
    /// Opens a store in a new temporary directory, as of `now`.
    pub fn open(now: Timestamp) -> Result<TestStore, String> {
        let dir = tempfile::tempdir()
            .map_err(|err| format!("cannot create a temporary data directory: {err}"))?;
        let store = SqliteStore::open(dir.path(), now).map_err(|err| err.to_string())?;
        Ok(TestStore { store, dir })
    }

    /// The store's data directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl std::ops::Deref for TestStore {
    type Target = SqliteStore;

    fn deref(&self) -> &SqliteStore {
        &self.store
    }
}

//! The conformance suite against the embedded SQLite store.

use redrive_store::SqliteStore;
use redrive_store::conformance::t0;

async fn sqlite() -> (SqliteStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = SqliteStore::open(dir.path(), t0()).expect("the store opens");
    (store, dir)
}

redrive_store::conformance_tests!(sqlite());

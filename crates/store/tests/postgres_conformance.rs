//! The conformance suite against PostgreSQL, each test in a schema of its
//! own. Reads REDRIVE_TEST_DATABASE_URL; without it every test says it is
//! skipped and passes.
//! The whole suite runs here, as on SQLite.

use redrive_store::PostgresStore;
use redrive_store::conformance::t0;
use redrive_store::postgres::testing::TestSchema;

async fn postgres() -> (Option<PostgresStore>, Option<TestSchema>) {
    let Some(url) = TestSchema::database_url("postgres conformance") else {
        return (None, None);
    };
    let schema = TestSchema::create(&url).await.expect("a test schema");
    let store = PostgresStore::connect(&format!("{}&pool_size=4", schema.url), t0())
        .await
        .expect("the store opens");
    (Some(store), Some(schema))
}

redrive_store::conformance_tests!(postgres());

//! The conformance suite against PostgreSQL: every check of
//! `conformance::CHECKS`, each in a schema of its own. Without
//! REDRIVE_TEST_DATABASE_URL every test is reported ignored, with the reason.

use std::process::ExitCode;

use redrive_store::PostgresStore;
use redrive_store::conformance::{CHECKS, t0};
use redrive_store::postgres::testing::TestSchema;
use redrive_testkit::{Runtime, trial};

fn main() -> ExitCode {
    let need = redrive_testkit::postgres();
    let trials = CHECKS
        .iter()
        .map(|&(name, check)| {
            trial(name, &need, Runtime::CurrentThread, move |url| async move {
                let schema = TestSchema::create(&url).await.expect("a test schema");
                let store = PostgresStore::connect(&format!("{}&pool_size=4", schema.url), t0())
                    .await
                    .expect("the store opens");
                check(&store).await;
                drop(store);
                drop(schema);
            })
        })
        .collect();
    redrive_testkit::run(trials)
}

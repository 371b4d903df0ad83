//! The conformance suite against the embedded SQLite store: every check of
//! `conformance::CHECKS` as a test of its own, each on a fresh store.

use std::process::ExitCode;

use redrive_store::conformance::{CHECKS, t0};
use redrive_store::sqlite::testing::TestStore;
use redrive_testkit::{Need, Runtime, trial};

fn main() -> ExitCode {
    // SQLite needs nothing this machine could lack.
    let need = Need::Met(());
    let trials = CHECKS
        .iter()
        .map(|&(name, check)| {
            trial(name, &need, Runtime::CurrentThread, move |()| async move {
                let store = TestStore::open(t0()).expect("the store opens");
                check(&*store).await;
            })
        })
        .collect();
    redrive_testkit::run(trials)
}

//! redrive's test kit, a dev-dependency only: what the test files would
//! otherwise each write again — a recording webhook endpoint
//! ([`endpoint`]), a client of the HTTP API ([`api`]) — and the harness of
//! the test suites that need something this machine may lack (a PostgreSQL
//! database, Chromium and chromedriver).
//!
//! Run through it (`harness = false`), such a test is reported as
//! *ignored*, with the reason and how to run it, when its need is missing,
//! never as passed; when the need is there, it runs like any test. CI sets
//! what they need, and makes a missing one a failure instead
//! (`REDRIVE_REQUIRE_BROWSER=1`, a database URL that must answer).

pub mod api;
pub mod endpoint;
pub mod import_graph;

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;

pub use libtest_mimic::{Arguments, Completion, Failed, Trial};

/// The variable naming the PostgreSQL database tests may use.
pub const TEST_DATABASE_URL: &str = "REDRIVE_TEST_DATABASE_URL";
/// Set to `1` (as CI does) to make missing Chromium a failure, not a skip.
pub const REQUIRE_BROWSER: &str = "REDRIVE_REQUIRE_BROWSER";

/// What a group of tests needs, found (or not) once at start.
#[derive(Clone, Debug)]
pub enum Need<T> {
    /// Present: the tests run with it.
    Met(T),
    /// Missing: the tests are reported ignored, with this reason.
    Missing(String),
    /// Missing where it is required: the tests fail, with this reason.
    Required(String),
}

impl<T> Need<T> {
    /// The need with nothing attached, to share between tests cheaply.
    pub fn as_unit(&self) -> Need<()> {
        match self {
            Need::Met(_) => Need::Met(()),
            Need::Missing(reason) => Need::Missing(reason.clone()),
            Need::Required(reason) => Need::Required(reason.clone()),
        }
    }
}

/// The PostgreSQL test database's URL, from `REDRIVE_TEST_DATABASE_URL`.
pub fn postgres() -> Need<String> {
    match std::env::var(TEST_DATABASE_URL) {
        Ok(url) if !url.is_empty() => Need::Met(url),
        _ => Need::Missing(format!(
            "needs PostgreSQL: set {TEST_DATABASE_URL}=postgres://user@host:port/db"
        )),
    }
}

/// Where Chromium and chromedriver are, found on the PATH.
#[derive(Clone, Debug)]
pub struct BrowserPrograms {
    pub chromium: PathBuf,
    pub chromedriver: PathBuf,
}

/// Chromium and chromedriver, required when `REDRIVE_REQUIRE_BROWSER=1`.
pub fn browser() -> Need<BrowserPrograms> {
    let chromedriver = find_program(&["chromedriver"]);
    let chromium = find_program(&["chromium", "chromium-browser", "google-chrome"]);
    if let (Some(chromium), Some(chromedriver)) = (chromium, chromedriver) {
        return Need::Met(BrowserPrograms {
            chromium,
            chromedriver,
        });
    }
    let reason = "needs `chromium` and `chromedriver` on the PATH".to_owned();
    if std::env::var(REQUIRE_BROWSER).is_ok_and(|value| value == "1") {
        Need::Required(format!("{reason}; {REQUIRE_BROWSER}=1 forbids skipping"))
    } else {
        Need::Missing(format!(
            "{reason} (or set {REQUIRE_BROWSER}=1 to fail instead)"
        ))
    }
}

fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// How a test's async runtime runs, as `#[tokio::test]`'s flavors.
#[derive(Clone, Copy, Debug)]
pub enum Runtime {
    CurrentThread,
    /// A multi-threaded runtime with this many workers.
    MultiThread(usize),
}

/// A test that needs `need`: run on a fresh runtime with what was found,
/// ignored with the reason when it is missing, failed when it is required.
pub fn trial<T, F, Fut>(name: &str, need: &Need<T>, runtime: Runtime, test: F) -> Trial
where
    T: Clone + Send + 'static,
    F: FnOnce(T) -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let need = need.clone();
    Trial::ignorable_test(name, move || {
        let found = match need {
            Need::Met(found) => found,
            Need::Missing(reason) => return Ok(Completion::ignored_with(reason)),
            Need::Required(reason) => return Err(Failed::from(reason)),
        };
        let mut builder = match runtime {
            Runtime::CurrentThread => tokio::runtime::Builder::new_current_thread(),
            Runtime::MultiThread(workers) => {
                let mut builder = tokio::runtime::Builder::new_multi_thread();
                builder.worker_threads(workers);
                builder
            }
        };
        let runtime = builder
            .enable_all()
            .build()
            .map_err(|err| Failed::from(format!("cannot start a runtime: {err}")))?;
        runtime.block_on(test(found));
        Ok(Completion::Completed)
    })
}

/// A test without async code, run as [`trial`] runs one.
pub fn blocking_trial<T, F>(name: &str, need: &Need<T>, test: F) -> Trial
where
    T: Clone + Send + 'static,
    F: FnOnce(T) + Send + 'static,
{
    let need = need.clone();
    Trial::ignorable_test(name, move || match need {
        Need::Met(found) => {
            test(found);
            Ok(Completion::Completed)
        }
        Need::Missing(reason) => Ok(Completion::ignored_with(reason)),
        Need::Required(reason) => Err(Failed::from(reason)),
    })
}

/// Runs the trials as `cargo test` runs tests (same flags, same output).
pub fn run(trials: Vec<Trial>) -> ExitCode {
    libtest_mimic::run(&Arguments::from_args(), trials).exit_code()
}

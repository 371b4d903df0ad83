//! redrive's server: the HTTP API and the dispatcher that pushes deliveries.
//! Thin glue: it parses and validates input, calls the store, and acts on the
//! decisions of `redrive-core`.

pub mod actions;
pub mod api;
pub mod app;
mod backup_staging;
pub mod clock;
pub mod console;
pub mod declared;
pub mod dispatcher;
pub mod error;
pub mod health;
pub mod jobs;
pub mod metrics;
pub mod ops;
pub mod security;
mod serve;
pub mod state;
pub mod sweeper;
mod validate;

pub use serve::{ServeOptions, serve};

#[cfg(test)]
mod layering {
    /// The top-level modules form layers: `app` composes `api` and
    /// `console`, both of which use `actions`, `state` and `error`, and
    /// nothing below reaches back up.
    #[test]
    fn no_import_cycle_between_modules() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        redrive_testkit::import_graph::assert_acyclic(&src);
    }

    /// Time is read from `clock::Clock` alone, so a test that moves the
    /// clock moves it for the API, the console and the dispatcher alike.
    #[test]
    fn only_the_clock_reads_the_system_time() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut readers = Vec::new();
        let mut dirs = vec![src.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).expect("the sources are readable") {
                let path = entry.expect("a directory entry").path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|ext| ext == "rs")
                    && path != src.join("clock.rs")
                    && std::fs::read_to_string(&path)
                        .expect("a source file")
                        .contains(concat!("Timestamp::", "now()"))
                {
                    readers.push(path);
                }
            }
        }
        assert!(
            readers.is_empty(),
            "read the time from the clock: {readers:?}"
        );
    }
}

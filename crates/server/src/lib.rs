//! redrive's server: the HTTP API and the dispatcher that pushes deliveries.
//! Thin glue: it parses and validates input, calls the store, and acts on the
//! decisions of `redrive-core`.

pub mod actions;
pub mod api;
pub mod app;
mod backup_staging;
pub mod clock;
pub mod config;
pub mod console;
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
}

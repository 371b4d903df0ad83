//! redrive's server: the HTTP API and the dispatcher that pushes deliveries.
//! Thin glue: it parses and validates input, calls the store, and acts on the
//! decisions of `redrive-core`.

pub mod api;
mod backup_staging;
pub mod clock;
pub mod config;
pub mod console;
pub mod dispatcher;
pub mod health;
pub mod jobs;
pub mod metrics;
pub mod ops;
pub mod security;
mod serve;
pub mod sweeper;
mod validate;

pub use serve::{ServeOptions, serve};

//! redrive's storage layer: one [`Store`] trait that owns every SQL statement,
//! its SQLite backend, and the conformance suite every backend must pass.
//!
//! The durability contract: when a write method returns `Ok`, its effect
//! survives a crash of the process.

mod error;
mod lifecycle;
mod store;

pub mod conformance;
pub mod postgres;
pub mod sqlite;

pub use error::StoreError;
pub use lifecycle::*;
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;
pub use store::*;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

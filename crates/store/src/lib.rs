//! redrive's storage layer: one [`Store`] trait that owns every SQL statement,
//! its SQLite and PostgreSQL backends, and (with the `testing` feature,
//! for tests only) the conformance suite every backend must pass.
//!
//! The durability contract: when a write method returns `Ok`, its effect
//! survives a crash of the process.

mod console;
#[cfg(test)]
mod console_plans;
mod error;
mod handoff;
mod health;
mod lifecycle;
mod migrations;
mod ops;
mod plan;
mod security;
mod store;
mod stored;

#[cfg(any(test, feature = "testing"))]
pub mod conformance;
pub mod postgres;
pub mod sqlite;

pub use console::*;
pub use error::StoreError;
pub use handoff::{Handoff, Offer};
pub use health::*;
pub use lifecycle::*;
pub use ops::*;
pub use postgres::PostgresStore;
pub use security::*;
pub use sqlite::SqliteStore;
pub use store::*;

/// The `Store` trait and its sub-traits, to call store methods through
/// `dyn Store` or a backend: `use redrive_store::prelude::*;`.
pub mod prelude {
    pub use crate::store::{
        ClaimStore, ConsoleStore, DeliveryStore, HealthStore, LifecycleStore, OpsStore,
        SecurityStore, Store, SubscriptionStore, TopicStore,
    };
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

//! Importers: other systems' configuration, turned into the topics and
//! subscriptions that reproduce it (applied like a `redrive.toml`).

pub mod appengine;
pub mod pubsub;

use crate::config::Desired;

/// What an import declares, and what it had to leave out or assume.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Imported {
    pub desired: Desired,
    /// One line each: skipped entries and settings redrive can't reproduce.
    pub notes: Vec<String>,
}

/// An import refused: the entry at fault and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ImportError(pub String);

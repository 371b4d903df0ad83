//! redrive's domain core: pure values and decisions, no I/O, no clock reads.
//!
//! Time always comes in as a parameter (`now`), so every rule here is tested
//! with plain values and exact sequences.

pub mod binding;
pub mod classify;
pub mod config;
pub mod decision;
pub mod dialect;
pub mod duration;
pub mod event;
pub mod explain;
pub mod filter;
pub mod health;
pub mod hold;
pub mod import;
pub mod lifecycle;
pub mod marks;
pub mod model;
pub mod names;
pub mod outbound;
pub mod policy;
pub mod presets;
pub mod rate;
pub mod security;
pub mod strict;

pub use classify::{AttemptOutcome, ErrorClass, RetryAfter, Verdict};
pub use decision::{AttemptContext, Decision, FailureReason};
pub use duration::HumanDuration;
pub use event::CloudEvent;
pub use filter::Filter;
pub use health::{Health, HealthPolicy, SubscriptionStatus};
pub use model::*;
pub use policy::{Backoff, Jitter, LimitMode, RetryPolicy};

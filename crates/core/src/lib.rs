//! redrive's domain core: pure values and decisions, no I/O, no clock reads.
//!
//! Time always comes in as a parameter (`now`), so every rule here is tested
//! with plain values and exact sequences.

pub mod config;
pub mod dialect;
pub mod duration;
pub mod event;
pub mod filter;
pub mod health;
pub mod hold;
pub mod import;
pub mod lifecycle;
pub mod marks;
pub mod model;
pub mod names;
pub mod outbound;
pub mod rate;
pub mod retry;
pub mod security;
pub mod strict;

// The retry modules keep their paths at the crate root as well.
pub use retry::{classify, decision, explain, policy, presets};

pub use classify::{AttemptOutcome, ErrorClass, RetryAfter, Verdict};
pub use decision::{AttemptContext, Decision, FailureReason};
pub use duration::HumanDuration;
pub use event::CloudEvent;
pub use filter::Filter;
pub use health::{Health, HealthPolicy, SubscriptionStatus};
pub use model::*;
pub use policy::{Backoff, Jitter, LimitMode, RetryPolicy};

#[cfg(test)]
mod layering {
    /// Concepts build on one another: no module reaches back to one that
    /// uses it.
    #[test]
    fn no_import_cycle_between_modules() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        redrive_testkit::import_graph::assert_acyclic(&src);
    }
}

//! Parameters of the endpoint-health operations.

use jiff::Timestamp;
use redrive_core::Health;

/// A compare-and-set of a subscription's health.
#[derive(Clone, Debug)]
pub struct HealthChange {
    pub subscription: String,
    /// The health it must have now for the change to apply.
    pub from: Health,
    pub to: Health,
    /// Why, kept as the subscription's `health_reason`.
    pub reason: String,
    pub now: Timestamp,
}

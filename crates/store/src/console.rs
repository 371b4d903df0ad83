//! Parameters and answers of the console's reads: filtered, keyset-paged
//! delivery lists and the counts and buckets of its overview.

use std::time::Duration;

use jiff::Timestamp;
use redrive_core::{Delivery, DeliveryState, FailureReason};

/// Deliveries of one subscription matching every filter given, newest
/// (by creation) first.
#[derive(Clone, Debug, Default)]
pub struct DeliverySearch {
    pub subscription: String,
    pub state: Option<DeliveryState>,
    /// Implies `state = failed`: only failed deliveries carry a reason.
    pub reason: Option<FailureReason>,
    pub event_type: Option<String>,
    /// The status code of the latest attempt.
    pub status: Option<u16>,
    /// Created at or after this time.
    pub since: Option<Timestamp>,
    /// Created before this time.
    pub until: Option<Timestamp>,
    pub limit: u32,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct DeliverySearchPage {
    pub deliveries: Vec<Delivery>,
    /// Pass as `cursor` for the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// How many deliveries of a subscription, created in a window, are in
/// each state now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateCounts {
    pub scheduled: u64,
    pub in_flight: u64,
    pub delivered: u64,
    pub failed: u64,
}

impl StateCounts {
    pub fn get(&self, state: DeliveryState) -> u64 {
        match state {
            DeliveryState::Scheduled => self.scheduled,
            DeliveryState::InFlight => self.in_flight,
            DeliveryState::Delivered => self.delivered,
            DeliveryState::Failed => self.failed,
        }
    }

    pub fn add(&mut self, state: DeliveryState, count: u64) {
        let slot = match state {
            DeliveryState::Scheduled => &mut self.scheduled,
            DeliveryState::InFlight => &mut self.in_flight,
            DeliveryState::Delivered => &mut self.delivered,
            DeliveryState::Failed => &mut self.failed,
        };
        *slot = slot.saturating_add(count);
    }

    pub fn total(&self) -> u64 {
        DeliveryState::ALL.iter().map(|&s| self.get(s)).sum()
    }
}

/// Deliveries of a subscription that ended (delivered or failed) in
/// `[from, until)`, counted per bucket of `width`.
#[derive(Clone, Debug)]
pub struct OutcomeBucketsQuery {
    pub subscription: String,
    pub from: Timestamp,
    pub until: Timestamp,
    pub width: Duration,
}

/// One bucket of [`OutcomeBucketsQuery`]: every bucket of the range is
/// returned, empty ones included, oldest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutcomeBucket {
    pub start: Timestamp,
    pub delivered: u64,
    pub failed: u64,
}

/// The most buckets one query may ask for.
pub const MAX_OUTCOME_BUCKETS: u64 = 1000;

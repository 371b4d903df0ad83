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

// What both backends' console reads share around their different SQL.

impl DeliverySearch {
    /// Rows per page: at least one.
    pub(crate) fn page_limit(&self) -> u32 {
        self.limit.max(1)
    }

    /// The state to filter on (a reason implies `failed`), or `Err(())`
    /// when the filters contradict each other and nothing can match.
    pub(crate) fn state_filter(&self) -> Result<Option<DeliveryState>, ()> {
        match (self.state, self.reason) {
            // Only failed deliveries carry a reason.
            (Some(asked), Some(_)) if asked != DeliveryState::Failed => Err(()),
            (_, Some(_)) => Ok(Some(DeliveryState::Failed)),
            (state, None) => Ok(state),
        }
    }

    /// The `(created_at ms, id)` the page continues after, if any.
    pub(crate) fn after(&self) -> crate::Result<Option<(i64, String)>> {
        let Some(cursor) = &self.cursor else {
            return Ok(None);
        };
        cursor
            .split_once('~')
            .and_then(|(ms, id)| Some((ms.parse::<i64>().ok()?, id.to_owned())))
            .map(Some)
            .ok_or_else(|| {
                crate::StoreError::Invalid(format!("cursor {cursor:?} is not one this server gave"))
            })
    }
}

/// The order of a search of every state, which merges one range per state
/// in a compound select: newest first by the positions (from 1) of
/// `d.created_at` and `d.id` among the delivery columns, since a compound
/// select orders by its result columns and `id` names two of them.
pub(crate) fn merged_newest_first() -> String {
    let position = |name: &str| {
        crate::stored::DELIVERY_COLUMNS
            .split(',')
            .position(|column| column.trim() == name)
            .map_or(0, |index| index + 1)
    };
    format!(
        "ORDER BY {} DESC, {} DESC",
        position("d.created_at"),
        position("d.id")
    )
}

impl DeliverySearchPage {
    /// A page from the rows a search read: it asks for one row more than
    /// `limit`, and that row's presence says another page follows.
    pub(crate) fn from_rows(mut deliveries: Vec<Delivery>, limit: u32) -> DeliverySearchPage {
        let next_cursor = if deliveries.len() > limit as usize {
            deliveries.truncate(limit as usize);
            deliveries
                .last()
                .map(|d| format!("{}~{}", d.created_at.as_millisecond(), d.id))
        } else {
            None
        };
        DeliverySearchPage {
            deliveries,
            next_cursor,
        }
    }
}

/// The buckets an [`OutcomeBucketsQuery`] answers, filled from rows of
/// `(bucket index, state, count)`.
pub(crate) struct BucketGrid {
    /// Milliseconds since the epoch.
    pub from: i64,
    pub until: i64,
    pub width: i64,
    buckets: Vec<OutcomeBucket>,
}

impl BucketGrid {
    /// Every bucket of the query's range, empty; refuses a range that is
    /// empty, backwards or cut into too many buckets.
    pub(crate) fn new(query: &OutcomeBucketsQuery) -> crate::Result<BucketGrid> {
        let width = i64::try_from(query.width.as_millis()).unwrap_or(i64::MAX);
        let from = query.from.as_millisecond();
        let until = query.until.as_millisecond();
        if width <= 0 || until <= from {
            return Err(crate::StoreError::Invalid(
                "buckets need a positive width and a range that ends after it starts".into(),
            ));
        }
        // Both differences are positive here.
        let count = until.abs_diff(from).div_ceil(width.unsigned_abs());
        if count > MAX_OUTCOME_BUCKETS {
            return Err(crate::StoreError::Invalid(format!(
                "{count} buckets asked for; at most {MAX_OUTCOME_BUCKETS}"
            )));
        }
        let buckets = (0..count as i64)
            .map(|i| {
                let start = Timestamp::from_millisecond(from + i * width).map_err(|err| {
                    crate::StoreError::Invalid(format!("bucket start out of range: {err}"))
                })?;
                Ok(OutcomeBucket {
                    start,
                    delivered: 0,
                    failed: 0,
                })
            })
            .collect::<crate::Result<Vec<_>>>()?;
        Ok(BucketGrid {
            from,
            until,
            width,
            buckets,
        })
    }

    /// Counts `count` deliveries that ended in `state` into bucket `index`.
    pub(crate) fn add(&mut self, index: i64, state: &str, count: i64) {
        let count = u64::try_from(count).unwrap_or(0);
        if let Some(bucket) = usize::try_from(index)
            .ok()
            .and_then(|i| self.buckets.get_mut(i))
        {
            match state {
                "delivered" => bucket.delivered += count,
                _ => bucket.failed += count,
            }
        }
    }

    pub(crate) fn into_buckets(self) -> Vec<OutcomeBucket> {
        self.buckets
    }
}

#[cfg(test)]
mod merged_order_tests {
    #[test]
    fn a_search_of_every_state_orders_by_columns_it_selects() {
        let columns: Vec<&str> = crate::stored::DELIVERY_COLUMNS
            .split(',')
            .map(str::trim)
            .collect();
        let order = super::merged_newest_first();
        let positions: Vec<usize> = order
            .trim_start_matches("ORDER BY ")
            .split(", ")
            .map(|key| key.trim_end_matches(" DESC").parse().unwrap())
            .collect();
        assert_eq!(columns[positions[0] - 1], "d.created_at");
        assert_eq!(columns[positions[1] - 1], "d.id");
    }
}

//! What the console's plan tests explain on every backend: each query the
//! console can send, under a name that says which filters it carries.

use jiff::{SignedDuration, Timestamp};
use redrive_core::{DeliveryState, FailureReason};

use crate::console::DeliverySearch;

/// The tables whose full scan grows with the history: a console query must
/// reach their rows through an index range.
pub(crate) const WATCHED_TABLES: [&str; 3] = ["deliveries", "attempts", "events"];

/// A fixed instant: plans do not depend on the clock.
pub(crate) fn noon() -> Timestamp {
    Timestamp::from_second(1_795_000_000).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// One search per combination of the filters a [`DeliverySearch`] can
/// carry (state, reason, status, event type, since, until, cursor), named
/// after the filters present.
pub(crate) fn every_search() -> Vec<(String, DeliverySearch)> {
    const FILTERS: [&str; 7] = [
        "state", "reason", "status", "type", "since", "until", "cursor",
    ];
    (0u32..1 << FILTERS.len())
        .map(|mask| {
            let on = |i: usize| mask & (1 << i) != 0;
            let search = DeliverySearch {
                subscription: "s1".into(),
                state: on(0).then_some(DeliveryState::Failed),
                reason: on(1).then_some(FailureReason::RetriesExhausted),
                status: on(2).then_some(500),
                event_type: on(3).then(|| "type-3".to_owned()),
                since: on(4).then(|| noon() - SignedDuration::from_hours(24)),
                until: on(5).then(|| noon() - SignedDuration::from_hours(1)),
                limit: 50,
                cursor: on(6).then(|| {
                    format!("{}~0196a1b2-0000-7000-8000-000000000000", {
                        noon().as_millisecond() - 60_000
                    })
                }),
            };
            let present: Vec<&str> = FILTERS
                .iter()
                .enumerate()
                .filter(|&(i, _)| on(i))
                .map(|(_, name)| *name)
                .collect();
            let name = if present.is_empty() {
                "search (no filter)".to_owned()
            } else {
                format!("search by {}", present.join("+"))
            };
            (name, search)
        })
        .collect()
}

/// The index a search with only this filter must read `deliveries` through:
/// the one made for it. Without it the search could still be a range of
/// the subscription, walked until the filter fills a page. A search of
/// every state reads the subscription's range of each state and merges
/// them: no backend keeps an index of deliveries by age alone.
pub(crate) fn expected_index(name: &str) -> Option<&'static str> {
    Some(match name {
        "search (no filter)" | "search by cursor" | "search by since" | "search by until"
        | "search by type" | "search by state" | "search by reason" => "deliveries_recent_by_state",
        "search by status" => "deliveries_recent_by_status",
        _ => return None,
    })
}

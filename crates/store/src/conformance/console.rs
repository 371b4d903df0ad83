//! Conformance checks of the console's reads: filtered keyset paging,
//! counts by state and delivered/failed buckets.

use std::time::Duration;

use redrive_core::{Decision, Delivery, DeliveryState, FailureReason};

use super::{at, attempt, claim_at, event, spec, want};
use crate::{Completion, DeliverySearch, OutcomeBucketsQuery, Store, StoreError};

/// `orders` → `s1` with six events, one published per second from t0:
/// e0..e5, types alternating `a`/`b`. At t0+10 e0 and e1 are delivered
/// (200), e2 fails as non-retryable (410), e3 waits for a retry after a
/// 503, e4 and e5 are never tried. Returns delivery ids by event index.
async fn seeded(store: &dyn Store) -> Vec<String> {
    publish_six(store).await;
    claim_and_end(store, 4, |event_id| {
        Some(match event_id {
            "e0" | "e1" => 200,
            "e2" => 410,
            _ => 503,
        })
    })
    .await;
    let mut ids = vec![String::new(); 6];
    let page = store
        .search_deliveries(DeliverySearch {
            subscription: "s1".into(),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    for d in page.deliveries {
        let index: usize = d.event_id[1..].parse().unwrap();
        ids[index] = d.id;
    }
    ids
}

/// `orders` → `s1` with six events, one published per second from t0:
/// e0..e5, types alternating `a`/`b`.
async fn publish_six(store: &dyn Store) {
    store.create_topic("orders", at(0)).await.unwrap();
    store
        .create_subscription(spec("s1", "orders"), at(0))
        .await
        .unwrap();
    for i in 0..6 {
        let ty = if i % 2 == 0 { "a" } else { "b" };
        store
            .publish("orders", vec![event(&format!("e{i}"), ty)], at(i))
            .await
            .unwrap();
    }
}

/// Claims the `due` oldest deliveries of `s1` at t0+10 and ends each with
/// the status `status_of` gives its event: 200 delivers, 410 fails as
/// non-retryable, 503 waits for a retry at t0+100; `None` leaves it in
/// flight.
async fn claim_and_end(store: &dyn Store, due: u32, status_of: impl Fn(&str) -> Option<u16>) {
    let claimed = store
        .claim_due(claim_at(at(10), vec![want("s1", due)]))
        .await
        .unwrap()
        .claimed;
    assert_eq!(
        claimed.len(),
        usize::try_from(due).unwrap(),
        "the oldest are due"
    );
    let completions = claimed
        .iter()
        .filter_map(|c| {
            let status = status_of(&c.event.id)?;
            let decision = match status {
                200 => Decision::Delivered,
                410 => Decision::Failed {
                    reason: FailureReason::NonRetryable,
                },
                _ => Decision::Retry {
                    at: at(100),
                    retry: 1,
                },
            };
            Some(Completion {
                delivery_id: c.delivery.id.clone(),
                subscription: c.delivery.subscription.clone(),
                attempt: attempt(c.delivery.attempts, at(10), status, decision),
            })
        })
        .collect();
    store.complete_many(completions).await.unwrap();
}

/// Every page of `s1`'s deliveries of every state, `limit` at a time,
/// following the cursors to the end.
async fn pages_of_every_state(store: &dyn Store, limit: u32) -> Vec<Vec<Delivery>> {
    let mut pages = Vec::new();
    let mut cursor = None;
    for _ in 0..10 {
        let page = store
            .search_deliveries(DeliverySearch {
                subscription: "s1".into(),
                limit,
                cursor: cursor.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(page.deliveries.len() <= usize::try_from(limit).unwrap());
        pages.push(page.deliveries);
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    pages
}

async fn event_ids(store: &dyn Store, search: DeliverySearch) -> Vec<String> {
    let page = store
        .search_deliveries(DeliverySearch {
            subscription: "s1".into(),
            limit: 100,
            ..search
        })
        .await
        .unwrap();
    page.deliveries.into_iter().map(|d| d.event_id).collect()
}

pub async fn console_search_filters_newest_first(store: &dyn Store) {
    seeded(store).await;
    let all = event_ids(store, DeliverySearch::default()).await;
    assert_eq!(all, ["e5", "e4", "e3", "e2", "e1", "e0"]);
    let by_state = |state| DeliverySearch {
        state: Some(state),
        ..Default::default()
    };
    assert_eq!(
        event_ids(store, by_state(DeliveryState::Delivered)).await,
        ["e1", "e0"]
    );
    assert_eq!(
        event_ids(store, by_state(DeliveryState::Scheduled)).await,
        ["e5", "e4", "e3"]
    );
    let reason = |reason| DeliverySearch {
        reason: Some(reason),
        ..Default::default()
    };
    assert_eq!(
        event_ids(store, reason(FailureReason::NonRetryable)).await,
        ["e2"]
    );
    assert!(
        event_ids(store, reason(FailureReason::Cancelled))
            .await
            .is_empty()
    );
    let contradiction = DeliverySearch {
        state: Some(DeliveryState::Delivered),
        reason: Some(FailureReason::NonRetryable),
        ..Default::default()
    };
    assert!(event_ids(store, contradiction).await.is_empty());
    let of_type = DeliverySearch {
        event_type: Some("b".into()),
        ..Default::default()
    };
    assert_eq!(event_ids(store, of_type).await, ["e5", "e3", "e1"]);
    let status = |code| DeliverySearch {
        status: Some(code),
        ..Default::default()
    };
    assert_eq!(event_ids(store, status(200)).await, ["e1", "e0"]);
    assert_eq!(event_ids(store, status(503)).await, ["e3"]);
    let window = DeliverySearch {
        since: Some(at(1)),
        until: Some(at(4)),
        ..Default::default()
    };
    assert_eq!(event_ids(store, window).await, ["e3", "e2", "e1"]);
    let combined = DeliverySearch {
        event_type: Some("a".into()),
        state: Some(DeliveryState::Scheduled),
        ..Default::default()
    };
    assert_eq!(event_ids(store, combined).await, ["e4"]);
}

pub async fn console_search_pages_without_gaps_or_repeats(store: &dyn Store) {
    seeded(store).await;
    let seen: Vec<String> = pages_of_every_state(store, 4)
        .await
        .into_iter()
        .flatten()
        .map(|d| d.event_id)
        .collect();
    assert_eq!(seen, ["e5", "e4", "e3", "e2", "e1", "e0"]);
    let exact = store
        .search_deliveries(DeliverySearch {
            subscription: "s1".into(),
            limit: 6,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(exact.deliveries.len(), 6);
    assert!(exact.next_cursor.is_none(), "no empty last page");
    let forged = store
        .search_deliveries(DeliverySearch {
            subscription: "s1".into(),
            limit: 4,
            cursor: Some("not a cursor".into()),
            ..Default::default()
        })
        .await;
    assert!(matches!(forged, Err(StoreError::Invalid(_))), "{forged:?}");
}

/// A search of every state pages newest first across all four states
/// when their ages interleave: e5 in flight, e4 delivered, e3 waiting for
/// a retry, e2 failed, e1 delivered, e0 waiting for a retry.
pub async fn console_search_pages_across_interleaved_states(store: &dyn Store) {
    publish_six(store).await;
    claim_and_end(store, 6, |event_id| match event_id {
        "e1" | "e4" => Some(200),
        "e2" => Some(410),
        "e0" | "e3" => Some(503),
        _ => None,
    })
    .await;
    let pages: Vec<Vec<String>> = pages_of_every_state(store, 2)
        .await
        .into_iter()
        .map(|page| {
            page.iter()
                .map(|d| format!("{} {}", d.event_id, d.state.as_str()))
                .collect()
        })
        .collect();
    assert_eq!(
        pages,
        [
            ["e5 in_flight", "e4 delivered"],
            ["e3 scheduled", "e2 failed"],
            ["e1 delivered", "e0 scheduled"],
        ]
    );
}

pub async fn console_counts_deliveries_by_state_since(store: &dyn Store) {
    seeded(store).await;
    let all = store.count_deliveries_by_state("s1", at(0)).await.unwrap();
    assert_eq!(
        (all.scheduled, all.in_flight, all.delivered, all.failed),
        (3, 0, 2, 1)
    );
    assert_eq!(all.total(), 6);
    // Created at t0+3 or later: e3 (scheduled), e4, e5.
    let recent = store.count_deliveries_by_state("s1", at(3)).await.unwrap();
    assert_eq!(recent.scheduled, 3);
    assert_eq!(recent.total(), 3);
    let none = store
        .count_deliveries_by_state("unknown", at(0))
        .await
        .unwrap();
    assert_eq!(none.total(), 0);
}

pub async fn console_buckets_delivered_and_failed_by_end_time(store: &dyn Store) {
    seeded(store).await;
    // Every attempt ended at t0+10s+5ms (5ms duration).
    let buckets = store
        .outcome_buckets(OutcomeBucketsQuery {
            subscription: "s1".into(),
            from: at(0),
            until: at(20),
            width: Duration::from_secs(5),
        })
        .await
        .unwrap();
    let counts: Vec<(u64, u64)> = buckets.iter().map(|b| (b.delivered, b.failed)).collect();
    assert_eq!(counts, [(0, 0), (0, 0), (2, 1), (0, 0)]);
    assert_eq!(buckets[2].start, at(10));
    let too_many = store
        .outcome_buckets(OutcomeBucketsQuery {
            subscription: "s1".into(),
            from: at(0),
            until: at(100_000),
            width: Duration::from_secs(1),
        })
        .await;
    assert!(matches!(too_many, Err(StoreError::Invalid(_))));
}

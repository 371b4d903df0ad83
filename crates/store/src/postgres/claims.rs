//! Claims on PostgreSQL beyond the plain claim statement (which is
//! `deliveries.rs`'s), the `ClaimStore`: leases no completion ended, claims
//! released at shutdown, and claims handed back whole; and subscription
//! rate limits shared by every node on the database.
//!
//! Each rate-limited subscription has one token bucket row. A claim that
//! asks for such a subscription locks its bucket row for the claim's
//! transaction, refills it to the claim's `now`, lowers the want to the
//! whole tokens there, claims, and writes back what is left. Concurrent
//! claims of one subscription from any node thus take turns on the row, and
//! together never take more than the bucket holds. Rows are locked in name
//! order, so two claims wanting the same subscriptions never deadlock.

use std::collections::HashMap;

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use jiff::Timestamp;

use super::ops::count;
use super::rows::{get, millis};
use super::{PostgresStore, pg_error};
use crate::store::{ClaimBatch, ClaimRate, ClaimRequest, ClaimStore, Unclaim};
use crate::{Result, StoreError};

#[async_trait]
impl ClaimStore for PostgresStore {
    async fn rescue_expired(&self, now: Timestamp) -> Result<u64> {
        let client = self.bookkeeping_client().await?;
        // Rows another node is completing right now are skipped: their
        // completion wins, and the next rescue looks again. In-flight rows
        // are found one subscription at a time on
        // `deliveries_recent_by_state` (a delivery lives only as long as
        // its subscription): a lease index would cost every claim a write.
        let moved = client
            .execute(RESCUE_EXPIRED, &[&millis(now), &now.to_string()])
            .await
            .map_err(pg_error)?;
        if moved > 0 {
            self.wake();
        }
        Ok(moved)
    }

    async fn release_claims(&self, delivery_ids: Vec<String>, now: Timestamp) -> Result<u64> {
        let ids = &delivery_ids;
        let client = self.bookkeeping_client().await?;
        let now_ms = millis(now);
        // One statement: the interrupted attempt is recorded exactly for the
        // claims this call moves back, and both happen or neither.
        let row = client
            .query_one(RELEASE_CLAIMS, &[&now_ms, &now.to_string(), &ids])
            .await
            .map_err(pg_error)?;
        let moved = count(get(&row, 0)?);
        if moved > 0 {
            // Another node may take them now.
            self.wake();
        }
        Ok(moved)
    }

    async fn unclaim(&self, claims: Vec<Unclaim>, now: Timestamp) -> Result<u64> {
        if claims.is_empty() {
            return Ok(0);
        }
        let ids: Vec<&str> = claims.iter().map(|c| c.delivery_id.as_str()).collect();
        let attempts: Vec<i32> = claims
            .iter()
            .map(|c| i32::try_from(c.attempt).unwrap_or(i32::MAX))
            .collect();
        let due: Vec<i64> = claims.iter().map(|c| millis(c.due_at)).collect();
        let client = self.bookkeeping_client().await?;
        // Each row goes back as it was before the claim: the claim counted
        // an attempt and set the first (on the first attempt) and last
        // attempt times, which the attempt before it, if any, had set. The
        // rate token the claim spent stays spent: a rate is a ceiling.
        let row = client
            .query_one(UNCLAIM, &[&ids, &attempts, &due, &millis(now)])
            .await
            .map_err(pg_error)?;
        let moved = count(get(&row, 0)?);
        if moved > 0 {
            // Another node may take them now.
            self.wake();
        }
        Ok(moved)
    }
}

// `(state = 'in_flight') IS TRUE` checks a row found by its key: an index
// search by state would walk every delivery in flight (see
// `deliveries::plans`).

/// Moves in-flight deliveries whose lease ran out before `$1` back to
/// due, recording the interrupted attempt (`$2`: `$1` as text).
pub(super) const RESCUE_EXPIRED: &str = "WITH expired AS (
       SELECT d.id FROM subscriptions s CROSS JOIN LATERAL (
         SELECT id FROM deliveries
         WHERE subscription = s.name AND state = 'in_flight' AND lease_until < $1
         FOR UPDATE SKIP LOCKED
       ) d
     ), recorded AS (
       INSERT INTO attempts
         (delivery_id, number, started_at, duration_ms, error, error_message, decision)
       SELECT d.id, d.attempts, COALESCE(d.last_attempt_at, $1),
              GREATEST($1 - COALESCE(d.last_attempt_at, $1), 0), 'interrupted',
              'the attempt did not finish: its process stopped or its lease ran out',
              json_build_object('kind', 'retry', 'at', $2::text, 'retry', d.attempts)::text
       FROM deliveries d JOIN expired USING (id)
       ON CONFLICT DO NOTHING
     )
     UPDATE deliveries d SET state = 'scheduled', next_attempt_at = $1,
            lease_until = NULL, last_error = 'interrupted', last_status = NULL,
            updated_at = $1
     FROM expired WHERE d.id = expired.id";

/// Hands the claims `$3` back as due at `$1`, recording the interrupted
/// attempt (`$2`: `$1` as text); counts them.
pub(super) const RELEASE_CLAIMS: &str = "WITH released AS (
      UPDATE deliveries SET state = 'scheduled', next_attempt_at = $1,
             lease_until = NULL, last_error = 'interrupted', last_status = NULL,
             updated_at = $1
      WHERE id = ANY($3::text[]) AND (state = 'in_flight') IS TRUE
      RETURNING id, attempts, last_attempt_at
    ), recorded AS (
      INSERT INTO attempts (delivery_id, number, started_at, duration_ms, error,
                            error_message, decision)
      SELECT id, attempts, COALESCE(last_attempt_at, $1),
             GREATEST($1 - COALESCE(last_attempt_at, $1), 0),
             'interrupted', 'the attempt did not finish before shutdown',
             json_build_object('kind', 'retry', 'at', $2::text,
                               'retry', attempts)::text
      FROM released
      ON CONFLICT DO NOTHING
    )
    SELECT count(*) FROM released";

/// Hands claims back as they were before (`$1` ids, `$2` attempts, `$3`
/// due times, at `$4`); counts them.
pub(super) const UNCLAIM: &str = "WITH handed_back AS (
      UPDATE deliveries d SET state = 'scheduled', attempts = d.attempts - 1,
             next_attempt_at = c.due_at, lease_until = NULL, updated_at = $4,
             first_attempt_at = CASE WHEN d.attempts = 1 THEN NULL
                                     ELSE d.first_attempt_at END,
             last_attempt_at = CASE WHEN d.attempts = 1 THEN NULL ELSE COALESCE(
                 (SELECT a.started_at FROM attempts a
                  WHERE a.delivery_id = d.id AND a.number = d.attempts - 1),
                 d.last_attempt_at) END
      FROM unnest($1::text[], $2::int[], $3::bigint[]) AS c(id, attempt, due_at)
      WHERE d.id = c.id AND (d.state = 'in_flight') IS TRUE AND d.attempts = c.attempt
      RETURNING d.id
    )
    SELECT count(*) FROM handed_back";

/// A bucket as this claim found it, refilled to the claim's `now`.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    refilled_at: i64,
}

impl Bucket {
    /// Refills to `now_ms`. A node whose clock lags another's never winds
    /// the bucket back: time only counts once.
    fn refilled(self, rate: ClaimRate, now_ms: i64) -> Bucket {
        let capacity = f64::from(rate.burst.max(1));
        let elapsed_ms = now_ms.saturating_sub(self.refilled_at).max(0);
        let gained = rate.per_second.max(0.0) * elapsed_ms as f64 / 1000.0;
        Bucket {
            tokens: (self.tokens + gained).min(capacity),
            refilled_at: self.refilled_at.max(now_ms),
        }
    }

    /// Whole tokens there, as a claim limit.
    fn whole(self) -> i64 {
        // At most MAX_BUCKET_SIZE tokens: the cast can't overflow.
        self.tokens.max(0.0).floor() as i64
    }
}

/// The wants that need their bucket: rated, asking for something, and not
/// paused (a paused rate claims nothing, so its bucket is left alone).
fn metered(request: &ClaimRequest) -> Vec<(&str, ClaimRate)> {
    let mut metered: Vec<(&str, ClaimRate)> = request
        .wants
        .iter()
        .filter(|want| want.limit > 0)
        .filter_map(|want| {
            let rate = want.rate?;
            (rate.per_second > 0.0).then_some((want.subscription.as_str(), rate))
        })
        .collect();
    // The lock order: every claim locks bucket rows in this order.
    metered.sort_by(|a, b| a.0.cmp(b.0));
    metered.dedup_by(|a, b| a.0 == b.0);
    metered
}

/// Claims with the wants' rates enforced across every node (some want has
/// a rate). The bucket rows are locked for the whole transaction, so the
/// tokens taken are exactly the deliveries claimed.
pub(super) async fn claim_rated(
    client: &mut deadpool_postgres::Object,
    request: &ClaimRequest,
) -> Result<ClaimBatch> {
    let now_ms = super::rows::millis(request.now);
    let metered = metered(request);
    if metered.is_empty() {
        // No bucket to take from (rated wants that ask for nothing, or are
        // paused): the claim stays the single statement it is without rates.
        let limits: Vec<i64> = request
            .wants
            .iter()
            .map(|want| match want.rate {
                Some(rate) if rate.per_second <= 0.0 => 0,
                _ => i64::from(want.limit),
            })
            .collect();
        return super::deliveries::claim_with(&*client, request, &limits).await;
    }
    // A subscription's first rated claim creates its bucket, full; the
    // claim then starts over so that every row is locked in order.
    for attempt in 0..2 {
        let tx = client.transaction().await.map_err(pg_error)?;
        let found = lock(&tx, &metered).await?;
        let missing: Vec<(&str, ClaimRate)> = metered
            .iter()
            .filter(|(name, _)| !found.contains_key(*name))
            .copied()
            .collect();
        if !missing.is_empty() && attempt == 0 {
            tx.rollback().await.map_err(pg_error)?;
            create(&*client, &missing, now_ms).await?;
            continue;
        }
        // A bucket still missing belongs to a subscription deleted
        // meanwhile: it gets nothing.
        let buckets: HashMap<&str, (ClaimRate, Bucket)> = metered
            .iter()
            .filter_map(|(name, rate)| {
                let bucket = found.get(*name)?.refilled(*rate, now_ms);
                Some((*name, (*rate, bucket)))
            })
            .collect();
        // A subscription wanted twice shares its tokens between the wants.
        let mut left: HashMap<&str, i64> = buckets
            .iter()
            .map(|(name, (_, bucket))| (*name, bucket.whole()))
            .collect();
        let limits: Vec<i64> = request
            .wants
            .iter()
            .map(|want| {
                let limit = i64::from(want.limit);
                match want.rate {
                    None => limit,
                    Some(rate) if rate.per_second <= 0.0 => 0,
                    Some(_) => match left.get_mut(want.subscription.as_str()) {
                        Some(tokens) => {
                            let granted = limit.min(*tokens);
                            *tokens -= granted;
                            granted
                        }
                        None => 0,
                    },
                }
            })
            .collect();
        let mut batch = super::deliveries::claim_with(&tx, request, &limits).await?;
        let mut claimed: HashMap<&str, f64> = HashMap::new();
        for delivery in &batch.claimed {
            *claimed
                .entry(delivery.delivery.subscription.as_str())
                .or_default() += 1.0;
        }
        batch.rate_refill_at = refill_at(request, &limits, &buckets, &claimed, now_ms)?;
        let mut names = Vec::with_capacity(buckets.len());
        let mut tokens = Vec::with_capacity(buckets.len());
        let mut refilled_at = Vec::with_capacity(buckets.len());
        for (name, (_, bucket)) in &buckets {
            let spent = claimed.get(name).copied().unwrap_or_default();
            names.push(*name);
            tokens.push((bucket.tokens - spent).max(0.0));
            refilled_at.push(bucket.refilled_at);
        }
        if !names.is_empty() {
            let stmt = tx
                .prepare_cached(
                    "UPDATE rate_buckets b SET tokens = n.tokens, refilled_at = n.refilled_at
                     FROM unnest($1::text[], $2::float8[], $3::bigint[])
                          AS n(subscription, tokens, refilled_at)
                     WHERE b.subscription = n.subscription",
                )
                .await
                .map_err(pg_error)?;
            tx.execute(&stmt, &[&names, &tokens, &refilled_at])
                .await
                .map_err(pg_error)?;
        }
        tx.commit().await.map_err(pg_error)?;
        return Ok(batch);
    }
    Err(StoreError::Backend(
        "the rate buckets of a claim could not be created".into(),
    ))
}

/// The earliest next whole token of a bucket that cut its want short and
/// was emptied: a want that took every token it was given and wanted more.
fn refill_at(
    request: &ClaimRequest,
    limits: &[i64],
    buckets: &HashMap<&str, (ClaimRate, Bucket)>,
    claimed: &HashMap<&str, f64>,
    now_ms: i64,
) -> Result<Option<jiff::Timestamp>> {
    let mut earliest: Option<i64> = None;
    for (want, limit) in request.wants.iter().zip(limits) {
        let Some((rate, bucket)) = buckets.get(want.subscription.as_str()) else {
            continue;
        };
        let spent = claimed
            .get(want.subscription.as_str())
            .copied()
            .unwrap_or_default();
        let cut_short = *limit < i64::from(want.limit) && spent >= *limit as f64;
        if !cut_short {
            continue;
        }
        let missing = (1.0 - (bucket.tokens - spent)).max(0.0);
        // Whole milliseconds, rounded up, so the token is there on time.
        let wait_ms = (missing / rate.per_second * 1000.0).ceil() as i64;
        let at = now_ms.saturating_add(wait_ms.max(1));
        earliest = Some(earliest.map_or(at, |known| known.min(at)));
    }
    earliest.map(super::rows::timestamp).transpose()
}

/// Locks the buckets of `metered` (sorted by name) and reads them; buckets
/// that don't exist yet are left out.
async fn lock(
    client: &impl GenericClient,
    metered: &[(&str, ClaimRate)],
) -> Result<HashMap<String, Bucket>> {
    if metered.is_empty() {
        return Ok(HashMap::new());
    }
    let names: Vec<&str> = metered.iter().map(|(name, _)| *name).collect();
    let stmt = client
        .prepare_cached(
            "SELECT subscription, tokens, refilled_at FROM rate_buckets
             WHERE subscription = ANY($1::text[])
             ORDER BY subscription FOR UPDATE",
        )
        .await
        .map_err(pg_error)?;
    let rows = client.query(&stmt, &[&names]).await.map_err(pg_error)?;
    let mut buckets = HashMap::with_capacity(rows.len());
    for row in &rows {
        buckets.insert(
            get::<String>(row, 0)?,
            Bucket {
                tokens: get(row, 1)?,
                refilled_at: get(row, 2)?,
            },
        );
    }
    Ok(buckets)
}

/// Creates the buckets of `missing`, full, in their own statement: rows a
/// claim transaction inserted would be locked out of the name order.
/// Subscriptions that no longer exist get none.
async fn create(
    client: &impl GenericClient,
    missing: &[(&str, ClaimRate)],
    now_ms: i64,
) -> Result<()> {
    let names: Vec<&str> = missing.iter().map(|(name, _)| *name).collect();
    let bursts: Vec<f64> = missing
        .iter()
        .map(|(_, rate)| f64::from(rate.burst.max(1)))
        .collect();
    let stmt = client
        .prepare_cached(
            "INSERT INTO rate_buckets (subscription, tokens, refilled_at)
             SELECT n.subscription, n.burst, $3
             FROM unnest($1::text[], $2::float8[]) AS n(subscription, burst)
             JOIN subscriptions s ON s.name = n.subscription
             ORDER BY n.subscription
             ON CONFLICT (subscription) DO NOTHING",
        )
        .await
        .map_err(pg_error)?;
    client
        .execute(&stmt, &[&names, &bursts, &now_ms])
        .await
        .map_err(|err| {
            StoreError::Backend(format!(
                "cannot create the rate buckets of {}: {}",
                names.join(", "),
                pg_error(err)
            ))
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: ClaimRate = ClaimRate {
        per_second: 10.0,
        burst: 5,
    };

    #[test]
    fn a_bucket_refills_at_its_rate_up_to_its_burst() {
        let empty = Bucket {
            tokens: 0.0,
            refilled_at: 1_000,
        };
        let later = empty.refilled(RATE, 1_250);
        assert_eq!(later.whole(), 2);
        assert_eq!(later.refilled_at, 1_250);
        assert_eq!(empty.refilled(RATE, 60_000).whole(), 5);
    }

    #[test]
    fn a_lagging_clock_neither_refills_nor_rewinds() {
        let bucket = Bucket {
            tokens: 1.5,
            refilled_at: 10_000,
        };
        let behind = bucket.refilled(RATE, 9_000);
        assert_eq!(behind.tokens, 1.5);
        assert_eq!(behind.refilled_at, 10_000);
    }
}

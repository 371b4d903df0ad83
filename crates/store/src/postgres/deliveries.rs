//! Deliveries on PostgreSQL.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use jiff::Timestamp;
use redrive_core::{CloudEvent, Delivery};
use tokio::sync::Notify;

// Claims with a rate limit take their tokens in `claims.rs`.
use super::claims as rate;
use super::rows::{
    self, ATTEMPT_COLUMNS, DELIVERY_COLUMN_COUNT, DELIVERY_COLUMNS, get, millis, timestamp,
};
use super::{PostgresStore, health, lifecycle, pg_error, read_delivery};
use crate::handoff::Taken;
use crate::plan::{self, CompletionRow, FanOut};
use crate::{
    ClaimBatch, ClaimRequest, ClaimedDelivery, Completion, DeliveryDetail, DeliveryStore,
    PublishOutcome, Result, StoreError,
};

#[async_trait]
impl DeliveryStore for PostgresStore {
    async fn publish(
        &self,
        topic: &str,
        events: Vec<CloudEvent>,
        now: Timestamp,
    ) -> Result<Vec<PublishOutcome>> {
        let outcomes = self.publisher.publish(topic, events, now).await?;
        if outcomes.iter().any(PublishOutcome::left_due) {
            self.wake();
        }
        Ok(outcomes)
    }

    async fn claim_due(&self, mut request: ClaimRequest) -> Result<ClaimBatch> {
        let mut client = self.bookkeeping_client().await?;
        // Within what the dispatcher's open offer has left: publishes on
        // other connections take from it at the same time.
        self.handoff.reserve_wants(&mut request.wants);
        let batch = if request.wants.iter().any(|want| want.rate.is_some()) {
            rate::claim_rated(&mut client, &request).await
        } else {
            let limits: Vec<i64> = request.wants.iter().map(|w| i64::from(w.limit)).collect();
            claim_with(&client, &request, &limits).await
        };
        self.handoff.refund_wants(
            &request.wants,
            batch.as_ref().map_or(&[][..], |batch| &batch.claimed),
        );
        batch
    }

    async fn complete_many(&self, completions: Vec<Completion>) -> Result<()> {
        if completions.is_empty() {
            return Ok(());
        }
        let mut client = self.bookkeeping_client().await?;
        let fanned_out = complete_in(&mut client, &completions).await?;
        if fanned_out {
            self.wake();
        }
        Ok(())
    }

    async fn get_delivery(&self, id: &str) -> Result<DeliveryDetail> {
        let client = self.client().await?;
        let (delivery, event) = read_delivery(&client, id).await?;
        let sql = format!(
            "SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE delivery_id = $1 ORDER BY number"
        );
        let stmt = client.prepare_cached(&sql).await.map_err(pg_error)?;
        let attempts = client
            .query(&stmt, &[&id])
            .await
            .map_err(pg_error)?
            .iter()
            .map(rows::attempt)
            .collect::<Result<_>>()?;
        Ok(DeliveryDetail {
            delivery,
            event,
            attempts: crate::lifecycle::order_attempt_log(attempts),
        })
    }

    async fn retry_now(&self, id: &str, now: Timestamp) -> Result<Delivery> {
        let client = self.client().await?;
        let changed = client
            .execute(
                "UPDATE deliveries SET state = 'scheduled', next_attempt_at = $2,
                        failure_reason = NULL, updated_at = $2,
                        -- Ended: a fresh budget, age and retention, as a
                        -- redrive gives. Scheduled: only due sooner.
                        attempts_before_redrive = CASE WHEN state IN ('failed', 'delivered')
                            THEN attempts ELSE attempts_before_redrive END,
                        retention_from = CASE WHEN state IN ('failed', 'delivered')
                            THEN $2 ELSE retention_from END
                 WHERE id = $1 AND state <> 'in_flight'",
                &[&id, &millis(now)],
            )
            .await
            .map_err(pg_error)?;
        let (delivery, _) = read_delivery(&client, id).await?;
        if changed == 0 {
            return Err(StoreError::Conflict(format!(
                "delivery {id:?} is in flight; retry it once this attempt ends"
            )));
        }
        self.wake();
        Ok(delivery)
    }

    fn wakeups(&self) -> Arc<Notify> {
        self.wakeups.clone()
    }

    fn handoff(&self) -> Option<Arc<crate::Handoff>> {
        Some(self.handoff.clone())
    }
}

/// Stores events and fans them out in one statement. The fan-out is decided
/// here (filters are Rust), and only the first occurrence of a `(source,
/// id)` in the batch can be new, as on SQLite. A new delivery goes straight
/// into flight when `taken` gets a slot the dispatcher offered for it;
/// whether its subscription accepts pushes (not paused, not disabled) is
/// read with the topic's subscriptions, just before the insert.
pub(super) async fn publish_in(
    client: &impl GenericClient,
    topic: &str,
    events: &[&CloudEvent],
    now: Timestamp,
    taken: &mut Taken<'_>,
) -> Result<Vec<PublishOutcome>> {
    let stmt = client
        .prepare_cached(
            "SELECT s.name, s.spec, NOT (s.paused OR s.health = 'disabled')
             FROM topics t LEFT JOIN subscriptions s ON s.topic = t.name
             WHERE t.name = $1",
        )
        .await
        .map_err(pg_error)?;
    let rows = client.query(&stmt, &[&topic]).await.map_err(pg_error)?;
    if rows.is_empty() {
        return Err(StoreError::not_found("topic", topic));
    }
    let mut accepting = HashMap::new();
    for row in &rows {
        if let (Some(name), Some(accepts)) =
            (get::<Option<String>>(row, 0)?, get::<Option<bool>>(row, 2)?)
        {
            accepting.insert(name, accepts);
        }
    }
    let targets = FanOut::from_stored(
        rows.iter()
            .map(|row| Ok((get::<Option<String>>(row, 0)?, get::<Option<&str>>(row, 1)?)))
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .filter_map(|(name, spec)| name.zip(spec)),
    )?;
    let mut sources = Vec::with_capacity(events.len());
    let mut ids = Vec::with_capacity(events.len());
    let mut types = Vec::with_capacity(events.len());
    let mut attributes = Vec::with_capacity(events.len());
    let mut data = Vec::with_capacity(events.len());
    let mut delivery_ids = Vec::new();
    let mut delivery_subscriptions = Vec::new();
    let mut delivery_sources = Vec::new();
    let mut delivery_event_ids = Vec::new();
    // The lease of a delivery taken into flight; none for one left due.
    let mut delivery_leases: Vec<Option<i64>> = Vec::new();
    // Per event: how many deliveries it fans out to if it is new, and
    // whether it is the batch's first occurrence of its identity.
    let mut fan_out = Vec::with_capacity(events.len());
    let mut seen = std::collections::HashSet::new();
    for &event in events {
        let first = seen.insert((event.source.as_str(), event.id.as_str()));
        let mut count = 0;
        let mut in_flight = 0;
        if first {
            sources.push(event.source.as_str());
            ids.push(event.id.as_str());
            types.push(event.ty.as_str());
            attributes.push(serde_json::to_string(event)?);
            data.push(event.data.as_deref());
            for (id, subscription) in targets.deliveries(event) {
                let accepts = || Ok(accepting.get(subscription).copied().unwrap_or(false));
                let lease = taken.lease_for(subscription, accepts, now)?;
                delivery_leases.push(lease.map(millis));
                if let Some(lease_until) = lease {
                    let claimed = plan::claimed_at_publish(
                        id.clone(),
                        subscription,
                        event,
                        now,
                        lease_until,
                    )?;
                    taken.keep(claimed);
                    in_flight += 1;
                }
                delivery_ids.push(id);
                delivery_subscriptions.push(subscription);
                delivery_sources.push(event.source.as_str());
                delivery_event_ids.push(event.id.as_str());
                count += 1;
            }
        }
        fan_out.push((first, count, in_flight));
    }
    // The guard is taken before any position is drawn and held until the
    // commit: journal readers stop below it (see `lifecycle::journal`).
    let stmt = client
        .prepare_cached(&format!(
            "WITH guard AS (
               SELECT pg_advisory_xact_lock_shared({guard}) AS held
             ), stored AS (
               INSERT INTO events (topic, source, id, type, attributes, data, published_at)
               SELECT $1, e.source, e.id, e.type, e.attributes, e.data, $7
               FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::bytea[])
                    AS e(source, id, type, attributes, data)
               CROSS JOIN guard
               ON CONFLICT (topic, source, id) DO NOTHING
               RETURNING seq, source, id
             ), fanned AS (
               -- Taken into flight (a lease): as `plan::claimed_at_publish`
               -- leaves it. Else due at once.
               INSERT INTO deliveries (id, subscription, event_seq, state, attempts,
                                       next_attempt_at, first_attempt_at, last_attempt_at,
                                       lease_until, created_at, updated_at)
               SELECT f.id, f.subscription, stored.seq,
                      CASE WHEN f.lease IS NULL THEN 'scheduled' ELSE 'in_flight' END,
                      CASE WHEN f.lease IS NULL THEN 0 ELSE 1 END,
                      CASE WHEN f.lease IS NULL THEN $7 END,
                      CASE WHEN f.lease IS NULL THEN NULL ELSE $7 END,
                      CASE WHEN f.lease IS NULL THEN NULL ELSE $7 END,
                      f.lease, $7, $7
               FROM unnest($8::text[], $9::text[], $10::text[], $11::text[], $12::bigint[])
                    AS f(id, subscription, source, event_id, lease)
               JOIN stored ON stored.source = f.source AND stored.id = f.event_id
               RETURNING 1
             )
             SELECT source, id FROM stored",
            guard = lifecycle::journal_guard_key()
        ))
        .await
        .map_err(pg_error)?;
    let stored = client
        .query(
            &stmt,
            &[
                &topic,
                &sources,
                &ids,
                &types,
                &attributes,
                &data,
                &millis(now),
                &delivery_ids,
                &delivery_subscriptions,
                &delivery_sources,
                &delivery_event_ids,
                &delivery_leases,
            ],
        )
        .await
        .map_err(pg_error)?;
    let mut new = std::collections::HashSet::with_capacity(stored.len());
    for row in &stored {
        let source: String = get(row, 0)?;
        let id: String = get(row, 1)?;
        new.insert((source, id));
    }
    // Deliveries of an event that was already stored were not written.
    taken.retain(|claimed| {
        new.contains(&(
            claimed.delivery.event_source.clone(),
            claimed.delivery.event_id.clone(),
        ))
    });
    Ok(events
        .iter()
        .zip(fan_out)
        .map(|(event, (first, count, in_flight))| {
            let is_new = first && new.contains(&(event.source.clone(), event.id.clone()));
            PublishOutcome {
                duplicate: !is_new,
                deliveries: if is_new { count } else { 0 },
                in_flight: if is_new { in_flight } else { 0 },
                id: event.id.clone(),
                source: event.source.clone(),
            }
        })
        .collect())
}

/// The earliest due delivery of the wanted subscriptions (`$1`), besides
/// those the statement claims; `claimed` names what to leave out.
fn next_due(claimed: &str) -> String {
    format!(
        "SELECT min(first_due.at) AS at FROM unnest($1::text[]) AS w(subscription)
         JOIN subscriptions s ON s.name = w.subscription
           AND NOT s.paused AND s.health <> 'disabled'
         CROSS JOIN LATERAL (
           SELECT next_attempt_at AS at FROM deliveries
           WHERE subscription = w.subscription AND state = 'scheduled' {claimed}
           ORDER BY next_attempt_at LIMIT 1
         ) first_due"
    )
}

/// What is due next when nothing is claimed (see `next_due`).
pub(super) static NEXT_DUE: LazyLock<String> = LazyLock::new(|| next_due(""));

/// The claim (see `claim_statement`), built once: it runs for every batch.
pub(super) static CLAIM: LazyLock<String> = LazyLock::new(claim_statement);

/// The claim: each wanted subscription's due rows (`$1` names, `$2`
/// limits, `$6` due-by times), oldest first, at most `$5` in all, claimed
/// at `$3` with leases until `$4`; with each its event, and what is due
/// next.
fn claim_statement() -> String {
    format!(
        "WITH due AS (
           SELECT picked.id, picked.next_attempt_at AS due_at
           FROM unnest($1::text[], $2::bigint[], $6::bigint[])
                WITH ORDINALITY AS w(subscription, lim, due_by, ord)
           -- Paused and disabled subscriptions get no claims.
           JOIN subscriptions s ON s.name = w.subscription
             AND NOT s.paused AND s.health <> 'disabled'
           CROSS JOIN LATERAL (
             SELECT id, next_attempt_at FROM deliveries
             WHERE subscription = w.subscription AND state = 'scheduled'
               AND next_attempt_at <= w.due_by
             ORDER BY next_attempt_at LIMIT w.lim
             FOR UPDATE SKIP LOCKED
           ) picked
           WHERE w.lim > 0
           LIMIT $5
         ), claimed AS (
           -- A delivery claimed ahead starts when it falls due: that
           -- is its attempt's time.
           UPDATE deliveries d SET state = 'in_flight', attempts = d.attempts + 1,
                  lease_until = $4, last_attempt_at = GREATEST($3, due.due_at),
                  first_attempt_at = COALESCE(d.first_attempt_at, GREATEST($3, due.due_at)),
                  next_attempt_at = NULL, updated_at = $3
           FROM due WHERE d.id = due.id
           RETURNING d.*, due.due_at
         ), next AS ({next})
         SELECT {DELIVERY_COLUMNS}, e.attributes, e.data, next.at, d.due_at
         FROM next LEFT JOIN (claimed d JOIN events e ON e.seq = d.event_seq) ON true
         ORDER BY d.due_at, d.id",
        next = next_due("AND id NOT IN (SELECT id FROM due)"),
    )
}

/// Claims with `limits` in place of the wants' own (one per want, in
/// order), in one statement.
pub(super) async fn claim_with(
    client: &impl GenericClient,
    request: &ClaimRequest,
    limits: &[i64],
) -> Result<ClaimBatch> {
    let now_ms = millis(request.now);
    let lease_until = request
        .now
        .checked_add(request.lease)
        .map_err(|err| StoreError::Invalid(format!("lease too long: {err}")))?;
    let names: Vec<&str> = request
        .wants
        .iter()
        .map(|w| w.subscription.as_str())
        .collect();
    let due_by = request
        .wants
        .iter()
        .map(|w| {
            request
                .now
                .checked_add(w.lookahead)
                .map(millis)
                .map_err(|err| StoreError::Invalid(format!("lookahead too long: {err}")))
        })
        .collect::<Result<Vec<i64>>>()?;
    let mut batch = ClaimBatch::default();
    let due: Option<i64> = if request.limit_total > 0 && limits.iter().any(|l| *l > 0) {
        // Each subscription's due rows, oldest first, skipping rows another
        // node is claiming: nodes never queue behind each other. The
        // subscriptions are walked in order and the walk stops at the
        // total, so rows past it are never locked. What is due next comes
        // back in the same statement (a row with no delivery when nothing
        // was claimed).
        let stmt = client.prepare_cached(&CLAIM).await.map_err(pg_error)?;
        let rows = client
            .query(
                &stmt,
                &[
                    &names,
                    &limits,
                    &now_ms,
                    &millis(lease_until),
                    &i64::from(request.limit_total),
                    &due_by,
                ],
            )
            .await
            .map_err(pg_error)?;
        let mut due = None;
        for row in &rows {
            due = get(row, DELIVERY_COLUMN_COUNT + 2)?;
            if get::<Option<&str>>(row, 0)?.is_none() {
                continue;
            }
            batch.claimed.push(ClaimedDelivery {
                delivery: rows::delivery(row)?,
                event: rows::event(row, DELIVERY_COLUMN_COUNT)?,
                lease_until,
                due_at: timestamp(get(row, DELIVERY_COLUMN_COUNT + 3)?)?,
            });
        }
        due
    } else {
        let stmt = client.prepare_cached(&NEXT_DUE).await.map_err(pg_error)?;
        let row = client.query_one(&stmt, &[&names]).await.map_err(pg_error)?;
        get(&row, 0)?
    };
    batch.next_due_at = due.map(timestamp).transpose()?;
    Ok(batch)
}

/// The attempt outcomes (see `complete_statement`), built once: they run
/// for every batch.
pub(super) static COMPLETE: LazyLock<String> = LazyLock::new(complete_statement);

/// Attempt outcomes (`$1`..`$15`, one array per column): each delivery
/// still in flight on that attempt takes its decision, each attempt of a
/// delivery that still exists is recorded and counted for its endpoint's
/// health; the deliveries that failed come back.
fn complete_statement() -> String {
    format!(
        "WITH input AS (
           SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::bigint[], $5::text[],
                                $6::int[], $7::text[], $8::bigint[], $9::bigint[], $10::bigint[],
                                $11::text[], $12::text[], $13::text[], $14::bigint[],
                                $15::text[])
             AS i(id, number, state, next_at, reason, status, error, ended_at, started_at,
                  duration_ms, error_message, snippet, decision, bucket, subscription)
         ), updated AS (
           UPDATE deliveries d SET state = i.state, next_attempt_at = i.next_at,
                  failure_reason = i.reason, last_status = i.status, last_error = i.error,
                  lease_until = NULL, updated_at = i.ended_at
           FROM input i
           -- `IS TRUE`: the state is checked on the row found by its key,
           -- never searched for (an index of states would walk every
           -- delivery in flight).
           WHERE d.id = i.id AND (d.state = 'in_flight') IS TRUE AND d.attempts = i.number
           RETURNING d.id, d.state
         ), recorded AS (
           INSERT INTO attempts (delivery_id, number, started_at, duration_ms, status, error,
                                 error_message, response_snippet, decision)
           SELECT i.id, i.number, i.started_at, i.duration_ms, i.status, i.error,
                  i.error_message, i.snippet, i.decision
           FROM input i
           WHERE EXISTS (SELECT 1 FROM deliveries d WHERE d.id = i.id)
           ON CONFLICT DO NOTHING
           RETURNING delivery_id, number
         ), {}
         SELECT id FROM updated WHERE state = 'failed'",
        health::COUNT_RECORDED
    )
}

/// Records attempts and applies their decisions in one statement; a
/// failure then dead-letters in the same transaction. Returns whether
/// dead-lettering fanned out new deliveries.
async fn complete_in(
    client: &mut deadpool_postgres::Object,
    completions: &[Completion],
) -> Result<bool> {
    let mut ids = Vec::with_capacity(completions.len());
    let mut subscriptions = Vec::with_capacity(completions.len());
    let mut numbers = Vec::with_capacity(completions.len());
    let mut states = Vec::with_capacity(completions.len());
    let mut next_at = Vec::with_capacity(completions.len());
    let mut reasons = Vec::with_capacity(completions.len());
    let mut statuses = Vec::with_capacity(completions.len());
    let mut errors = Vec::with_capacity(completions.len());
    let mut ended = Vec::with_capacity(completions.len());
    let mut started = Vec::with_capacity(completions.len());
    let mut durations = Vec::with_capacity(completions.len());
    let mut messages = Vec::with_capacity(completions.len());
    let mut snippets = Vec::with_capacity(completions.len());
    let mut decisions = Vec::with_capacity(completions.len());
    let mut buckets = Vec::with_capacity(completions.len());
    let mut any_failed = false;
    let mut ended_at_of = HashMap::new();
    for completion in completions {
        let row = CompletionRow::plan(completion)?;
        any_failed |= row.failed;
        ended_at_of.insert(row.delivery_id, row.ended_at);
        ids.push(row.delivery_id);
        subscriptions.push(row.subscription);
        numbers.push(i32::try_from(row.number).unwrap_or(i32::MAX));
        states.push(row.state.as_str());
        next_at.push(row.next_attempt_at);
        reasons.push(row.failure_reason);
        statuses.push(row.status.map(i32::from));
        errors.push(row.error);
        ended.push(row.ended_at);
        started.push(row.started_at);
        durations.push(row.duration_ms);
        messages.push(row.error_message);
        snippets.push(row.response_snippet);
        decisions.push(row.decision);
        buckets.push(row.bucket);
    }
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 15] = [
        &ids,
        &numbers,
        &states,
        &next_at,
        &reasons,
        &statuses,
        &errors,
        &ended,
        &started,
        &durations,
        &messages,
        &snippets,
        &decisions,
        &buckets,
        &subscriptions,
    ];
    if !any_failed {
        // The hot path: one statement, atomic on its own.
        let stmt = client.prepare_cached(&COMPLETE).await.map_err(pg_error)?;
        client.query(&stmt, &params).await.map_err(pg_error)?;
        return Ok(false);
    }
    let tx = client.transaction().await.map_err(pg_error)?;
    let stmt = tx.prepare_cached(&COMPLETE).await.map_err(pg_error)?;
    let failed = tx.query(&stmt, &params).await.map_err(pg_error)?;
    let mut fanned_out = false;
    for row in &failed {
        let id: String = get(row, 0)?;
        let ended_at = ended_at_of.get(id.as_str()).copied().unwrap_or_default();
        fanned_out |= lifecycle::dead_letter_in(&tx, &id, timestamp(ended_at)?).await?;
    }
    tx.commit().await.map_err(pg_error)?;
    Ok(fanned_out)
}

#[cfg(test)]
mod plans;

//! Operational queries on PostgreSQL: releasing claims at shutdown, backlog
//! statistics and readiness.

use jiff::Timestamp;

use super::rows::{get, millis, timestamp};
use super::*;
use super::{PostgresStore, pg_error, schema};
use crate::Result;
use crate::ops::{QueueStats, StoreReadiness};

fn count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

impl PostgresStore {
    pub(super) async fn release_claims_pg(&self, ids: &[String], now: Timestamp) -> Result<u64> {
        let client = self.client().await?;
        let now_ms = millis(now);
        // One statement: the interrupted attempt is recorded exactly for the
        // claims this call moves back, and both happen or neither.
        let row = client
            .query_one(
                "WITH released AS (
                   UPDATE deliveries SET state = 'scheduled', next_attempt_at = $1,
                          lease_until = NULL, last_error = 'interrupted', last_status = NULL,
                          updated_at = $1
                   WHERE id = ANY($3::text[]) AND state = 'in_flight'
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
                 SELECT count(*) FROM released",
                &[&now_ms, &now.to_string(), &ids],
            )
            .await
            .map_err(pg_error)?;
        let moved = count(get(&row, 0)?);
        if moved > 0 {
            // Another node may take them now.
            self.wake();
        }
        Ok(moved)
    }

    pub(super) async fn queue_stats_pg(&self, now: Timestamp) -> Result<Vec<QueueStats>> {
        let client = self.client().await?;
        // Only scheduled and in-flight rows, so the cost follows the
        // backlog, not the kept history.
        let rows = client
            .query(
                "SELECT subscription,
                        count(*) FILTER (WHERE state = 'scheduled' AND next_attempt_at <= $1),
                        min(next_attempt_at)
                          FILTER (WHERE state = 'scheduled' AND next_attempt_at <= $1),
                        count(*) FILTER (WHERE state = 'scheduled' AND attempts > 0),
                        count(*) FILTER (WHERE state = 'in_flight')
                 FROM deliveries WHERE state IN ('scheduled', 'in_flight')
                 GROUP BY subscription ORDER BY subscription",
                &[&millis(now)],
            )
            .await
            .map_err(pg_error)?;
        rows.iter()
            .map(|row| {
                Ok(QueueStats {
                    subscription: get(row, 0)?,
                    due: count(get(row, 1)?),
                    oldest_due_at: get::<Option<i64>>(row, 2)?.map(timestamp).transpose()?,
                    retries_scheduled: count(get(row, 3)?),
                    in_flight: count(get(row, 4)?),
                })
            })
            .collect()
    }

    pub(super) async fn readiness_pg(&self) -> Result<StoreReadiness> {
        let client = self.client().await?;
        let row = client
            .query_one("SELECT version FROM schema_version", &[])
            .await
            .map_err(pg_error)?;
        let version: i32 = get(&row, 0)?;
        Ok(StoreReadiness {
            schema_version: u64::try_from(version).unwrap_or(0),
            latest_schema_version: schema::latest_version() as u64,
        })
    }
}

#[async_trait]
impl OpsStore for PostgresStore {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            online_backup: false,
            shared_rate_buckets: true,
            cross_process_wakeups: true,
        }
    }

    async fn queue_stats(&self, now: Timestamp) -> Result<Vec<crate::QueueStats>> {
        self.queue_stats_pg(now).await
    }

    async fn readiness(&self) -> Result<crate::StoreReadiness> {
        self.readiness_pg().await
    }

    async fn check_writes(&self) -> Result<()> {
        // Taking a transaction id makes the commit write (and flush) a WAL
        // record, without touching any table.
        let client = self.client().await?;
        client
            .query_one("SELECT txid_current()", &[])
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    async fn backup_into(&self, _path: &std::path::Path) -> Result<()> {
        Err(StoreError::Invalid(
            "backups of a PostgreSQL store are taken with PostgreSQL's own tools (pg_dump, \
             base backups)"
                .into(),
        ))
    }

    async fn flush(&self) -> Result<()> {
        // Every write is committed (and so durable) when it returns.
        Ok(())
    }
}

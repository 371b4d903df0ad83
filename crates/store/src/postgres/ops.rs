//! Operational queries on PostgreSQL: releasing claims at shutdown, backlog
//! statistics and readiness.

use jiff::Timestamp;

use super::rows::{get, millis, timestamp};
use super::*;
use super::{PostgresStore, pg_error, schema};
use crate::Result;
use crate::ops::{QueueStats, StoreReadiness};

pub(super) fn count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
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

    async fn readiness(&self) -> Result<crate::StoreReadiness> {
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

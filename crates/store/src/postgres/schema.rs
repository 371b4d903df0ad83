//! The PostgreSQL schema, migrated forward at start. Several nodes may start
//! at once: the whole migration runs in one transaction under an advisory
//! lock, so exactly one of them applies each step and the others find it done.
//!
//! The history tables' day partitions are schema too, grown as the days
//! come. `deliveries` and `attempts` are range partitioned on the delivery
//! id, a UUIDv7 made with the real clock, so the ids of one UTC day are one
//! contiguous range (in byte order) and a day of finished history goes with
//! a `DROP TABLE` (`history.rs`) instead of row-by-row deletes that leave
//! the hot table to vacuum.
//!
//! Layout: one partition per UTC day (`deliveries_pYYYYMMDD`, with its
//! `attempts_pYYYYMMDD`), a `legacy` partition holding everything up to the
//! end of the day the schema was partitioned, and a `default` partition
//! catching ids no range covers (rows outliving a dropped day, ids made by
//! a clock far off). Days are created a little ahead, at start and by the
//! purge; `partition_floor` remembers how far ranges were dropped, so a
//! dropped day is never created again.

use jiff::Timestamp;
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use super::pg_error;
use crate::migrations::{Migration, migration};
use crate::{Result, StoreError};

/// Each entry moves the schema one version forward (see `crate::migrations`).
const MIGRATIONS: &[Migration] = &[
    migration!("postgres", "0001_initial"),
    migration!("postgres", "0002_security"),
    migration!("postgres", "0003_endpoint_health"),
    migration!("postgres", "0004_console_indexes"),
    migration!("postgres", "0005_partitions"),
    migration!("postgres", "0006_rate_buckets"),
    migration!("postgres", "0007_event_type_index"),
    migration!("postgres", "0008_push_backoff"),
    migration!("postgres", "0009_previous_secrets"),
    migration!("postgres", "0010_lighter_delivery_indexes"),
    migration!("postgres", "0011_no_lease_or_retention_index"),
    migration!("postgres", "0012_fewer_delivery_indexes"),
];

/// The advisory lock key of migrations, per schema so that databases
/// holding several redrive schemas migrate them independently.
const LOCK_KEY: &str = "hashtext(current_schema() || '.redrive.migrate')";

/// The schema version this build migrates to.
pub(super) fn latest_version() -> usize {
    MIGRATIONS.len()
}

/// The version the migration `name` brings the schema to.
#[cfg(any(test, feature = "testing"))]
pub(super) fn version_of(name: &str) -> Option<usize> {
    crate::migrations::version_of(MIGRATIONS, name)
}

pub(super) async fn migrate(client: &mut Client) -> Result<()> {
    migrate_to(client, latest_version()).await
}

/// Migrates forward to `target` (at most the latest version); tests use it
/// to build a schema as an older redrive left it.
pub(super) async fn migrate_to(client: &mut Client, target: usize) -> Result<()> {
    let tx = client.transaction().await.map_err(pg_error)?;
    tx.execute(&format!("SELECT pg_advisory_xact_lock({LOCK_KEY})"), &[])
        .await
        .map_err(pg_error)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_version (
             singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
             version    integer NOT NULL
         );
         INSERT INTO schema_version (version) VALUES (0) ON CONFLICT DO NOTHING;",
    )
    .await
    .map_err(pg_error)?;
    let current: i32 = tx
        .query_one("SELECT version FROM schema_version", &[])
        .await
        .map_err(pg_error)?
        .get(0);
    let current = usize::try_from(current).unwrap_or(0);
    if current > MIGRATIONS.len() {
        return Err(StoreError::Backend(format!(
            "the database has schema version {current}, newer than this redrive knows ({}); \
             upgrade redrive",
            MIGRATIONS.len()
        )));
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().take(target).skip(current) {
        let sql = migration.sql;
        let version = index + 1;
        tx.batch_execute(sql).await.map_err(|err| {
            StoreError::Backend(format!(
                "schema migration {version} ({}) failed: {}",
                migration.name,
                pg_error(err)
            ))
        })?;
        tx.execute(
            "UPDATE schema_version SET version = $1",
            &[&i32::try_from(version).unwrap_or(i32::MAX)],
        )
        .await
        .map_err(pg_error)?;
        tracing::info!(version, name = migration.name, "applied schema migration");
    }
    tx.commit().await.map_err(pg_error)?;
    Ok(())
}

/// Storage parameters of every `deliveries` partition (a partitioned parent
/// can't hold them). Each row is updated a few times in its life: leave room
/// on each page so updates stay on the page, and vacuum after a small share
/// changed.
macro_rules! delivery_storage {
    () => {
        "fillfactor = 80, autovacuum_vacuum_scale_factor = 0.02, \
         autovacuum_analyze_scale_factor = 0.02, autovacuum_vacuum_cost_delay = 1"
    };
}

/// Storage parameters of every `attempts` partition: insert-only, so
/// vacuumed for the visibility map after inserts.
macro_rules! attempt_storage {
    () => {
        "autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_insert_scale_factor = 0.05"
    };
}

/// Every column of `deliveries`, in table order.
macro_rules! delivery_table_columns {
    () => {
        "id, subscription, event_seq, state, attempts, next_attempt_at, first_attempt_at, \
         last_attempt_at, last_status, last_error, failure_reason, lease_until, created_at, \
         updated_at, dead_letter_event, attempts_before_redrive, retention_from"
    };
}

/// Every column of `attempts`, in table order.
macro_rules! attempt_table_columns {
    () => {
        "delivery_id, number, started_at, duration_ms, status, error, error_message, \
         response_snippet, decision"
    };
}

pub(super) const DELIVERY_TABLE_COLUMNS: &str = delivery_table_columns!();
pub(super) const ATTEMPT_TABLE_COLUMNS: &str = attempt_table_columns!();

const DAY_MS: i64 = 86_400_000;

/// Days after today that get their partition in advance, so a node that
/// can't create one for a while (locks, a stopped cluster) doesn't send a
/// day's traffic to the default partition.
const DAYS_AHEAD: i64 = 2;

/// The advisory lock key of changes to the set of partitions, per schema:
/// creating days and dropping them take it, so a day being dropped is
/// never created again by a node that read the floor a moment before.
pub(super) const PARTITION_LOCK: &str = "hashtext(current_schema() || '.redrive.partitions')";

/// How long partition changes wait for the tables' locks before giving up
/// for this turn: long enough to get between claims, short enough that
/// claims queued behind the wait barely notice.
pub(super) const LOCK_TIMEOUT: &str = "SET LOCAL lock_timeout = '2s'";

/// The lowest id made at or after `ms` (milliseconds since the epoch): the
/// first 48 bits of a UUIDv7 are its time, so in byte order every id made
/// then or later sorts at or after this prefix, and every earlier one before.
pub(crate) fn bound(ms: i64) -> String {
    let hex = format!("{:012x}", ms.clamp(0, 0xffff_ffff_ffff));
    format!("{}-{}", &hex[..8], &hex[8..])
}

/// The time of a [`bound`], in milliseconds since the epoch.
pub(crate) fn bound_millis(bound: &str) -> Option<i64> {
    let (high, low) = bound.split_once('-')?;
    let digits = format!("{high}{low}");
    if high.len() != 8 || low.len() != 4 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    i64::from_str_radix(&digits, 16).ok()
}

/// One UTC day's partition pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Day {
    /// `pYYYYMMDD`, after `deliveries_` / `attempts_`.
    pub suffix: String,
    pub lower: String,
    pub upper: String,
}

impl Day {
    /// The day holding `ms`.
    pub(crate) fn of(ms: i64) -> Result<Day> {
        let start = ms.div_euclid(DAY_MS) * DAY_MS;
        let day = Timestamp::from_millisecond(start)
            .map_err(|err| StoreError::Backend(format!("no partition day for {ms} ms: {err}")))?;
        Ok(Day {
            suffix: day.strftime("p%Y%m%d").to_string(),
            lower: bound(start),
            upper: bound(start.saturating_add(DAY_MS)),
        })
    }

    fn deliveries(&self) -> String {
        format!("deliveries_{}", self.suffix)
    }

    fn attempts(&self) -> String {
        format!("attempts_{}", self.suffix)
    }
}

/// The days that should have a partition at `now`: today and the next few.
fn wanted(now: Timestamp) -> Result<Vec<Day>> {
    let today = now.as_millisecond();
    (0..=DAYS_AHEAD)
        .map(|n| Day::of(today.saturating_add(n * DAY_MS)))
        .collect()
}

/// Whether the statement gave up waiting for a lock (`lock_timeout`).
pub(super) fn lock_timed_out(err: &tokio_postgres::Error) -> bool {
    err.code() == Some(&SqlState::LOCK_NOT_AVAILABLE)
}

/// Creates the partitions of today and the next days that are missing.
/// Returns how many days were created, or `None` if the tables stayed
/// locked past the lock timeout (the next call tries again; meanwhile new
/// rows land in the default partition).
pub(super) async fn ensure(client: &mut Client, now: Timestamp) -> Result<Option<usize>> {
    let days = wanted(now)?;
    match create(client, &days).await {
        Ok(created) => Ok(Some(created)),
        Err(err) if lock_timed_out(&err) => {
            tracing::debug!("the history tables stayed locked; day partitions wait");
            Ok(None)
        }
        Err(err) => Err(StoreError::Backend(format!(
            "cannot create day partitions: {}",
            pg_error(err)
        ))),
    }
}

/// [`ensure`], only when the furthest day's partition is missing: the
/// purge calls this every turn, so the common case is one catalog lookup.
pub(super) async fn ensure_ahead(client: &mut Client, now: Timestamp) -> Result<()> {
    let furthest = Day::of(
        now.as_millisecond()
            .saturating_add(DAYS_AHEAD.saturating_mul(DAY_MS)),
    )?;
    let present: bool = client
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL",
            &[&furthest.deliveries()],
        )
        .await
        .map_err(pg_error)?
        .get(0);
    if !present {
        ensure(client, now).await?;
    }
    Ok(())
}

async fn create(
    client: &mut Client,
    days: &[Day],
) -> std::result::Result<usize, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.batch_execute(LOCK_TIMEOUT).await?;
    // Nodes starting together queue here, and the later ones find the
    // partitions made.
    tx.execute(
        &format!("SELECT pg_advisory_xact_lock({PARTITION_LOCK})"),
        &[],
    )
    .await?;
    let floor: String = tx
        .query_one("SELECT bound FROM partition_floor", &[])
        .await?
        .get(0);
    let mut created = 0;
    for day in days {
        if day.lower < floor {
            continue;
        }
        let exists: bool = tx
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&day.deliveries()])
            .await?
            .get(0);
        if exists {
            continue;
        }
        // Creating the range would fail on rows the default partition
        // already holds in it; they are purged row by row instead.
        let occupied: bool = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM deliveries_default WHERE id >= $1 AND id < $2)
                     OR EXISTS (SELECT 1 FROM attempts_default
                                WHERE delivery_id >= $1 AND delivery_id < $2)",
                &[&day.lower, &day.upper],
            )
            .await?
            .get(0);
        if occupied {
            tracing::debug!(day = %day.suffix,
                "the default partition holds rows of this day; it gets no partition");
            continue;
        }
        tx.batch_execute(&format!(
            "CREATE TABLE {} PARTITION OF deliveries FOR VALUES FROM ('{}') TO ('{}')
               WITH ({});
             CREATE TABLE {} PARTITION OF attempts FOR VALUES FROM ('{}') TO ('{}')
               WITH ({});",
            day.deliveries(),
            day.lower,
            day.upper,
            delivery_storage!(),
            day.attempts(),
            day.lower,
            day.upper,
            attempt_storage!(),
        ))
        .await?;
        tracing::info!(day = %day.suffix, "created the history partitions of a day");
        created += 1;
    }
    tx.commit().await?;
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_migration_file_is_applied_in_order() {
        crate::migrations::assert_lists_every_file("postgres", super::MIGRATIONS);
    }

    #[test]
    fn bound_sorts_real_ids_by_their_time() {
        let before = Timestamp::now().as_millisecond();
        let id = uuid::Uuid::now_v7().to_string();
        let after = Timestamp::now().as_millisecond();
        // Byte order, as PostgreSQL's "C" collation compares.
        assert!(
            id.as_str() >= bound(before).as_str(),
            "{id} vs {}",
            bound(before)
        );
        assert!(
            id.as_str() < bound(after + 1).as_str(),
            "{id} vs {}",
            bound(after + 1)
        );
        assert_eq!(&id[..13], bound(bound_millis(&id[..13]).unwrap()));
    }

    #[test]
    fn bound_reads_back_and_refuses_other_text() {
        // 2026-11-24T00:00:00Z
        let ms = 1_795_478_400_000;
        assert_eq!(bound(ms), "01a20ada-2c00");
        assert_eq!(bound_millis(&bound(ms)), Some(ms));
        assert_eq!(bound(0), "00000000-0000");
        for bad in [
            "",
            "01a20ada2c00",
            "01a20ada-2c0",
            "+1a20ada-2c00",
            "0ga20ada-2c00",
        ] {
            assert_eq!(bound_millis(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_day_covers_exactly_its_utc_date() {
        let noon: Timestamp = "2026-11-23T12:00:00Z".parse().unwrap();
        let day = Day::of(noon.as_millisecond()).unwrap();
        assert_eq!(day.suffix, "p20261123");
        let midnight: Timestamp = "2026-11-23T00:00:00Z".parse().unwrap();
        assert_eq!(day.lower, bound(midnight.as_millisecond()));
        assert_eq!(day.upper, bound(midnight.as_millisecond() + DAY_MS));
        assert_eq!(Day::of(midnight.as_millisecond()).unwrap(), day);
        let days = wanted(noon).unwrap();
        assert_eq!(
            days.iter().map(|d| d.suffix.as_str()).collect::<Vec<_>>(),
            ["p20261123", "p20261124", "p20261125"]
        );
        assert_eq!(days[0].upper, days[1].lower);
    }
}

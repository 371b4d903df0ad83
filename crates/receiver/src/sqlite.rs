//! Receipts in a SQLite transaction (rusqlite).
//!
//! The receipt and the handler's writes share one transaction, begun
//! `IMMEDIATE` so that two pushes of one `webhook-id` arriving together are
//! serialized by SQLite's write lock: the second waits (give the connection
//! a `busy_timeout`), then finds the receipt and answers 200 without running
//! the handler — or, when the first rolled back, runs it.
//!
//! ```
//! use redrive_receiver::{Outcome, sqlite};
//! # use redrive_receiver::{CloudEvent, Delivery, Format};
//! # fn delivery(id: &str) -> Delivery {
//! #     Delivery { webhook_id: id.into(), timestamp: 0, attempt: Some(1), format: Format::Binary,
//! #         event: CloudEvent { id: "order-42".into(), source: "/shop".into(), ty: "order.created".into(),
//! #             specversion: "1.0".into(), subject: None, time: None, datacontenttype: None,
//! #             dataschema: None, extensions: Default::default(), data: None } }
//! # }
//!
//! let mut conn = rusqlite::Connection::open_in_memory()?;
//! sqlite::create_table(&conn)?;
//! conn.execute("CREATE TABLE orders (event_id TEXT)", [])?;
//!
//! let handle = |conn: &mut rusqlite::Connection, delivery: &Delivery| {
//!     sqlite::process(conn, delivery, |tx, delivery| {
//!         tx.execute("INSERT INTO orders (event_id) VALUES (?1)", [&delivery.event.id])?;
//!         Ok::<_, rusqlite::Error>(Outcome::Processed)
//!     })
//! };
//! assert_eq!(handle(&mut conn, &delivery("d-1")), Outcome::Processed);
//! assert_eq!(handle(&mut conn, &delivery("d-1")), Outcome::Duplicate);
//! let orders: i64 = conn.query_row("SELECT count(*) FROM orders", [], |row| row.get(0))?;
//! assert_eq!(orders, 1);
//! # Ok::<(), rusqlite::Error>(())
//! ```

use std::time::SystemTime;

use rusqlite::{Connection, Transaction, TransactionBehavior};

use crate::verify::unix_seconds;
use crate::{Claim, Delivery, Outcome, RECEIPTS_TABLE};

/// Creates the receipts table and its index, if missing.
pub fn create_table(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {RECEIPTS_TABLE} (
             webhook_id TEXT PRIMARY KEY NOT NULL,
             processed_at INTEGER NOT NULL
         );
         CREATE INDEX IF NOT EXISTS {RECEIPTS_TABLE}_processed_at
             ON {RECEIPTS_TABLE} (processed_at);"
    ))
}

/// Inserts the receipt for `webhook_id` in the caller's transaction.
/// Commit it with the handler's writes; roll back to forget it.
pub fn claim(tx: &Transaction<'_>, webhook_id: &str, now: SystemTime) -> rusqlite::Result<Claim> {
    let inserted = tx.execute(
        &format!(
            "INSERT INTO {RECEIPTS_TABLE} (webhook_id, processed_at) VALUES (?1, ?2)
             ON CONFLICT (webhook_id) DO NOTHING"
        ),
        rusqlite::params![webhook_id, unix_seconds(now)],
    )?;
    Ok(if inserted == 1 {
        Claim::First
    } else {
        Claim::Duplicate
    })
}

/// Deletes receipts processed before `before`; returns how many.
/// `now - DEFAULT_RETENTION` is a good `before`.
pub fn prune(conn: &Connection, before: SystemTime) -> rusqlite::Result<usize> {
    conn.execute(
        &format!("DELETE FROM {RECEIPTS_TABLE} WHERE processed_at < ?1"),
        [unix_seconds(before)],
    )
}

/// Runs `handler` at most once per `webhook-id`: begins a transaction,
/// claims the receipt, runs the handler in the same transaction, and
/// commits only when it answers [`Outcome::Processed`]. Any other outcome,
/// an error (→ [`Outcome::Failed`], 500) or a failed commit rolls back the
/// receipt with the handler's writes.
pub fn process<F, E>(conn: &mut Connection, delivery: &Delivery, handler: F) -> Outcome
where
    F: FnOnce(&Transaction<'_>, &Delivery) -> Result<Outcome, E>,
    E: std::fmt::Display,
{
    let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(err) => return failed("begin a transaction", &err),
    };
    match claim(&tx, &delivery.webhook_id, SystemTime::now()) {
        Ok(Claim::First) => {}
        // Dropping `tx` rolls back; nothing was written.
        Ok(Claim::Duplicate) => return Outcome::Duplicate,
        Err(err) => return failed("insert the receipt", &err),
    }
    match handler(&tx, delivery) {
        Ok(outcome) if outcome.commits() => match tx.commit() {
            Ok(()) => outcome,
            Err(err) => failed("commit", &err),
        },
        Ok(outcome) => outcome,
        Err(err) => failed("run the handler", &err),
    }
}

fn failed(doing: &str, err: &dyn std::fmt::Display) -> Outcome {
    tracing::error!(error = %err, "could not {doing}");
    Outcome::failed(format!("could not {doing}: {err}"))
}

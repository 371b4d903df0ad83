//! Receipts in a PostgreSQL transaction (tokio-postgres).
//!
//! The receipt is inserted with `ON CONFLICT DO NOTHING` in the handler's
//! own transaction. When two pushes of one `webhook-id` arrive together,
//! the second insert waits on the first's uncommitted row: it then finds
//! the receipt (the first committed: 200 without running the handler) or
//! inserts its own (the first rolled back: the handler runs).
//!
//! ```no_run
//! use redrive_receiver::{Delivery, Outcome, postgres};
//!
//! async fn handle(client: &mut tokio_postgres::Client, delivery: &Delivery) -> Outcome {
//!     postgres::process(client, delivery, async |tx, delivery| {
//!         tx.execute("INSERT INTO orders (event_id) VALUES ($1)", &[&delivery.event.id])
//!             .await?;
//!         Ok::<_, tokio_postgres::Error>(Outcome::Processed)
//!     })
//!     .await
//! }
//! ```

use std::time::SystemTime;

use tokio_postgres::{Client, GenericClient, Transaction};

use crate::verify::unix_seconds;
use crate::{Claim, Delivery, Outcome, RECEIPTS_TABLE};

/// Creates the receipts table and its index, if missing.
pub async fn create_table(client: &impl GenericClient) -> Result<(), tokio_postgres::Error> {
    client
        .batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {RECEIPTS_TABLE} (
                 webhook_id TEXT PRIMARY KEY,
                 processed_at BIGINT NOT NULL
             );
             CREATE INDEX IF NOT EXISTS {RECEIPTS_TABLE}_processed_at
                 ON {RECEIPTS_TABLE} (processed_at);"
        ))
        .await
}

/// Inserts the receipt for `webhook_id` in the caller's transaction.
/// Commit it with the handler's writes; roll back to forget it.
pub async fn claim(
    tx: &Transaction<'_>,
    webhook_id: &str,
    now: SystemTime,
) -> Result<Claim, tokio_postgres::Error> {
    let inserted = tx
        .execute(
            &format!(
                "INSERT INTO {RECEIPTS_TABLE} (webhook_id, processed_at) VALUES ($1, $2)
                 ON CONFLICT (webhook_id) DO NOTHING"
            ),
            &[&webhook_id, &unix_seconds(now)],
        )
        .await?;
    Ok(if inserted == 1 {
        Claim::First
    } else {
        Claim::Duplicate
    })
}

/// Deletes receipts processed before `before`; returns how many.
pub async fn prune(
    client: &impl GenericClient,
    before: SystemTime,
) -> Result<u64, tokio_postgres::Error> {
    client
        .execute(
            &format!("DELETE FROM {RECEIPTS_TABLE} WHERE processed_at < $1"),
            &[&unix_seconds(before)],
        )
        .await
}

/// Runs `handler` at most once per `webhook-id`, as
/// [`sqlite::process`](crate::sqlite) does: one transaction for the
/// receipt and the handler's writes, committed only on
/// [`Outcome::Processed`].
pub async fn process<F, E>(client: &mut Client, delivery: &Delivery, handler: F) -> Outcome
where
    F: AsyncFnOnce(&Transaction<'_>, &Delivery) -> Result<Outcome, E>,
    E: std::fmt::Display,
{
    let tx = match client.transaction().await {
        Ok(tx) => tx,
        Err(err) => return failed("begin a transaction", &err),
    };
    match claim(&tx, &delivery.webhook_id, SystemTime::now()).await {
        Ok(Claim::First) => {}
        Ok(Claim::Duplicate) => return rollback(tx, Outcome::Duplicate).await,
        Err(err) => return failed("insert the receipt", &err),
    }
    match handler(&tx, delivery).await {
        Ok(outcome) if outcome.commits() => match tx.commit().await {
            Ok(()) => outcome,
            Err(err) => failed("commit", &err),
        },
        Ok(outcome) => rollback(tx, outcome).await,
        Err(err) => {
            let outcome = failed("run the handler", &err);
            rollback(tx, outcome).await
        }
    }
}

/// Rolls back now rather than on drop, so the connection is free for the
/// next request as soon as `outcome` is answered.
async fn rollback(tx: Transaction<'_>, outcome: Outcome) -> Outcome {
    if let Err(err) = tx.rollback().await {
        tracing::warn!(error = %err, "could not roll back");
    }
    outcome
}

fn failed(doing: &str, err: &dyn std::fmt::Display) -> Outcome {
    tracing::error!(error = %err, "could not {doing}");
    Outcome::failed(format!("could not {doing}: {err}"))
}

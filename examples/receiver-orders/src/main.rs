//! An order service that receives `order.created` events from redrive and
//! records each order exactly once, however often it is pushed.
//!
//! ```sh
//! receiver-orders --secret whsec_… --database orders.db            # SQLite
//! receiver-orders --secret whsec_… --database postgres://…/shop    # PostgreSQL
//! ```
//!
//! Prints `receiver listening on http://ADDR` once it accepts pushes on
//! `POST /orders`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use axum::Router;
use axum::extract::{FromRef, State};
use axum::routing::post;
use clap::Parser;
use redrive_receiver::{DEFAULT_RETENTION, Delivery, Outcome, Verifier};
use serde::Deserialize;

#[derive(Parser)]
#[command(about = "Records orders pushed by redrive exactly once")]
struct Args {
    /// Where to listen.
    #[arg(long, env = "RECEIVER_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The subscription's signing secret (`redrive subscriptions secret NAME`).
    #[arg(long, env = "RECEIVER_SECRET")]
    secret: String,
    /// A SQLite file, or a `postgres://` URL.
    #[arg(long, env = "RECEIVER_DATABASE", default_value = "orders.db")]
    database: String,
}

/// The orders table. No UNIQUE constraint on `event_id`, on purpose: the
/// receipt alone keeps each order single, and a doubled row would show.
const ORDERS_TABLE: &str = "CREATE TABLE IF NOT EXISTS orders (
    event_id TEXT NOT NULL,
    webhook_id TEXT NOT NULL,
    total BIGINT NOT NULL,
    attempt BIGINT
)";

#[derive(Deserialize)]
struct Order {
    total: i64,
}

#[derive(Clone)]
enum Database {
    Sqlite(Arc<Mutex<rusqlite::Connection>>),
    Postgres(deadpool_postgres::Pool),
}

#[derive(Clone)]
struct App {
    verifier: Verifier,
    database: Database,
}

impl FromRef<App> for Verifier {
    fn from_ref(app: &App) -> Verifier {
        app.verifier.clone()
    }
}

/// `POST /orders`: one order per `order.created` event.
async fn orders(State(app): State<App>, delivery: Delivery) -> Outcome {
    let outcome = match delivery.event.ty.as_str() {
        "order.created" => match delivery.event.data_json::<Order>() {
            Ok(order) => record(&app.database, delivery.clone(), order).await,
            Err(err) => Outcome::reject(err.to_string()),
        },
        other => Outcome::reject(format!("this endpoint takes order.created, not {other}")),
    };
    tracing::info!(
        webhook_id = %delivery.webhook_id,
        attempt = delivery.attempt,
        outcome = outcome.name(),
        "push answered"
    );
    outcome
}

/// Inserts the order and the delivery's receipt in one transaction.
async fn record(database: &Database, delivery: Delivery, order: Order) -> Outcome {
    match database {
        Database::Sqlite(conn) => {
            let conn = conn.clone();
            let work = tokio::task::spawn_blocking(move || {
                let Ok(mut conn) = conn.lock() else {
                    return Outcome::failed("the connection lock is poisoned");
                };
                redrive_receiver::sqlite::process(&mut conn, &delivery, |tx, delivery| {
                    tx.execute(
                        "INSERT INTO orders (event_id, webhook_id, total, attempt)
                         VALUES (?1, ?2, ?3, ?4)",
                        rusqlite::params![
                            delivery.event.id,
                            delivery.webhook_id,
                            order.total,
                            delivery.attempt
                        ],
                    )?;
                    Ok::<_, rusqlite::Error>(Outcome::Processed)
                })
            });
            work.await.unwrap_or_else(Outcome::failed)
        }
        Database::Postgres(pool) => {
            let mut client = match pool.get().await {
                Ok(client) => client,
                Err(err) => return Outcome::failed(err),
            };
            let attempt = delivery.attempt.map(i64::from);
            redrive_receiver::postgres::process(&mut client, &delivery, async |tx, delivery| {
                tx.execute(
                    "INSERT INTO orders (event_id, webhook_id, total, attempt)
                     VALUES ($1, $2, $3, $4)",
                    &[
                        &delivery.event.id,
                        &delivery.webhook_id,
                        &order.total,
                        &attempt,
                    ],
                )
                .await?;
                Ok::<_, tokio_postgres::Error>(Outcome::Processed)
            })
            .await
        }
    }
}

async fn open(database: &str) -> anyhow::Result<Database> {
    if database.starts_with("postgres://") || database.starts_with("postgresql://") {
        let config: tokio_postgres::Config = database.parse().context("the PostgreSQL URL")?;
        let manager = deadpool_postgres::Manager::new(config, tokio_postgres::NoTls);
        let pool = deadpool_postgres::Pool::builder(manager)
            .max_size(16)
            .build()
            .context("a PostgreSQL pool")?;
        let client = pool.get().await.context("connect to PostgreSQL")?;
        client
            .batch_execute(ORDERS_TABLE)
            .await
            .context("create the orders table")?;
        redrive_receiver::postgres::create_table(&**client)
            .await
            .context("create the receipts table")?;
        return Ok(Database::Postgres(pool));
    }
    let conn = rusqlite::Connection::open(database)
        .with_context(|| format!("open the SQLite database {database}"))?;
    // WAL with synchronous=NORMAL survives a killed process (the OS keeps
    // the writes); FULL would also survive a power cut, at a cost per commit.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.execute_batch(ORDERS_TABLE)
        .context("create the orders table")?;
    redrive_receiver::sqlite::create_table(&conn).context("create the receipts table")?;
    Ok(Database::Sqlite(Arc::new(Mutex::new(conn))))
}

/// Forgets receipts older than the retention, once an hour.
async fn prune_receipts(database: Database) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tick.tick().await;
        let before = SystemTime::now() - DEFAULT_RETENTION;
        let pruned = match &database {
            Database::Sqlite(conn) => {
                let conn = conn.clone();
                tokio::task::spawn_blocking(move || match conn.lock() {
                    Ok(conn) => redrive_receiver::sqlite::prune(&conn, before)
                        .map(|n| n as u64)
                        .map_err(|err| err.to_string()),
                    Err(_) => Err("the connection lock is poisoned".to_owned()),
                })
                .await
                .unwrap_or_else(|err| Err(err.to_string()))
            }
            Database::Postgres(pool) => match pool.get().await {
                Ok(client) => redrive_receiver::postgres::prune(&**client, before)
                    .await
                    .map_err(|err| err.to_string()),
                Err(err) => Err(err.to_string()),
            },
        };
        match pruned {
            Ok(count) => tracing::info!(count, "receipts pruned"),
            Err(err) => tracing::warn!(error = %err, "could not prune receipts"),
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let verifier = Verifier::new(&args.secret).context("the signing secret")?;
    let database = open(&args.database).await?;
    tokio::spawn(prune_receipts(database.clone()));
    let app = Router::new()
        .route("/orders", post(orders))
        .with_state(App { verifier, database });
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listen on {}", args.listen))?;
    println!("receiver listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await.context("serve")?;
    Ok(())
}

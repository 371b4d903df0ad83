//! Receipts under concurrency and pruning, on a real SQLite file and (with
//! REDRIVE_TEST_DATABASE_URL) a real PostgreSQL database; without it the
//! PostgreSQL tests are reported ignored, with the reason.

use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redrive_receiver::{Claim, CloudEvent, Delivery, Format, Outcome, postgres, sqlite};
use redrive_testkit::{Need, Runtime, blocking_trial, trial};

fn delivery(webhook_id: &str) -> Delivery {
    Delivery {
        webhook_id: webhook_id.into(),
        timestamp: 0,
        attempt: Some(1),
        format: Format::Binary,
        event: CloudEvent {
            id: format!("event-of-{webhook_id}"),
            source: "/test".into(),
            ty: "order.created".into(),
            specversion: "1.0".into(),
            subject: None,
            time: None,
            datacontenttype: None,
            dataschema: None,
            extensions: Default::default(),
            data: None,
        },
    }
}

fn at(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(seconds)
}

fn sqlite_db(path: &std::path::Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn
}

fn a_push_arriving_while_the_first_runs_waits_and_is_a_duplicate_on_sqlite(_: ()) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("receiver.db");
    let conn = sqlite_db(&path);
    sqlite::create_table(&conn).unwrap();
    conn.execute("CREATE TABLE effects (id TEXT)", []).unwrap();
    let (inside_tx, inside_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let first = {
        let path = path.clone();
        std::thread::spawn(move || {
            let mut conn = sqlite_db(&path);
            sqlite::process(&mut conn, &delivery("d-1"), |tx, d| {
                tx.execute("INSERT INTO effects (id) VALUES (?1)", [&d.event.id])?;
                inside_tx.send(()).unwrap();
                release_rx.recv().unwrap();
                Ok::<_, rusqlite::Error>(Outcome::Processed)
            })
        })
    };
    inside_rx.recv().unwrap();
    let (done_tx, done_rx) = mpsc::channel();
    let second = {
        let path = path.clone();
        std::thread::spawn(move || {
            let mut conn = sqlite_db(&path);
            let outcome = sqlite::process(&mut conn, &delivery("d-1"), |tx, d| {
                tx.execute("INSERT INTO effects (id) VALUES (?1)", [&d.event.id])?;
                Ok::<_, rusqlite::Error>(Outcome::Processed)
            });
            done_tx.send(()).unwrap();
            outcome
        })
    };
    // The second is held by the first's write lock until it commits.
    assert!(done_rx.recv_timeout(Duration::from_millis(200)).is_err());
    release_tx.send(()).unwrap();
    assert_eq!(first.join().unwrap(), Outcome::Processed);
    assert_eq!(second.join().unwrap(), Outcome::Duplicate);
    let effects: i64 = conn
        .query_row("SELECT count(*) FROM effects", [], |r| r.get(0))
        .unwrap();
    assert_eq!(effects, 1);
}

fn prune_forgets_only_receipts_older_than_the_cutoff_on_sqlite(_: ()) {
    let mut conn = rusqlite::Connection::open_in_memory().unwrap();
    sqlite::create_table(&conn).unwrap();
    let tx = conn.transaction().unwrap();
    assert_eq!(sqlite::claim(&tx, "old", at(1_000)).unwrap(), Claim::First);
    assert_eq!(sqlite::claim(&tx, "new", at(2_000)).unwrap(), Claim::First);
    assert_eq!(
        sqlite::claim(&tx, "new", at(2_001)).unwrap(),
        Claim::Duplicate
    );
    tx.commit().unwrap();
    assert_eq!(sqlite::prune(&conn, at(1_500)).unwrap(), 1);
    let tx = conn.transaction().unwrap();
    assert_eq!(sqlite::claim(&tx, "old", at(3_000)).unwrap(), Claim::First);
    assert_eq!(
        sqlite::claim(&tx, "new", at(3_000)).unwrap(),
        Claim::Duplicate
    );
}

/// A client on a fresh schema of the test database at `url`, the URL
/// scoped to that schema, and a client outside it to drop it with
/// ([`drop_schema`]).
async fn pg(url: &str) -> (String, tokio_postgres::Client, Scratch) {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let schema = format!("receiver_test_{}_{nanos}", std::process::id());
    let admin = pg_connect(url).await;
    admin
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .unwrap();
    let separator = if url.contains('?') { '&' } else { '?' };
    let scoped = format!("{url}{separator}options=-c%20search_path%3D{schema}");
    let client = pg_connect(&scoped).await;
    postgres::create_table(&client).await.unwrap();
    client
        .batch_execute("CREATE TABLE effects (id TEXT)")
        .await
        .unwrap();
    (scoped, client, Scratch { admin, schema })
}

/// A test's schema and a connection outside it.
struct Scratch {
    admin: tokio_postgres::Client,
    schema: String,
}

/// Drops the test's schema once the test has passed (a failed test leaves
/// it for a look).
async fn drop_schema(scratch: Scratch) {
    scratch
        .admin
        .batch_execute(&format!("DROP SCHEMA {} CASCADE", scratch.schema))
        .await
        .unwrap();
}

async fn pg_connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

async fn effects(client: &tokio_postgres::Client) -> i64 {
    client
        .query_one("SELECT count(*) FROM effects", &[])
        .await
        .unwrap()
        .get(0)
}

async fn a_duplicate_does_not_run_the_handler_and_a_rollback_forgets_the_receipt_on_postgres(
    url: String,
) {
    let (_, mut client, scratch) = pg(&url).await;
    let record = async |tx: &tokio_postgres::Transaction<'_>, d: &Delivery| {
        tx.execute("INSERT INTO effects (id) VALUES ($1)", &[&d.event.id])
            .await?;
        Ok::<_, tokio_postgres::Error>(Outcome::Processed)
    };
    let failing = async |tx: &tokio_postgres::Transaction<'_>, d: &Delivery| {
        tx.execute("INSERT INTO effects (id) VALUES ($1)", &[&d.event.id])
            .await
            .map_err(|e| e.to_string())?;
        Err::<Outcome, _>("the handler failed".to_owned())
    };
    let d = delivery("d-1");
    let outcome = postgres::process(&mut client, &d, failing).await;
    assert_eq!(outcome.status(), 500);
    assert_eq!(effects(&client).await, 0);
    assert_eq!(
        postgres::process(&mut client, &d, record).await,
        Outcome::Processed
    );
    assert_eq!(
        postgres::process(&mut client, &d, record).await,
        Outcome::Duplicate
    );
    let later = async |_: &tokio_postgres::Transaction<'_>, _: &Delivery| {
        Ok::<_, tokio_postgres::Error>(Outcome::retry_after(Duration::from_secs(5)))
    };
    let other = delivery("d-2");
    assert_eq!(
        postgres::process(&mut client, &other, later).await.status(),
        503
    );
    assert_eq!(
        postgres::process(&mut client, &other, record).await,
        Outcome::Processed
    );
    assert_eq!(effects(&client).await, 2);
    drop(client);
    drop_schema(scratch).await;
}

async fn a_push_arriving_while_the_first_runs_waits_and_is_a_duplicate_on_postgres(url: String) {
    let (url, client, scratch) = pg(&url).await;
    let (inside_tx, inside_rx) = tokio::sync::oneshot::channel();
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let mut first_client = pg_connect(&url).await;
    let first = tokio::spawn(async move {
        postgres::process(&mut first_client, &delivery("d-1"), async |tx, d| {
            tx.execute("INSERT INTO effects (id) VALUES ($1)", &[&d.event.id])
                .await?;
            let _ = inside_tx.send(());
            let _ = release_rx.await;
            Ok::<_, tokio_postgres::Error>(Outcome::Processed)
        })
        .await
    });
    inside_rx.await.unwrap();
    let mut second_client = pg_connect(&url).await;
    let second = tokio::spawn(async move {
        postgres::process(&mut second_client, &delivery("d-1"), async |tx, d| {
            tx.execute("INSERT INTO effects (id) VALUES ($1)", &[&d.event.id])
                .await?;
            Ok::<_, tokio_postgres::Error>(Outcome::Processed)
        })
        .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !second.is_finished(),
        "the second waits on the first's receipt"
    );
    release_tx.send(()).unwrap();
    assert_eq!(first.await.unwrap(), Outcome::Processed);
    assert_eq!(second.await.unwrap(), Outcome::Duplicate);
    assert_eq!(effects(&client).await, 1);
    assert_eq!(
        postgres::prune(&client, SystemTime::now() + Duration::from_secs(60))
            .await
            .unwrap(),
        1
    );
    drop(client);
    drop_schema(scratch).await;
}

fn main() -> std::process::ExitCode {
    let postgres = redrive_testkit::postgres();
    redrive_testkit::run(vec![
        blocking_trial(
            "a_push_arriving_while_the_first_runs_waits_and_is_a_duplicate_on_sqlite",
            &Need::Met(()),
            a_push_arriving_while_the_first_runs_waits_and_is_a_duplicate_on_sqlite,
        ),
        blocking_trial(
            "prune_forgets_only_receipts_older_than_the_cutoff_on_sqlite",
            &Need::Met(()),
            prune_forgets_only_receipts_older_than_the_cutoff_on_sqlite,
        ),
        trial(
            "a_duplicate_does_not_run_the_handler_and_a_rollback_forgets_the_receipt_on_postgres",
            &postgres,
            Runtime::CurrentThread,
            a_duplicate_does_not_run_the_handler_and_a_rollback_forgets_the_receipt_on_postgres,
        ),
        trial(
            "a_push_arriving_while_the_first_runs_waits_and_is_a_duplicate_on_postgres",
            &postgres,
            Runtime::MultiThread(2),
            a_push_arriving_while_the_first_runs_waits_and_is_a_duplicate_on_postgres,
        ),
    ])
}

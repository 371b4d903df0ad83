//! `redrive bench console` run as a real process on a small history: it
//! seeds, walks every page and checks each answer against the seed, on
//! SQLite and, with `REDRIVE_TEST_DATABASE_URL`, on PostgreSQL (in a
//! schema it drops afterwards; without it that test is reported ignored).

use std::process::Command;

const REDRIVE: &str = env!("CARGO_BIN_EXE_redrive");

fn bench(extra: &[&str]) -> String {
    let output = Command::new(REDRIVE)
        .args(["bench", "console", "--deliveries", "3000"])
        .args(extra)
        .output()
        .expect("redrive runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "bench console failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for measured in [
        "first page",
        "deepest page",
        "status=500",
        "type=rare",
        "counts by state, all",
        "24 hourly outcome buckets",
    ] {
        assert!(stdout.contains(measured), "no {measured} in:\n{stdout}");
    }
    stdout
}

fn measures_and_checks_the_console_reads_on_sqlite(_: ()) {
    let stdout = bench(&[]);
    assert!(
        stdout.contains("seeded 3000 deliveries on SQLite"),
        "{stdout}"
    );
}

fn measures_and_checks_the_console_reads_on_postgres(url: String) {
    let stdout = bench(&["--database-url", &url]);
    let schema = stdout
        .split("schema ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the schema is named");
    // The run's schema is gone afterwards.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let left: i64 = runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
            .query_one(
                "SELECT count(*) FROM pg_namespace WHERE nspname = $1",
                &[&schema],
            )
            .await
            .unwrap()
            .get(0)
    });
    assert_eq!(left, 0, "schema {schema} was left behind");
}

fn main() -> std::process::ExitCode {
    redrive_testkit::run(vec![
        redrive_testkit::blocking_trial(
            "measures_and_checks_the_console_reads_on_sqlite",
            &redrive_testkit::Need::Met(()),
            measures_and_checks_the_console_reads_on_sqlite,
        ),
        redrive_testkit::blocking_trial(
            "measures_and_checks_the_console_reads_on_postgres",
            &redrive_testkit::postgres(),
            measures_and_checks_the_console_reads_on_postgres,
        ),
    ])
}

//! The example receiver as a process, over real HTTP on a real SQLite file:
//! an order is recorded once however often it is pushed, and a tampered
//! body, a wrong secret and a stale timestamp are refused with 401.
//!
//! (`crates/cli/tests/exactly_once.rs`, the end-to-end run with redrive,
//! has the same name so that `cargo test --workspace --test exactly_once`
//! builds both binaries it starts.)

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redrive_receiver::sign;
use serde_json::Value;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

struct Receiver {
    child: Child,
    addr: String,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(database: &Path) -> Receiver {
    let mut child = Command::new(env!("CARGO_BIN_EXE_receiver-orders"))
        .args(["--listen", "127.0.0.1:0", "--secret", SECRET, "--database"])
        .arg(database)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("receiver-orders starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("a first line");
    let addr = line
        .trim()
        .strip_prefix("receiver listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    Receiver { child, addr }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// One signed binary-mode push of order `event_id`; `body` overrides the
/// body sent after signing (a tampered body).
struct Push<'a> {
    webhook_id: &'a str,
    event_id: &'a str,
    secret: &'a str,
    timestamp: i64,
    body: &'a str,
    sent_body: Option<&'a str>,
}

impl<'a> Push<'a> {
    fn new(webhook_id: &'a str, event_id: &'a str) -> Push<'a> {
        Push {
            webhook_id,
            event_id,
            secret: SECRET,
            timestamp: now(),
            body: r#"{"total": 42}"#,
            sent_body: None,
        }
    }

    /// Sends it; the status and the JSON answer.
    fn send(&self, receiver: &Receiver) -> (u16, Value) {
        let signature = sign(
            self.secret,
            self.webhook_id,
            self.timestamp,
            self.body.as_bytes(),
        )
        .expect("a valid secret");
        let body = self.sent_body.unwrap_or(self.body);
        let request = format!(
            "POST /orders HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\
             webhook-id: {id}\r\nwebhook-timestamp: {ts}\r\nwebhook-signature: {signature}\r\n\
             redrive-attempt: 1\r\nce-id: {event}\r\nce-source: /shop\r\nce-type: order.created\r\n\
             ce-specversion: 1.0\r\ncontent-type: application/json\r\ncontent-length: {len}\r\n\r\n{body}",
            addr = receiver.addr,
            id = self.webhook_id,
            ts = self.timestamp,
            event = self.event_id,
            len = body.len(),
        );
        let mut stream = TcpStream::connect(&receiver.addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("a timeout");
        stream.write_all(request.as_bytes()).expect("write");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read");
        let status = response
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {response:?}"));
        let json = response
            .split_once("\r\n\r\n")
            .map(|(_, body)| body)
            .unwrap_or_default();
        (status, serde_json::from_str(json).unwrap_or(Value::Null))
    }
}

fn orders(database: &Path) -> Vec<(String, String)> {
    let conn = rusqlite::Connection::open(database).expect("the database");
    let mut statement = conn
        .prepare("SELECT event_id, webhook_id FROM orders ORDER BY rowid")
        .expect("a query");
    statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows")
}

#[test]
fn an_order_pushed_three_times_is_recorded_once() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let database = dir.path().join("orders.db");
    let receiver = start(&database);
    let push = Push::new("dlv-1", "order-1");
    let answers: Vec<_> = (0..3).map(|_| push.send(&receiver)).collect();
    assert_eq!(answers[0].0, 200);
    assert_eq!(answers[0].1["outcome"], "processed");
    for (status, body) in &answers[1..] {
        assert_eq!(
            (*status, body["outcome"].as_str()),
            (200, Some("duplicate"))
        );
    }
    // Another delivery of another order is recorded beside it.
    assert_eq!(Push::new("dlv-2", "order-2").send(&receiver).0, 200);
    assert_eq!(
        orders(&database),
        [
            ("order-1".to_owned(), "dlv-1".to_owned()),
            ("order-2".to_owned(), "dlv-2".to_owned())
        ]
    );
}

#[test]
fn tampered_wrong_secret_and_stale_pushes_are_refused_with_401() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let database = dir.path().join("orders.db");
    let receiver = start(&database);
    let tampered = Push {
        sent_body: Some(r#"{"total": 4200}"#),
        ..Push::new("dlv-t", "order-t")
    };
    let other_secret = "whsec_c29tZWJvZHkgZWxzZSdzIGtleQ==";
    let wrong_secret = Push {
        secret: other_secret,
        ..Push::new("dlv-w", "order-w")
    };
    let stale = Push {
        timestamp: now() - 301,
        ..Push::new("dlv-s", "order-s")
    };
    for (push, kind) in [
        (tampered, "no_matching_signature"),
        (wrong_secret, "no_matching_signature"),
        (stale, "timestamp_too_old"),
    ] {
        let (status, body) = push.send(&receiver);
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some(kind)),
            "{body}"
        );
    }
    assert_eq!(orders(&database), []);
}

#[test]
fn an_event_of_another_type_is_rejected_with_422() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let database = dir.path().join("orders.db");
    let receiver = start(&database);
    let push = Push {
        body: r#"{"total": "a lot"}"#,
        ..Push::new("dlv-r", "order-r")
    };
    let (status, body) = push.send(&receiver);
    assert_eq!((status, body["outcome"].as_str()), (422, Some("rejected")));
    assert_eq!(orders(&database), []);
}

//! How client commands print the server's answers: tables and short
//! summaries for a person at a terminal, the JSON itself for scripts
//! (`--output json`, and by default whenever stdout is not a terminal).

use std::io::IsTerminal;
use std::sync::OnceLock;

use clap::ValueEnum;
use jiff::Timestamp;
use redrive_core::duration::format_duration;
use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// The API's JSON answer, pretty-printed.
    Json,
    /// Tables and summaries for reading.
    Table,
}

static FORMAT: OnceLock<Format> = OnceLock::new();

/// Settles the format once, at start: the flag's, else a table on a
/// terminal and JSON anywhere else, so pipes and scripts read JSON.
pub fn init(flag: Option<Format>) {
    let format = flag.unwrap_or(if std::io::stdout().is_terminal() {
        Format::Table
    } else {
        Format::Json
    });
    let _ = FORMAT.set(format);
}

fn format() -> Format {
    FORMAT.get().copied().unwrap_or(Format::Json)
}

/// What an answer is, to choose its table.
#[derive(Clone, Copy, Debug)]
pub enum View {
    Topic,
    Topics,
    Subscription,
    Subscriptions,
    Deliveries,
    Delivery,
    Tokens,
    /// Anything else: its fields, one a line.
    Fields,
}

/// Prints an answer in the chosen format.
pub fn print(value: &Value, view: View) -> anyhow::Result<()> {
    match format() {
        Format::Json => println!("{}", serde_json::to_string_pretty(value)?),
        Format::Table => print!("{}", render(value, view, Timestamp::now())),
    }
    Ok(())
}

/// Whether answers are printed for a person.
pub fn is_table() -> bool {
    format() == Format::Table
}

/// The answer as text for a person; `now` words times as "in 3s".
pub fn render(value: &Value, view: View, now: Timestamp) -> String {
    match view {
        View::Topics => table(
            &["NAME", "CREATED"],
            list(value, "topics")
                .map(|t| vec![text(&t["name"]), when(&t["created_at"], now)])
                .collect(),
        ),
        View::Subscriptions => table(
            &["NAME", "TOPIC", "ENDPOINT", "HEALTH", "RETRY POLICY"],
            list(value, "subscriptions")
                .map(|s| {
                    vec![
                        text(&s["name"]),
                        text(&s["topic"]),
                        text(&s["endpoint"]),
                        health(s),
                        policy(&s["retry_policy"]),
                    ]
                })
                .collect(),
        ),
        View::Tokens => table(
            &["ID", "NAME", "SCOPE", "CREATED"],
            list(value, "tokens")
                .map(|t| {
                    vec![
                        text(&t["id"]),
                        text(&t["name"]),
                        text(&t["scope"]),
                        when(&t["created_at"], now),
                    ]
                })
                .collect(),
        ),
        View::Deliveries => {
            let mut out = table(
                &[
                    "ID",
                    "STATE",
                    "ATTEMPTS",
                    "LAST STATUS",
                    "NEXT ATTEMPT",
                    "EVENT",
                ],
                list(value, "deliveries")
                    .map(|d| {
                        vec![
                            text(&d["id"]),
                            state(d),
                            text(&d["attempts"]),
                            last_status(d),
                            when(&d["next_attempt_at"], now),
                            format!("{} {}", text(&d["event_type"]), text(&d["event_id"])),
                        ]
                    })
                    .collect(),
            );
            if let Some(cursor) = value["next_cursor"].as_str() {
                out.push_str(&format!(
                    "(more: the next page starts after cursor {cursor})\n"
                ));
            }
            out
        }
        View::Delivery => delivery(value, now),
        View::Subscription => {
            let mut shown = value.clone();
            if let Some(held) = shown.get_mut("pushes_held") {
                *held = Value::String(pushes_held(held, now));
            }
            fields(
                &shown,
                &[
                    "name",
                    "topic",
                    "endpoint",
                    "health",
                    "health_reason",
                    "paused",
                    "pushes_held",
                    "push_backoff",
                    "retry_policy",
                ],
                now,
            )
        }
        View::Topic | View::Fields => fields(value, &["name", "id"], now),
    }
}

fn list<'a>(value: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    value[key].as_array().into_iter().flatten()
}

/// A value as a cell: strings bare, absent as `-`, the rest as JSON.
fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A time as an instant to the second, with how far from now it is.
fn when(value: &Value, now: Timestamp) -> String {
    let Some(at) = value.as_str().and_then(|s| s.parse::<Timestamp>().ok()) else {
        return text(value);
    };
    let seconds = at.as_second() - now.as_second();
    let distance = format_duration(std::time::Duration::from_secs(seconds.unsigned_abs()));
    let relative = match seconds {
        0 => "now".to_owned(),
        s if s > 0 => format!("in {distance}"),
        _ => format!("{distance} ago"),
    };
    let exact = at.round(jiff::Unit::Second).unwrap_or(at);
    format!("{exact} ({relative})")
}

/// A subscription's `pushes_held` in words: `no`, or why and until when.
fn pushes_held(held: &Value, now: Timestamp) -> String {
    if held.is_null() {
        return "no".into();
    }
    let mut out = format!("held because {}", text(&held["detail"]));
    if !held["until"].is_null() {
        out.push_str(&format!(", until {}", when(&held["until"], now)));
    }
    out
}

fn health(subscription: &Value) -> String {
    let mut out = text(&subscription["health"]);
    if subscription["paused"] == Value::Bool(true) {
        out.push_str(", paused");
    }
    out
}

/// A retry policy in a few words: its preset, else its backoff kind, and
/// its limits.
fn policy(policy: &Value) -> String {
    let mut out = match policy["preset"].as_str() {
        Some(preset) => preset.to_owned(),
        None => text(&policy["backoff"]["kind"]),
    };
    if let Some(limit) = policy["retry_limit"].as_u64() {
        out.push_str(&format!(", {limit} retries"));
    }
    if let Some(age) = policy["age_limit"].as_str() {
        out.push_str(&format!(", for {age}"));
    }
    out
}

fn state(delivery: &Value) -> String {
    match delivery["failure_reason"].as_str() {
        Some(reason) => format!("{} ({reason})", text(&delivery["state"])),
        None => text(&delivery["state"]),
    }
}

fn last_status(delivery: &Value) -> String {
    match (&delivery["last_status"], &delivery["last_error"]) {
        (Value::Null, Value::Null) => "-".into(),
        (Value::Null, error) => text(error),
        (status, _) => text(status),
    }
}

/// A delivery: where it stands first, then its event, then every attempt.
fn delivery(value: &Value, now: Timestamp) -> String {
    let mut lines = vec![
        ("state", state(value)),
        ("attempts", text(&value["attempts"])),
        ("last status", last_status(value)),
        ("next attempt", when(&value["next_attempt_at"], now)),
        ("id", text(&value["id"])),
        ("subscription", text(&value["subscription"])),
        (
            "event",
            format!(
                "{} {} from {}",
                text(&value["event_type"]),
                text(&value["event_id"]),
                text(&value["event_source"])
            ),
        ),
        ("created", when(&value["created_at"], now)),
    ];
    if !value["dead_letter_event"].is_null() {
        lines.push(("dead-lettered as", text(&value["dead_letter_event"])));
    }
    if let Some(data) = value["event"].get("data") {
        lines.push(("data", text(data)));
    }
    let mut out = aligned(&lines);
    let attempts: Vec<Vec<String>> = list(value, "attempt_log")
        .map(|a| {
            let result = match (&a["status"], &a["error"]) {
                (Value::Null, error) => text(error),
                (status, _) => text(status),
            };
            let decision = &a["decision"];
            let decision = match decision["kind"].as_str() {
                Some("retry") => format!(
                    "retry {} at {}",
                    text(&decision["retry"]),
                    when(&decision["at"], now)
                ),
                Some("failed") => format!("failed ({})", text(&decision["reason"])),
                Some(kind) => kind.to_owned(),
                None => text(decision),
            };
            vec![
                text(&a["number"]),
                when(&a["started_at"], now),
                format!("{}ms", text(&a["duration_ms"])),
                result,
                decision,
            ]
        })
        .collect();
    if !attempts.is_empty() {
        out.push('\n');
        out.push_str(&table(
            &["ATTEMPT", "STARTED", "TOOK", "RESULT", "DECISION"],
            attempts,
        ));
    }
    out
}

/// An object's fields one a line, `first` in that order, then the rest
/// alphabetically; nested values as compact JSON.
fn fields(value: &Value, first: &[&str], now: Timestamp) -> String {
    let Some(object) = value.as_object() else {
        return format!("{}\n", text(value));
    };
    let mut keys: Vec<&String> = object.keys().collect();
    keys.sort_by_key(|key| {
        (
            first.iter().position(|f| f == key).unwrap_or(first.len()),
            key.as_str(),
        )
    });
    let lines: Vec<(&str, String)> = keys
        .into_iter()
        .map(|key| {
            let value = &object[key];
            let shown = if key.ends_with("_at") || key.ends_with("_until") {
                when(value, now)
            } else {
                text(value)
            };
            (key.as_str(), shown)
        })
        .collect();
    aligned(&lines)
}

fn aligned(lines: &[(&str, String)]) -> String {
    let width = lines.iter().map(|(key, _)| key.len()).max().unwrap_or(0);
    lines
        .iter()
        .map(|(key, value)| format!("{key:width$}  {value}\n"))
        .collect()
}

/// Columns padded to their widest cell; "(none)" for no rows.
fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    if rows.is_empty() {
        return "(none)\n".into();
    }
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut out = String::new();
        for (i, (cell, width)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(cell);
                out.push_str(&" ".repeat(width - cell.chars().count() + 2));
            }
        }
        out.trim_end().to_owned() + "\n"
    };
    let mut out = line(headers.iter().map(|h| h.to_string()).collect());
    for row in rows {
        out.push_str(&line(row));
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn now() -> Timestamp {
        "2026-01-01T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn a_held_subscription_says_why_and_until_when() {
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let held = json!({"name": "n", "pushes_held": {
            "until": "2026-01-01T00:00:30Z", "reason": "retry_after",
            "detail": "the endpoint answered 503 with Retry-After"}});
        let text = render(&held, View::Subscription, now);
        assert!(
            text.contains("pushes_held  held because the endpoint answered 503 with Retry-After, until 2026-01-01T00:00:30Z (in 30s)"),
            "{text}"
        );
        let free = render(
            &json!({"name": "n", "pushes_held": null}),
            View::Subscription,
            now,
        );
        assert!(free.contains("pushes_held  no"), "{free}");
    }

    #[test]
    fn a_delivery_list_shows_state_attempts_last_status_and_next_attempt() {
        let answer = json!({"deliveries": [
            {"id": "d1", "state": "scheduled", "attempts": 2, "last_status": 503,
             "last_error": null, "next_attempt_at": "2026-01-01T12:00:30Z",
             "event_type": "order.created", "event_id": "o-1", "failure_reason": null},
            {"id": "d2", "state": "failed", "attempts": 1, "last_status": null,
             "last_error": "connect", "next_attempt_at": null,
             "event_type": "order.created", "event_id": "o-2",
             "failure_reason": "retries_exhausted"},
        ], "next_cursor": null});
        assert_eq!(
            render(&answer, View::Deliveries, now()),
            "ID  STATE                       ATTEMPTS  LAST STATUS  NEXT ATTEMPT                   EVENT\n\
             d1  scheduled                   2         503          2026-01-01T12:00:30Z (in 30s)  order.created o-1\n\
             d2  failed (retries_exhausted)  1         connect      -                              order.created o-2\n"
        );
        assert_eq!(
            render(&json!({"deliveries": []}), View::Deliveries, now()),
            "(none)\n"
        );
    }

    #[test]
    fn a_delivery_leads_with_its_state_and_ends_with_its_attempts() {
        let answer = json!({
            "id": "d1", "state": "delivered", "attempts": 2, "last_status": 200,
            "last_error": null, "next_attempt_at": null, "subscription": "hook",
            "event_type": "t", "event_id": "e", "event_source": "/s",
            "created_at": "2026-01-01T11:59:00Z", "dead_letter_event": null,
            "event": {"data": {"n": 1}},
            "attempt_log": [
                {"number": 1, "started_at": "2026-01-01T11:59:00Z", "duration_ms": 3,
                 "status": 503, "error": null,
                 "decision": {"kind": "retry", "retry": 1, "at": "2026-01-01T11:59:01Z"}},
                {"number": 2, "started_at": "2026-01-01T11:59:01Z", "duration_ms": 2,
                 "status": 200, "error": null, "decision": {"kind": "delivered"}},
            ],
        });
        let text = render(&answer, View::Delivery, now());
        assert!(text.starts_with("state         delivered\n"), "{text}");
        let attempts = text.find("ATTEMPT  STARTED").expect("an attempt table");
        assert!(attempts > text.find("data").unwrap(), "{text}");
        assert!(
            text.contains("retry 1 at 2026-01-01T11:59:01Z (59s ago)"),
            "{text}"
        );
    }

    #[test]
    fn other_answers_list_their_fields_name_first() {
        let text = render(
            &json!({"topic": "t", "name": "n", "paused": false, "filter": {}}),
            View::Subscription,
            now(),
        );
        assert_eq!(text, "name    n\ntopic   t\npaused  false\nfilter  {}\n");
    }
}

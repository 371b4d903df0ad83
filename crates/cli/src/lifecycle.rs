//! Client commands of the failure lifecycle: redrive with progress, the
//! journal.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::bail;
use clap::Args;
use serde_json::{Value, json};

use crate::client::{Client, segment};

#[derive(Args)]
pub struct RedriveArgs {
    pub name: String,
    /// States to redrive: failed (default) and/or scheduled.
    #[arg(long = "state")]
    pub states: Vec<String>,
    /// Only failures with this reason (repeatable), e.g. retries_exhausted.
    #[arg(long = "reason")]
    pub reasons: Vec<String>,
    /// Only events published at or after this time (RFC 3339).
    #[arg(long)]
    pub since: Option<String>,
    /// Only events published before this time (RFC 3339).
    #[arg(long)]
    pub until: Option<String>,
    /// Only events of this type.
    #[arg(long = "type")]
    pub ty: Option<String>,
}

#[derive(Args)]
pub struct JournalArgs {
    pub name: String,
    /// Position of the last entry already read.
    #[arg(long)]
    pub since: Option<i64>,
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
}

/// How often a running redrive job is polled.
const POLL: Duration = Duration::from_millis(250);

pub async fn redrive(client: &Client, args: RedriveArgs) -> anyhow::Result<()> {
    let mut body = json!({"reasons": args.reasons});
    if !args.states.is_empty() {
        body["states"] = json!(args.states);
    }
    for (key, value) in [
        ("since", args.since),
        ("until", args.until),
        ("type", args.ty),
    ] {
        if let Some(value) = value {
            body[key] = value.into();
        }
    }
    let path = format!("/v1/subscriptions/{}/redrive", segment(&args.name));
    let answer = client.post(&path, Some(body)).await?;
    let total = answer["total"].as_u64().unwrap_or(0);
    let Some(job) = answer["job"]["id"].as_str() else {
        let moved = answer["moved"].as_u64().unwrap_or(0);
        progress(moved, total, true);
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(());
    };
    let path = format!("/v1/jobs/{}", segment(job));
    let mut shown = None;
    let job: Value = loop {
        let job = client.get(&path).await?;
        let done = job["done"].as_u64().unwrap_or(0);
        let running = job["state"] == "running";
        if shown != Some(done) || !running {
            progress(done, total, !running);
            shown = Some(done);
        }
        if !running {
            break job;
        }
        tokio::time::sleep(POLL).await;
    };
    println!("{}", serde_json::to_string_pretty(&job)?);
    if job["state"] != "succeeded" {
        bail!(
            "the redrive job {} ended {}: {}",
            job["id"],
            job["state"],
            job["error"].as_str().unwrap_or("no detail")
        );
    }
    Ok(())
}

/// A progress bar on stderr: redrawn in place on a terminal, one line per
/// step otherwise (logs, pipes).
fn progress(done: u64, total: u64, last: bool) {
    const WIDTH: u64 = 30;
    let filled = (done.min(total) * WIDTH)
        .checked_div(total)
        .unwrap_or(WIDTH);
    let bar = format!(
        "[{}{}] {done}/{total} redriven",
        "#".repeat(filled as usize),
        ".".repeat((WIDTH - filled) as usize)
    );
    let mut stderr = std::io::stderr();
    let _ = if stderr.is_terminal() {
        write!(stderr, "\r{bar}{}", if last { "\n" } else { "" })
    } else {
        writeln!(stderr, "{bar}")
    };
    let _ = stderr.flush();
}

pub async fn journal(client: &Client, args: JournalArgs) -> anyhow::Result<()> {
    let mut path = format!(
        "/v1/subscriptions/{}/journal?limit={}",
        segment(&args.name),
        args.limit
    );
    if let Some(since) = args.since {
        path.push_str(&format!("&since={since}"));
    }
    let answer = client.get(&path).await?;
    println!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(())
}

//! `docs/reference/cli.md` is the `--help` of every `redrive` command, as
//! the binary prints it: this test renders it again and fails when the page
//! differs, so the reference cannot go stale. After changing a command,
//! regenerate it with
//! `REDRIVE_UPDATE_DOCS=1 cargo test --workspace --test cli -- cli_reference::`.

use std::path::Path;
use std::process::Command;

use crate::common;

use common::{REDRIVE, without_redrive_env};

/// The width help text is wrapped to, whatever the terminal.
const COLUMNS: &str = "100";

fn help(path: &[String]) -> String {
    // Defaults shown in the help must not come from the test's own
    // environment.
    let output = without_redrive_env(&mut Command::new(REDRIVE))
        .args(path)
        .arg("--help")
        .env("COLUMNS", COLUMNS)
        .output()
        .expect("redrive runs");
    assert!(
        output.status.success(),
        "redrive {} --help failed: {}",
        path.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("help is UTF-8")
}

/// The subcommands a help text lists under `Commands:`, `help` left out.
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|line| line.trim_end() != "Commands:")
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        // Descriptions wrapped onto further lines are indented deeper.
        .filter(|line| !line.starts_with("   "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

fn render(path: &mut Vec<String>, page: &mut String) {
    let text = help(path);
    let title = if path.is_empty() {
        "redrive".to_owned()
    } else {
        format!("redrive {}", path.join(" "))
    };
    let lines: Vec<&str> = text.trim_end().lines().map(str::trim_end).collect();
    page.push_str(&format!(
        "## `{title}`\n\n```text\n{}\n```\n\n",
        lines.join("\n")
    ));
    for sub in subcommands(&text) {
        path.push(sub);
        render(path, page);
        path.pop();
    }
}

#[test]
fn the_cli_reference_is_what_the_binary_prints() {
    let mut page = String::from(
        "# CLI reference\n\n\
         Every command's `--help`, as `redrive` prints it. Flags of `serve` also \
         read the environment variable shown beside them. This page is generated: \
         `REDRIVE_UPDATE_DOCS=1 cargo test --workspace --test cli -- cli_reference::` \
         writes it again.\n\n",
    );
    render(&mut Vec::new(), &mut page);
    let page = format!("{}\n", page.trim_end());
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/reference/cli.md");
    if std::env::var_os("REDRIVE_UPDATE_DOCS").is_some() {
        std::fs::write(&file, &page).expect("docs/reference/cli.md is writable");
        return;
    }
    let written = std::fs::read_to_string(&file).unwrap_or_default();
    assert!(
        written == page,
        "docs/reference/cli.md is not what `redrive --help` prints; regenerate it with \
         REDRIVE_UPDATE_DOCS=1 cargo test --workspace --test cli -- cli_reference::"
    );
}

#[test]
fn every_command_is_in_the_reference_once() {
    let top = help(&[]);
    let listed = subcommands(&top);
    for command in ["serve", "publish", "subscriptions", "policy"] {
        assert!(
            listed.iter().any(|c| c == command),
            "{command} in {listed:?}"
        );
    }
    let mut sorted = listed.clone();
    sorted.dedup();
    assert_eq!(sorted.len(), listed.len());
}

//! The docs' commands, run as written, so the docs cannot go stale:
//!
//! - every command of the quick start (`docs/guide/quick-start.md`), in
//!   order, with the real binary, the real sink and curl, only the ports
//!   changed, until a delivery was retried, one failed, and that one was
//!   retried by hand and delivered;
//! - every ```` ```console ```` block of `docs/`: each `$ command` runs in
//!   the directory of its page (against a server of its own for the
//!   commands that need one), and prints exactly the lines below it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common;

use common::{REDRIVE, RunningServer};

/// How long a step the docs describe may take to show.
const PATIENCE: Duration = Duration::from_secs(30);

fn docs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs")
}

/// `sh -c script` with `redrive` on the PATH and none of redrive's
/// variables inherited from the test's environment.
fn shell(script: &str, dir: &Path) -> Command {
    let bin = Path::new(REDRIVE).parent().expect("the binary's directory");
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![bin.to_owned()];
    paths.extend(std::env::split_paths(&path));
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .env("PATH", std::env::join_paths(paths).expect("a PATH"))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    common::without_redrive_env(&mut command);
    command
}

/// Two distinct free ports (both held until both are known).
fn free_ports() -> (u16, u16) {
    let bind = || std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let (a, b) = (bind(), bind());
    let port = |l: &std::net::TcpListener| l.local_addr().expect("an address").port();
    (port(&a), port(&b))
}

/// The ```` ```LANG ```` blocks of a Markdown text, in order.
fn blocks(markdown: &str, lang: &str) -> Vec<String> {
    let fence = format!("```{lang}");
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match &mut current {
            None if line.trim_end() == fence => current = Some(String::new()),
            Some(block) if line.trim_end() == "```" => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    blocks
}

/// A shell block's commands: a command goes on past a trailing `\` and
/// while a single quote is open.
fn commands(block: &str) -> Vec<String> {
    let mut commands = Vec::new();
    let mut current = String::new();
    for line in block.lines() {
        if current.is_empty() && line.trim().is_empty() {
            continue;
        }
        current.push_str(line);
        current.push('\n');
        let open_quote = current.matches('\'').count() % 2 == 1;
        if !open_quote && !line.trim_end().ends_with('\\') {
            commands.push(current.trim().to_owned());
            current.clear();
        }
    }
    assert!(current.is_empty(), "an unfinished command: {current}");
    commands
}

/// A long-running command of the docs (`sink`, `serve`), and what it printed.
struct Background {
    child: Child,
    name: String,
}

impl Background {
    /// Starts `script` and waits for a stdout line starting with `ready`.
    fn start(script: &str, dir: &Path, name: &str, ready: &str) -> Background {
        let log = dir.join(format!("{name}.log"));
        let mut child = shell(&format!("exec {script}"), dir)
            .stdout(std::fs::File::create(&log).expect("a log file"))
            .stderr(std::fs::File::create(dir.join(format!("{name}.err"))).expect("a log file"))
            .spawn()
            .expect("sh starts");
        let deadline = Instant::now() + PATIENCE;
        while !common::read(&log).lines().any(|l| l.starts_with(ready)) {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("{name} stopped ({status}): {}", common::read(&log));
            }
            assert!(Instant::now() < deadline, "{name} never printed {ready:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Background {
            child,
            name: name.to_owned(),
        }
    }

    fn output(&self, dir: &Path) -> String {
        common::read(&dir.join(format!("{}.log", self.name)))
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(script: &str, dir: &Path) -> Output {
    shell(script, dir).output().expect("sh runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The JSON a command printed (curl's answer or the CLI's in a pipe).
fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or(Value::Null)
}

/// Runs a command until `done` accepts its output, as a reader who waits
/// a few seconds would.
fn run_until(script: &str, dir: &Path, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let output = run(script, dir);
        assert!(
            output.status.success(),
            "{script}: {}",
            text(&output.stderr)
        );
        let answer = json(&output);
        if done(&answer) {
            return answer;
        }
        assert!(
            Instant::now() < deadline,
            "{script} never showed what the quick start says: {answer}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn deliveries(answer: &Value) -> Vec<Value> {
    answer["deliveries"].as_array().cloned().unwrap_or_default()
}

#[test]
fn every_command_of_the_quick_start_works_as_written() {
    assert!(
        run("command -v curl", Path::new(".")).status.success(),
        "the quick start uses curl: install it to run this test"
    );
    let page =
        std::fs::read_to_string(docs_dir().join("guide/quick-start.md")).expect("the quick start");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let dir = dir.path();
    let (server_port, sink_port) = free_ports();
    let ports = |command: &str| {
        command
            .replace("8080", &server_port.to_string())
            .replace("9000", &sink_port.to_string())
    };
    let mut sink = None;
    let mut server = None;
    // Assignments (`export …`, `AUTH=…`) hold for every later command.
    let mut assignments = String::new();
    // The id of the delivery the last list showed, for the docs' `ID`.
    let mut id: Option<String> = None;
    let mut ran = Vec::new();
    for command in blocks(&page, "sh").iter().flat_map(|block| commands(block)) {
        let command = ports(&command);
        ran.push(command.clone());
        if command.starts_with("redrive sink") {
            sink = Some(Background::start(
                &command,
                dir,
                "sink",
                "sink listening on",
            ));
            continue;
        }
        if command.starts_with("redrive serve") {
            server = Some(Background::start(
                &command,
                dir,
                "serve",
                "redrive listening on",
            ));
            continue;
        }
        let is_assignment = command.starts_with("export ")
            || command.split_once('=').is_some_and(|(name, _)| {
                !name.is_empty() && name.chars().all(|c| c.is_ascii_uppercase() || c == '_')
            });
        if is_assignment {
            assignments.push_str(&command);
            assignments.push('\n');
            continue;
        }
        let command = match &id {
            Some(id) => command
                .replace("/ID", &format!("/{id}"))
                .replace(" ID", &format!(" {id}")),
            None => command,
        };
        assert!(
            !command.contains(" ID") && !command.contains("/ID"),
            "no id yet for {command}"
        );
        let script = format!("{assignments}{command}");
        let answer = if command.contains("/orders-webhook/deliveries") {
            // Three attempts, one and two seconds apart.
            run_until(&script, dir, |answer| {
                deliveries(answer)
                    .first()
                    .is_some_and(|d| d["state"] == "delivered")
            })
        } else if command.contains("deliveries list invoices-webhook --state failed") {
            run_until(&script, dir, |answer| !deliveries(answer).is_empty())
        } else if command.starts_with("redrive deliveries get") {
            run_until(&script, dir, |answer| answer["state"] == "delivered")
        } else {
            let output = run(&script, dir);
            assert!(
                output.status.success(),
                "{command}: {}{}",
                text(&output.stdout),
                text(&output.stderr)
            );
            json(&output)
        };
        assert!(answer.get("error").is_none(), "{command}: {answer}");
        if let Some(first) = deliveries(&answer).first() {
            id = first["id"].as_str().map(str::to_owned);
        }
        // What the page says each step shows.
        if command.contains("/orders-webhook/deliveries") {
            let delivery = &deliveries(&answer)[0];
            assert_eq!(delivery["attempts"], 3, "{answer}");
        }
        if command.contains("/v1/deliveries/") {
            let log = answer["attempt_log"].as_array().expect("an attempt log");
            let statuses: Vec<&Value> = log.iter().map(|a| &a["status"]).collect();
            assert_eq!(statuses, [503, 503, 200], "{answer}");
        }
        if command.contains("--state failed") {
            let delivery = &deliveries(&answer)[0];
            assert_eq!(delivery["failure_reason"], "retries_exhausted", "{answer}");
            assert_eq!(delivery["attempts"], 2, "{answer}");
            assert_eq!(delivery["last_status"], 503, "{answer}");
        }
        if command.starts_with("redrive deliveries get") {
            assert_eq!(answer["attempts"], 3, "{answer}");
            assert_eq!(answer["subscription"], "invoices-webhook", "{answer}");
        }
    }
    // The page has the steps it promises, in this order.
    let steps = [
        "redrive sink",
        "redrive serve",
        "curl -X POST",
        "/v1/deliveries/",
        "redrive publish invoices",
        "--state failed",
        "redrive deliveries retry",
        "redrive deliveries get",
    ];
    let mut at = 0;
    for step in steps {
        let found = ran[at..]
            .iter()
            .position(|command| command.contains(step))
            .unwrap_or_else(|| panic!("the quick start lacks {step:?} after {:?}", &ran[..at]));
        at += found + 1;
    }
    let sink = sink.expect("the quick start starts a sink");
    let received = sink.output(dir);
    assert!(received.contains("-> 503"), "{received}");
    assert!(received.contains("-> 200"), "{received}");
    let server = server.expect("the quick start starts a server");
    assert!(
        server.output(dir).contains("admin API token"),
        "{}",
        server.output(dir)
    );
}

/// A `$ command` of a console block and the lines it prints.
struct Example {
    page: PathBuf,
    command: String,
    expected: String,
}

fn examples() -> Vec<Example> {
    let mut pages = Vec::new();
    let mut dirs = vec![docs_dir()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("a docs directory") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|ext| ext == "md") {
                pages.push(path);
            }
        }
    }
    pages.sort();
    let mut examples = Vec::new();
    for page in pages {
        let markdown = std::fs::read_to_string(&page).expect("a page");
        for block in blocks(&markdown, "console") {
            let mut current: Option<Example> = None;
            for line in block.lines() {
                if let Some(command) = line.strip_prefix("$ ") {
                    examples.extend(current.take());
                    current = Some(Example {
                        page: page.clone(),
                        command: command.to_owned(),
                        expected: String::new(),
                    });
                } else if let Some(example) = &mut current {
                    example.expected.push_str(line);
                    example.expected.push('\n');
                } else {
                    panic!("{}: a console block starts with `$ `", page.display());
                }
            }
            examples.extend(current);
        }
    }
    examples
}

#[test]
fn every_console_example_of_the_docs_prints_what_the_docs_show() {
    let examples = examples();
    // The pages that must keep their examples.
    for command in [
        "redrive policy explain",
        "redrive policy presets",
        "redrive apply",
        "redrive import appengine",
        "redrive import pubsub",
    ] {
        assert!(
            examples.iter().any(|e| e.command.starts_with(command)),
            "no console example of {command}"
        );
    }
    // One fresh server for the commands that plan against one (dry runs
    // change nothing, so each sees it empty).
    let server = RunningServer::try_start_in_temp_dir("docs-test-admin-token-0123456789", &[])
        .unwrap_or_else(|problem| panic!("redrive serve did not start: {problem}"));
    let mut failures = Vec::new();
    for example in &examples {
        let dir = example.page.parent().expect("a page's directory");
        let script = format!(
            "export REDRIVE_SERVER={} REDRIVE_TOKEN=docs-test-admin-token-0123456789\n{} 2>&1",
            server.url, example.command
        );
        let output = run(&script, dir);
        let printed = text(&output.stdout);
        if printed != example.expected || !output.status.success() {
            failures.push(format!(
                "{}: $ {}\n--- the page shows\n{}--- it prints ({})\n{printed}",
                example.page.display(),
                example.command,
                example.expected,
                output.status
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

//! `redrive serve`'s security defaults as a user meets them: a generated
//! admin token printed once and kept private, `--insecure-no-auth`, and the
//! token and signing-secret commands.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

const REDRIVE: &str = env!("CARGO_BIN_EXE_redrive");

fn command(args: &[&str]) -> Command {
    let mut command = Command::new(REDRIVE);
    command
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    for var in [
        "REDRIVE_SERVER",
        "REDRIVE_TOKEN",
        "REDRIVE_API_TOKEN",
        "REDRIVE_INSECURE_NO_AUTH",
        "REDRIVE_ALLOW_ENDPOINT_NETWORKS",
        "REDRIVE_SECRET_KEY",
    ] {
        command.env_remove(var);
    }
    command
}

/// `redrive serve` with its first `lines` of stdout.
struct RunningServer {
    child: Child,
    url: String,
    lines: Vec<String>,
}

impl RunningServer {
    fn start(data: &Path, log: &Path, extra: &[&str], lines: usize) -> RunningServer {
        let log_file = std::fs::File::create(log).expect("a log file");
        let mut child = command(&["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .spawn()
            .expect("redrive starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (line_tx, line_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            loop {
                let mut line = String::new();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        if line_tx.send(line.trim().to_owned()).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        let mut got = Vec::new();
        while got.len() < lines {
            match line_rx.recv_timeout(Duration::from_secs(30)) {
                Ok(line) => got.push(line),
                Err(_) => {
                    let _ = child.kill();
                    panic!(
                        "redrive printed {got:?}; log:\n{}",
                        std::fs::read_to_string(log).unwrap_or_default()
                    );
                }
            }
        }
        let url = got[0]
            .strip_prefix("redrive listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {:?}", got[0]))
            .to_owned();
        RunningServer {
            child,
            url,
            lines: got,
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client(url: &str, token: Option<&str>, args: &[&str]) -> Output {
    let mut command = command(&["--server", url]);
    command.args(args);
    if let Some(token) = token {
        command.env("REDRIVE_TOKEN", token);
    }
    command.output().expect("redrive runs")
}

fn json(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "redrive failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON on stdout")
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .expect("the file exists")
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn first_start_generates_a_private_admin_token_and_prints_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("log");
    let server = RunningServer::start(&data, &log, &[], 3);
    let token = server.lines[1]
        .rsplit(": ")
        .next()
        .expect("the token line")
        .to_owned();
    assert!(
        server.lines[1].starts_with("admin API token"),
        "{:?}",
        server.lines
    );
    assert!(token.starts_with("rdv_admin_"), "{token}");
    assert_eq!(server.lines[2], format!("console: {}/console", server.url));
    let file = data.join("api-token");
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), token);
    #[cfg(unix)]
    {
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(&data.join("secret.key")), 0o600);
    }

    let refused = client(&server.url, None, &["topics", "list"]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("HTTP 401"), "{stderr}");
    assert!(stderr.contains("REDRIVE_TOKEN"), "{stderr}");
    json(&client(
        &server.url,
        Some(&token),
        &["topics", "create", "orders"],
    ));

    // Scoped tokens and signing secrets from the command line.
    let created = json(&client(
        &server.url,
        Some(&token),
        &[
            "tokens",
            "create",
            "--scope",
            "publish:orders",
            "--name",
            "shop",
        ],
    ));
    let publisher = created["token"].as_str().unwrap().to_owned();
    json(&client(
        &server.url,
        Some(&publisher),
        &[
            "publish", "orders", "--type", "t", "--source", "/s", "--data", "{}",
        ],
    ));
    let refused = client(&server.url, Some(&publisher), &["topics", "create", "x"]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("HTTP 403"));
    let listed = json(&client(&server.url, Some(&token), &["tokens", "list"]));
    assert_eq!(listed["tokens"].as_array().unwrap().len(), 1);
    drop(server);

    // The second start reuses the token and prints no secret.
    let again = RunningServer::start(&data, &log, &[], 1);
    json(&client(&again.url, Some(&token), &["topics", "list"]));
}

#[test]
fn insecure_no_auth_serves_without_a_token_and_warns() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("log");
    let server = RunningServer::start(&data, &log, &["--insecure-no-auth"], 1);
    json(&client(&server.url, None, &["topics", "create", "orders"]));
    assert!(!data.join("api-token").exists());
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(logged.contains("authentication is OFF"), "{logged}");
}

#[test]
fn subscription_secrets_are_read_and_rotated_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("log");
    let token = "cli-security-admin-token-0123";
    let server = RunningServer::start(
        &data,
        &log,
        &[
            "--api-token",
            token,
            "--allow-endpoint-networks",
            "127.0.0.0/8",
        ],
        1,
    );
    let run = |args: &[&str]| json(&client(&server.url, Some(token), args));
    run(&["topics", "create", "orders"]);
    run(&[
        "subscriptions",
        "create",
        "hook",
        "--topic",
        "orders",
        "--endpoint",
        "http://127.0.0.1:9/hook",
    ]);
    let secret = run(&["subscriptions", "secret", "hook"]);
    let first = secret["secret"].as_str().unwrap().to_owned();
    assert!(first.starts_with("whsec_"), "{secret}");
    let rotated = run(&["subscriptions", "rotate-secret", "hook"]);
    assert_ne!(rotated["secret"], first.as_str());
    assert!(rotated["previous_valid_until"].is_string(), "{rotated}");
    // Without the allow-list flag a loopback endpoint is refused.
    let refused = client(
        &server.url,
        Some(token),
        &[
            "subscriptions",
            "create",
            "other",
            "--topic",
            "orders",
            "--endpoint",
            "http://[::1]:9/",
        ],
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("loopback"), "{stderr}");
}

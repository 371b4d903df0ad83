//! `redrive serve`'s security defaults as a user meets them: a generated
//! admin token printed once and kept private, `--insecure-no-auth`, and the
//! token and signing-secret commands.

use std::path::Path;
use std::process::Output;

use serde_json::Value;

use crate::common;

use common::RunningServer;

/// `redrive serve` on `data` as a user who set nothing starts it, with
/// `extra` arguments.
fn start_server(data: &Path, log: &Path, extra: &[&str]) -> RunningServer {
    let mut command = common::bare_command();
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .args(extra);
    RunningServer::start(command, log)
}

fn client(url: &str, token: Option<&str>, args: &[&str]) -> Output {
    let mut command = common::bare_command();
    command.args(["--server", url]).args(args);
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
    let server = start_server(&data, &log, &[]);
    // What it printed after saying where it listens.
    let lines: Vec<String> = (0..2)
        .map(|_| server.next_line().expect("another line"))
        .collect();
    let token = lines[0]
        .rsplit(": ")
        .next()
        .expect("the token line")
        .to_owned();
    assert!(lines[0].starts_with("admin API token"), "{:?}", lines);
    assert!(token.starts_with("rdv_admin_"), "{token}");
    assert_eq!(lines[1], format!("console: {}/console", server.url));
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
    let again = start_server(&data, &log, &[]);
    json(&client(&again.url, Some(&token), &["topics", "list"]));
}

#[test]
fn insecure_no_auth_serves_without_a_token_and_warns() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("log");
    let server = start_server(&data, &log, &["--insecure-no-auth"]);
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
    let server = start_server(
        &data,
        &log,
        &[
            "--api-token",
            token,
            "--allow-endpoint-networks",
            "127.0.0.0/8",
        ],
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

#[test]
fn a_start_with_another_secret_key_than_the_stored_secrets_says_so() {
    const TOKEN: &str = "secret-key-check-admin-token-0123";
    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const OTHER_KEY: &str = "HxAREhMUFRYXGBkaGxwdHh8AAQIDBAUGBwgJCgsMDQ4=";
    const WARNING: &str = "the secret key does not open the stored signing secrets";
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("log");
    let start = |key: &str| start_server(&data, &log, &["--api-token", TOKEN, "--secret-key", key]);

    let server = start(KEY);
    json(&client(
        &server.url,
        Some(TOKEN),
        &["topics", "create", "orders"],
    ));
    json(&client(
        &server.url,
        Some(TOKEN),
        &[
            "subscriptions",
            "create",
            "hook",
            "--topic",
            "orders",
            "--endpoint",
            "https://hooks.example.com/orders",
        ],
    ));
    assert!(!server.log().contains(WARNING), "{}", server.log());
    drop(server);

    // A node given another key: it starts, and says at once why it will
    // not push.
    let other = start(OTHER_KEY);
    let logged = other.log();
    assert!(logged.contains(WARNING), "{logged}");
    assert!(logged.contains("hook"), "{logged}");
    drop(other);

    // The right key again: nothing to say.
    let again = start(KEY);
    assert!(!again.log().contains(WARNING), "{}", again.log());
}

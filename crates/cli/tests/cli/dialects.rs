//! Configuration as code and imports, run as the real binary against a real
//! server: `serve --config`, `apply -f` (idempotent, with diffs and prune),
//! `export`, `import appengine` and `import pubsub`, with the sample files
//! in tests/data (valid and invalid).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::common;

use common::RunningServer;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

const TOKEN: &str = "dialects-admin-token-0123456789";

/// A client command against `server`, as a user with the token runs it.
fn command(server: &str) -> Command {
    let mut command = common::command(TOKEN);
    command.env("REDRIVE_SERVER", server);
    command
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "redrive failed: {}{}",
        stdout(&output),
        stderr(&output)
    );
    stdout(&output)
}

fn failed(output: Output) -> String {
    assert!(
        !output.status.success(),
        "it succeeded: {}",
        stdout(&output)
    );
    stderr(&output)
}

/// A `redrive serve` on a temporary data directory.
fn start_server(extra: &[&str]) -> RunningServer {
    try_start_server(extra).unwrap_or_else(|log| panic!("the server did not start:\n{log}"))
}

/// The server, or what it said when it stopped before listening.
fn try_start_server(extra: &[&str]) -> Result<RunningServer, String> {
    RunningServer::try_start_in_temp_dir(TOKEN, extra)
}

/// This file's client commands, against the server.
impl RunningServer {
    fn run(&self, args: &[&str]) -> Output {
        command(&self.url)
            .args(args)
            .output()
            .expect("redrive runs")
    }

    fn json(&self, args: &[&str]) -> Value {
        let out = ok(self.run(args));
        serde_json::from_str(&out).unwrap_or_else(|err| panic!("not JSON ({err}): {out}"))
    }

    fn names(&self, what: &str) -> Vec<String> {
        let list = self.json(&[what, "list"]);
        let mut names: Vec<String> = list[what]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item["name"].as_str().unwrap().to_owned())
            .filter(|name| name != "redrive.system")
            .collect();
        names.sort();
        names
    }

    /// A file in the server's temporary directory.
    fn write(&self, name: &str, content: &str) -> String {
        let path = self.dir().join(name);
        std::fs::write(&path, content).unwrap();
        path.to_string_lossy().into_owned()
    }
}

fn path(name: &str) -> String {
    data(name).to_string_lossy().into_owned()
}

#[test]
fn serve_applies_the_config_and_apply_is_idempotent() {
    let config = path("redrive.toml");
    let server = start_server(&["--config", &config]);
    assert_eq!(server.names("topics"), ["orders", "orders-dead"]);
    assert_eq!(
        server.names("subscriptions"),
        ["orders-audit", "orders-hook"]
    );
    let hook = server.json(&["subscriptions", "get", "orders-hook"]);
    assert_eq!(hook["timeout"], "10s");
    assert_eq!(hook["rate"], "20/s");
    assert_eq!(hook["retry_policy"]["preset"], "adobe-io");

    let again = ok(server.run(&["apply", "-f", &config]));
    assert_eq!(
        again,
        "= unchanged topic        orders\n\
         = unchanged topic        orders-dead\n\
         = unchanged subscription orders-hook\n\
         = unchanged subscription orders-audit\n\
         0 created, 0 changed, 4 unchanged, 0 deleted\n"
    );

    // A changed setting is one `~` line naming the field, then steady again.
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("rate = \"20/s\"", "rate = \"10/s\"");
    let changed = server.write("changed.toml", &text);
    let out = ok(server.run(&["apply", "-f", &changed]));
    assert!(
        out.contains("~ changed   subscription orders-hook (rate)"),
        "{out}"
    );
    assert!(out.contains("1 changed, 3 unchanged"), "{out}");
    let out = ok(server.run(&["apply", "-f", &changed]));
    assert!(out.contains("0 changed, 4 unchanged"), "{out}");
    assert_eq!(
        server.json(&["subscriptions", "get", "orders-hook"])["rate"],
        "10/s"
    );
}

#[test]
fn apply_creates_what_is_missing_and_prune_deletes_what_is_not_listed() {
    let server = start_server(&[]);
    let config = path("redrive.toml");
    let dry = ok(server.run(&["apply", "-f", &config, "--dry-run"]));
    assert!(dry.contains("4 created"), "{dry}");
    assert!(dry.contains("dry run"), "{dry}");
    assert!(server.names("topics").is_empty());
    let out = ok(server.run(&["apply", "-f", &config]));
    assert!(
        out.contains("+ created   subscription orders-hook"),
        "{out}"
    );
    assert!(
        out.contains("4 created, 0 changed, 0 unchanged, 0 deleted"),
        "{out}"
    );

    let pruned = server.write(
        "pruned.toml",
        r#"prune = true

[[topics]]
name = "orders"

[[subscriptions]]
name = "orders-hook"
topic = "orders"
endpoint = "http://127.0.0.1:9/hook"
"#,
    );
    let out = ok(server.run(&["apply", "-f", &pruned]));
    assert!(
        out.contains("~ changed   subscription orders-hook"),
        "{out}"
    );
    assert!(
        out.contains("- deleted   subscription orders-audit"),
        "{out}"
    );
    assert!(
        out.contains("- deleted   topic        orders-dead"),
        "{out}"
    );
    assert_eq!(server.names("topics"), ["orders"]);
    assert_eq!(server.names("subscriptions"), ["orders-hook"]);
    let out = ok(server.run(&["apply", "-f", &pruned]));
    assert!(
        out.contains("0 created, 0 changed, 2 unchanged, 0 deleted"),
        "{out}"
    );
}

#[test]
fn export_prints_a_file_that_applies_without_changes() {
    let config = path("redrive.toml");
    let server = start_server(&["--config", &config]);
    let exported = ok(server.run(&["export"]));
    assert!(exported.contains("[[subscriptions]]"), "{exported}");
    let file = server.write("exported.toml", &exported);
    let out = ok(server.run(&["apply", "-f", &file]));
    assert!(out.contains("0 created, 0 changed, 4 unchanged"), "{out}");
}

#[test]
fn export_writes_presets_by_name_and_every_preset_round_trips() {
    let server = start_server(&[]);
    let mut file = String::from("[[topics]]\nname = \"orders\"\n");
    for preset in redrive_core::presets::PRESETS {
        file.push_str(&format!(
            "\n[[subscriptions]]\nname = \"s-{name}\"\ntopic = \"orders\"\n\
             endpoint = \"http://127.0.0.1:9/\"\nretry_policy = {{ preset = \"{name}\" }}\n",
            name = preset.name
        ));
    }
    let applied = server.write("presets.toml", &file);
    ok(server.run(&["apply", "-f", &applied]));
    let exported = ok(server.run(&["export"]));
    for preset in redrive_core::presets::PRESETS {
        assert!(
            exported.contains(&format!("preset = \"{}\"", preset.name)),
            "{}: {exported}",
            preset.name
        );
    }
    // Nothing the presets or the defaults bring is pinned in the file.
    for pinned in [
        "backoff",
        "success_codes",
        "timeout",
        "message_retention",
        "health_policy",
    ] {
        assert!(!exported.contains(pinned), "{pinned}: {exported}");
    }
    let file = server.write("exported.toml", &exported);
    let out = ok(server.run(&["apply", "-f", &file]));
    let count = redrive_core::presets::PRESETS.len();
    assert!(
        out.contains(&format!("0 created, 0 changed, {} unchanged", count + 1)),
        "{out}"
    );
}

#[test]
fn invalid_files_are_rejected_with_the_line_and_nothing_is_applied() {
    let server = start_server(&[]);
    for (file, needle) in [
        ("invalid-syntax.toml", "line 4: unclosed array table"),
        (
            "invalid-endpoint.toml",
            "line 4: subscription \"orders-hook\": endpoint: scheme \"ftp\"",
        ),
        ("invalid-preset.toml", "line 9: unknown preset \"sqs\""),
        (
            "invalid-key.toml",
            "line 8: unknown field \"rate_limit\"; known fields: ",
        ),
    ] {
        let message = failed(server.run(&["apply", "-f", &path(file)]));
        assert!(message.contains(needle), "{file}: {message}");
        assert!(message.contains(file), "{file}: {message}");
    }
    assert!(server.names("topics").is_empty());
    assert!(server.names("subscriptions").is_empty());

    // A subscription on a topic neither declared nor on the server is
    // refused by the server as a whole: the topic before it isn't created.
    let dangling = server.write(
        "dangling.toml",
        "[[topics]]\nname = \"a\"\n\n[[subscriptions]]\nname = \"s\"\ntopic = \"nowhere\"\n\
         endpoint = \"http://127.0.0.1:9/\"\n",
    );
    let message = failed(server.run(&["apply", "-f", &dangling]));
    assert!(message.contains("line 4:"), "{message}");
    assert!(
        message.contains("\"nowhere\" is neither declared"),
        "{message}"
    );
    assert!(server.names("topics").is_empty());
}

#[test]
fn serve_refuses_to_start_on_an_invalid_config() {
    let Err(log) = try_start_server(&["--config", &path("invalid-preset.toml")]) else {
        panic!("the server started on an invalid file");
    };
    assert!(log.contains("line 9: unknown preset \"sqs\""), "{log}");
}

#[test]
fn import_appengine_queue_xml_and_yaml_create_topics_and_subscriptions() {
    for file in ["queue.xml", "queue.yaml"] {
        let server = start_server(&[]);
        let dry = ok(server.run(&[
            "import",
            "appengine",
            &path(file),
            "--endpoint-base",
            "http://127.0.0.1:9",
            "--dry-run",
        ]));
        assert!(dry.contains("pull queue"), "{dry}");
        assert!(dry.contains("4 created"), "{dry}");
        assert!(server.names("subscriptions").is_empty());
        let out = ok(server.run(&[
            "import",
            "appengine",
            &path(file),
            "--endpoint-base",
            "http://127.0.0.1:9",
        ]));
        assert!(out.contains("+ created   subscription emails"), "{out}");
        assert!(
            out.contains(
                "  emails -> http://127.0.0.1:9/_ah/queue/emails (timeout 30s, rate 20/s, \
                 bucket 40, 10 in flight, retry limit 7, age limit 3d 12h)"
            ),
            "{out}"
        );
        assert_eq!(server.names("subscriptions"), ["emails", "reports"]);
        assert_eq!(server.names("topics"), ["emails", "reports"]);
        let emails = server.json(&["subscriptions", "get", "emails"]);
        assert_eq!(emails["endpoint"], "http://127.0.0.1:9/_ah/queue/emails");
        assert_eq!(emails["rate"], "20/s");
        assert_eq!(emails["bucket_size"], 40);
        assert_eq!(emails["max_concurrency"], 10);
        assert_eq!(emails["headers_profile"], "appengine");
        // App Engine keeps the queue's retry parameters exactly.
        assert_eq!(emails["push_backoff"], false);
        let policy = &emails["retry_policy"];
        assert_eq!(policy["retry_limit"], 7);
        assert_eq!(policy["age_limit"], "302400s");
        assert_eq!(policy["limit_mode"], "both");
        assert_eq!(policy["backoff"]["min_backoff"], "10s");
        assert_eq!(policy["backoff"]["max_doublings"], 2);
        let reports = server.json(&["subscriptions", "get", "reports"]);
        assert_eq!(reports["rate"], "1/m");
        assert_eq!(reports["bucket_size"], 5);
        // A second import finds everything in place.
        let again = ok(server.run(&[
            "import",
            "appengine",
            &path(file),
            "--endpoint-template",
            "http://127.0.0.1:9/_ah/queue/{queue}",
        ]));
        assert!(
            again.contains("0 created, 0 changed, 4 unchanged"),
            "{again}"
        );
    }
}

#[test]
fn invalid_app_engine_files_are_refused_and_nothing_is_created() {
    let server = start_server(&[]);
    for (file, needle) in [
        (
            "queue-invalid-backoff.yaml",
            "min-backoff-seconds (30) is greater than max-backoff-seconds (10)",
        ),
        ("queue-invalid-age.xml", "task-age-limit must be positive"),
    ] {
        let message = failed(server.run(&[
            "import",
            "appengine",
            &path(file),
            "--endpoint-base",
            "http://127.0.0.1:9",
        ]));
        assert!(message.contains(needle), "{file}: {message}");
    }
    let message = failed(server.run(&[
        "import",
        "appengine",
        &path("queue.xml"),
        "--endpoint-template",
        "http://127.0.0.1:9/tasks",
    ]));
    assert!(message.contains("{queue}"), "{message}");
    assert!(server.names("topics").is_empty());
}

#[test]
fn import_pubsub_creates_a_push_envelope_subscription_and_its_topics() {
    let server = start_server(&[]);
    let message = failed(server.run(&["import", "pubsub", &path("pubsub-invalid-attempts.json")]));
    assert!(
        message.contains("maxDeliveryAttempts must be between 5 and 100, got 200"),
        "{message}"
    );
    assert!(server.names("topics").is_empty());
    let out = ok(server.run(&["import", "pubsub", &path("pubsub-subscription.json")]));
    assert!(
        out.contains("+ created   subscription orders-push"),
        "{out}"
    );
    assert_eq!(server.names("topics"), ["orders", "orders-dead"]);
    let sub = server.json(&["subscriptions", "get", "orders-push"]);
    assert_eq!(sub["payload_format"], "pubsub-push");
    assert_eq!(sub["timeout"], "20s");
    assert_eq!(sub["dead_letter_topic"], "orders-dead");
    assert_eq!(sub["max_delivery_attempts"], 5);
    assert_eq!(sub["message_retention"], "86400s");
    assert_eq!(sub["filter"]["type"], "order.created");
    assert_eq!(sub["retry_policy"]["preset"], "pubsub");
    assert_eq!(sub["retry_policy"]["backoff"]["max_backoff"], "60s");
    // Pub/Sub slows failing push subscriptions down; so does the import.
    assert_eq!(sub["push_backoff"], true);
    assert!(out.contains("push backoff on"), "{out}");
}

#[test]
fn policy_presets_lists_every_preset_and_explain_uses_one() {
    let out = ok(command("http://127.0.0.1:9")
        .args(["policy", "presets"])
        .output()
        .unwrap());
    for name in [
        "appengine",
        "cloud-tasks",
        "pubsub",
        "eventarc",
        "adobe-io",
        "standard-webhooks",
        "eventbridge",
    ] {
        assert!(out.contains(name), "{out}");
    }
    let out = ok(command("http://127.0.0.1:9")
        .args(["policy", "explain", "--preset", "standard-webhooks"])
        .output()
        .unwrap());
    assert!(
        out.contains("no more retries: retry limit 9 reached"),
        "{out}"
    );
    assert!(out.contains("2h 35m 5s"), "{out}");
    assert!(
        out.contains("push backoff off: every retry starts at the time shown"),
        "{out}"
    );
}

#[test]
fn the_example_config_applies_and_is_then_unchanged() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/redrive.toml");
    let example = example.to_string_lossy().into_owned();
    let server = start_server(&["--config", &example]);
    assert_eq!(server.names("topics"), ["emails", "orders", "orders-dead"]);
    let webhook = server.json(&["subscriptions", "get", "orders-webhook"]);
    assert_eq!(webhook["max_concurrency"], 8);
    assert_eq!(webhook["retry_policy"]["retry_limit"], 8);
    assert_eq!(webhook["filter"]["type"], "order.*");
    let out = ok(server.run(&["apply", "-f", &example]));
    assert!(out.contains("0 created, 0 changed, 6 unchanged"), "{out}");
}

#[test]
fn subscriptions_create_takes_a_preset_a_rate_and_the_wire_format() {
    let server = start_server(&[]);
    ok(server.run(&["topics", "create", "orders"]));
    let created = server.json(&[
        "subscriptions",
        "create",
        "hook",
        "--topic",
        "orders",
        "--endpoint",
        "http://127.0.0.1:9/hook",
        "--preset",
        "adobe-io",
        "--retry-policy",
        r#"{"age_limit": "2h"}"#,
        "--rate",
        "5/s",
        "--bucket-size",
        "3",
        "--payload-format",
        "pubsub-push",
        "--headers-profile",
        "appengine",
    ]);
    assert_eq!(created["retry_policy"]["preset"], "adobe-io");
    assert_eq!(created["retry_policy"]["age_limit"], "7200s");
    assert_eq!(created["timeout"], "10s");
    assert_eq!(created["rate"], "5/s");
    assert_eq!(created["bucket_size"], 3);
    assert_eq!(created["payload_format"], "pubsub-push");
    assert_eq!(created["headers_profile"], "appengine");
    assert_eq!(created["push_backoff"], false);
    // The pubsub preset brings push backoff; --push-backoff decides.
    let base = [
        "subscriptions",
        "create",
        "",
        "--topic",
        "orders",
        "--endpoint",
        "http://127.0.0.1:9/hook",
        "--preset",
        "pubsub",
    ];
    let with = |name: &str, extra: &[&str]| {
        let mut args = base.to_vec();
        args[2] = name;
        args.extend_from_slice(extra);
        server.json(&args)
    };
    assert_eq!(with("pubsub", &[])["push_backoff"], true);
    assert_eq!(
        with("exact", &["--push-backoff", "off"])["push_backoff"],
        false
    );
}

/// Endpoints the test servers refuse: they allow only 127.0.0.0/8.
const FORBIDDEN_ENDPOINTS: [&str; 5] = [
    "http://10.0.0.1/hook",
    "http://169.254.169.254/latest/meta-data",
    "http://0.0.0.0:8080/hook",
    "http://[::1]:9/hook",
    "http://[64:ff9b::a9fe:a9fe]/hook",
];

fn config_with_endpoint(endpoint: &str) -> String {
    format!(
        "[[topics]]\nname = \"orders\"\n\n[[subscriptions]]\nname = \"orders-hook\"\n\
         topic = \"orders\"\nendpoint = \"{endpoint}\"\n"
    )
}

#[test]
fn serve_config_apply_and_both_importers_refuse_forbidden_endpoints() {
    let server = start_server(&[]);
    for endpoint in FORBIDDEN_ENDPOINTS {
        let config = server.write("forbidden.toml", &config_with_endpoint(endpoint));
        let Err(log) = try_start_server(&["--config", &config]) else {
            panic!("the server started with {endpoint}");
        };
        assert!(
            log.contains("subscription \"orders-hook\": endpoint: "),
            "{endpoint}: {log}"
        );
        assert!(log.contains("--allow-endpoint-networks"), "{log}");

        let message = failed(server.run(&["apply", "-f", &config]));
        assert!(
            message.contains("line 4: subscription \"orders-hook\": endpoint: "),
            "{endpoint}: {message}"
        );

        let pubsub = server.write(
            "pubsub.json",
            &serde_json::json!({
                "name": "projects/shop/subscriptions/orders-push",
                "topic": "projects/shop/topics/orders",
                "pushConfig": {"pushEndpoint": endpoint},
            })
            .to_string(),
        );
        let message = failed(server.run(&["import", "pubsub", &pubsub]));
        assert!(
            message.contains("subscription \"orders-push\": endpoint: "),
            "{endpoint}: {message}"
        );

        let base = endpoint.trim_end_matches("/hook").trim_end_matches('/');
        let message = failed(server.run(&[
            "import",
            "appengine",
            &path("queue.yaml"),
            "--endpoint-base",
            base,
        ]));
        assert!(message.contains("endpoint: "), "{endpoint}: {message}");
        assert!(message.contains("--allow-endpoint-networks"), "{message}");
    }
    assert!(server.names("subscriptions").is_empty());
    assert!(server.names("topics").is_empty());
}

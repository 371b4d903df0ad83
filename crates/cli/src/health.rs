//! Client commands of endpoint health: pause, resume and enable.

use serde_json::Value;

use crate::client::{Client, segment};

/// What a health command does to a subscription.
#[derive(Clone, Copy, Debug)]
pub enum Action {
    Pause,
    Resume,
    Enable,
}

impl Action {
    fn route(self) -> &'static str {
        match self {
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Enable => "enable",
        }
    }
}

/// Posts the action and prints the subscription's health in one line on
/// stderr, the subscription on stdout.
pub async fn run(client: &Client, action: Action, name: &str) -> anyhow::Result<()> {
    let path = format!("/v1/subscriptions/{}/{}", segment(name), action.route());
    let subscription = client.post(&path, None).await?;
    let health = subscription["health"].as_str().unwrap_or("unknown");
    let paused = if subscription["paused"] == Value::Bool(true) {
        ", paused"
    } else {
        ""
    };
    eprintln!("{name}: {health}{paused}");
    crate::output::print(&subscription, crate::output::View::Subscription)
}

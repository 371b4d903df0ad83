//! The bench's topic and subscription, made (and, where they would outlive
//! the run, removed) through the server's API like any client would.

use std::net::SocketAddr;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use super::progress;

/// The `Authorization` header every bench request carries.
pub fn auth_headers(token: Option<&str>) -> anyhow::Result<reqwest::header::HeaderMap> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = token {
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {token}")
                .parse()
                .context("the token cannot be sent in a header")?,
        );
    }
    Ok(headers)
}

/// A topic and one subscription pushing to the sink, named after the run.
pub struct BenchTopic {
    admin: reqwest::Client,
    base: String,
    pub topic: String,
    subscription: String,
}

impl BenchTopic {
    pub async fn create(
        base: &str,
        token: Option<&str>,
        run_id: &str,
        sink: SocketAddr,
        endpoint_concurrency: u32,
    ) -> anyhow::Result<BenchTopic> {
        BenchTopic::create_with(
            base,
            token,
            &format!("bench-{run_id}"),
            json!({
                "endpoint": format!("http://{sink}/push"),
                "max_concurrency": endpoint_concurrency,
            }),
        )
        .await
    }

    /// A topic and one subscription, both called `name`; `subscription`
    /// is the subscription's other fields (its endpoint, retry policy …).
    pub async fn create_with(
        base: &str,
        token: Option<&str>,
        name: &str,
        subscription: Value,
    ) -> anyhow::Result<BenchTopic> {
        let Value::Object(mut fields) = subscription else {
            bail!("the bench subscription's fields are not a JSON object");
        };
        fields.insert("name".to_owned(), json!(name));
        fields.insert("topic".to_owned(), json!(name));
        let admin = reqwest::Client::builder()
            .no_proxy()
            .default_headers(auth_headers(token)?)
            .build()
            .context("cannot build the HTTP client")?;
        admin_call(
            &admin,
            reqwest::Method::POST,
            &format!("{base}/v1/topics"),
            Some(json!({"name": name})),
        )
        .await
        .context("cannot create the bench topic")?;
        admin_call(
            &admin,
            reqwest::Method::POST,
            &format!("{base}/v1/subscriptions"),
            Some(Value::Object(fields)),
        )
        .await
        .context("cannot create the bench subscription")?;
        Ok(BenchTopic {
            admin,
            base: base.to_owned(),
            topic: name.to_owned(),
            subscription: name.to_owned(),
        })
    }

    /// Sends `method` to the subscription's URL followed by `suffix`
    /// (`/pause`, `/resume`; nothing with a merge patch).
    pub async fn subscription_call(
        &self,
        method: reqwest::Method,
        suffix: &str,
        body: Option<Value>,
    ) -> anyhow::Result<()> {
        let url = format!(
            "{}/v1/subscriptions/{}{suffix}",
            self.base, self.subscription
        );
        admin_call(&self.admin, method, &url, body).await
    }

    /// Removes the subscription and the topic, so an external server or a
    /// shared database is left as it was (a leftover subscription would
    /// take dispatcher slots in later runs); a failure is only noted.
    pub async fn remove(self) {
        for path in [
            format!("/v1/subscriptions/{}", self.subscription),
            format!("/v1/topics/{}", self.topic),
        ] {
            let url = format!("{}{path}", self.base);
            if let Err(err) = admin_call(&self.admin, reqwest::Method::DELETE, &url, None).await {
                progress(format_args!("bench: cannot clean up {path}: {err:#}"));
            }
        }
    }
}

async fn admin_call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<Value>,
) -> anyhow::Result<()> {
    let mut request = client.request(method.clone(), url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        bail!("{method} {url} answered {status}: {}", text.trim());
    }
    Ok(())
}

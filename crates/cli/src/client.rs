//! A small client for the HTTP API, used by the CLI's commands.

use anyhow::{Context, anyhow};
use reqwest::{Method, StatusCode};
use serde_json::Value;

pub struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    pub fn new(server: &str, token: Option<&str>) -> anyhow::Result<Client> {
        redrive_server::dispatcher::push::install_crypto_provider();
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(token) = token {
            let mut value: reqwest::header::HeaderValue = format!("Bearer {}", token.trim())
                .parse()
                .context("the token holds characters a header can't carry")?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let http = reqwest::Client::builder()
            .no_proxy()
            .default_headers(headers)
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Client {
            base: base_url(server)?,
            http,
        })
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        self.send(Method::POST, path, body).await
    }

    pub async fn delete(&self, path: &str) -> anyhow::Result<Value> {
        self.send(Method::DELETE, path, None).await
    }

    /// Sends a JSON body with a content type of the caller's choosing.
    pub async fn send_with_type(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Value,
    ) -> anyhow::Result<Value> {
        let request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body.to_string());
        self.exchange(method, path, request).await
    }

    /// Sends a request; an API error becomes one clear line.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        self.exchange(method, path, request).await
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<Value> {
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach redrive at {}", self.base))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .with_context(|| format!("{method} {path}: the answer broke off"))?;
        if status == StatusCode::NO_CONTENT || text.is_empty() {
            return if status.is_success() {
                Ok(Value::Null)
            } else {
                Err(anyhow!("{method} {path}: {status}"))
            };
        }
        let value: Value = serde_json::from_str(&text)
            .with_context(|| format!("{method} {path}: the answer is not JSON ({status})"))?;
        if status.is_success() {
            return Ok(value);
        }
        let code = value["error"]["code"].as_str().unwrap_or("error");
        let message = value["error"]["message"].as_str().unwrap_or(&text);
        let hint = if status == StatusCode::UNAUTHORIZED {
            "; pass --token or set REDRIVE_TOKEN"
        } else {
            ""
        };
        Err(anyhow!(
            "{message} ({code}, HTTP {}){hint}",
            status.as_u16()
        ))
    }
}

/// The server's URL as given, with `http://` assumed when the scheme is
/// left out (`127.0.0.1:8080`, `localhost:8080`).
fn base_url(server: &str) -> anyhow::Result<String> {
    let server = server.trim().trim_end_matches('/');
    let url = if server.contains("://") {
        server.to_owned()
    } else {
        format!("http://{server}")
    };
    match reqwest::Url::parse(&url) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.has_host() => Ok(url),
        Ok(parsed) => Err(anyhow!(
            "--server {server:?}: use an http:// or https:// URL, not {}://",
            parsed.scheme()
        )),
        Err(err) => Err(anyhow!(
            "--server {server:?} is not a URL ({err}); e.g. http://127.0.0.1:8080"
        )),
    }
}

/// Escapes one path segment (names are restricted, ids are not).
pub fn segment(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[cfg(test)]
mod tests {
    use super::base_url;

    #[test]
    fn a_server_without_scheme_is_taken_as_http() {
        assert_eq!(base_url("127.0.0.1:8080").unwrap(), "http://127.0.0.1:8080");
        assert_eq!(
            base_url("localhost:8080/").unwrap(),
            "http://localhost:8080"
        );
        assert_eq!(
            base_url("https://redrive.example/").unwrap(),
            "https://redrive.example"
        );
        let err = base_url("ftp://host").unwrap_err().to_string();
        assert!(err.contains("http:// or https://"), "{err}");
        let err = base_url("127.0.0.1:99999").unwrap_err().to_string();
        assert!(err.contains("is not a URL"), "{err}");
    }
}

//! A small operator-API client: bearer auth, JSON in and out, problem+json turned into one
//! readable line.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::Global;

pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
    root: String,
}

impl Client {
    pub fn new(g: &Global) -> Result<Client, String> {
        let token = match &g.admin_token {
            Some(t) => t.clone(),
            None => std::fs::read_to_string("tidings-data/admin-token")
                .map(|t| t.trim().to_string())
                .map_err(|_| {
                    "no admin token: set TIDINGS_ADMIN_TOKEN or --admin-token (or run where ./tidings-data/admin-token exists)"
                        .to_string()
                })?,
        };
        let base = format!("{}/admin/v1", g.url.trim_end_matches('/'));
        let http = reqwest::Client::builder()
            .user_agent(concat!("tidings-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Client {
            http,
            base,
            token,
            root: g.url.trim_end_matches('/').to_string(),
        })
    }

    /// A `tidings-client` publisher for the same server and token.
    pub fn publisher(&self) -> Result<tidings_client::Publisher, String> {
        tidings_client::Publisher::new(vec![self.root.clone()], self.token.clone())
            .map_err(|e| e.to_string())
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, String> {
        let url = format!("{}{}", self.base, path);
        let mut req = self
            .http
            .request(method.clone(), &url)
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(b);
        }
        let res = req
            .send()
            .await
            .map_err(|e| format!("cannot reach {url}: {e}"))?;
        let status = res.status();
        let text = res
            .text()
            .await
            .map_err(|e| format!("reading the answer from {url}: {e}"))?;
        if status.is_success() {
            if text.is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_str(&text)
                .map_err(|e| format!("the server answered invalid JSON: {e}"));
        }
        Err(describe_error(status, &text))
    }

    pub async fn get(&self, path: &str) -> Result<Value, String> {
        self.send(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, String> {
        self.send(Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Result<Value, String> {
        self.send(Method::PUT, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: &Value) -> Result<Value, String> {
        self.send(Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Result<Value, String> {
        self.send(Method::DELETE, path, None).await
    }

    /// Every item of a paginated list, following `next_cursor`.
    pub async fn get_all(&self, path: &str) -> Result<Vec<Value>, String> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let sep = if path.contains('?') { '&' } else { '?' };
            let p = match &cursor {
                Some(c) => format!("{path}{sep}limit=1000&cursor={c}"),
                None => format!("{path}{sep}limit=1000"),
            };
            let page = self.get(&p).await?;
            if let Some(arr) = page["items"].as_array() {
                items.extend(arr.iter().cloned());
            }
            match page["next_cursor"].as_str() {
                Some(c) if !c.is_empty() => cursor = Some(c.to_string()),
                _ => return Ok(items),
            }
        }
    }
}

/// "409 Conflict: team T1 exists (id: …)" from a problem+json, or the raw text.
fn describe_error(status: StatusCode, text: &str) -> String {
    let head = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("error")
    );
    match serde_json::from_str::<Value>(text) {
        Ok(v) if v["detail"].is_string() => {
            format!("{head}: {}", v["detail"].as_str().unwrap_or_default())
        }
        _ if text.trim().is_empty() => head,
        _ => format!(
            "{head}: {}",
            text.trim().chars().take(300).collect::<String>()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_become_one_line() {
        let e = describe_error(
            StatusCode::CONFLICT,
            r#"{"type":"urn:tidings:problem:conflict","title":"Conflict","status":409,"detail":"team T1 exists","errors":[]}"#,
        );
        assert_eq!(e, "409 Conflict: team T1 exists");
        assert_eq!(
            describe_error(StatusCode::BAD_GATEWAY, ""),
            "502 Bad Gateway"
        );
    }
}

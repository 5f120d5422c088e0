//! [`Publisher`]: one HTTP exchange with Tidings' publish endpoints, failing over between
//! nodes. A node that does not answer, or answers 5xx/408/429, is skipped for the next one
//! (in order, starting from the last that worked); a 4xx is the answer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::PublishError;

/// An accepted event (`202` from `POST /events`, or one item of a batch).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Published {
    pub event_id: String,
    pub deliveries: u64,
    #[serde(default)]
    pub duplicate: bool,
}

/// The outcome of one event of a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum ItemResult {
    Published(Published),
    /// Refused on its own (the problem's status, code and detail).
    Refused(PublishError),
}

/// Publishes over HTTP to one or several Tidings nodes (base URLs like
/// `http://127.0.0.1:3000`), with an admin or publisher token.
pub struct Publisher {
    http: reqwest::Client,
    upstreams: Vec<String>,
    token: String,
    /// The upstream that answered last.
    current: AtomicUsize,
}

impl Publisher {
    pub fn new(upstreams: Vec<String>, token: String) -> Result<Publisher, PublishError> {
        if upstreams.is_empty() {
            return Err(PublishError::Protocol("no upstream URL given".into()));
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("tidings-client/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| PublishError::Protocol(format!("cannot build the HTTP client: {e}")))?;
        Ok(Publisher {
            http,
            upstreams: upstreams
                .into_iter()
                .map(|u| u.trim_end_matches('/').to_string())
                .collect(),
            token,
            current: AtomicUsize::new(0),
        })
    }

    /// The upstream base URLs, in failover order.
    pub fn upstreams(&self) -> &[String] {
        &self.upstreams
    }

    /// `POST /admin/v1/events`.
    pub async fn publish(&self, body: &Value) -> Result<Published, PublishError> {
        let v = self.post("/admin/v1/events", body).await?;
        serde_json::from_value(v).map_err(|e| PublishError::Protocol(e.to_string()))
    }

    /// `POST /admin/v1/events/batch` (1 to 1000 bodies); one result per body, in order.
    pub async fn publish_batch(&self, bodies: &[Value]) -> Result<Vec<ItemResult>, PublishError> {
        let v = self
            .post("/admin/v1/events/batch", &json!({ "events": bodies }))
            .await?;
        let results = v["results"]
            .as_array()
            .filter(|r| r.len() == bodies.len())
            .ok_or_else(|| PublishError::Protocol("the batch answer has no results".into()))?;
        Ok(results
            .iter()
            .map(|r| match r.get("error") {
                Some(p) => {
                    ItemResult::Refused(refusal(p["status"].as_u64().unwrap_or(400) as u16, p))
                }
                None => match serde_json::from_value::<Published>(r.clone()) {
                    Ok(p) => ItemResult::Published(p),
                    Err(e) => ItemResult::Refused(PublishError::Protocol(e.to_string())),
                },
            })
            .collect())
    }

    /// Sends to the current upstream, then each other one in turn while they are
    /// unavailable; the last unavailability when none answers.
    async fn post(&self, path: &str, body: &Value) -> Result<Value, PublishError> {
        let n = self.upstreams.len();
        let start = self.current.load(Ordering::Relaxed) % n;
        let mut last = PublishError::Unavailable("no upstream".into());
        for k in 0..n {
            let i = (start + k) % n;
            match self.post_to(&self.upstreams[i], path, body).await {
                Err(e @ PublishError::Unavailable(_)) => {
                    tracing::debug!(upstream = %self.upstreams[i], error = %e, "upstream unavailable");
                    last = e;
                }
                other => {
                    self.current.store(i, Ordering::Relaxed);
                    return other;
                }
            }
        }
        self.current.store((start + 1) % n, Ordering::Relaxed);
        Err(last)
    }

    async fn post_to(&self, base: &str, path: &str, body: &Value) -> Result<Value, PublishError> {
        let url = format!("{base}{path}");
        let res = self
            .http
            .post(&url)
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .map_err(|e| PublishError::Unavailable(format!("{url}: {e}")))?;
        let status = res.status().as_u16();
        let text = res
            .text()
            .await
            .map_err(|e| PublishError::Unavailable(format!("{url}: reading the answer: {e}")))?;
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        match status {
            200..=299 => {
                if v.is_null() {
                    Err(PublishError::Protocol(format!(
                        "{url} answered {status} without JSON"
                    )))
                } else {
                    Ok(v)
                }
            }
            408 | 429 | 500..=599 => Err(PublishError::Unavailable(format!(
                "{url} answered {status}: {}",
                v["detail"].as_str().unwrap_or(text.trim())
            ))),
            _ => Err(refusal(status, &v)),
        }
    }
}

/// A problem (`{"type": "urn:tidings:problem:<code>", "detail"}`) as a refusal.
fn refusal(status: u16, problem: &Value) -> PublishError {
    let code = problem["type"]
        .as_str()
        .and_then(|t| t.rsplit(':').next())
        .unwrap_or("refused")
        .to_string();
    let mut detail = problem["detail"].as_str().unwrap_or("refused").to_string();
    if let Some(f) = problem["errors"][0]["field"].as_str() {
        if !detail.contains(f) {
            detail = format!("{f}: {detail}");
        }
    }
    PublishError::Refused {
        status,
        code,
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_become_typed_refusals() {
        let p = json!({"type": "urn:tidings:problem:event_too_old", "status": 422,
                       "detail": "is older than the maximum event age",
                       "errors": [{"field": "event_time", "message": "…"}]});
        assert_eq!(
            refusal(422, &p),
            PublishError::Refused {
                status: 422,
                code: "event_too_old".into(),
                detail: "event_time: is older than the maximum event age".into()
            }
        );
        assert!(!refusal(401, &Value::Null).is_retryable());
        assert!(PublishError::Unavailable("x".into()).is_retryable());
    }

    #[test]
    fn a_publisher_needs_an_upstream() {
        assert!(Publisher::new(Vec::new(), "t".into()).is_err());
    }
}

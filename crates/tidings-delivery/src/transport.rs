//! The two ways a delivery reaches an app, behind one [`Transport`]: a signed HTTP POST
//! to its verified Request URL ([`HttpTransport`]), or an `events_api` envelope over one
//! of its Socket Mode connections, acked within `ack_timeout` ([`SocketTransport`]). The
//! dispatcher picks one per app and never looks inside.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tidings_core::policy::FailureReason;
use tidings_store::{App, DueDelivery};

use crate::http::{HttpSender, Signer};
use crate::socket::{SendError, SocketHub};

/// The reason of a Socket Mode envelope nobody acked in time.
pub const SOCKET_TIMEOUT: &str = "timeout";

/// One delivery's envelope and retry headers, prepared once before sending.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The `event_callback` envelope.
    pub body: Bytes,
    /// `X-Slack-Retry-Num` / `retry_attempt` (0: a first attempt).
    pub retry_num: u32,
    /// `X-Slack-Retry-Reason` / `retry_reason`: why the last attempt failed.
    pub retry_reason: String,
}

/// How one attempt went.
#[derive(Debug, Clone, PartialEq)]
pub struct Tried {
    /// The response's status, when one came (HTTP).
    pub status_code: Option<u16>,
    /// `None` on success; otherwise why it failed: one of Slack's retry reasons over
    /// HTTP, `timeout` over Socket Mode.
    pub failure: Option<&'static str>,
    pub latency: Duration,
    /// The app answered with `X-Slack-No-Retry: 1`.
    pub no_retry: bool,
    /// A `429`/`503` with `Retry-After`: the bounded delay it asks for.
    pub retry_after: Option<Duration>,
    /// The Request URL answered `410 Gone`.
    pub gone: bool,
}

/// What a send came to.
#[derive(Debug)]
pub enum Sent {
    /// An attempt was made: it counts against the retry budget.
    Attempted(Tried),
    /// Nothing was sent: the transport went away between the check and the send.
    NoTransport,
    /// The envelope cannot go over this transport (a bug: logged, the delivery fails).
    Unbuildable(String),
}

/// A way of sending one delivery to one app.
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    /// `http` or `socket`: the attempt's transport and metric label.
    fn name(&self) -> &'static str;
    /// Whether the app can be sent to on this node now (a verified Request URL; an open
    /// connection).
    fn ready(&self, app: &App) -> bool;
    /// Sends one prepared delivery.
    async fn send(&self, app: &App, row: &DueDelivery, p: Prepared) -> Sent;
}

/// Signed HTTP POSTs to the app's verified Request URL.
pub struct HttpTransport {
    pub sender: HttpSender,
}

#[async_trait]
impl Transport for HttpTransport {
    fn name(&self) -> &'static str {
        "http"
    }

    fn ready(&self, app: &App) -> bool {
        app.request_url.is_some() && app.request_url_verified
    }

    async fn send(&self, app: &App, row: &DueDelivery, p: Prepared) -> Sent {
        let Some(url) = app
            .request_url
            .as_deref()
            .filter(|_| app.request_url_verified)
        else {
            return Sent::NoTransport;
        };
        let retry = (p.retry_num > 0).then_some((p.retry_num, p.retry_reason.as_str()));
        let signer = Signer::for_app(app, &row.delivery.id);
        let r = self.sender.post(url, p.body, &signer, retry).await;
        if let Some(reason) = r.failure {
            tracing::info!(delivery = %row.delivery.id, event_id = %row.event.id, app = %app.id, reason = reason.as_str(),
                status = ?r.status_code, detail = r.detail.as_deref().unwrap_or(""), "delivery attempt failed");
        }
        Sent::Attempted(Tried {
            status_code: r.status_code,
            failure: r.failure.map(FailureReason::as_str),
            latency: r.latency,
            no_retry: r.no_retry,
            retry_after: r.retry_after,
            gone: r.gone,
        })
    }
}

/// `events_api` envelopes over the app's Socket Mode connections on this node, each with
/// a fresh `envelope_id`, failed as `timeout` when no ack comes within `ack_timeout`
/// (also when its socket closes first).
pub struct SocketTransport {
    pub hub: Arc<SocketHub>,
}

#[async_trait]
impl Transport for SocketTransport {
    fn name(&self) -> &'static str {
        "socket"
    }

    fn ready(&self, app: &App) -> bool {
        self.hub.connections(&app.id) > 0
    }

    async fn send(&self, app: &App, row: &DueDelivery, p: Prepared) -> Sent {
        let raw = match std::str::from_utf8(&p.body)
            .map_err(|e| e.to_string())
            .and_then(|s| {
                serde_json::value::RawValue::from_string(s.to_string()).map_err(|e| e.to_string())
            }) {
            Ok(r) => r,
            Err(e) => return Sent::Unbuildable(e),
        };
        let envelope_id = uuid::Uuid::new_v4().to_string();
        let frame = tidings_core::socket_mode::events_api(&envelope_id, &raw, p.retry_num);
        let start = tokio::time::Instant::now();
        let acked = match self.hub.send(&app.id, &envelope_id, frame) {
            Err(SendError::NoConnection) => return Sent::NoTransport,
            Ok(wait) => match tokio::time::timeout(self.hub.cfg.ack_timeout, wait).await {
                Ok(Ok(())) => true,
                Ok(Err(_)) => false,
                Err(_) => {
                    self.hub.forget(&envelope_id);
                    false
                }
            },
        };
        if !acked {
            tracing::info!(delivery = %row.delivery.id, event_id = %row.event.id, app = %app.id, envelope_id,
                retry_num = p.retry_num, "socket mode envelope not acked");
        }
        Sent::Attempted(Tried {
            status_code: None,
            failure: (!acked).then_some(SOCKET_TIMEOUT),
            latency: start.elapsed(),
            no_retry: false,
            retry_after: None,
            gone: false,
        })
    }
}

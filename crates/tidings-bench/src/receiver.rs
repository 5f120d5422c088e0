//! The benchmark's receiver: an HTTP server on 127.0.0.1 that answers every delivery (and
//! the url_verification handshake) and records when each event arrived relative to when it
//! was published (the publish time rides in the event's text as `b<unix micros>`). Also
//! the `backlog` scenario's endpoint that goes down after its URL is verified.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

#[derive(Default)]
pub struct Stats {
    pub received: AtomicU64,
    pub refused: AtomicU64,
    /// Publish → arrival, microseconds.
    pub latencies: Mutex<Vec<u64>>,
    pub last_arrival_us: AtomicU64,
    /// Answer 500 to first attempts (the `retries` scenario).
    pub fail_first: AtomicBool,
}

pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

impl Stats {
    /// Counts one arrival of `body` (an event callback, or a frame carrying one) now.
    pub(crate) fn record(&self, body: &[u8]) {
        let now = now_us();
        if let Some(t) = published_at(body) {
            if let Ok(mut l) = self.latencies.lock() {
                l.push(now.saturating_sub(t));
            }
        }
        self.received.fetch_add(1, Ordering::Relaxed);
        self.last_arrival_us.fetch_max(now, Ordering::Relaxed);
    }
}

/// The publish time (unix micros) in the first `"text":"b<micros>` of `body`.
pub(crate) fn published_at(body: &[u8]) -> Option<u64> {
    const MARK: &[u8] = b"\"text\":\"b";
    let i = body.windows(MARK.len()).position(|w| w == MARK)? + MARK.len();
    let digits = body[i..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&body[i..i + digits]).ok()?.parse().ok()
}

async fn handle(State(stats): State<Arc<Stats>>, headers: HeaderMap, body: Bytes) -> Response {
    if body.windows(18).any(|w| w == b"\"url_verification\"") {
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        return axum::Json(serde_json::json!({"challenge": v["challenge"]})).into_response();
    }
    if stats.fail_first.load(Ordering::Relaxed) && !headers.contains_key("x-slack-retry-num") {
        stats.refused.fetch_add(1, Ordering::Relaxed);
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    stats.record(&body);
    StatusCode::OK.into_response()
}

/// Starts a receiver; returns its base URL (any path is accepted) and its stats.
///
/// It serves on a runtime of its own ([`apps_runtime`]): the receiver stands for the
/// apps' servers, other processes in real life, and on the harness's runtime its
/// thousands of requests a second delayed the publishers' calls, whose time is measured.
pub async fn start() -> Result<(String, Arc<Stats>), String> {
    let stats = Arc::new(Stats::default());
    let app = axum::Router::new()
        .fallback(handle)
        .with_state(stats.clone());
    let rt = apps_runtime()?;
    let (bound, addr) = tokio::sync::oneshot::channel();
    rt.spawn(async move {
        let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
            Ok(l) => l,
            Err(e) => {
                let _ = bound.send(Err(e.to_string()));
                return;
            }
        };
        let _ = bound.send(listener.local_addr().map_err(|e| e.to_string()));
        let _ = axum::serve(listener, app).await;
    });
    let addr = addr.await.map_err(|e| e.to_string())??;
    Ok((format!("http://{addr}"), stats))
}

/// The runtime the receivers serve on (started once, for the whole harness run).
fn apps_runtime() -> Result<&'static tokio::runtime::Runtime, String> {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    if let Some(rt) = RT.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .thread_name("bench-apps")
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the receiver's runtime: {e}"))?;
    // Should two callers race, the loser's runtime is shut down without blocking.
    match RT.set(rt) {
        Ok(()) => {}
        Err(extra) => extra.shutdown_background(),
    }
    RT.get()
        .ok_or_else(|| "the receiver's runtime is gone".to_string())
}

/// An endpoint that answers the `url_verification` handshake and then goes down: after
/// [`Down::take_down`] nothing listens on its port any more, so every delivery attempt is
/// refused at connect, as when an app's server is down.
pub struct Down {
    task: tokio::task::JoinHandle<()>,
    addr: std::net::SocketAddr,
    /// Deliveries that reached it before it went down (none are expected).
    pub hits: Arc<AtomicU64>,
}

/// Starts a [`Down`] endpoint, still up; returns its URL.
pub async fn start_down() -> Result<(String, Down), String> {
    let hits = Arc::new(AtomicU64::new(0));
    let counter = hits.clone();
    // `Connection: close` on every answer: the server's pooled client must not keep a
    // connection to this endpoint open past `take_down` and deliver over it.
    let app = axum::Router::new().fallback(move |body: Bytes| {
        let counter = counter.clone();
        async move {
            let close = [(axum::http::header::CONNECTION, "close")];
            if body.windows(18).any(|w| w == b"\"url_verification\"") {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                return (
                    close,
                    axum::Json(serde_json::json!({"challenge": v["challenge"]})),
                )
                    .into_response();
            }
            counter.fetch_add(1, Ordering::Relaxed);
            (close, StatusCode::SERVICE_UNAVAILABLE).into_response()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((format!("http://{addr}/down"), Down { task, addr, hits }))
}

impl Down {
    /// Closes the listener and checks, for up to a second, that the port refuses connections.
    pub async fn take_down(&self) -> Result<(), String> {
        self.task.abort();
        for _ in 0..50 {
            if tokio::net::TcpStream::connect(self.addr).await.is_err() {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        Err(format!(
            "{} still accepts connections after going down",
            self.addr
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_publish_time_is_read_from_the_text() {
        assert_eq!(
            published_at(br#"{"event":{"text":"b1700000000123456 pad"}}"#),
            Some(1_700_000_000_123_456)
        );
        assert_eq!(published_at(br#"{"event":{"text":"hello"}}"#), None);
    }
}

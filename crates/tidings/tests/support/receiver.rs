//! A real HTTP receiver on 127.0.0.1 for delivery tests: records every request and answers
//! as a script says (status, headers, body, delay). `url_verification` is answered with the
//! challenge unless the script says otherwise.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

#[derive(Debug, Clone)]
pub struct Hit {
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Hit {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
    pub fn is_verification(&self) -> bool {
        self.json()["type"] == "url_verification"
    }
}

#[derive(Debug, Clone, Default)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub delay: Duration,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            ..Default::default()
        }
    }
    pub fn ok() -> Reply {
        Reply::status(200)
    }
    pub fn with_header(mut self, k: &str, v: &str) -> Reply {
        self.headers.push((k.into(), v.into()));
        self
    }
    pub fn after(mut self, d: Duration) -> Reply {
        self.delay = d;
        self
    }
}

/// Decides the reply to a request; the second argument counts earlier requests that
/// carried the same `event_id` (0 for the first attempt).
pub type Script = Arc<dyn Fn(&Hit, usize) -> Reply + Send + Sync>;

#[derive(Clone)]
struct Shared {
    hits: Arc<Mutex<Vec<Hit>>>,
    /// event_id → requests seen, so the script knows which attempt this is.
    seen: Arc<Mutex<HashMap<String, usize>>>,
    script: Arc<Mutex<Script>>,
}

pub struct Receiver {
    pub url: String,
    pub addr: std::net::SocketAddr,
    hits: Arc<Mutex<Vec<Hit>>>,
    script: Arc<Mutex<Script>>,
    /// Ends the server: its port closes and its keep-alive connections with it.
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<()>>,
}

async fn handle(State(s): State<Shared>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let hit = Hit {
        path: uri.path().to_string(),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_lowercase(),
                    v.to_str().unwrap_or("").to_string(),
                )
            })
            .collect(),
        body: body.to_vec(),
        at: Instant::now(),
    };
    let json = hit.json();
    let seen = match json["event_id"].as_str() {
        Some(id) => {
            let mut seen = s.seen.lock().unwrap();
            let n = seen.entry(id.to_string()).or_default();
            *n += 1;
            *n - 1
        }
        None => 0,
    };
    s.hits.lock().unwrap().push(hit.clone());
    let script = s.script.lock().unwrap().clone();
    // The handshake gets the challenge back unless the script gives its own 200 body
    // (tests of the three answer forms and of wrong answers).
    let reply = if json["type"] == "url_verification" && !json["challenge"].is_null() {
        let r = script(&hit, seen);
        if r.status != 200 || r.body.is_empty() {
            return (
                StatusCode::OK,
                axum::Json(serde_json::json!({"challenge": json["challenge"]})),
            )
                .into_response();
        }
        r
    } else {
        script(&hit, seen)
    };
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let status = StatusCode::from_u16(if reply.status == 0 { 200 } else { reply.status }).unwrap();
    let mut res = (status, reply.body).into_response();
    for (k, v) in reply.headers {
        res.headers_mut().insert(
            axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            axum::http::HeaderValue::from_str(&v).unwrap(),
        );
    }
    res
}

impl Receiver {
    /// A receiver that answers verification and 200 to everything else.
    pub async fn start() -> Receiver {
        Self::with(Arc::new(|_, _| Reply::default())).await
    }

    pub async fn with(script: Script) -> Receiver {
        Self::at("127.0.0.1:0".parse().unwrap(), script).await
    }

    /// A receiver on `addr` (a port of an earlier, stopped receiver, say).
    pub async fn at(addr: std::net::SocketAddr, script: Script) -> Receiver {
        let shared = Shared {
            hits: Arc::new(Mutex::new(Vec::new())),
            seen: Arc::default(),
            script: Arc::new(Mutex::new(script)),
        };
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Receiver {
            url: format!("http://{addr}/slack/events"),
            addr,
            hits: shared.hits,
            script: shared.script,
            stop: Some(stop),
            served: Some(served),
        }
    }

    /// Closes the port and every connection to it: from now on, connecting is refused.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(served) = self.served.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), served).await;
        }
    }

    pub fn set_script(&self, script: Script) {
        *self.script.lock().unwrap() = script;
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// Event deliveries (not verifications).
    pub fn events(&self) -> Vec<Hit> {
        self.hits()
            .into_iter()
            .filter(|h| !h.is_verification())
            .collect()
    }

    /// Waits until `pred` holds over the hits, up to `secs` seconds.
    pub async fn wait_for(&self, secs: u64, what: &str, pred: impl Fn(&[Hit]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if pred(&self.hits()) {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {secs}s waiting for {what}; got {} requests",
                    self.hits().len()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Verifies Slack's v0 signature over the exact body.
pub fn signature_ok(hit: &Hit, secret: &str) -> bool {
    use hmac::{Hmac, Mac};
    let (Some(ts), Some(sig)) = (
        hit.header("x-slack-request-timestamp"),
        hit.header("x-slack-signature"),
    ) else {
        return false;
    };
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("v0:{ts}:").as_bytes());
    mac.update(&hit.body);
    sig == format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

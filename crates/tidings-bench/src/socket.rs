//! The `socket` scenario: 1,000 Socket Mode apps with 10 connections each, what the idle
//! connections cost the server in memory, and how fast events flow over them.
//!
//! Owns the harness's Socket Mode clients: each gets a URL from `apps.connections.open`
//! with its app-level token, reads `hello`, acks every `events_api` envelope at once and
//! records its publish→arrival latency, answers pings (tungstenite does, while reading),
//! and opens a new connection after a `disconnect` frame or a close (a bounded number of
//! times).
//!
//! Shape: apps `A…` with `socket_mode` and no Request URL, installed 10 to a team, each
//! team's channel holding its 10 bots, so every event goes to 10 apps. Connections are
//! opened 64 at a time; once all are open and idle for a few seconds, the server's VmRSS
//! is read; then 1 KB events are published in batches for `duration`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

use crate::receiver::{now_us, Stats};
use crate::scenarios::{
    admin, drain, http_client, publish, teams_with, Outcome, Pace, Params, Window, MAX_OUTSTANDING,
};
use crate::server::Server;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connections opened at once.
const OPENING: usize = 64;
/// How long the open connections sit idle before the server's RSS is read.
const IDLE: Duration = Duration::from_secs(5);
/// Bound on each step of opening a connection (Web API call, upgrade, `hello`).
const STEP: Duration = Duration::from_secs(10);
/// New connections a client opens at most after its first one.
const MAX_RECONNECTS: u32 = 5;

struct Shape {
    apps: usize,
    conns_per_app: usize,
    apps_per_team: usize,
}

/// What the clients saw, beyond the arrivals in [`Stats`].
#[derive(Default)]
struct Clients {
    opened: AtomicU64,
    failed: AtomicU64,
    reconnects: AtomicU64,
    disconnects: AtomicU64,
    /// Envelopes with `retry_attempt` > 0 (the server saw an earlier attempt fail).
    retried: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl Clients {
    fn error(&self, e: String) {
        if let Ok(mut f) = self.first_error.lock() {
            f.get_or_insert(e);
        }
    }
}

/// The frame fields a client acts on (the payload is only scanned for the publish time).
#[derive(Deserialize)]
struct Frame {
    #[serde(rename = "type")]
    kind: Option<String>,
    envelope_id: Option<String>,
    #[serde(default)]
    retry_attempt: u64,
    reason: Option<String>,
}

/// A fresh connection for the app: `apps.connections.open`, the upgrade, then `hello`.
async fn open(c: &reqwest::Client, api: &str, token: &str) -> Result<Ws, String> {
    let r: Value = tokio::time::timeout(STEP, async {
        c.post(api)
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| format!("apps.connections.open: {e}"))?
            .json()
            .await
            .map_err(|e| format!("apps.connections.open: {e}"))
    })
    .await
    .map_err(|_| "apps.connections.open took over 10 s".to_string())??;
    let url = r["url"]
        .as_str()
        .filter(|_| r["ok"] == true)
        .ok_or_else(|| format!("apps.connections.open answered {r}"))?;
    // Small read buffers: the harness holds thousands of mostly idle connections.
    let cfg = WebSocketConfig::default().read_buffer_size(4096);
    let (mut ws, _) = tokio::time::timeout(
        STEP,
        tokio_tungstenite::connect_async_with_config(url, Some(cfg), true),
    )
    .await
    .map_err(|_| "the WebSocket upgrade took over 10 s".to_string())?
    .map_err(|e| format!("WebSocket upgrade: {e}"))?;
    loop {
        let msg = tokio::time::timeout(STEP, ws.next())
            .await
            .map_err(|_| "no hello within 10 s".to_string())?
            .ok_or("closed before hello")?
            .map_err(|e| format!("before hello: {e}"))?;
        if let Message::Text(t) = msg {
            let f: Frame = serde_json::from_str(&t).map_err(|e| format!("first frame: {e}"))?;
            return match f.kind.as_deref() {
                Some("hello") => Ok(ws),
                _ => Err(format!("first frame is not hello: {t}")),
            };
        }
    }
}

/// Why a connection ended.
enum End {
    Stopped,
    /// `disconnect` frame, close or error: open a new one.
    Lost,
}

/// Reads one connection until it ends: acks envelopes, records arrivals.
async fn serve(mut ws: Ws, stats: &Stats, n: &Clients, stop: &mut watch::Receiver<bool>) -> End {
    loop {
        let msg = tokio::select! {
            m = ws.next() => m,
            _ = stop.changed() => {
                let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
                return End::Stopped;
            }
        };
        let text = match msg {
            Some(Ok(Message::Text(t))) => t,
            // Pings: tungstenite queues the pong and flushes it on the next read.
            Some(Ok(
                Message::Ping(_) | Message::Pong(_) | Message::Binary(_) | Message::Frame(_),
            )) => continue,
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return End::Lost,
        };
        let Ok(f) = serde_json::from_str::<Frame>(&text) else {
            n.error(format!("unreadable frame: {text}"));
            continue;
        };
        match f.kind.as_deref() {
            Some("events_api") => {
                stats.record(text.as_bytes());
                if f.retry_attempt > 0 {
                    n.retried.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(id) = f.envelope_id {
                    let ack = json!({ "envelope_id": id }).to_string();
                    if ws.send(Message::Text(ack.into())).await.is_err() {
                        return End::Lost;
                    }
                }
            }
            Some("disconnect") => {
                n.disconnects.fetch_add(1, Ordering::Relaxed);
                if f.reason.as_deref() == Some("too_many_websockets") {
                    n.error("disconnect: too_many_websockets".into());
                }
                // Close this one before opening the next, so the app stays within its limit.
                let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
                return End::Lost;
            }
            _ => {}
        }
    }
}

/// One client connection for its whole life: opens (within the `opening` budget), serves,
/// reopens after a loss (at most `MAX_RECONNECTS` times) until `stop`.
async fn client(
    c: reqwest::Client,
    api: Arc<str>,
    token: String,
    opening: Arc<Semaphore>,
    stats: Arc<Stats>,
    n: Arc<Clients>,
    mut stop: watch::Receiver<bool>,
) {
    for round in 0..=MAX_RECONNECTS {
        if *stop.borrow() {
            return;
        }
        let opened = {
            let _permit = opening.acquire().await;
            open(&c, &api, &token).await
        };
        let ws = match opened {
            Ok(ws) => ws,
            Err(e) if round == 0 => {
                n.failed.fetch_add(1, Ordering::Relaxed);
                n.error(e);
                return;
            }
            Err(e) => {
                n.error(format!("reconnecting: {e}"));
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if round == 0 {
            n.opened.fetch_add(1, Ordering::Relaxed);
        } else {
            n.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        if let End::Stopped = serve(ws, &stats, &n, &mut stop).await {
            return;
        }
    }
}

/// Creates `apps` Socket Mode apps (16 calls at a time) and returns each app's id and
/// app-level token.
async fn create_apps(
    c: &reqwest::Client,
    url: &str,
    apps: usize,
) -> Result<Vec<(String, String)>, String> {
    let sem = Arc::new(Semaphore::new(16));
    let mut set = JoinSet::new();
    for a in 0..apps {
        let (c, url, sem) = (c.clone(), url.to_string(), sem.clone());
        set.spawn(async move {
            let _p = sem.acquire().await;
            let id = format!("A{a:06}");
            admin(&c, &url, reqwest::Method::POST, "/apps",
                json!({"id": id, "name": format!("bench socket {a}"), "socket_mode": true, "bot_events": ["message.channels"]})).await?;
            let t = admin(&c, &url, reqwest::Method::POST, &format!("/apps/{id}/tokens"),
                json!({"scopes": ["connections:write"]})).await?;
            let token = t["token"]
                .as_str()
                .ok_or_else(|| format!("no token for {id} in {t}"))?
                .to_string();
            Ok::<_, String>((id, token))
        });
    }
    let mut out = Vec::with_capacity(apps);
    while let Some(r) = set.join_next().await {
        out.push(r.map_err(|e| e.to_string())??);
    }
    out.sort();
    Ok(out)
}

pub async fn run(p: &Params) -> Result<Outcome, String> {
    let shape = Shape {
        apps: if p.quick { 100 } else { 1000 },
        conns_per_app: 10,
        apps_per_team: 10,
    };
    let total = (shape.apps * shape.conns_per_app) as u64;
    let server = Server::start(&p.bin, &[])?;
    let c = http_client()?;
    let url = server.url.as_str();
    let apps = create_apps(&c, url, shape.apps).await?;
    let teams = apps
        .chunks(shape.apps_per_team)
        .enumerate()
        .map(|(t, chunk)| (t, chunk.iter().map(|(id, _)| id.clone()).collect()))
        .collect();
    let places = teams_with(&c, url, teams).await?;

    let stats = Arc::new(Stats::default());
    let n = Arc::new(Clients::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let opening = Arc::new(Semaphore::new(OPENING));
    let api: Arc<str> = format!("{url}/api/apps.connections.open").into();
    let t_open = Instant::now();
    let mut clients = JoinSet::new();
    for (_, token) in &apps {
        for _ in 0..shape.conns_per_app {
            clients.spawn(client(
                c.clone(),
                api.clone(),
                token.clone(),
                opening.clone(),
                stats.clone(),
                n.clone(),
                stop_rx.clone(),
            ));
        }
    }
    let open_bound = Duration::from_secs(if p.quick { 120 } else { 600 });
    while n.opened.load(Ordering::Relaxed) + n.failed.load(Ordering::Relaxed) < total
        && t_open.elapsed() < open_bound
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let open_s = t_open.elapsed().as_secs_f64();
    let opened = n.opened.load(Ordering::Relaxed);
    if opened < total {
        let _ = stop_tx.send(true);
        clients.abort_all();
        let why = n
            .first_error
            .lock()
            .ok()
            .and_then(|e| e.clone())
            .unwrap_or_else(|| format!("not within {} s", open_bound.as_secs()));
        return Err(format!(
            "only {opened} of {total} Socket Mode connections opened: {why}"
        ));
    }
    tokio::time::sleep(IDLE).await;
    let idle_rss = server.rss_mb();

    let cpu0 = server.cpu_seconds();
    let t0 = Instant::now();
    let start_us = now_us();
    let window = Window {
        stats: stats.clone(),
        per_event: shape.apps_per_team as u64,
        max_outstanding: MAX_OUTSTANDING,
    };
    let events = publish(&c, url, &places, p.duration, Pace::BULK, Some(window))
        .await?
        .events;
    let publish_secs = t0.elapsed().as_secs_f64();
    let expected = events * shape.apps_per_team as u64;
    drain(&stats, expected, p.drain).await;
    let received = stats.received.load(Ordering::Relaxed);
    let cpu = server.cpu_seconds() - cpu0;
    let peak = server.peak_rss_mb();

    let _ = stop_tx.send(true);
    let closing = tokio::time::timeout(Duration::from_secs(30), async {
        while clients.join_next().await.is_some() {}
    })
    .await;
    if closing.is_err() {
        clients.abort_all();
    }

    let mut note = format!(
        "{} apps x {} connections opened in {open_s:.1} s ({:.0}/s); idle RSS {idle_rss:.1} MB; each event to {} apps",
        shape.apps,
        shape.conns_per_app,
        total as f64 / open_s.max(1e-9),
        shape.apps_per_team
    );
    if received < expected {
        note.push_str(&format!(
            "; only {received} of {expected} deliveries arrived within the drain time"
        ));
    }
    for (what, v) in [
        ("retried envelopes", &n.retried),
        ("disconnect frames", &n.disconnects),
        ("reconnects", &n.reconnects),
    ] {
        let v = v.load(Ordering::Relaxed);
        if v > 0 {
            note.push_str(&format!("; {v} {what}"));
        }
    }
    if let Some(e) = n.first_error.lock().ok().and_then(|e| e.clone()) {
        note.push_str(&format!("; first client error: {e}"));
    }
    Ok(Outcome {
        events,
        events_per_sec: events as f64 / publish_secs.max(1e-9),
        server_cpu_s: cpu,
        peak_rss_mb: peak,
        idle_rss_mb: Some(idle_rss),
        note,
        ..Outcome::arrivals("socket", &stats, start_us)
    })
}

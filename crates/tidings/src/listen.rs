//! `tidings listen`: a developer tool that holds a Socket Mode connection for an app and
//! forwards each event as a signed HTTP POST to a local app (e.g. a Bolt app on
//! 127.0.0.1:3000/slack/events), acking when it answers 2xx — so a local app gets events
//! with no public URL. It reconnects whenever Tidings asks it to (`disconnect`) or the
//! connection drops; an event the local app refused is not acked, so Tidings retries it.

use std::time::Duration;

use clap::Args;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::cli::{Client, Global};

#[derive(Args, Debug)]
pub struct ListenOpts {
    /// The app to listen for.
    #[arg(long)]
    pub app: String,
    /// Where to POST each event, e.g. http://127.0.0.1:3000/slack/events
    #[arg(long)]
    pub forward_to: String,
    /// App-level token with connections:write (one is created through the operator API
    /// when omitted).
    #[arg(long, env = "TIDINGS_APP_TOKEN", hide_env_values = true)]
    pub app_token: Option<String>,
}

pub async fn run(g: Global, o: ListenOpts) -> Result<(), String> {
    let admin = Client::new(&g)?;
    let app = admin.get(&format!("/apps/{}", o.app)).await?;
    let secret = app["signing_secret"]
        .as_str()
        .ok_or("the app has no signing secret")?
        .to_string();
    if app["socket_mode"] != true {
        return Err(format!(
            "app {} is not in Socket Mode: run `tidings apps update {} --socket-mode true` first",
            o.app, o.app
        ));
    }
    let token = match o.app_token {
        Some(t) => t,
        None => admin
            .post(
                &format!("/apps/{}/tokens", o.app),
                &json!({"scopes": ["connections:write"]}),
            )
            .await?["token"]
            .as_str()
            .ok_or("no token in the answer")?
            .to_string(),
    };
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    let api = format!("{}/api/apps.connections.open", g.url.trim_end_matches('/'));
    let mut backoff = Duration::from_millis(500);
    loop {
        match session(&http, &api, &token, &secret, &o.forward_to).await {
            Ok(()) => backoff = Duration::from_millis(500),
            Err(e) => {
                eprintln!("listen: {e}; reconnecting in {}ms", backoff.as_millis());
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// One connection, until Tidings asks for a new one (Ok) or it breaks (Err).
async fn session(
    http: &reqwest::Client,
    api: &str,
    token: &str,
    secret: &str,
    forward_to: &str,
) -> Result<(), String> {
    let open: Value = http
        .post(api)
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| format!("cannot reach Tidings: {e}"))?
        .json()
        .await
        .map_err(|e| format!("apps.connections.open answered badly: {e}"))?;
    let url = open["url"]
        .as_str()
        .ok_or_else(|| format!("apps.connections.open failed: {}", open["error"]))?;
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .map_err(|e| format!("cannot open the WebSocket: {e}"))?;
    while let Some(msg) = ws.next().await {
        let text = match msg.map_err(|e| format!("connection lost: {e}"))? {
            Message::Text(t) => t,
            Message::Ping(p) => {
                ws.send(Message::Pong(p)).await.map_err(|e| e.to_string())?;
                continue;
            }
            Message::Close(_) => return Err("closed by Tidings".into()),
            _ => continue,
        };
        let frame: Value = serde_json::from_str(&text).map_err(|e| format!("bad frame: {e}"))?;
        match frame["type"].as_str() {
            Some("hello") => println!(
                "listening: {} connection(s) for app {}",
                frame["num_connections"],
                frame["connection_info"]["app_id"].as_str().unwrap_or("?")
            ),
            Some("disconnect") => {
                println!(
                    "Tidings asked for a new connection ({})",
                    frame["reason"].as_str().unwrap_or("?")
                );
                return Ok(());
            }
            Some("events_api") => {
                let body = serde_json::to_vec(&frame["payload"]).map_err(|e| e.to_string())?;
                let retry = frame["retry_attempt"].as_u64().unwrap_or(0);
                let ok = forward(http, forward_to, secret, &body, retry).await;
                let event = &frame["payload"]["event_id"];
                if ok {
                    ws.send(Message::Text(
                        json!({"envelope_id": frame["envelope_id"]})
                            .to_string()
                            .into(),
                    ))
                    .await
                    .map_err(|e| format!("cannot ack: {e}"))?;
                    println!("{} → forwarded, acked", event.as_str().unwrap_or("?"));
                } else {
                    println!(
                        "{} → not acked (Tidings will retry)",
                        event.as_str().unwrap_or("?")
                    );
                }
            }
            _ => {}
        }
    }
    Err("connection ended".into())
}

/// POSTs the event to the local app, signed like an HTTP delivery; true on 2xx.
async fn forward(http: &reqwest::Client, url: &str, secret: &str, body: &[u8], retry: u64) -> bool {
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let mut req = http
        .post(url)
        .header("Content-Type", "application/json")
        .header("X-Slack-Request-Timestamp", ts.to_string())
        .header(
            "X-Slack-Signature",
            tidings_core::signing::sign(secret, ts, body),
        )
        .body(body.to_vec());
    if retry > 0 {
        req = req
            .header("X-Slack-Retry-Num", retry.to_string())
            .header("X-Slack-Retry-Reason", "timeout");
    }
    match req.send().await {
        Ok(r) if r.status().is_success() => true,
        Ok(r) => {
            eprintln!("the local app answered HTTP {}", r.status().as_u16());
            false
        }
        Err(e) => {
            eprintln!("cannot reach the local app at {url}: {e}");
            false
        }
    }
}

//! Socket Mode from the test side: a raw WebSocket client (tokio-tungstenite) that opens
//! connections through `apps.connections.open` and reads frames as JSON.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use super::Server;

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Socket-mode app A01 subscribed to channel messages, its bot in C01; returns its
/// app-level token.
pub async fn socket_app(s: &Server) -> String {
    s.app_in_channel(
        json!({"id": "A01", "name": "a", "socket_mode": true, "bot_events": ["message.channels"]}),
    )
    .await;
    let (_, t) = s
        .admin(
            "POST",
            "/apps/A01/tokens",
            Some(json!({"scopes": ["connections:write"]})),
        )
        .await;
    t["token"].as_str().unwrap().to_string()
}

pub async fn open_url(s: &Server, token: &str) -> String {
    let (_, r) = s.api("apps.connections.open", Some(token), &[]).await;
    assert_eq!(r["ok"], true, "{r}");
    r["url"].as_str().unwrap().to_string()
}

pub async fn connect(s: &Server, token: &str) -> (Ws, Value) {
    let url = open_url(s, token).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("websocket");
    let hello = next_json(&mut ws).await;
    assert_eq!(hello["type"], "hello", "{hello}");
    (ws, hello)
}

/// The next text frame as JSON (pings are answered by the library), within 10 s.
pub async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a frame within 10 s")
            .expect("open")
            .expect("frame");
        if let Message::Text(t) = msg {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

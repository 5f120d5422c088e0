//! Socket Mode against the real binary with a raw WebSocket client: tickets, hello,
//! envelopes and acks, redelivery of un-acked envelopes, several connections, the
//! connection limit, the refresh lifecycle, link_disabled, holds, server pings, bad
//! frames, and a server killed with connections open.

mod support;

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use support::ws::{connect, next_json, open_url, socket_app, Ws};
use support::Server;
use tokio_tungstenite::tungstenite::Message;

async fn say(s: &Server, text: &str) -> String {
    s.say(text).await
}

async fn ack(ws: &mut Ws, env: &Value) {
    ws.send(Message::Text(
        json!({"envelope_id": env["envelope_id"]})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
}

async fn wait_status(s: &Server, event_id: &str, status: &str) -> Value {
    s.wait_status(event_id, status).await
}

#[tokio::test]
async fn connections_open_needs_an_app_token_with_connections_write_and_tickets_are_single_use() {
    let s = Server::start();
    let token = socket_app(&s).await;
    let url = open_url(&s, &token).await;
    let prefix = format!("{}/link/?ticket=", s.url.replace("http://", "ws://"));
    assert!(
        url.starts_with(&prefix) && url.ends_with("&app_id=A01"),
        "{url}"
    );
    assert!(tokio_tungstenite::connect_async(url.as_str()).await.is_ok());
    assert!(
        tokio_tungstenite::connect_async(url.as_str())
            .await
            .is_err(),
        "a ticket is single-use"
    );
    let bogus = format!(
        "{}/link/?ticket=nope&app_id=A01",
        s.url.replace("http://", "ws://")
    );
    assert!(tokio_tungstenite::connect_async(bogus.as_str())
        .await
        .is_err());

    let ws = s.workspace(&[], &["chat:write"], &[]).await;
    assert_eq!(
        s.api("apps.connections.open", Some(ws.bot_token()), &[])
            .await
            .1["error"],
        "not_allowed_token_type"
    );
    let (_, auth_only) = s
        .admin(
            "POST",
            "/apps/A01/tokens",
            Some(json!({"scopes": ["authorizations:read"]})),
        )
        .await;
    let r = s
        .api(
            "apps.connections.open",
            Some(auth_only["token"].as_str().unwrap()),
            &[],
        )
        .await
        .1;
    assert_eq!(
        (r["error"].as_str(), r["needed"].as_str()),
        (Some("missing_scope"), Some("connections:write"))
    );
    assert_eq!(
        s.api("apps.connections.open", None, &[]).await.1["error"],
        "not_authed"
    );
    let r = s
        .api("apps.connections.open", None, &[("token", token.as_str())])
        .await
        .1;
    assert_eq!(r["ok"], true, "the token may come as a parameter: {r}");
}

#[tokio::test]
async fn hello_comes_first_then_envelopes_whose_ack_completes_the_delivery() {
    let s = Server::start();
    let token = socket_app(&s).await;
    let (mut ws, hello) = connect(&s, &token).await;
    assert_eq!(hello["num_connections"], 1);
    assert_eq!(hello["connection_info"]["app_id"], "A01");
    assert_eq!(hello["debug_info"]["approximate_connection_time"], 3600);
    let ev = say(&s, "over the socket").await;
    let env = next_json(&mut ws).await;
    assert_eq!(env["type"], "events_api");
    assert_eq!(env["accepts_response_payload"], false);
    assert_eq!(
        (env["retry_attempt"].as_u64(), env["retry_reason"].as_str()),
        (Some(0), Some(""))
    );
    let id = env["envelope_id"].as_str().unwrap();
    assert_eq!((id.len(), &id[14..15]), (36, "4"), "a UUID v4: {id}");
    ack(&mut ws, &env).await;
    let d = wait_status(&s, &ev, "delivered").await;
    assert_eq!(
        env["payload"], d["envelope"],
        "the payload is exactly the HTTP envelope"
    );
    assert_eq!(d["attempts"][0]["transport"], "socket");
}

#[tokio::test]
async fn an_unacked_envelope_is_redelivered_with_a_new_id_and_reason_timeout() {
    let s = Server::start_with(&[
        ("TIDINGS_SOCKET_MODE_ACK_TIMEOUT", "300ms"),
        ("TIDINGS_DELIVERY_RETRY_SCHEDULE", r#"["0s","0s","0s"]"#),
    ]);
    let token = socket_app(&s).await;
    let (mut ws, _) = connect(&s, &token).await;
    let ev = say(&s, "ack me later").await;
    let first = next_json(&mut ws).await;
    let second = next_json(&mut ws).await;
    assert_ne!(first["envelope_id"], second["envelope_id"]);
    assert_eq!(second["payload"]["event_id"], ev.as_str());
    assert_eq!(
        (
            second["retry_attempt"].as_u64(),
            second["retry_reason"].as_str()
        ),
        (Some(1), Some("timeout"))
    );
    ack(&mut ws, &first).await; // too late: ignored
    ack(&mut ws, &second).await;
    let d = wait_status(&s, &ev, "delivered").await;
    let reasons: Vec<Value> = d["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["reason"].clone())
        .collect();
    assert_eq!(reasons, vec![json!("timeout"), Value::Null]);
}

#[tokio::test]
async fn two_connections_share_the_events_and_a_closed_ones_envelopes_move_over() {
    // A long ack timeout, so the only thing that can bring an envelope back is its socket
    // closing (on a loaded machine a 3 s timeout could fire first).
    let s = Server::start_with(&[
        ("TIDINGS_DELIVERY_RETRY_SCHEDULE", r#"["0s","0s","0s"]"#),
        ("TIDINGS_SOCKET_MODE_ACK_TIMEOUT", "60s"),
    ]);
    let token = socket_app(&s).await;
    let (mut a, _) = connect(&s, &token).await;
    let (mut b, hello_b) = connect(&s, &token).await;
    assert_eq!(hello_b["num_connections"], 2);
    let e1 = say(&s, "one").await;
    let e2 = say(&s, "two").await;
    let on_a = next_json(&mut a).await;
    let on_b = next_json(&mut b).await;
    let mut ids = vec![
        on_a["payload"]["event_id"].clone(),
        on_b["payload"]["event_id"].clone(),
    ];
    ids.sort_by_key(|v| v.to_string());
    let mut want = vec![json!(e1), json!(e2)];
    want.sort_by_key(|v| v.to_string());
    assert_eq!(ids, want, "one envelope on each connection");
    ack(&mut a, &on_a).await;
    // b goes away without acking: its envelope comes again, on a.
    drop(b);
    let again = next_json(&mut a).await;
    assert_eq!(again["payload"]["event_id"], on_b["payload"]["event_id"]);
    assert_eq!(again["retry_attempt"], 1);
    ack(&mut a, &again).await;
    wait_status(&s, &e1, "delivered").await;
    wait_status(&s, &e2, "delivered").await;
}

#[tokio::test]
async fn a_connection_over_the_limit_is_told_too_many_websockets() {
    let s = Server::start_with(&[("TIDINGS_SOCKET_MODE_MAX_CONNECTIONS_PER_APP", "2")]);
    let token = socket_app(&s).await;
    let (_a, _) = connect(&s, &token).await;
    let (_b, _) = connect(&s, &token).await;
    let url = open_url(&s, &token).await;
    let (mut c, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    let frame = next_json(&mut c).await;
    assert_eq!(
        (frame["type"].as_str(), frame["reason"].as_str()),
        (Some("disconnect"), Some("too_many_websockets"))
    );
    let end = tokio::time::timeout(Duration::from_secs(5), c.next())
        .await
        .unwrap();
    assert!(
        matches!(end, None | Some(Ok(Message::Close(_))) | Some(Err(_))),
        "then closed: {end:?}"
    );
}

#[tokio::test]
async fn connections_are_warned_then_asked_to_refresh_then_closed() {
    let s = Server::start_with(&[("TIDINGS_SOCKET_MODE_CONNECTION_LIFETIME", "1s")]);
    let token = socket_app(&s).await;
    let (mut ws, hello) = connect(&s, &token).await;
    assert_eq!(hello["debug_info"]["approximate_connection_time"], 1);
    assert_eq!(next_json(&mut ws).await["reason"], "warning");
    assert_eq!(next_json(&mut ws).await["reason"], "refresh_requested");
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(m)) = ws.next().await {
            if let Message::Close(_) = m {
                break;
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the server closes the socket itself");
}

#[tokio::test]
async fn turning_socket_mode_off_sends_link_disabled() {
    let s = Server::start();
    let token = socket_app(&s).await;
    let (mut ws, _) = connect(&s, &token).await;
    assert_eq!(
        s.admin("PATCH", "/apps/A01", Some(json!({"socket_mode": false})))
            .await
            .0,
        200
    );
    let frame = next_json(&mut ws).await;
    assert_eq!(
        (frame["type"].as_str(), frame["reason"].as_str()),
        (Some("disconnect"), Some("link_disabled"))
    );
}

#[tokio::test]
async fn deliveries_wait_for_a_connection_and_the_server_pings_idle_ones() {
    let s = Server::start_with(&[("TIDINGS_SOCKET_MODE_PING_INTERVAL", "200ms")]);
    let token = socket_app(&s).await;
    let ev = say(&s, "held").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(wait_status(&s, &ev, "pending").await["status"], "pending");
    let (mut ws, _) = connect(&s, &token).await;
    let env = next_json(&mut ws).await;
    assert_eq!(env["payload"]["event_id"], ev.as_str());
    ack(&mut ws, &env).await;
    wait_status(&s, &ev, "delivered").await;
    let pinged = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(m)) = ws.next().await {
            if let Message::Ping(_) = m {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(pinged, Ok(true), "the server pings an idle connection");
}

#[tokio::test]
async fn bad_frames_are_ignored_and_the_connection_goes_on() {
    let s = Server::start();
    let token = socket_app(&s).await;
    let (mut ws, _) = connect(&s, &token).await;
    ws.send(Message::Text("not json".into())).await.unwrap();
    ws.send(Message::Binary(vec![0, 1, 2].into()))
        .await
        .unwrap();
    ws.send(Message::Text(
        r#"{"envelope_id":"00000000-0000-4000-8000-000000000000"}"#.into(),
    ))
    .await
    .unwrap();
    let ev = say(&s, "still here").await;
    let env = next_json(&mut ws).await;
    ack(&mut ws, &env).await;
    wait_status(&s, &ev, "delivered").await;
    let big = "x".repeat(2 << 20);
    let _ = ws.send(Message::Text(big.into())).await;
    let (mut other, _) = connect(&s, &token).await;
    let ev = say(&s, "the app's other connections are unaffected").await;
    let env = next_json(&mut other).await;
    ack(&mut other, &env).await;
    wait_status(&s, &ev, "delivered").await;
}

#[tokio::test]
async fn every_event_arrives_after_the_server_is_killed_with_connections_open() {
    let s = Server::start();
    let token = socket_app(&s).await;
    let (mut ws, _) = connect(&s, &token).await;
    let mut events = Vec::new();
    for i in 0..20 {
        events.push(say(&s, &format!("m{i}")).await);
    }
    // Read a few without acking, then the server dies.
    let _ = next_json(&mut ws).await;
    let s = s.restart();
    drop(ws);
    let (mut ws, _) = connect(&s, &token).await;
    let mut got = std::collections::HashSet::new();
    while got.len() < events.len() {
        let env = next_json(&mut ws).await;
        ack(&mut ws, &env).await;
        got.insert(env["payload"]["event_id"].as_str().unwrap().to_string());
    }
    for e in &events {
        wait_status(&s, e, "delivered").await;
    }
}

#[tokio::test]
async fn deliveries_held_past_the_hold_time_fail_as_connection_failed() {
    let s = Server::start_with(&[("TIDINGS_SOCKET_MODE_HOLD_TIME", "1s")]);
    socket_app(&s).await;
    let ev = say(&s, "nobody is connected").await;
    let d = wait_status(&s, &ev, "failed").await;
    assert_eq!(d["reason"], "connection_failed");
}

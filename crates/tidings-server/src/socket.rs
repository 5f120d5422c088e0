//! The Socket Mode endpoint, `GET /link/?ticket=…&app_id=…` (SLACK-WIRE.md §2): redeems
//! the single-use ticket, upgrades to a WebSocket, and runs the connection — `hello` first,
//! envelopes from the hub as single text frames, acks back to the hub, pongs to pings,
//! server pings to catch dead peers, and the refresh lifecycle (`warning`, then
//! `refresh_requested`, then close). Real clients' quirks are fine here: routing is by path
//! only (any `Host`), and no compression is negotiated.
//!
//! A connection lives only while the app-level token its ticket was issued under does:
//! a revoked token's ticket is refused, and a revoke ends its open connections
//! ([`crate::revocation`]).

use std::time::{Duration, Instant};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use tidings_core::socket_mode::{self, DisconnectReason};
use tidings_delivery::socket::{Ending, Outbound};

use crate::state::AppState;

/// Largest frame a client may send (acks are tiny).
pub const MAX_FRAME_BYTES: usize = 1 << 20;
/// Lifetime of a connection opened with `debug_reconnects=true`.
const DEBUG_LIFETIME: Duration = Duration::from_secs(360);
/// Read buffer per connection; larger frames still arrive, in several reads.
const READ_BUFFER_BYTES: usize = 4 * 1024;
/// How long after `refresh_requested` the server closes the socket itself.
const CLOSE_AFTER_REFRESH: Duration = Duration::from_secs(5);
/// A write that takes longer than this means the peer is not reading.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
const HOST: &str = "tidings";

#[derive(Deserialize)]
pub struct LinkQuery {
    ticket: Option<String>,
    app_id: Option<String>,
    debug_reconnects: Option<String>,
}

pub async fn link(
    State(s): State<AppState>,
    Query(q): Query<LinkQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    let Some(ticket) = q
        .ticket
        .as_deref()
        .and_then(|t| s.engine.hub.redeem(t, q.app_id.as_deref()))
    else {
        tracing::info!("socket mode connection refused: unknown, used or expired ticket");
        return (
            StatusCode::UNAUTHORIZED,
            "invalid, used or expired ticket; call apps.connections.open again",
        )
            .into_response();
    };
    if !crate::revocation::token_live(&s, &ticket.app_id, &ticket.token_id).await {
        tracing::info!(app = %ticket.app_id, "socket mode connection refused: its app-level token was revoked");
        return (
            StatusCode::UNAUTHORIZED,
            "the app-level token this ticket was issued under has been revoked",
        )
            .into_response();
    }
    let lifetime = if q.debug_reconnects.as_deref() == Some("true") || ticket.debug_reconnects {
        DEBUG_LIFETIME
    } else {
        s.config.socket_mode.connection_lifetime
    };
    // Acks are tiny: a small read buffer, since tungstenite keeps its whole read buffer
    // allocated per connection (the 128 KiB default made 10,000 idle connections 1.3 GB).
    ws.max_message_size(MAX_FRAME_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        .read_buffer_size(READ_BUFFER_BYTES)
        .on_upgrade(move |socket| connection(s, ticket.app_id, ticket.token_id, lifetime, socket))
}

async fn send(socket: &mut futures::stream::SplitSink<WebSocket, Message>, msg: Message) -> bool {
    matches!(
        tokio::time::timeout(WRITE_TIMEOUT, socket.send(msg)).await,
        Ok(Ok(()))
    )
}

async fn connection(
    s: AppState,
    app_id: String,
    token_id: String,
    lifetime: Duration,
    socket: WebSocket,
) {
    let (mut tx, mut rx) = socket.split();
    let app = match s.store.get_app(&app_id).await {
        Ok(Some(a)) => a,
        _ => return,
    };
    if !app.socket_mode {
        let _ = send(
            &mut tx,
            Message::Text(socket_mode::disconnect(DisconnectReason::LinkDisabled, HOST).into()),
        )
        .await;
        let _ = tx.close().await;
        return;
    }
    let Some(mut reg) = s.engine.hub.register(&app_id, &token_id) else {
        tracing::info!(app = %app_id, "socket mode connection refused: too many websockets");
        let _ = send(
            &mut tx,
            Message::Text(
                socket_mode::disconnect(DisconnectReason::TooManyWebsockets, HOST).into(),
            ),
        )
        .await;
        let _ = tx.close().await;
        return;
    };
    // Checked again now that the hub knows the connection: a revoke that committed after
    // the check before the upgrade ends it through the hub; one before, here.
    if !crate::revocation::token_live(&s, &app_id, &token_id).await {
        s.engine.hub.unregister(&app_id, reg.id);
        tracing::info!(app = %app_id, "socket mode connection refused: its app-level token was revoked");
        let _ = send(
            &mut tx,
            Message::Text(socket_mode::disconnect(DisconnectReason::LinkDisabled, HOST).into()),
        )
        .await;
        let _ = tx.close().await;
        return;
    }
    // Nodes sharing the store: the limit and `num_connections` count every node's.
    let mut num_connections = reg.num_connections;
    let shared = s.store.is_shared();
    if shared {
        let elsewhere = s
            .store
            .remote_socket_connections(&app_id)
            .await
            .unwrap_or(0);
        num_connections += elsewhere;
        if num_connections > s.config.socket_mode.max_connections_per_app as usize {
            s.engine.hub.unregister(&app_id, reg.id);
            tracing::info!(app = %app_id, elsewhere, "socket mode connection refused: too many websockets across nodes");
            let _ = send(
                &mut tx,
                Message::Text(
                    socket_mode::disconnect(DisconnectReason::TooManyWebsockets, HOST).into(),
                ),
            )
            .await;
            let _ = tx.close().await;
            return;
        }
        if let Err(e) = s
            .store
            .socket_opened(&reg.id.to_string(), &app_id, &token_id)
            .await
        {
            tracing::warn!(app = %app_id, error = %e, "cannot record where a socket mode connection is open");
        }
    }
    let started = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    let hello = socket_mode::hello(&app_id, num_connections, HOST, &started, lifetime.as_secs());
    tracing::info!(app = %app_id, connection = reg.id, connections = num_connections, "socket mode connection opened");
    if send(&mut tx, Message::Text(hello.into())).await {
        // Deliveries held for this app can go now.
        let _ = s.store.wake_app(&app_id).await;
        run(
            &s,
            &app_id,
            reg.id,
            lifetime,
            &mut tx,
            &mut rx,
            &mut reg.outbound,
            &mut reg.ending,
        )
        .await;
    }
    s.engine.hub.unregister(&app_id, reg.id);
    if shared {
        if let Err(e) = s.store.socket_closed(&reg.id.to_string()).await {
            tracing::warn!(app = %app_id, error = %e, "cannot record a socket mode connection closed");
        }
    }
    let _ = tx.close().await;
    tracing::info!(app = %app_id, connection = reg.id, "socket mode connection closed");
}

#[allow(clippy::too_many_arguments)]
async fn run(
    s: &AppState,
    app_id: &str,
    conn: u64,
    lifetime: Duration,
    tx: &mut futures::stream::SplitSink<WebSocket, Message>,
    rx: &mut futures::stream::SplitStream<WebSocket>,
    outbound: &mut tokio::sync::mpsc::Receiver<Outbound>,
    ending: &mut Ending,
) {
    let ping_every = s
        .config
        .socket_mode
        .ping_interval
        .max(Duration::from_millis(100));
    let opened = Instant::now();
    let warning_at = opened
        + lifetime
            .saturating_sub(Duration::from_secs(10))
            .max(lifetime / 2);
    let refresh_at = opened + lifetime;
    let mut warned = false;
    let mut close_at: Option<Instant> = None;
    let mut last_heard = Instant::now();
    let mut ping = tokio::time::interval(ping_every);
    ping.tick().await;
    loop {
        let next_deadline = close_at.unwrap_or(if warned { refresh_at } else { warning_at });
        tokio::select! {
            // First: once ended (token revoked), nothing queued is written any more.
            biased;
            frame = ending.ended() => {
                let _ = send(tx, Message::Text(frame.into())).await;
                return;
            }
            out = outbound.recv() => match out {
                Some(Outbound::Text(t)) => {
                    // Held across the write: a revoke waits for it to finish.
                    let Some(_writing) = ending.writing().await else {
                        continue;
                    };
                    if !send(tx, Message::Text(t.into())).await {
                        tracing::info!(app = app_id, "socket mode peer is not reading; closing");
                        return;
                    }
                }
                Some(Outbound::Close) | None => return,
            },
            frame = rx.next() => {
                last_heard = Instant::now();
                match frame {
                    Some(Ok(Message::Text(text))) => match socket_mode::ack_envelope_id(&text) {
                        Some(id) => {
                            if !s.engine.hub.ack(app_id, &id) {
                                tracing::debug!(app = app_id, envelope_id = %id, "ack for an unknown or expired envelope ignored");
                            }
                        }
                        None => tracing::info!(app = app_id, "malformed socket mode frame ignored"),
                    },
                    Some(Ok(Message::Binary(_))) => tracing::info!(app = app_id, "binary socket mode frame ignored"),
                    Some(Ok(Message::Ping(p))) => {
                        if !send(tx, Message::Pong(p)).await {
                            return;
                        }
                    }
                    Some(Ok(Message::Pong(_))) => {}
                    Some(Ok(Message::Close(_))) | None => return,
                    Some(Err(e)) => {
                        tracing::info!(app = app_id, error = %e, "socket mode connection error");
                        return;
                    }
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > ping_every * 3 {
                    tracing::info!(app = app_id, "socket mode peer stopped answering pings; closing");
                    return;
                }
                if !send(tx, Message::Ping(b"tidings".to_vec().into())).await {
                    return;
                }
            }
            _ = tokio::time::sleep_until(next_deadline.into()) => {
                if close_at.is_some() {
                    return;
                }
                let reason = if warned { DisconnectReason::RefreshRequested } else { DisconnectReason::Warning };
                if !send(tx, Message::Text(socket_mode::disconnect(reason, HOST).into())).await {
                    return;
                }
                if warned {
                    close_at = Some(Instant::now() + CLOSE_AFTER_REFRESH);
                } else {
                    s.engine.hub.going_away(app_id, conn);
                }
                warned = true;
            }
        }
    }
}

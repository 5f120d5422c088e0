//! The RTM WebSocket, `GET /rtm/websocket?ticket=…` (OAUTH-RTM-WIRE.md §B3): redeems the
//! single-use URL, upgrades, and runs the connection — `hello` first, then the inner
//! events of the app's new deliveries in the token's workspace, `pong` replies to JSON
//! pings (echoing their other fields), WebSocket pongs to WebSocket pings, server pings
//! to catch dead peers, and `goodbye` before the server closes it (its lifetime, the
//! server shutting down, its token revoked, expired or uninstalled). A refused URL or an
//! over-limit token gets an `error` frame and a close.
//!
//! A client that does not take a write within `rtm.write_timeout` is dropped: a
//! connection holds at most one batch of [`BATCH`] events beyond the socket's buffers.

use std::time::{Duration, Instant};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use tidings_core::rtm::{self, Reply, RtmError};

use super::RtmTicket;
use crate::state::AppState;

/// Largest frame a client may send (Slack disconnects past 16 kB).
const MAX_FRAME_BYTES: usize = 16 * 1024;
/// Read buffer per connection.
const READ_BUFFER_BYTES: usize = 4 * 1024;
/// Events read from the store (and held for writing) at a time.
pub const BATCH: usize = 10;
/// How often a connection re-checks its token without being told (another node may
/// have revoked it), and looks for deliveries it was not woken for.
const RECHECK: Duration = Duration::from_secs(5);

type Tx = SplitSink<WebSocket, Message>;

#[derive(Deserialize)]
pub struct RtmQuery {
    ticket: Option<String>,
}

pub async fn endpoint(
    State(s): State<AppState>,
    Query(q): Query<RtmQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    let ticket = q
        .ticket
        .as_deref()
        .map_or(Err(RtmError::UrlUnknown), |t| s.rtm.redeem(t));
    ws.max_message_size(MAX_FRAME_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        .read_buffer_size(READ_BUFFER_BYTES)
        .on_upgrade(move |socket| async move {
            match ticket {
                Ok(ticket) => connection(s, ticket, socket).await,
                Err(e) => {
                    tracing::info!(code = e.code(), "rtm connection refused: {}", e.msg());
                    refuse(socket.split().0, e, s.config.rtm.write_timeout).await;
                }
            }
        })
}

async fn send(tx: &mut Tx, msg: Message, within: Duration) -> bool {
    matches!(tokio::time::timeout(within, tx.send(msg)).await, Ok(Ok(())))
}

/// An `error` frame, then close.
async fn refuse(mut tx: Tx, e: RtmError, within: Duration) {
    let _ = send(&mut tx, Message::Text(rtm::error(e).into()), within).await;
    let _ = tokio::time::timeout(within, tx.close()).await;
}

/// Whether the token (by hash) still authenticates: not revoked, not expired, not gone.
pub async fn token_ok(s: &AppState, token_hash: &str) -> Result<bool, tidings_store::StoreError> {
    let Some(grant) = s.store.authenticate(token_hash).await? else {
        return Ok(false);
    };
    if grant.revoked {
        return Ok(false);
    }
    if let Some(at) = s.store.token_expires_at(token_hash).await? {
        if at <= crate::oauth::now() {
            return Ok(false);
        }
    }
    Ok(true)
}

async fn connection(s: AppState, ticket: RtmTicket, socket: WebSocket) {
    let within = s.config.rtm.write_timeout;
    let (mut tx, mut rx) = socket.split();
    match token_ok(&s, &ticket.token_hash).await {
        Ok(true) => {}
        Ok(false) => return refuse(tx, RtmError::TokenRevoked, within).await,
        Err(e) => {
            tracing::warn!(app = %ticket.app_id, error = %e, "cannot check an rtm token; refusing");
            return refuse(tx, RtmError::TokenRevoked, within).await;
        }
    }
    let Some(mut reg) = s.rtm.register(&ticket.app_id, &ticket.token_hash) else {
        tracing::info!(app = %ticket.app_id, "rtm connection refused: too many connections for its token");
        return refuse(tx, RtmError::TooManyConnections, within).await;
    };
    tracing::info!(app = %ticket.app_id, "rtm connection opened");
    if send(&mut tx, Message::Text(rtm::hello().into()), within).await {
        let why = run(&s, &ticket, &mut tx, &mut rx, &mut reg).await;
        tracing::info!(app = %ticket.app_id, "rtm connection closed: {why}");
        metrics::counter!("tidings_rtm_closed_total", "reason" => why).increment(1);
    }
    let _ = tokio::time::timeout(within, tx.close()).await;
}

/// Runs the open connection; returns why it ended.
async fn run(
    s: &AppState,
    ticket: &RtmTicket,
    tx: &mut Tx,
    rx: &mut SplitStream<WebSocket>,
    reg: &mut super::Registration,
) -> &'static str {
    let cfg = &s.config.rtm;
    let within = cfg.write_timeout;
    let goodbye = || Message::Text(rtm::goodbye().into());
    let ends_at = Instant::now() + cfg.connection_lifetime;
    let mut after = ticket.after_seq;
    let mut last_heard = Instant::now();
    let mut ping = tokio::time::interval(cfg.ping_interval);
    ping.tick().await;
    let mut recheck = tokio::time::interval(RECHECK);
    recheck.tick().await;
    if *reg.end.borrow_and_update() {
        let _ = send(tx, goodbye(), within).await;
        return "shutdown";
    }
    // Events between rtm.connect and now go right after hello.
    let mut read_now = true;
    loop {
        if read_now {
            read_now = false;
            match pump(s, ticket, tx, &mut after).await {
                Pumped::Ok => {}
                Pumped::SlowReader => return "slow_reader",
            }
        }
        tokio::select! {
            biased;
            _ = reg.end.changed() => {
                let _ = send(tx, goodbye(), within).await;
                return "shutdown";
            }
            _ = reg.recheck.changed() => {
                if !token_still_ok(s, ticket).await {
                    let _ = send(tx, goodbye(), within).await;
                    return "token_revoked";
                }
            }
            _ = tokio::time::sleep_until(ends_at.into()) => {
                let _ = send(tx, goodbye(), within).await;
                return "lifetime";
            }
            _ = reg.wake.changed() => read_now = true,
            _ = reg.all.changed() => read_now = true,
            frame = rx.next() => {
                last_heard = Instant::now();
                match frame {
                    Some(Ok(Message::Text(text))) => {
                        if let Reply::Send(r) = rtm::reply(&text) {
                            if !send(tx, Message::Text(r.into()), within).await {
                                return "slow_reader";
                            }
                        }
                    }
                    Some(Ok(Message::Binary(_))) => {
                        if !send(tx, Message::Text(rtm::error(RtmError::BadMessage).into()), within).await {
                            return "slow_reader";
                        }
                    }
                    Some(Ok(Message::Ping(p))) => {
                        if !send(tx, Message::Pong(p), within).await {
                            return "slow_reader";
                        }
                    }
                    Some(Ok(Message::Pong(_))) => {}
                    Some(Ok(Message::Close(_))) | None => return "client_closed",
                    Some(Err(_)) => return "client_error",
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > cfg.ping_interval * 3 {
                    return "peer_silent";
                }
                if !send(tx, Message::Ping(b"tidings".to_vec().into()), within).await {
                    return "slow_reader";
                }
            }
            _ = recheck.tick() => {
                if !token_still_ok(s, ticket).await {
                    let _ = send(tx, goodbye(), within).await;
                    return "token_revoked";
                }
                read_now = true;
            }
        }
    }
}

/// The token still authenticates; a store that does not answer keeps the connection
/// (the next re-check decides).
async fn token_still_ok(s: &AppState, ticket: &RtmTicket) -> bool {
    match token_ok(s, &ticket.token_hash).await {
        Ok(ok) => ok,
        Err(e) => {
            tracing::warn!(app = %ticket.app_id, error = %e, "cannot re-check an rtm token; keeping the connection");
            true
        }
    }
}

enum Pumped {
    Ok,
    SlowReader,
}

/// Writes the inner events of every delivery after `after`, a batch at a time.
async fn pump(s: &AppState, ticket: &RtmTicket, tx: &mut Tx, after: &mut i64) -> Pumped {
    let within = s.config.rtm.write_timeout;
    loop {
        let batch = match s
            .store
            .rtm_events_after(&ticket.app_id, &ticket.scope, *after, BATCH)
            .await
        {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(app = %ticket.app_id, error = %e, "cannot read deliveries for an rtm connection");
                return Pumped::Ok;
            }
        };
        let full = batch.len() == BATCH;
        for ev in batch {
            *after = ev.seq;
            if !send(tx, Message::Text(ev.payload.into()), within).await {
                return Pumped::SlowReader;
            }
            metrics::counter!("tidings_rtm_events_sent_total").increment(1);
        }
        if !full {
            return Pumped::Ok;
        }
    }
}

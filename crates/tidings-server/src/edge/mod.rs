//! The listener's edge: Tidings' own accept loop in front of the axum router, so that a
//! hostile client can hold neither the server's memory nor its sockets (issue 20).
//!
//! Each accepted connection is served by hyper's HTTP/1.1 server (`serve_connection` with
//! upgrades, for Socket Mode's WebSockets) and bounded by the `[server]` limits:
//! - `max_connections`: client connections open at once (a WebSocket counts until it
//!   closes); a connection over the cap is accepted and closed at once, so it never waits
//!   in the kernel's backlog. At start the process's open-files limit is raised to its
//!   hard limit and checked to hold the cap plus what deliveries' outbound sockets and
//!   the store need ([`open_files`]).
//! - `header_read_timeout`: a request head must arrive within this time of its first byte
//!   (slowloris), `idle_timeout`: a connection with no request in progress is closed
//!   ([`conn`]'s watchdog);
//! - `max_header_bytes`: hyper's read buffer, so a head larger than it is refused;
//! - `body_read_timeout`: a body that sends nothing for this long is cut with a 408, and
//!   `request_timeout`: a request not answered within it gets a 408 ([`request`]).
//!
//! Shutdown is graceful, as `axum::serve`'s was: on the signal the listener closes, each
//! connection finishes the request it is serving and closes, and [`serve`] returns once
//! they have (or after `request_timeout`).

mod conn;
pub mod open_files;
mod request;
pub mod upkeep;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Semaphore};

use crate::config::ServerConfig;

/// The limits [`serve`] applies, from `[server]`.
#[derive(Debug, Clone)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub request_timeout: Duration,
    pub idle_timeout: Duration,
    pub body_read_timeout: Duration,
    pub max_connections: usize,
    pub max_header_bytes: usize,
}

impl Limits {
    pub fn of(s: &ServerConfig) -> Limits {
        Limits {
            header_read_timeout: s.header_read_timeout,
            request_timeout: s.request_timeout,
            idle_timeout: s.idle_timeout,
            body_read_timeout: s.body_read_timeout,
            max_connections: s.max_connections as usize,
            max_header_bytes: s.max_header_bytes,
        }
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then drains (see the module
/// documentation).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let limits = Arc::new(limits);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.max_buf_size(limits.max_header_bytes).keep_alive(true);
    // Set when the shutdown signal came; each connection then finishes and closes.
    let (stop_tx, stop_rx) = watch::channel(false);
    // Every connection task holds a sender: once all are dropped, the drain is over.
    let (live_tx, mut live_rx) = mpsc::channel::<()>(1);
    metrics::gauge!("tidings_http_connections").set(0.0);
    metrics::counter!("tidings_http_connections_refused_total").increment(0);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = &mut shutdown => break,
        };
        let (stream, _peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                accept_error(e).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            // Over the cap: closed at once (dropping the stream), never queued.
            metrics::counter!("tidings_http_connections_refused_total").increment(1);
            tracing::debug!("connection refused: server.max_connections reached");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(conn::serve(
            stream,
            permit,
            router.clone(),
            http.clone(),
            limits.clone(),
            stop_rx.clone(),
            live_tx.clone(),
        ));
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(live_tx);
    let drained = tokio::time::timeout(limits.request_timeout, live_rx.recv()).await;
    if drained.is_err() {
        tracing::warn!("shutdown: connections still open after request_timeout; closing them");
    }
    Ok(())
}

/// An `accept` that failed. Running out of file descriptors (or memory) is waited out
/// briefly rather than spun on; a connection reset before it was accepted is nothing.
async fn accept_error(e: std::io::Error) {
    use std::io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted | WouldBlock
    ) {
        return;
    }
    tracing::warn!(error = %e, "cannot accept a connection");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

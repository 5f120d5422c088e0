//! The listener's edge: Tidings' own accept loop in front of the axum router, so that a
//! hostile client can hold neither the server's memory nor its sockets (issue 20).
//!
//! Each accepted connection is served by hyper's HTTP/1.1 server (`serve_connection` with
//! upgrades, for Socket Mode's WebSockets) and bounded by the `[server]` limits:
//! - `max_connections`: client connections open at once (a WebSocket counts until it
//!   closes). A connection arriving at the cap makes one idle connection (no request in
//!   progress, idle for a second or more) close, and waits up to 250 ms for a place;
//!   failing that it is closed, so it never waits in the kernel's backlog. So a flood of
//!   idle connections cannot lock out a fresh client, and busy ones are bounded by the
//!   timeouts below. At start the process's open-files limit is raised to its
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
//! they have (or after `request_timeout`, or `shutdown_grace` when shorter).

mod conn;
pub mod open_files;
mod request;
pub mod upkeep;

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
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
    /// After the shutdown signal, how long open requests get to finish.
    pub drain_limit: Duration,
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
            drain_limit: s.request_timeout.min(s.shutdown_grace),
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
    // Bumped when a connection arrives at the cap: idle connections then close.
    let (shed_tx, shed_rx) = watch::channel(0u64);
    // How many idle connections should still close to make room (one per waiting arrival).
    let owed = Arc::new(AtomicUsize::new(0));
    let waiters = Arc::new(Semaphore::new(MAX_WAITING));
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
        let _ = stream.set_nodelay(true);
        let serve = conn::Serve {
            router: router.clone(),
            http: http.clone(),
            limits: limits.clone(),
            stop: stop_rx.clone(),
            shed: shed_rx.clone(),
            owed: owed.clone(),
            live: live_tx.clone(),
        };
        if let Ok(permit) = permits.clone().try_acquire_owned() {
            tokio::spawn(serve.run(stream, permit));
            continue;
        }
        // At the cap: idle connections make room (each closes when told to shed); this
        // one waits a moment for a place, then is closed. Few wait at once.
        let Ok(waiting) = waiters.clone().try_acquire_owned() else {
            refuse(stream);
            continue;
        };
        owed.fetch_add(1, Ordering::AcqRel);
        shed_tx.send_modify(|generation| *generation += 1);
        let (permits, owed) = (permits.clone(), owed.clone());
        tokio::spawn(async move {
            let _waiting = waiting;
            let place = tokio::time::timeout(SHED_WAIT, permits.acquire_owned()).await;
            // Whoever made the room (or not), this arrival is owed nothing more.
            let _ = owed.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
            match place {
                Ok(Ok(permit)) => serve.run(stream, permit).await,
                _ => refuse(stream),
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(live_tx);
    let drained = tokio::time::timeout(limits.drain_limit, live_rx.recv()).await;
    if drained.is_err() {
        tracing::warn!("shutdown: connections still open after the grace period; closing them");
    }
    Ok(())
}

/// Connections at the cap that wait for an idle one to make room, at most; more are
/// closed at once.
const MAX_WAITING: usize = 64;
/// How long a connection at the cap waits for a place.
const SHED_WAIT: Duration = Duration::from_millis(250);

/// Closes a connection over the cap.
fn refuse(stream: tokio::net::TcpStream) {
    metrics::counter!("tidings_http_connections_refused_total").increment(1);
    tracing::debug!("connection refused: server.max_connections reached");
    drop(stream);
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

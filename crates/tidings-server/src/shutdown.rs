//! The shutdown sequence after SIGTERM/SIGINT, beside the HTTP listener's own drain
//! ([`crate::edge::serve`] stops accepting and lets open requests finish):
//!
//! 1. the delivery engine stops claiming work and lets attempts under way finish and
//!    record their outcomes until `server.shutdown_grace` after the signal; what is left
//!    is handed back at once (see [`tidings_delivery::drain`]);
//! 2. every Socket Mode connection gets `{"type":"disconnect","reason":"refresh_requested"}`
//!    (SLACK-WIRE.md §2.6), so its client opens a new one (on another node, or here after
//!    the restart), and is then closed;
//!    At the same time every RTM connection gets `{"type":"goodbye"}` and is closed;
//! 3. the store's writer is flushed (everything queued is committed) and its read pool
//!    closed.
//!
//! The caller logs the [`Report`] as one line and exits 0.

use std::time::{Duration, Instant};

use tidings_core::socket_mode::{self, DisconnectReason};
use tidings_delivery::Drained;

use crate::state::AppState;

/// How long Socket Mode connections get to write their `disconnect` and close.
const SOCKETS_CLOSE_WITHIN: Duration = Duration::from_secs(2);
const HOST: &str = "tidings";

/// What the shutdown did.
#[derive(Debug, Clone)]
pub struct Report {
    pub deliveries: Drained,
    /// Socket Mode connections told to reconnect and closed.
    pub sockets: usize,
    /// RTM connections told `goodbye` and closed.
    pub rtm: usize,
    /// Whether every socket (Socket Mode and RTM) had closed in time.
    pub sockets_closed: bool,
    /// Whether the writer's last commit succeeded.
    pub flushed: bool,
    pub took: Duration,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = &self.deliveries;
        write!(
            f,
            "shutdown complete in {} ms: {} attempts drained, {} deliveries handed back ({} unsent, {} of unknown outcome), {} outcomes unwritten, {} socket mode connections closed, {} rtm connections closed{}, store {}",
            self.took.as_millis(),
            d.finished,
            d.handed_back_unsent + d.handed_back_unknown,
            d.handed_back_unsent,
            d.handed_back_unknown,
            d.unwritten,
            self.sockets,
            self.rtm,
            if self.sockets_closed { "" } else { " (some did not close in time)" },
            if self.flushed { "flushed" } else { "NOT flushed" },
        )
    }
}

/// Runs the sequence; `signalled` is when the signal came (the grace counts from there).
pub async fn run(state: &AppState, signalled: Instant) -> Report {
    let deadline = signalled + state.config.server.shutdown_grace;
    let engine = &state.engine;
    state.replay.stop().await;
    let deliveries = engine.dispatcher.drain(deadline).await;
    let frame = socket_mode::disconnect(DisconnectReason::RefreshRequested, HOST);
    let sockets = engine.hub.end_all(&frame);
    let rtm = state.rtm.end_all();
    let sockets_closed = tokio::time::timeout(SOCKETS_CLOSE_WITHIN, async {
        engine.hub.all_closed().await;
        state.rtm.all_closed().await;
    })
    .await
    .is_ok();
    let flushed = match state.store.close().await {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(error = %e, "shutdown: the store's last commit failed");
            false
        }
    };
    Report {
        deliveries,
        sockets,
        rtm,
        sockets_closed,
        flushed,
        took: signalled.elapsed(),
    }
}

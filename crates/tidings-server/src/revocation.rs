//! Revoking an app-level token ends what it opened, on every node, before the revoke call
//! answers:
//!
//! - **This node**: the token's Socket Mode connections leave the hub's rotation at once,
//!   get `disconnect` (`link_disabled`) and close; the call waits until none is still
//!   writing an envelope ([`tidings_delivery::socket::Ended::settled`]). Tickets issued
//!   under the token are refused at connect ([`token_live`], checked by the `/link/`
//!   endpoint before the upgrade and again once the connection is registered, so a revoke
//!   racing a connect cannot miss it).
//! - **Other nodes** (PostgreSQL): the revoking transaction sends `NOTIFY tidings_revoked`;
//!   each node's [`watch`] task ends its connections for the token, and removes their rows
//!   from `socket_connections` as they close. The revoking node waits (up to
//!   [`REMOTE_WAIT`]) until no live node still lists one, so normally the call returns
//!   only once every node has stopped sending on them.
//! - **Missed signals**: the watcher also re-checks every [`RECHECK`] (and at once when
//!   its listening connection comes back) against the tokens revoked recently, so a node
//!   that missed a signal closes such connections within that bound.

use std::collections::HashSet;
use std::time::Duration;

use tidings_core::socket_mode::{self, DisconnectReason};
use tidings_store::sql::cluster::Revocation;

use crate::state::AppState;

/// How long a revoke waits for other nodes to close the token's connections.
pub const REMOTE_WAIT: Duration = Duration::from_secs(5);
/// How often a node re-checks its connections' tokens, in case a signal was missed.
pub const RECHECK: Duration = Duration::from_secs(10);
/// How far back the re-check looks for revocations: connections live at most an hour
/// (`connection_lifetime`), plus room for clocks that disagree between nodes.
const RECHECK_WINDOW_SECS: i64 = 2 * 3600;
/// How often the revoking node looks whether other nodes have closed.
const REMOTE_POLL: Duration = Duration::from_millis(25);
/// Host named in the `disconnect` frames Tidings sends.
const HOST: &str = "tidings";

fn link_disabled() -> String {
    socket_mode::disconnect(DisconnectReason::LinkDisabled, HOST)
}

/// Whether the app-level token `token_id` of `app_id` exists and is not revoked.
pub async fn token_live(s: &AppState, app_id: &str, token_id: &str) -> bool {
    match s.store.list_app_tokens(app_id).await {
        Ok(tokens) => tokens
            .iter()
            .any(|t| t.id == token_id && t.revoked_at.is_none()),
        Err(e) => {
            tracing::warn!(app = app_id, error = %e, "cannot check a socket mode token; refusing");
            false
        }
    }
}

/// Ends this node's connections opened with the token; returns once none is writing.
async fn end_here(s: &AppState, app_id: &str, token_id: &str) -> usize {
    let ended = s.engine.hub.end_token(app_id, token_id, &link_disabled());
    let n = ended.count();
    ended.settled().await;
    if n > 0 {
        tracing::info!(
            app = app_id,
            connections = n,
            "socket mode connections closed: app-level token revoked"
        );
    }
    n
}

/// The token was just revoked (committed): end its connections here and wait for the
/// other nodes to end theirs.
pub async fn app_token_revoked(s: &AppState, app_id: &str, token_id: &str) {
    end_here(s, app_id, token_id).await;
    if !s.store.is_shared() {
        return;
    }
    let deadline = tokio::time::Instant::now() + REMOTE_WAIT;
    loop {
        match s.store.remote_token_sockets(token_id).await {
            Ok(0) => return,
            Ok(n) if tokio::time::Instant::now() >= deadline => {
                tracing::warn!(
                    app = app_id,
                    connections = n,
                    "other nodes have not closed the revoked token's connections yet; they will within {}s",
                    RECHECK.as_secs()
                );
                return;
            }
            Ok(_) => tokio::time::sleep(REMOTE_POLL).await,
            Err(e) => {
                tracing::warn!(app = app_id, error = %e, "cannot check other nodes' connections after a revoke");
                return;
            }
        }
    }
}

/// Nodes sharing the database: ends local connections whose token another node revoked,
/// on its signal, and re-checks periodically for signals missed.
pub fn watch(s: AppState) {
    let Some(mut heard) = s.store.take_revocations() else {
        return;
    };
    tokio::spawn(async move {
        let mut recheck = tokio::time::interval(RECHECK);
        recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                r = heard.recv() => match r {
                    Some(Revocation::AppToken { app_id, token_id }) => {
                        end_here(&s, &app_id, &token_id).await;
                    }
                    Some(Revocation::Missed) => recheck_now(&s).await,
                    None => return,
                },
                _ = recheck.tick() => recheck_now(&s).await,
            }
        }
    });
}

/// Ends local connections whose token was revoked recently.
async fn recheck_now(s: &AppState) {
    let in_use = s.engine.hub.tokens_in_use();
    if in_use.is_empty() {
        return;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let since = now - RECHECK_WINDOW_SECS;
    let revoked: HashSet<(String, String)> = match s.store.revoked_app_tokens(since).await {
        Ok(r) => r.into_iter().collect(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot re-check revoked app-level tokens");
            return;
        }
    };
    for (app_id, token_id) in in_use {
        if revoked.contains(&(app_id.clone(), token_id.clone())) {
            end_here(s, &app_id, &token_id).await;
        }
    }
}

//! What several nodes sharing one PostgreSQL need from each other, kept in the database
//! so no other service is required:
//!
//! - **Nodes** register and heartbeat; a node is live while its heartbeat is recent.
//! - **Socket Mode placement**: which node holds which app's connections, so `hello`
//!   counts every node's connections and the per-app limit holds across nodes, and held
//!   deliveries are not expired while another node could send them.
//! - **Work signals**: a commit that makes deliveries due sends `NOTIFY tidings_work` with
//!   the app ids (PostgreSQL delivers it only if the transaction commits); every node
//!   `LISTEN`s on its own connection and wakes its dispatcher for those apps.
//! - **Directory version**: a counter bumped by every directory write, so a node drops its
//!   fan-out cache when another node changed teams, apps, installations or members.
//! - **Revocations**: revoking an app-level token sends `NOTIFY tidings_revoked` with
//!   `<app> <token>` in the revoking transaction; every node closes the Socket Mode
//!   connections that token opened. Connections are recorded with their token, so the
//!   revoking node can wait until no live node still holds one.
//!
//! On SQLite (one process) the same tables hold this node alone and no signals are sent.

use std::collections::BTreeSet;
use std::time::Duration;

use super::conn::{Conn, Dialect};
use crate::{params, StoreResult};

/// How often a node heartbeats.
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// A node whose last heartbeat is older than this is considered gone.
pub const NODE_TIMEOUT_SECS: i64 = 15;
/// Rows of nodes gone for this long are deleted.
const FORGET_AFTER_SECS: i64 = 3600;
/// The channel work signals travel on.
pub const CHANNEL: &str = "tidings_work";
/// The channel revocations travel on.
pub const REVOKED_CHANNEL: &str = "tidings_revoked";
/// NOTIFY payloads must stay under 8000 bytes.
const PAYLOAD_MAX: usize = 7000;

pub fn heartbeat(c: &Conn, node: &str, public_url: &str, now: i64) -> StoreResult<()> {
    c.execute(
        "INSERT INTO nodes (id, public_url, started_at, heartbeat_at) VALUES (?1, ?2, ?3, ?3)
         ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, public_url = excluded.public_url",
        params![node, public_url, now],
    )?;
    let gone = now - FORGET_AFTER_SECS;
    c.execute(
        "DELETE FROM socket_connections WHERE node_id IN (SELECT id FROM nodes WHERE heartbeat_at < ?1)",
        params![gone],
    )?;
    c.execute("DELETE FROM nodes WHERE heartbeat_at < ?1", params![gone])?;
    Ok(())
}

/// Where a Socket Mode connection is open, and the app-level token that opened it.
pub struct OpenSocket<'a> {
    pub node: &'a str,
    pub connection: &'a str,
    pub app: &'a str,
    pub app_token: &'a str,
}

pub fn socket_opened(c: &Conn, s: OpenSocket<'_>, now: i64) -> StoreResult<()> {
    c.execute(
        "INSERT INTO socket_connections (node_id, connection_id, app_id, opened_at, app_token_id) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (node_id, connection_id) DO NOTHING",
        params![s.node, s.connection, s.app, now, s.app_token],
    )?;
    Ok(())
}

/// Connections opened with `app_token` still held by other live nodes.
pub fn remote_token_sockets(c: &Conn, node: &str, app_token: &str, now: i64) -> StoreResult<usize> {
    c.query_one(
        "SELECT COUNT(*) FROM socket_connections s JOIN nodes n ON n.id = s.node_id
         WHERE s.app_token_id = ?1 AND s.node_id <> ?2 AND n.heartbeat_at >= ?3",
        params![app_token, node, now - NODE_TIMEOUT_SECS],
        |r| r.get(0),
    )
}

/// `(app, token)` of the app-level tokens revoked at or after `since` (Unix seconds).
pub fn revoked_app_tokens(c: &Conn, since: i64) -> StoreResult<Vec<(String, String)>> {
    c.query(
        "SELECT app_id, id FROM app_tokens WHERE revoked_at IS NOT NULL AND revoked_at >= ?1",
        params![since],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
}

/// Tells every node (on commit) that `token` of `app` is revoked; a no-op on SQLite.
pub fn notify_revoked(c: &Conn, app: &str, token: &str) -> StoreResult<()> {
    if c.dialect() == Dialect::Postgres {
        c.query_one(
            "SELECT pg_notify('tidings_revoked', ?1)::text",
            params![format!("{app} {token}")],
            |_| Ok(()),
        )?;
    }
    Ok(())
}

/// A revocation heard from the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    /// This app-level token of this app was revoked.
    AppToken { app_id: String, token_id: String },
    /// The listening connection was (re)established: revocations may have been missed,
    /// look them up.
    Missed,
}

impl Revocation {
    fn parse(payload: &str) -> Option<Revocation> {
        let (app, token) = payload.split_once(' ')?;
        (!app.is_empty() && !token.is_empty()).then(|| Revocation::AppToken {
            app_id: app.to_string(),
            token_id: token.to_string(),
        })
    }
}

pub fn socket_closed(c: &Conn, node: &str, connection: &str) -> StoreResult<()> {
    c.execute(
        "DELETE FROM socket_connections WHERE node_id = ?1 AND connection_id = ?2",
        params![node, connection],
    )?;
    Ok(())
}

/// The app's Socket Mode connections on other live nodes.
pub fn remote_sockets(c: &Conn, node: &str, app: &str, now: i64) -> StoreResult<usize> {
    c.query_one(
        "SELECT COUNT(*) FROM socket_connections s JOIN nodes n ON n.id = s.node_id
         WHERE s.app_id = ?1 AND s.node_id <> ?2 AND n.heartbeat_at >= ?3",
        params![app, node, now - NODE_TIMEOUT_SECS],
        |r| r.get(0),
    )
}

/// The directory's version (bumped by every directory write on PostgreSQL).
pub fn directory_version(c: &Conn) -> StoreResult<i64> {
    let v: Option<String> = c.query_opt(
        "SELECT value FROM settings WHERE key = 'directory_version'",
        params![],
        |r| r.get(0),
    )?;
    Ok(v.and_then(|v| v.parse().ok()).unwrap_or(0))
}

/// Tells other nodes their fan-out caches are stale (PostgreSQL only; a no-op on SQLite,
/// where the one writer keeps its cache exact).
pub fn bump_directory(c: &Conn) -> StoreResult<()> {
    if c.dialect() == Dialect::Postgres {
        c.execute(
            "UPDATE settings SET value = CAST(CAST(value AS BIGINT) + 1 AS TEXT) WHERE key = 'directory_version'",
            params![],
        )?;
    }
    Ok(())
}

/// Tells every node (on commit) that these apps have due work; a no-op on SQLite.
pub fn notify_work(c: &Conn, apps: &BTreeSet<String>) -> StoreResult<()> {
    if apps.is_empty() || c.dialect() != Dialect::Postgres {
        return Ok(());
    }
    for payload in payloads(apps) {
        c.query_one(
            "SELECT pg_notify('tidings_work', ?1)::text",
            params![payload],
            |_| Ok(()),
        )?;
    }
    Ok(())
}

/// App ids joined by spaces, in payloads under PostgreSQL's limit.
fn payloads(apps: &BTreeSet<String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for app in apps {
        if !cur.is_empty() && cur.len() + app.len() + 1 > PAYLOAD_MAX {
            out.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(app);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// A work signal: these apps have due deliveries; an empty list means "look at every app"
/// (sent after the listening connection was lost, since signals may have been missed).
pub type Signal = Vec<String>;

/// Where [`listen`] forwards what it hears.
pub struct Listeners {
    pub work: tokio::sync::mpsc::UnboundedSender<Signal>,
    /// Nobody may be taking these (a store used without a server): sends may fail.
    pub revocations: tokio::sync::mpsc::UnboundedSender<Revocation>,
}

/// Listens for work signals and revocations on a dedicated connection, reconnecting when
/// it is lost, and forwards them. Runs on its own thread until the work receiver is
/// dropped.
pub fn listen(opener: super::postgres::Opener, to: Listeners) {
    let tx = to.work.clone();
    let spawned = std::thread::Builder::new()
        .name("tidings-pg-listen".into())
        .spawn(move || {
            let mut backoff = Duration::from_millis(200);
            loop {
                if tx.is_closed() {
                    return;
                }
                match opener.client() {
                    Ok(mut client) => {
                        let listen = format!("LISTEN {CHANNEL}; LISTEN {REVOKED_CHANNEL}");
                        if let Err(e) = client.batch_execute(&listen) {
                            tracing::warn!(error = %e, "cannot LISTEN for work signals");
                        } else {
                            backoff = Duration::from_millis(200);
                            // Anything may have been missed while not listening.
                            let _ = to.revocations.send(Revocation::Missed);
                            if tx.send(Vec::new()).is_err() {
                                return;
                            }
                            if !forward(&mut client, &to) {
                                return;
                            }
                            tracing::warn!("work signal connection lost; reconnecting");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot connect to listen for work signals")
                    }
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the work signal listener");
    }
}

/// Forwards notifications until the connection fails (true) or nobody listens (false).
fn forward(client: &mut postgres::Client, to: &Listeners) -> bool {
    use postgres::fallible_iterator::FallibleIterator;
    let tx = &to.work;
    loop {
        {
            let mut notes = client.notifications();
            let mut iter = notes.timeout_iter(Duration::from_secs(1));
            loop {
                match iter.next() {
                    Ok(Some(n)) if n.channel() == REVOKED_CHANNEL => {
                        if let Some(r) = Revocation::parse(n.payload()) {
                            let _ = to.revocations.send(r);
                        }
                    }
                    Ok(Some(n)) => {
                        let apps: Vec<String> = n
                            .payload()
                            .split(' ')
                            .filter(|a| !a.is_empty())
                            .map(str::to_string)
                            .collect();
                        if !apps.is_empty() && tx.send(apps).is_err() {
                            return false;
                        }
                    }
                    Ok(None) => break,
                    Err(_) => return true,
                }
            }
        }
        if tx.is_closed() {
            return false;
        }
        if client.is_closed() || client.simple_query("SELECT 1").is_err() {
            return true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revocation_payloads_name_an_app_and_a_token() {
        assert_eq!(
            Revocation::parse("A01 At02"),
            Some(Revocation::AppToken {
                app_id: "A01".into(),
                token_id: "At02".into()
            })
        );
        for bad in ["", "A01", "A01 ", " At02"] {
            assert_eq!(Revocation::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn payloads_stay_under_the_notify_limit() {
        let apps: BTreeSet<String> = (0..3000).map(|i| format!("A{i:010}")).collect();
        let p = payloads(&apps);
        assert!(p.len() > 1);
        assert!(p.iter().all(|s| s.len() <= PAYLOAD_MAX));
        let back: BTreeSet<String> = p
            .iter()
            .flat_map(|s| s.split(' ').map(str::to_string))
            .collect();
        assert_eq!(back, apps);
    }
}

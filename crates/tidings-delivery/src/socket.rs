//! The Socket Mode hub: single-use tickets, each app's open connections, and the envelopes
//! waiting for an ack. The server's WebSocket endpoint owns the sockets themselves and
//! talks to the hub through [`Registration`] (frames out) and [`SocketHub::ack`] (acks in);
//! the dispatcher sends envelopes with [`SocketHub::send`] and waits for their acks.
//!
//! All maps are `std::sync::Mutex`es: held for a lookup or an insert, never across an
//! `.await`. Envelopes are spread over an app's connections round-robin; a connection that
//! closes drops its pending acks, which the dispatcher sees at once as a failed attempt and
//! redelivers (possibly on another connection).
//!
//! Every connection remembers the app-level token that opened it, so revoking the token
//! (or turning Socket Mode off) ends exactly its connections: [`SocketHub::end_token`]
//! takes them out of the rotation at once, fails their un-acked envelopes, and signals each
//! connection's task through its [`Ending`] to send `disconnect` and close. Once
//! [`Ended::settled`] returns, no envelope is written on them any more.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch, RwLock, RwLockReadGuard};

/// Frames queued for one connection.
#[derive(Debug, Clone, PartialEq)]
pub enum Outbound {
    Text(String),
    /// Send a close frame and end the connection.
    Close,
}

/// Frames a slow reader may have queued before the hub stops sending to it.
const OUTBOUND_QUEUE: usize = 1024;

#[derive(Debug, Clone)]
pub struct SocketConfig {
    pub ack_timeout: Duration,
    pub max_connections_per_app: usize,
    pub ticket_ttl: Duration,
}

/// What a redeemed ticket grants.
#[derive(Debug, Clone, PartialEq)]
pub struct Ticket {
    pub app_id: String,
    /// The app-level token `apps.connections.open` was called with: the connection lives
    /// only as long as it is not revoked.
    pub token_id: String,
    /// `debug_reconnects=true`: refresh after 360 s.
    pub debug_reconnects: bool,
}

struct Link {
    id: u64,
    token_id: String,
    /// Set to the frame to send before closing when the hub ends the connection.
    end: watch::Sender<Option<String>>,
    /// Held shared by the connection while it writes an envelope; taken exclusively by
    /// [`Ended::settled`], which so waits out a write in progress.
    fence: Arc<RwLock<()>>,
    tx: mpsc::Sender<Outbound>,
    /// Unix seconds; only for listing connections to operators.
    opened_at: i64,
    /// Told to go away (`disconnect` sent): envelopes go to the others while there are any,
    /// since clients commonly open a new connection and drop this one without reading on.
    going_away: bool,
}

/// One open connection as an operator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    pub id: u64,
    /// When the WebSocket was registered, Unix seconds.
    pub opened_at: i64,
    /// Envelopes sent on it that are still waiting for their ack.
    pub pending_acks: usize,
}

#[derive(Default)]
struct AppLinks {
    links: Vec<Link>,
    next: usize,
}

struct PendingAck {
    app_id: String,
    conn: u64,
    done: oneshot::Sender<()>,
}

/// A registered connection: its id and the frames to write to it.
pub struct Registration {
    pub id: u64,
    pub outbound: mpsc::Receiver<Outbound>,
    /// Live connections for the app, this one included.
    pub num_connections: usize,
    /// Tells the connection when the hub ends it (its token was revoked).
    pub ending: Ending,
    /// Drop once the socket is closed (see [`SocketHub::all_closed`]).
    pub live: Live,
}

/// The connection's side of being ended by the hub.
pub struct Ending {
    end: watch::Receiver<Option<String>>,
    fence: Arc<RwLock<()>>,
}

impl Ending {
    /// Completes when the hub has ended the connection, with the frame (a `disconnect`)
    /// to send before closing. Never completes otherwise.
    pub async fn ended(&mut self) -> String {
        loop {
            if let Some(frame) = self.end.borrow_and_update().clone() {
                return frame;
            }
            if self.end.changed().await.is_err() {
                // The hub forgot the connection without ending it: wait for the peer.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Permission to write one envelope, held for the write; `None` once the connection
    /// was ended (write no more envelopes).
    pub async fn writing(&self) -> Option<RwLockReadGuard<'_, ()>> {
        let guard = self.fence.read().await;
        self.end.borrow().is_none().then_some(guard)
    }
}

/// Connections the hub has just ended; [`Ended::settled`] waits until they write no more.
pub struct Ended {
    fences: Vec<Arc<RwLock<()>>>,
}

impl Ended {
    /// How many connections were ended.
    pub fn count(&self) -> usize {
        self.fences.len()
    }

    /// Waits until no ended connection is still writing an envelope (a write is bounded
    /// by the connection's write timeout); after this, nothing more is written on them.
    pub async fn settled(self) {
        for fence in self.fences {
            drop(fence.write().await);
        }
    }
}

/// Why an envelope could not be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// The app has no open connection.
    NoConnection,
}

pub struct SocketHub {
    pub cfg: SocketConfig,
    tickets: Mutex<HashMap<String, (Ticket, Instant)>>,
    apps: Mutex<HashMap<String, AppLinks>>,
    pending: Mutex<HashMap<String, PendingAck>>,
    next_id: AtomicU64,
    /// Connections whose task still runs (their [`Live`] guards not yet dropped).
    live: Arc<watch::Sender<usize>>,
}

/// Held by a connection's task until it has closed its socket; [`SocketHub::all_closed`]
/// waits for every one to be dropped.
pub struct Live(Arc<watch::Sender<usize>>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SocketHub {
    pub fn new(cfg: SocketConfig) -> SocketHub {
        SocketHub {
            cfg,
            tickets: Mutex::new(HashMap::new()),
            apps: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            live: Arc::new(watch::channel(0).0),
        }
    }

    /// A new single-use ticket for `app_id`, issued under app-level token `token_id`,
    /// valid for `ticket_ttl`.
    pub fn issue_ticket(&self, app_id: &str, token_id: &str, debug_reconnects: bool) -> String {
        let ticket = tidings_core::token::random_secret();
        let now = Instant::now();
        let mut t = lock(&self.tickets);
        t.retain(|_, (_, at)| now.duration_since(*at) < self.cfg.ticket_ttl);
        t.insert(
            ticket.clone(),
            (
                Ticket {
                    app_id: app_id.to_string(),
                    token_id: token_id.to_string(),
                    debug_reconnects,
                },
                now,
            ),
        );
        ticket
    }

    /// Uses up a ticket; `None` if unknown, used, expired or for another app.
    pub fn redeem(&self, ticket: &str, app_id: Option<&str>) -> Option<Ticket> {
        let (t, at) = lock(&self.tickets).remove(ticket)?;
        let fresh = at.elapsed() < self.cfg.ticket_ttl;
        let same_app = app_id.is_none_or(|a| a == t.app_id);
        (fresh && same_app).then_some(t)
    }

    /// Adds a connection for the app opened with app-level token `token_id`, or `None`
    /// when the app already has the most allowed.
    pub fn register(&self, app_id: &str, token_id: &str) -> Option<Registration> {
        let mut apps = lock(&self.apps);
        let entry = apps.entry(app_id.to_string()).or_default();
        if entry.links.len() >= self.cfg.max_connections_per_app {
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, outbound) = mpsc::channel(OUTBOUND_QUEUE);
        let (end, end_rx) = watch::channel(None);
        let fence = Arc::new(RwLock::new(()));
        let opened_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        entry.links.push(Link {
            id,
            token_id: token_id.to_string(),
            end,
            fence: fence.clone(),
            tx,
            opened_at,
            going_away: false,
        });
        metrics::gauge!("tidings_socket_connections").increment(1.0);
        self.live.send_modify(|n| *n += 1);
        Some(Registration {
            id,
            outbound,
            num_connections: entry.links.len(),
            ending: Ending { end: end_rx, fence },
            live: Live(self.live.clone()),
        })
    }

    /// Ends the app's connections opened with `token_id` (its token was revoked): they
    /// leave the rotation now, their un-acked envelopes fail (and are redelivered
    /// elsewhere or held), and each is told to send `frame` and close.
    pub fn end_token(&self, app_id: &str, token_id: &str, frame: &str) -> Ended {
        self.end_where(app_id, |l| l.token_id == token_id, frame)
    }

    /// `(app, token)` of every open connection, for re-checking revocations.
    pub fn tokens_in_use(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = lock(&self.apps)
            .iter()
            .flat_map(|(app, e)| e.links.iter().map(|l| (app.clone(), l.token_id.clone())))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    fn end_where(&self, app_id: &str, which: impl Fn(&Link) -> bool, frame: &str) -> Ended {
        let mut ended = Vec::new();
        {
            let mut apps = lock(&self.apps);
            if let Some(entry) = apps.get_mut(app_id) {
                let (gone, kept) = std::mem::take(&mut entry.links)
                    .into_iter()
                    .partition(which);
                entry.links = kept;
                ended = gone;
                if entry.links.is_empty() {
                    apps.remove(app_id);
                }
            }
        }
        if ended.is_empty() {
            return Ended { fences: Vec::new() };
        }
        metrics::gauge!("tidings_socket_connections").decrement(ended.len() as f64);
        let ids: Vec<u64> = ended.iter().map(|l| l.id).collect();
        lock(&self.pending).retain(|_, p| !ids.contains(&p.conn));
        Ended {
            fences: ended
                .into_iter()
                .map(|l| {
                    l.end.send_replace(Some(frame.to_string()));
                    l.fence
                })
                .collect(),
        }
    }

    /// Removes a connection; envelopes it had not acked fail now (and are redelivered).
    pub fn unregister(&self, app_id: &str, id: u64) {
        {
            let mut apps = lock(&self.apps);
            if let Some(entry) = apps.get_mut(app_id) {
                let before = entry.links.len();
                entry.links.retain(|l| l.id != id);
                if entry.links.len() < before {
                    metrics::gauge!("tidings_socket_connections").decrement(1.0);
                }
                if entry.links.is_empty() {
                    apps.remove(app_id);
                }
            }
        }
        lock(&self.pending).retain(|_, p| p.conn != id);
    }

    pub fn connections(&self, app_id: &str) -> usize {
        lock(&self.apps).get(app_id).map_or(0, |e| e.links.len())
    }

    /// The app's open connections, oldest first, with their un-acked envelopes.
    pub fn list(&self, app_id: &str) -> Vec<ConnectionInfo> {
        let mut out: Vec<ConnectionInfo> =
            lock(&self.apps).get(app_id).map_or_else(Vec::new, |e| {
                e.links
                    .iter()
                    .map(|l| ConnectionInfo {
                        id: l.id,
                        opened_at: l.opened_at,
                        pending_acks: 0,
                    })
                    .collect()
            });
        // Taken after the apps lock is released: the two locks are never held together here.
        for p in lock(&self.pending).values() {
            if let Some(c) = out.iter_mut().find(|c| c.id == p.conn) {
                c.pending_acks += 1;
            }
        }
        out
    }

    /// Marks connection `id` of `app_id` as told to go away (its `disconnect` was sent).
    pub fn going_away(&self, app_id: &str, id: u64) {
        if let Some(entry) = lock(&self.apps).get_mut(app_id) {
            if let Some(l) = entry.links.iter_mut().find(|l| l.id == id) {
                l.going_away = true;
            }
        }
    }

    /// Queues `frame` (an envelope with id `envelope_id`) on one of the app's connections,
    /// round-robin over those not told to go away (over all when every one was); the
    /// returned receiver completes when the ack arrives and errors when the connection
    /// goes away first.
    pub fn send(
        &self,
        app_id: &str,
        envelope_id: &str,
        frame: String,
    ) -> Result<oneshot::Receiver<()>, SendError> {
        let mut apps = lock(&self.apps);
        let entry = apps.get_mut(app_id).ok_or(SendError::NoConnection)?;
        let mut frame = Some(frame);
        let n = entry.links.len();
        let start = entry.next;
        entry.next = entry.next.wrapping_add(1);
        // Round-robin from `start`, trying connections that stay before those told to go
        // away; each connection once.
        let order = (0..n).map(|k| (start + k) % n);
        let staying = order.clone().filter(|&i| !entry.links[i].going_away);
        let leaving = order.filter(|&i| entry.links[i].going_away);
        for i in staying.chain(leaving) {
            let link = &entry.links[i];
            let (done, wait) = oneshot::channel();
            lock(&self.pending).insert(
                envelope_id.to_string(),
                PendingAck {
                    app_id: app_id.to_string(),
                    conn: link.id,
                    done,
                },
            );
            match link
                .tx
                .try_send(Outbound::Text(frame.take().unwrap_or_default()))
            {
                Ok(()) => return Ok(wait),
                Err(e) => {
                    // A connection whose reader is not keeping up: try the next one.
                    lock(&self.pending).remove(envelope_id);
                    frame = Some(match e {
                        mpsc::error::TrySendError::Full(Outbound::Text(t))
                        | mpsc::error::TrySendError::Closed(Outbound::Text(t)) => t,
                        _ => String::new(),
                    });
                }
            }
        }
        Err(SendError::NoConnection)
    }

    /// An ack arrived on connection `conn` of `app_id`. Acks for unknown envelopes (or from
    /// another app) are ignored; the bool says whether it completed one.
    pub fn ack(&self, app_id: &str, envelope_id: &str) -> bool {
        let mut pending = lock(&self.pending);
        match pending.get(envelope_id) {
            Some(p) if p.app_id == app_id => {
                if let Some(p) = pending.remove(envelope_id) {
                    let _ = p.done.send(());
                }
                true
            }
            _ => false,
        }
    }

    /// Forgets an envelope that timed out (a late ack is then ignored).
    pub fn forget(&self, envelope_id: &str) {
        lock(&self.pending).remove(envelope_id);
    }

    /// Ends every connection of every app with `frame` (the server is shutting down), as
    /// [`SocketHub::end_token`] does; returns how many.
    pub fn end_all(&self, frame: &str) -> usize {
        let apps: Vec<String> = lock(&self.apps).keys().cloned().collect();
        apps.iter()
            .map(|app| self.end_where(app, |_| true, frame).count())
            .sum()
    }

    /// Completes once every registered connection's task has closed its socket (or at
    /// once when there are none).
    pub async fn all_closed(&self) {
        let mut rx = self.live.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    /// Ends every connection of the app with `frame` (Socket Mode turned off), as
    /// [`SocketHub::end_token`] does.
    pub fn close_app(&self, app_id: &str, frame: String) -> Ended {
        self.end_where(app_id, |_| true, &frame)
    }
}

#[cfg(test)]
mod tests;

//! The Socket Mode hub: single-use tickets, each app's open connections, and the envelopes
//! waiting for an ack. The server's WebSocket endpoint owns the sockets themselves and
//! talks to the hub through [`Registration`] (frames out) and [`SocketHub::ack`] (acks in);
//! the dispatcher sends envelopes with [`SocketHub::send`] and waits for their acks.
//!
//! All maps are `std::sync::Mutex`es: held for a lookup or an insert, never across an
//! `.await`. Envelopes are spread over an app's connections round-robin; a connection that
//! closes drops its pending acks, which the dispatcher sees at once as a failed attempt and
//! redelivers (possibly on another connection).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

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
    /// `debug_reconnects=true`: refresh after 360 s.
    pub debug_reconnects: bool,
}

struct Link {
    id: u64,
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
        }
    }

    /// A new single-use ticket for `app_id`, valid for `ticket_ttl`.
    pub fn issue_ticket(&self, app_id: &str, debug_reconnects: bool) -> String {
        let ticket = tidings_core::token::random_secret();
        let now = Instant::now();
        let mut t = lock(&self.tickets);
        t.retain(|_, (_, at)| now.duration_since(*at) < self.cfg.ticket_ttl);
        t.insert(
            ticket.clone(),
            (
                Ticket {
                    app_id: app_id.to_string(),
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

    /// Adds a connection for the app, or `None` when it already has the most allowed.
    pub fn register(&self, app_id: &str) -> Option<Registration> {
        let mut apps = lock(&self.apps);
        let entry = apps.entry(app_id.to_string()).or_default();
        if entry.links.len() >= self.cfg.max_connections_per_app {
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, outbound) = mpsc::channel(OUTBOUND_QUEUE);
        let opened_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        entry.links.push(Link {
            id,
            tx,
            opened_at,
            going_away: false,
        });
        metrics::gauge!("tidings_socket_connections").increment(1.0);
        Some(Registration {
            id,
            outbound,
            num_connections: entry.links.len(),
        })
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

    /// Sends `frame` then a close to every connection of the app (Socket Mode turned off).
    pub fn close_app(&self, app_id: &str, frame: String) {
        if let Some(entry) = lock(&self.apps).get(app_id) {
            for l in &entry.links {
                let _ = l.tx.try_send(Outbound::Text(frame.clone()));
                let _ = l.tx.try_send(Outbound::Close);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub(max: usize) -> SocketHub {
        SocketHub::new(SocketConfig {
            ack_timeout: Duration::from_secs(3),
            max_connections_per_app: max,
            ticket_ttl: Duration::from_millis(200),
        })
    }

    #[test]
    fn tickets_are_single_use_expire_and_belong_to_one_app() {
        let h = hub(10);
        let t = h.issue_ticket("A1", false);
        assert!(h.redeem(&t, Some("A2")).is_none(), "another app's id");
        let t = h.issue_ticket("A1", true);
        assert!(h.redeem(&t, Some("A1")).unwrap().debug_reconnects);
        assert!(h.redeem(&t, Some("A1")).is_none(), "used");
        let t = h.issue_ticket("A1", false);
        std::thread::sleep(Duration::from_millis(250));
        assert!(h.redeem(&t, None).is_none(), "expired");
    }

    #[tokio::test]
    async fn envelopes_are_spread_over_connections_and_acks_complete_them() {
        let h = hub(10);
        let mut a = h.register("A1").unwrap();
        let mut b = h.register("A1").unwrap();
        assert_eq!(b.num_connections, 2);
        let w1 = h.send("A1", "e1", "one".into()).unwrap();
        let w2 = h.send("A1", "e2", "two".into()).unwrap();
        assert_eq!(a.outbound.recv().await, Some(Outbound::Text("one".into())));
        assert_eq!(b.outbound.recv().await, Some(Outbound::Text("two".into())));
        assert!(!h.ack("A2", "e1"), "another app cannot ack");
        assert!(h.ack("A1", "e1"));
        assert!(w1.await.is_ok());
        assert!(!h.ack("A1", "e1"), "twice");
        let listed = h.list("A1");
        assert_eq!(
            listed
                .iter()
                .map(|c| (c.id, c.pending_acks))
                .collect::<Vec<_>>(),
            vec![(a.id, 0), (b.id, 1)],
            "oldest first, with the envelope b has not acked"
        );
        assert!(listed.iter().all(|c| c.opened_at > 0));
        h.unregister("A1", b.id);
        assert_eq!(h.list("A1").len(), 1);
        assert!(h.list("A2").is_empty());
        assert!(
            w2.await.is_err(),
            "closing a connection fails its pending envelopes"
        );
    }

    #[tokio::test]
    async fn a_connection_told_to_go_away_gets_envelopes_only_when_it_is_the_last() {
        let h = hub(10);
        let mut old = h.register("A1").unwrap();
        let mut new = h.register("A1").unwrap();
        h.going_away("A1", old.id);
        for e in ["e1", "e2", "e3"] {
            let _wait = h.send("A1", e, e.into()).unwrap();
            assert_eq!(new.outbound.recv().await, Some(Outbound::Text(e.into())));
        }
        assert!(old.outbound.try_recv().is_err(), "nothing on the old one");
        h.unregister("A1", new.id);
        let _wait = h.send("A1", "e4", "e4".into()).unwrap();
        assert_eq!(old.outbound.recv().await, Some(Outbound::Text("e4".into())));
    }

    #[test]
    fn the_connection_limit_is_enforced_and_no_connection_is_an_error() {
        let h = hub(1);
        let r = h.register("A1").unwrap();
        assert!(h.register("A1").is_none());
        h.unregister("A1", r.id);
        assert_eq!(h.connections("A1"), 0);
        assert_eq!(
            h.send("A1", "e", "x".into()).err(),
            Some(SendError::NoConnection)
        );
    }
}

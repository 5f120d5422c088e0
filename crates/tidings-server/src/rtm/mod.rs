//! The RTM API's state on this node ([`RtmHub`]): the single-use URLs `rtm.connect`
//! issued (in memory, so a URL works on the node that issued it), the open connections
//! counted per token, and the signals each connection's task waits on: new deliveries for
//! its app (from the delivery engine's doorbell, [`RtmHub::wake`]), a token to re-check
//! (a revoke or uninstall on this node, [`RtmHub::recheck_tokens`]) and shutdown
//! ([`RtmHub::end_all`]).
//!
//! Events reach a connection by reading: each connection keeps the `seq` of the last
//! delivery it sent and, when woken, reads the app's newer deliveries in its workspace
//! (`Store::rtm_events_after`) and writes their inner events. RTM adds no fan-out of its
//! own, writes no rows and never marks a delivery delivered: it is at-most-once, and
//! `tidings.events.list` is how a client fills a gap. The socket itself is in [`socket`].
//!
//! Maps are `std::sync::Mutex`es held for a lookup or an insert, never across an `.await`.

pub mod socket;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tidings_core::rtm::RtmError;
use tidings_store::RtmScope;
use tokio::sync::watch;

/// What a URL from `rtm.connect` grants.
#[derive(Debug, Clone, PartialEq)]
pub struct RtmTicket {
    pub app_id: String,
    pub scope: RtmScope,
    /// SHA-256 of the token `rtm.connect` was called with: re-checked while connected.
    pub token_hash: String,
    /// The delivery `seq` the connection starts after (the app's newest at `rtm.connect`,
    /// so events between the call and the connection are sent after `hello`).
    pub after_seq: i64,
}

enum Slot {
    Issued(RtmTicket),
    Used,
}

/// The RTM state of this node; see the module docs.
pub struct RtmHub {
    url_ttl: Duration,
    max_per_token: usize,
    tickets: Mutex<HashMap<String, (Slot, Instant)>>,
    per_token: Mutex<HashMap<String, usize>>,
    apps: Mutex<HashMap<String, watch::Sender<u64>>>,
    /// Bumped when every app may have new deliveries (signals from other nodes missed).
    all: watch::Sender<u64>,
    /// Bumped when a token may have been revoked on this node.
    recheck: watch::Sender<u64>,
    /// Set when the server shuts down.
    end: watch::Sender<bool>,
    /// Connections whose task still runs.
    live: Arc<watch::Sender<usize>>,
}

/// A registered connection's signals; dropping it unregisters the connection.
pub struct Registration {
    pub wake: watch::Receiver<u64>,
    pub all: watch::Receiver<u64>,
    pub recheck: watch::Receiver<u64>,
    pub end: watch::Receiver<bool>,
    _guard: Guard,
}

struct Guard {
    hub: Arc<RtmHub>,
    token_hash: String,
}

impl Drop for Guard {
    fn drop(&mut self) {
        {
            let mut t = lock(&self.hub.per_token);
            if let Some(n) = t.get_mut(&self.token_hash) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    t.remove(&self.token_hash);
                }
            }
        }
        metrics::gauge!("tidings_rtm_connections").decrement(1.0);
        self.hub.live.send_modify(|n| *n = n.saturating_sub(1));
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl RtmHub {
    pub fn new(url_ttl: Duration, max_per_token: usize) -> Arc<RtmHub> {
        Arc::new(RtmHub {
            url_ttl,
            max_per_token,
            tickets: Mutex::new(HashMap::new()),
            per_token: Mutex::new(HashMap::new()),
            apps: Mutex::new(HashMap::new()),
            all: watch::channel(0).0,
            recheck: watch::channel(0).0,
            end: watch::channel(false).0,
            live: Arc::new(watch::channel(0).0),
        })
    }

    /// A new single-use URL secret for `ticket`, valid for `url_ttl`.
    pub fn issue(&self, ticket: RtmTicket) -> String {
        let secret = tidings_core::token::random_secret();
        let now = Instant::now();
        let mut t = lock(&self.tickets);
        t.retain(|_, (_, at)| now.duration_since(*at) < self.url_ttl);
        t.insert(secret.clone(), (Slot::Issued(ticket), now));
        secret
    }

    /// Uses up a URL: the ticket, or why it cannot be used. A used URL is remembered as
    /// used until it would have expired anyway; after that it is unknown.
    pub fn redeem(&self, secret: &str) -> Result<RtmTicket, RtmError> {
        let mut t = lock(&self.tickets);
        let Some((slot, at)) = t.get_mut(secret) else {
            return Err(RtmError::UrlUnknown);
        };
        if at.elapsed() >= self.url_ttl {
            t.remove(secret);
            return Err(RtmError::UrlExpired);
        }
        match std::mem::replace(slot, Slot::Used) {
            Slot::Issued(ticket) => Ok(ticket),
            Slot::Used => Err(RtmError::UrlUnknown),
        }
    }

    /// Adds a connection for the token, or `None` when it already has the most allowed.
    pub fn register(self: &Arc<Self>, app_id: &str, token_hash: &str) -> Option<Registration> {
        {
            let mut t = lock(&self.per_token);
            let n = t.entry(token_hash.to_string()).or_insert(0);
            if *n >= self.max_per_token {
                return None;
            }
            *n += 1;
        }
        let wake = {
            let mut apps = lock(&self.apps);
            // Apps whose connections have all gone (no receiver left) are forgotten here.
            apps.retain(|_, tx| tx.receiver_count() > 0);
            apps.entry(app_id.to_string())
                .or_insert_with(|| watch::channel(0).0)
                .subscribe()
        };
        metrics::gauge!("tidings_rtm_connections").increment(1.0);
        self.live.send_modify(|n| *n += 1);
        Some(Registration {
            wake,
            all: self.all.subscribe(),
            recheck: self.recheck.subscribe(),
            end: self.end.subscribe(),
            _guard: Guard {
                hub: self.clone(),
                token_hash: token_hash.to_string(),
            },
        })
    }

    /// A commit made deliveries for `apps` (`None`: maybe for every app). Cheap: it runs
    /// on the store writer's after-commit step.
    pub fn wake(&self, apps: Option<&[String]>) {
        match apps {
            None => {
                self.all.send_modify(|n| *n = n.wrapping_add(1));
            }
            Some(apps) => {
                let map = lock(&self.apps);
                for app in apps {
                    if let Some(tx) = map.get(app) {
                        tx.send_modify(|n| *n = n.wrapping_add(1));
                    }
                }
            }
        }
    }

    /// A token may have been revoked here: every connection re-checks its own now.
    pub fn recheck_tokens(&self) {
        self.recheck.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The server is shutting down: every connection sends `goodbye` and closes. Returns
    /// how many connections were open.
    pub fn end_all(&self) -> usize {
        self.end.send_replace(true);
        *self.live.borrow()
    }

    /// Completes once every connection's task has closed its socket.
    pub async fn all_closed(&self) {
        let mut rx = self.live.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket() -> RtmTicket {
        RtmTicket {
            app_id: "A1".into(),
            scope: RtmScope::Team("T1".into()),
            token_hash: "h".into(),
            after_seq: 0,
        }
    }

    #[test]
    fn a_url_is_single_use_and_unknown_ones_are_refused() {
        let hub = RtmHub::new(Duration::from_secs(30), 2);
        let secret = hub.issue(ticket());
        assert_eq!(hub.redeem(&secret), Ok(ticket()));
        assert_eq!(hub.redeem(&secret), Err(RtmError::UrlUnknown));
        assert_eq!(hub.redeem("nope"), Err(RtmError::UrlUnknown));
    }

    #[test]
    fn an_expired_url_is_refused_as_expired() {
        let hub = RtmHub::new(Duration::from_millis(1), 2);
        let secret = hub.issue(ticket());
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(hub.redeem(&secret), Err(RtmError::UrlExpired));
    }

    #[test]
    fn connections_per_token_are_bounded_and_freed_when_dropped() {
        let hub = RtmHub::new(Duration::from_secs(30), 2);
        let a = hub.register("A1", "h").expect("first");
        let _b = hub.register("A1", "h").expect("second");
        assert!(hub.register("A1", "h").is_none(), "third is over the limit");
        assert!(
            hub.register("A1", "other").is_some(),
            "another token has its own"
        );
        drop(a);
        assert!(
            hub.register("A1", "h").is_some(),
            "a closed one frees its place"
        );
    }

    #[test]
    fn wake_reaches_connections_of_the_named_app_only() {
        let hub = RtmHub::new(Duration::from_secs(30), 2);
        let mut a = hub.register("A1", "h").expect("a");
        let mut b = hub.register("A2", "h2").expect("b");
        hub.wake(Some(&["A1".to_string()]));
        assert!(a.wake.has_changed().unwrap());
        assert!(!b.wake.has_changed().unwrap());
        a.wake.borrow_and_update();
        b.wake.borrow_and_update();
    }
}

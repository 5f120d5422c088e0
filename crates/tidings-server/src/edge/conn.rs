//! One client connection: hyper serves it, and a watchdog closes it when it is idle for
//! `idle_timeout`, when a request head takes longer than `header_read_timeout` from its
//! first byte, or when a request is still in progress `request_timeout + idle_timeout`
//! after it began (a client that never reads its answer).
//!
//! The socket is wrapped in [`Watched`], which notes when bytes arrive between requests and
//! holds the connection's permit (so an upgraded WebSocket counts against
//! `max_connections` until it closes).

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit};

use super::request::EdgeService;
use super::Limits;

/// An idle connection is closed to make room for a new one only after this long idle
/// (so a client that has just connected gets to send its request).
const SHED_AFTER: Duration = Duration::from_secs(1);

/// What the watchdog needs to know about a connection, shared with its socket and its
/// requests. Times are milliseconds since `epoch`; 0 means "not set".
pub struct ConnState {
    epoch: Instant,
    in_flight: AtomicUsize,
    /// When the last request finished (or the connection opened).
    idle_since: AtomicU64,
    /// When the first byte of the next request head arrived, while no request is in
    /// progress.
    head_started: AtomicU64,
    /// When the oldest request in progress began.
    busy_since: AtomicU64,
}

impl ConnState {
    fn new() -> ConnState {
        ConnState {
            epoch: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(1),
            head_started: AtomicU64::new(0),
            busy_since: AtomicU64::new(0),
        }
    }

    /// Now, in milliseconds since `epoch`, never 0.
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    /// A request's head was read: the connection is busy until the guard is dropped
    /// (when its response has been written).
    pub fn begin_request(self: &Arc<Self>) -> Busy {
        if self.in_flight.fetch_add(1, Ordering::AcqRel) == 0 {
            self.busy_since.store(self.now(), Ordering::Release);
        }
        self.head_started.store(0, Ordering::Release);
        Busy(self.clone())
    }

    fn bytes_arrived(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0 {
            let _ = self.head_started.compare_exchange(
                0,
                self.now(),
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
    }

    /// Whether the connection may be closed to make room for a new one: no request in
    /// progress or arriving, and idle for [`SHED_AFTER`] (or `idle_timeout`, if shorter).
    fn sheddable(&self, limits: &Limits) -> bool {
        let idle_for = limits.idle_timeout.min(SHED_AFTER).as_millis() as u64;
        self.in_flight.load(Ordering::Acquire) == 0
            && self.head_started.load(Ordering::Acquire) == 0
            && self
                .now()
                .saturating_sub(self.idle_since.load(Ordering::Acquire))
                >= idle_for
    }

    /// Why the connection should be closed now, if it should.
    fn verdict(&self, limits: &Limits) -> Option<&'static str> {
        let now = self.now();
        let older_than =
            |t: u64, d: Duration| t != 0 && now.saturating_sub(t) > d.as_millis() as u64;
        if self.in_flight.load(Ordering::Acquire) > 0 {
            let busy = self.busy_since.load(Ordering::Acquire);
            return older_than(busy, limits.request_timeout + limits.idle_timeout)
                .then_some("its answer was not read");
        }
        let head = self.head_started.load(Ordering::Acquire);
        if head != 0 {
            return older_than(head, limits.header_read_timeout).then_some("header_read_timeout");
        }
        older_than(self.idle_since.load(Ordering::Acquire), limits.idle_timeout)
            .then_some("idle_timeout")
    }
}

/// A request in progress on a connection (see [`ConnState::begin_request`]).
pub struct Busy(Arc<ConnState>);

impl Drop for Busy {
    fn drop(&mut self) {
        let s = &self.0;
        if s.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            s.busy_since.store(0, Ordering::Release);
            s.idle_since.store(s.now(), Ordering::Release);
        }
    }
}

/// The client's socket, noting arrivals for the watchdog and holding the connection's
/// place under `max_connections`.
pub struct Watched {
    inner: TcpStream,
    state: Arc<ConnState>,
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.state.bytes_arrived();
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Open connections, for the `tidings_http_connections` gauge.
struct Counted;

impl Counted {
    fn new() -> Counted {
        metrics::gauge!("tidings_http_connections").increment(1.0);
        Counted
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        metrics::gauge!("tidings_http_connections").decrement(1.0);
    }
}

/// What serving a connection needs from the accept loop.
pub struct Serve {
    pub router: Router,
    pub http: hyper::server::conn::http1::Builder,
    pub limits: Arc<Limits>,
    /// True once the server is shutting down.
    pub stop: watch::Receiver<bool>,
    /// Changes when a connection arrives at the cap: an idle one then closes…
    pub shed: watch::Receiver<u64>,
    /// …if one is still owed (each idle connection that closes takes one).
    pub owed: Arc<AtomicUsize>,
    /// Held until the connection ends (the shutdown waits for every sender to drop).
    pub live: mpsc::Sender<()>,
}

impl Serve {
    /// Serves one connection to its end, or until the watchdog, the cap or shutdown ends it.
    pub async fn run(self, stream: TcpStream, permit: OwnedSemaphorePermit) {
        let Serve {
            router,
            http,
            limits,
            stop,
            shed,
            owed,
            live,
        } = self;
        serve(
            stream,
            permit,
            router,
            http,
            limits,
            stop,
            (shed, owed),
            live,
        )
        .await
    }
}

#[allow(clippy::too_many_arguments)]
async fn serve(
    stream: TcpStream,
    permit: OwnedSemaphorePermit,
    router: Router,
    http: hyper::server::conn::http1::Builder,
    limits: Arc<Limits>,
    mut stop: watch::Receiver<bool>,
    (mut shed, owed): (watch::Receiver<u64>, Arc<AtomicUsize>),
    _live: mpsc::Sender<()>,
) {
    shed.borrow_and_update();
    let _counted = Counted::new();
    let state = Arc::new(ConnState::new());
    let io = Watched {
        inner: stream,
        state: state.clone(),
        _permit: permit,
    };
    let service = EdgeService::new(router, limits.clone(), state.clone());
    let conn = http
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(service))
        .with_upgrades();
    tokio::pin!(conn);
    let tick = (limits.idle_timeout.min(limits.header_read_timeout) / 4)
        .clamp(Duration::from_millis(10), Duration::from_secs(1));
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stopping = *stop.borrow();
    if stopping {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = ticker.tick() => {
                if let Some(why) = state.verdict(&limits) {
                    tracing::debug!(reason = why, "closing a connection");
                    metrics::counter!("tidings_http_connections_closed_total", "reason" => why).increment(1);
                    return; // dropping `conn` closes the socket
                }
            }
            changed = shed.changed() => {
                if changed.is_ok()
                    && state.sheddable(&limits)
                    && owed
                        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                        .is_ok()
                {
                    tracing::debug!("closing an idle connection: server.max_connections reached");
                    metrics::counter!("tidings_http_connections_closed_total", "reason" => "shed").increment(1);
                    return;
                }
            }
            changed = stop.changed(), if !stopping => {
                if changed.is_err() || *stop.borrow() {
                    stopping = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            header_read_timeout: Duration::from_millis(50),
            request_timeout: Duration::from_millis(200),
            idle_timeout: Duration::from_millis(100),
            body_read_timeout: Duration::from_millis(50),
            max_connections: 1,
            max_header_bytes: 8192,
            drain_limit: Duration::from_millis(200),
        }
    }

    #[test]
    fn an_idle_connection_is_closed_after_idle_timeout() {
        let s = Arc::new(ConnState::new());
        assert_eq!(s.verdict(&limits()), None);
        std::thread::sleep(Duration::from_millis(120));
        assert_eq!(s.verdict(&limits()), Some("idle_timeout"));
    }

    #[test]
    fn a_slow_head_is_cut_after_header_read_timeout_and_a_request_is_not_idle() {
        let s = Arc::new(ConnState::new());
        s.bytes_arrived();
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(s.verdict(&limits()), Some("header_read_timeout"));
        let busy = s.begin_request();
        assert_eq!(s.verdict(&limits()), None);
        std::thread::sleep(Duration::from_millis(120));
        assert_eq!(
            s.verdict(&limits()),
            None,
            "a request in progress is not idle"
        );
        drop(busy);
        assert_eq!(
            s.verdict(&limits()),
            None,
            "idle time counts from the answer"
        );
    }

    #[test]
    fn only_a_connection_idle_for_a_while_makes_room() {
        // Idle for min(SHED_AFTER, idle_timeout) = 100 ms here.
        let s = Arc::new(ConnState::new());
        assert!(
            !s.sheddable(&limits()),
            "a new connection gets to send its request"
        );
        std::thread::sleep(Duration::from_millis(110));
        assert!(s.sheddable(&limits()));
        let busy = s.begin_request();
        assert!(!s.sheddable(&limits()), "a request in progress stays");
        drop(busy);
        assert!(!s.sheddable(&limits()), "idle again only from the answer");
        s.head_started.store(s.now(), Ordering::Release);
        std::thread::sleep(Duration::from_millis(110));
        assert!(!s.sheddable(&limits()), "a request arriving stays");
    }
}

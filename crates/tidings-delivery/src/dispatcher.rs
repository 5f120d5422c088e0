//! The dispatcher: takes due deliveries from the store, app by app, and sends them.
//!
//! - **Per-app lanes.** Each app has at most `max_in_flight_per_app` attempts in flight
//!   and its own next-due time, so a slow or dead endpoint fills only its own lane; a
//!   global semaphore bounds all in-flight attempts.
//! - **The store is the queue.** Memory holds only what is in flight (bounded), never the
//!   backlog: each round reads at most a lane's free capacity of due rows for an app,
//!   using the `(app_id, next_attempt_at)` index.
//! - **Hand-over.** A lane that has caught up with the store (its last read came back
//!   short) takes the deliveries a publish just committed straight from the writer
//!   ([`Dispatcher::offer`]), without reading them back, up to a bounded number. When a
//!   lane cannot take one, it drops what it holds (all of it is pending in the store) and
//!   reads from the store again, in order, until it has caught up.
//! - **At-least-once.** A delivery leaves its lane only after its outcome is committed, so
//!   it is never fetched twice while in flight; a crash leaves it pending and the next start
//!   sends it again with its attempt count intact.
//!
//! - **Several nodes** (PostgreSQL): reading due rows claims them with a lease, so each
//!   delivery is attempted by one node per retry step: the node renews the leases of
//!   everything it holds (in flight or settling) every quarter lease, its outcome writes
//!   are fenced by the claim's lease token (a node that lost a lease changes nothing),
//!   and a lane counts settling attempts against `max_in_flight_per_app`, so a node
//!   that dies leaves at most that many sent-but-unsaved deliveries per app for others
//!   to send again (as retries). Lanes keep no retries there: each is claimed again.
//!   Work signals from other nodes' commits wake the lanes they concern, and a periodic
//!   rescan finds work whose signal was missed (a dead node's expired leases, retries it
//!   had scheduled).
//!
//! `lanes` is a `std::sync::Mutex`: held only for map updates, never across an `.await`.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tidings_core::catalog::Catalog;
use tidings_core::policy::{self, FailureReason};
use tidings_store::{App, Attempt, AttemptOutcome, DueDelivery, NextStep, Store};
use tokio::sync::{Notify, Semaphore};

use crate::health::Health;
use crate::http::{HttpSender, SendResult};
use crate::lane::{Lane, Lanes};
use crate::socket::{SendError, SocketHub};

/// What the dispatcher needs from configuration.
#[derive(Debug, Clone)]
pub struct DispatchConfig {
    pub retry_schedule: Vec<Duration>,
    pub max_in_flight_per_app: usize,
    pub max_in_flight_total: usize,
    /// How often deliveries held for lack of a transport are looked at again.
    pub hold_recheck: Duration,
    /// Socket Mode: how long deliveries wait for a connection before failing.
    pub socket_hold_time: Duration,
}

/// The delivery engine's dispatcher. Cheap to share.
pub struct Dispatcher {
    store: Arc<dyn Store>,
    catalog: Arc<Catalog>,
    key: Vec<u8>,
    sender: HttpSender,
    cfg: DispatchConfig,
    lanes: Mutex<Lanes>,
    wake: Notify,
    permits: Arc<Semaphore>,
    health: Health,
    hub: Arc<SocketHub>,
    /// Outcomes waiting to be written, folded into one store call per batch.
    outcomes: tokio::sync::mpsc::Sender<QueuedOutcome>,
    outcome_queue: Mutex<Option<tokio::sync::mpsc::Receiver<QueuedOutcome>>>,
    /// Nodes share the store: deliveries are leased (see the module's docs).
    shared: bool,
}

/// An outcome on its way to the store, and who waits for it to be written.
type QueuedOutcome = (AttemptOutcome, tokio::sync::oneshot::Sender<()>);
/// A round's store read: the seqs to skip, and the lane's fence (read only below it).
type StoreRead = (Vec<i64>, Option<i64>);

/// Most outcomes written in one store call.
const OUTCOME_BATCH: usize = 512;
/// Most attempts of one lane waiting for their outcomes to be written; past it the lane
/// takes no new work until writes catch up. Set high on purpose: an outcome waits behind
/// publish batches in the writer's queue, so at 8,000 deliveries/s with 100 ms commits a
/// lane has about 800 settling, and a lower cap (1,024 was tried) throttled one app's
/// throughput by a third. Memory stays bounded by the global permits, which settling
/// attempts keep until their outcome is written.
const SETTLING_PER_LANE: usize = 8 * OUTCOME_BATCH;
/// Dispatch rounds (one app each) run at once at most.
const CONCURRENT_ROUNDS: usize = 8;
/// Most handed-over deliveries held in all lanes, about 1.5 s of traffic at 20,000
/// deliveries/s. Each holds its row (a few hundred bytes) and shares its event's payload
/// with the event's other deliveries: at most about 50 MB with 1 KB events. Past it, or
/// whenever a lane cannot take a row, lanes read from the store, which holds everything.
const READY_TOTAL: usize = 32_768;
/// How often a node sharing the store looks for work no signal announced.
const RESCAN: Duration = Duration::from_secs(10);

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Dispatcher {
    pub fn new(
        store: Arc<dyn Store>,
        catalog: Arc<Catalog>,
        sender: HttpSender,
        hub: Arc<SocketHub>,
        cfg: DispatchConfig,
        health: Health,
    ) -> Arc<Dispatcher> {
        let key = store.event_context_key();
        let (outcomes, queue) = tokio::sync::mpsc::channel(cfg.max_in_flight_total.max(1));
        let shared = store.is_shared();
        let mut lanes = Lanes::new(READY_TOTAL);
        lanes.keep_retries = !shared;
        Arc::new(Dispatcher {
            shared,
            outcomes,
            outcome_queue: Mutex::new(Some(queue)),
            permits: Arc::new(Semaphore::new(cfg.max_in_flight_total)),
            store,
            catalog,
            key,
            sender,
            cfg,
            lanes: Mutex::new(lanes),
            wake: Notify::new(),
            health,
            hub,
        })
    }

    /// How many more attempts the lane may start now. When nodes share the store, an
    /// attempt whose outcome is not yet saved still counts: that bounds what a node that
    /// dies leaves for others to send again.
    fn room(&self, l: &Lane) -> usize {
        let busy = if self.shared {
            l.in_flight.len() + l.settling.len()
        } else {
            l.in_flight.len()
        };
        let attempts = l.width(self.cfg.max_in_flight_per_app).saturating_sub(busy);
        attempts.min(SETTLING_PER_LANE.saturating_sub(l.settling.len()))
    }

    fn lanes(&self) -> std::sync::MutexGuard<'_, Lanes> {
        self.lanes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the app's lane, if it has one (the lock is held only for `f`).
    fn with_lane(&self, app_id: &str, f: impl FnOnce(&mut Lane)) {
        if let Some(l) = self.lanes().get_mut(app_id) {
            f(l);
        }
    }

    /// New or re-enabled work for these apps: look at them now. The work may lie above
    /// a lane's fence (deliveries a publish did not hand over), so the lane spills.
    pub fn wake<I: IntoIterator<Item = String>>(&self, apps: I) {
        let now = now_ms();
        {
            let mut lanes = self.lanes();
            for app in apps {
                lanes.spill(&app);
                lanes.entry(app).or_default().due_by(now);
            }
        }
        self.wake.notify_one();
    }

    /// Deliveries a publish has just committed, handed over from the writer thread (see
    /// [`Lanes::offer`]).
    pub fn offer(&self, rows: Vec<DueDelivery>) {
        self.lanes().offer(rows, now_ms());
        self.wake.notify_one();
    }

    /// Makes every app with pending deliveries due by its earliest one (at start, after
    /// missed signals, and periodically when nodes share the store). Hand-overs are
    /// registered before the first rescan, so once it has succeeded every app with
    /// pending deliveries has a lane or gets them handed over (the census).
    async fn rescan(&self) -> bool {
        match self.store.pending_apps().await {
            Ok(apps) => {
                {
                    let mut lanes = self.lanes();
                    for (app, due) in apps {
                        lanes.entry(app).or_default().due_by(due);
                    }
                    lanes.census_taken();
                }
                self.wake.notify_one();
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot read pending deliveries");
                false
            }
        }
    }

    /// Spawns the dispatch loop, the outcome writer and the pending-depth gauge, and when
    /// nodes share the store, the work-signal and rescan loops.
    pub fn spawn(self: &Arc<Self>) {
        let me: Weak<Dispatcher> = Arc::downgrade(self);
        self.store.set_handoff(Arc::new(move |rows| {
            if let Some(me) = me.upgrade() {
                me.offer(rows);
            }
        }));
        let me = self.clone();
        tokio::spawn(async move { me.run().await });
        if let Some(mut signals) = self.store.take_work_signals() {
            let me = self.clone();
            tokio::spawn(async move {
                while let Some(apps) = signals.recv().await {
                    if apps.is_empty() {
                        me.rescan().await;
                    } else {
                        me.wake(apps);
                    }
                }
            });
        }
        if self.store.is_shared() {
            let me = self.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(RESCAN).await;
                    me.rescan().await;
                }
            });
        }
        let queue = self.outcome_queue.lock().ok().and_then(|mut q| q.take());
        if let Some(queue) = queue {
            let store = self.store.clone();
            tokio::spawn(write_outcomes(store, queue));
        }
        if let Some(lease) = self.store.lease() {
            let me = self.clone();
            tokio::spawn(async move { me.renew_leases(lease).await });
        }
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                if let Ok(n) = me.store.pending_count().await {
                    metrics::gauge!("tidings_deliveries_pending").set(n as f64);
                }
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        });
    }

    /// Keeps this node's leases on what it holds (in flight or settling) from running out
    /// while it still works on them: every quarter lease, one fenced update for all.
    async fn renew_leases(self: Arc<Self>, lease: Duration) {
        let every = (lease / 4).max(Duration::from_millis(50));
        loop {
            tokio::time::sleep(every).await;
            let held: Vec<i64> = self
                .lanes()
                .values()
                .flat_map(|l| l.in_flight.iter().chain(&l.settling).copied())
                .collect();
            if held.is_empty() {
                continue;
            }
            let asked = held.len();
            match self.store.renew_leases(held).await {
                Ok(n) => {
                    metrics::counter!("tidings_delivery_leases_renewed_total").increment(n as u64);
                    if n < asked {
                        tracing::debug!(
                            asked,
                            renewed = n,
                            "some leases were concluded or taken over before renewal"
                        );
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot renew delivery leases"),
            }
        }
    }

    async fn run(self: Arc<Self>) {
        // Rebuild from the store: which apps have pending work, and since when.
        while !self.rescan().await {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let mut round = 0usize;
        loop {
            let now = now_ms();
            // Rows fetched wait in memory for a global permit: fetch no more than there are
            // free permits, so with thousands of busy lanes memory stays bounded by
            // `max_in_flight_total`, not by lanes x `max_in_flight_per_app`. When permits
            // run short, each loop starts at a different lane, so none is starved.
            let mut ready: Vec<(String, usize, Option<StoreRead>)> = {
                let mut lanes = self.lanes();
                // A caught-up lane with work due in the store (a retry, a wake-up) drops its
                // hand-overs and reads everything from the store in order: excluding
                // thousands of queued rows from each read made retry-heavy rounds slow. A
                // lane with a fence reads below it and keeps them.
                let spill: Vec<String> = lanes
                    .iter()
                    .filter(|(_, l)| l.must_spill(now))
                    .map(|(a, _)| a.clone())
                    .collect();
                for app in &spill {
                    lanes.spill(app);
                }
                lanes
                    .iter_mut()
                    .filter(|(_, l)| l.has_work(now) && self.room(l) > 0)
                    .map(|(a, l)| {
                        l.round_started(now);
                        let read = l.store_due(now).then(|| (l.exclusion(), l.fence()));
                        (a.clone(), self.room(l), read)
                    })
                    .collect()
            };
            let mut free = self.permits.available_permits();
            if !ready.is_empty() {
                round = round.wrapping_add(1);
                let start = round % ready.len();
                ready.rotate_left(start);
            }
            ready.retain_mut(|(_, take, _)| {
                *take = (*take).min(free);
                free -= *take;
                *take > 0
            });
            // Rounds for different apps run side by side, so one app's slow round (a big
            // pile, a slow store read) does not hold up the others.
            let me = &self;
            futures::stream::iter(ready)
                .for_each_concurrent(CONCURRENT_ROUNDS, |(app, capacity, read)| async move {
                    if let Err(e) = me.fill(&app, capacity, read, now).await {
                        tracing::error!(app = %app, error = %e, "dispatch round failed");
                        me.with_lane(&app, |l| l.next_due = Some(now + 1000));
                    }
                })
                .await;
            // A full lane is woken by its own completions, and so is every lane while no
            // permit is free; counting them here would spin.
            let permits_free = self.permits.available_permits() > 0;
            let earliest = self
                .lanes()
                .values()
                .filter(|l| permits_free && self.room(l) > 0)
                .filter_map(|l| l.next_work(now))
                .min();
            let wait = earliest.map_or(1000, |t| (t - now_ms()).clamp(0, 1000)) as u64;
            if wait > 0 {
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
                }
            } else {
                tokio::task::yield_now().await;
            }
        }
    }

    /// One round for one app: up to `capacity` deliveries, from the store when `read` is
    /// given (what the read must skip, and the lane's fence) and then from those handed
    /// over, and act on them.
    async fn fill(
        self: &Arc<Self>,
        app_id: &str,
        capacity: usize,
        read: Option<StoreRead>,
        now: i64,
    ) -> Result<(), String> {
        let seen = self.lanes().get(app_id).map_or(0, |l| l.woken);
        let Some(app) = self
            .store
            .get_app(app_id)
            .await
            .map_err(|e| e.to_string())?
        else {
            self.lanes().remove(app_id);
            return Ok(());
        };
        // No transport (no verified Request URL, or Socket Mode with no connection): the
        // deliveries stay pending untouched, and the lane sleeps until a URL is verified or
        // a socket opens (both wake it) or the next recheck. Socket Mode deliveries older
        // than the hold time fail in one statement.
        let has_transport = if app.socket_mode {
            self.hub.connections(app_id) > 0
        } else {
            app.request_url.is_some() && app.request_url_verified
        };
        if app.events_enabled && !has_transport {
            self.lanes().spill(app_id);
            // Another node holding a connection sends them; they are not expired here.
            let elsewhere = app.socket_mode
                && self.store.is_shared()
                && self
                    .store
                    .remote_socket_connections(app_id)
                    .await
                    .map_err(|e| e.to_string())?
                    > 0;
            if app.socket_mode && !elsewhere {
                let cutoff = (now - self.cfg.socket_hold_time.as_millis() as i64) / 1000;
                let expired = self
                    .store
                    .expire_held(app_id, cutoff)
                    .await
                    .map_err(|e| e.to_string())?;
                if expired > 0 {
                    tracing::info!(
                        app = app_id,
                        expired,
                        "socket mode deliveries held past the hold time failed"
                    );
                }
            }
            self.settle_due(
                app_id,
                seen,
                Some(now + self.cfg.hold_recheck.as_millis() as i64),
            );
            return Ok(());
        }
        let mut found = None;
        if let Some((exclude, below)) = read {
            let (rows, next) = self
                .store
                .due_deliveries(app_id, now, capacity, exclude, below)
                .await
                .map_err(|e| e.to_string())?;
            self.settle_due(app_id, seen, next);
            found = Some(rows);
        }
        let rows = self.lanes().take(app_id, found, capacity, now_ms());
        metrics::gauge!("tidings_deliveries_in_flight").increment(rows.len() as f64);
        if rows.is_empty() {
            return Ok(());
        }
        if !app.events_enabled {
            let seqs: Vec<i64> = rows.iter().map(|r| r.delivery.seq).collect();
            let outcomes = seqs
                .iter()
                .zip(&rows)
                .map(|(&seq, row)| AttemptOutcome {
                    seq,
                    lease: row.lease,
                    attempt: None,
                    next: NextStep::Dropped {
                        reason: "app_disabled".into(),
                    },
                })
                .collect();
            let written = self.store.record_outcomes(outcomes).await;
            self.release(app_id, &seqs, None);
            return written.map_err(|e| e.to_string());
        }
        if app.socket_mode {
            // Socket Mode apps get events over their WebSocket connections only.
            if self.hub.connections(app_id) == 0 {
                self.recheck_later(app_id, now, &rows);
                return Ok(());
            }
            let app = Arc::new(app);
            for row in rows {
                let (me, app) = (self.clone(), app.clone());
                tokio::spawn(async move { me.attempt_socket(app, row).await });
            }
            return Ok(());
        }
        let Some(url) = app.request_url.clone().filter(|_| app.request_url_verified) else {
            self.recheck_later(app_id, now, &rows);
            return Ok(());
        };
        let app = Arc::new(app);
        let url: Arc<str> = url.into();
        for row in rows {
            let me = self.clone();
            let (app, url) = (app.clone(), url.clone());
            tokio::spawn(async move { me.attempt_http(app, url, row).await });
        }
        Ok(())
    }

    /// Sets the lane's next due time as a round found it, unless the lane was woken since
    /// the round began (`seen`): then the earlier of the two, so no wake-up is lost.
    fn settle_due(&self, app_id: &str, seen: u64, next: Option<i64>) {
        self.with_lane(app_id, |l| {
            l.next_due = if l.woken == seen {
                next
            } else {
                match (next, l.next_due) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            };
        });
    }

    /// The attempt of `seq` is over: its place in the lane is free for the next one. When
    /// its outcome is still to be written (`settling`), the row stays excluded from
    /// fetching until then.
    fn end_attempt(&self, app_id: &str, seq: i64, settling: bool, due_at: Option<i64>) {
        self.lanes().attempt_ended(app_id, seq, settling, due_at);
        metrics::gauge!("tidings_deliveries_in_flight").decrement(1.0);
        self.wake.notify_one();
    }

    /// Counts whether an attempt reached the app's endpoint, pacing its lane while nobody
    /// answers there (see [`crate::lane`]), and says so in the log when that changes.
    fn reached(&self, app_id: &str, connected: bool) {
        match self.lanes().attempted(app_id, connected) {
            Some(false) => {
                metrics::counter!("tidings_delivery_lanes_paced_total").increment(1);
                tracing::warn!(
                    app = app_id,
                    after = crate::lane::UNREACHABLE_AFTER,
                    "endpoint unreachable: attempts paced until one connects"
                );
            }
            Some(true) => tracing::info!(app = app_id, "endpoint reachable again: lane open"),
            None => {}
        }
    }

    /// Rows a round took that get no attempt leave the lane together (one lock); with
    /// `recheck`, the lane also drops its hand-overs and looks again by then.
    fn release(&self, app_id: &str, seqs: &[i64], recheck: Option<i64>) {
        let mut lanes = self.lanes();
        if recheck.is_some() {
            lanes.spill(app_id);
        }
        if let Some(l) = lanes.get_mut(app_id) {
            for seq in seqs {
                l.in_flight.remove(seq);
            }
            if let Some(t) = recheck {
                l.next_due = Some(l.next_due.map_or(t, |d| d.min(t)));
            }
        }
        drop(lanes);
        metrics::gauge!("tidings_deliveries_in_flight").decrement(seqs.len() as f64);
    }

    /// The transport went away between the check and the send: leave the rows pending,
    /// untouched, and look again at the next recheck.
    fn recheck_later(&self, app_id: &str, now: i64, rows: &[DueDelivery]) {
        let seqs: Vec<i64> = rows.iter().map(|r| r.delivery.seq).collect();
        let at = now + self.cfg.hold_recheck.as_millis() as i64;
        if self.shared {
            // Claimed but not sent: give the leases back, so no node counts a take-over.
            let held = rows.iter().map(|r| (r.delivery.seq, r.lease)).collect();
            let store = self.store.clone();
            tokio::spawn(async move {
                if let Err(e) = store.postpone(held, at).await {
                    tracing::warn!(error = %e, "cannot release unsent deliveries' leases");
                }
            });
        }
        self.release(app_id, &seqs, Some(at));
    }

    async fn attempt_http(self: Arc<Self>, app: Arc<App>, url: Arc<str>, row: DueDelivery) {
        let permit = self.permits.clone().acquire_owned().await;
        let retry_num = policy::retry_num(&self.cfg.retry_schedule, row.attempts, row.redeliver);
        let last_reason = row
            .delivery
            .reason
            .clone()
            .unwrap_or_else(|| FailureReason::UnknownError.as_str().into());
        let outcome = match crate::envelope::for_delivery(
            &self.catalog,
            &self.key,
            &row.event,
            &row.delivery,
            &app,
        ) {
            Err(e) => self.unbuildable(&row, e),
            Ok(body) => {
                let retry = (retry_num > 0).then_some((retry_num, last_reason.as_str()));
                let r = self
                    .sender
                    .post(&url, Bytes::from(body), &app.signing_secret, retry)
                    .await;
                self.log_failure(&app.id, &row, &r);
                let attempt = Attempt {
                    at: now_ms() - r.latency.as_millis() as i64,
                    transport: "http".into(),
                    status_code: r.status_code,
                    reason: r.failure.map(|f| f.as_str().to_string()),
                    latency_ms: r.latency.as_millis() as i64,
                    retry_num,
                };
                self.conclude(&app.id, &row, attempt, r.latency, r.no_retry)
            }
        };
        self.finish(&app.id, row, outcome, permit).await;
    }

    /// One attempt over Socket Mode: an `events_api` envelope with a fresh `envelope_id`,
    /// acked within `ack_timeout` or failed as `timeout` (also when its socket closes first).
    async fn attempt_socket(self: Arc<Self>, app: Arc<App>, row: DueDelivery) {
        let permit = self.permits.clone().acquire_owned().await;
        let retry_num = policy::retry_num(&self.cfg.retry_schedule, row.attempts, row.redeliver);
        let body = match crate::envelope::for_delivery(
            &self.catalog,
            &self.key,
            &row.event,
            &row.delivery,
            &app,
        ) {
            Ok(b) => b,
            Err(e) => {
                let outcome = self.unbuildable(&row, e);
                return self.finish(&app.id, row, outcome, permit).await;
            }
        };
        let raw = match String::from_utf8(body)
            .map_err(|e| e.to_string())
            .and_then(|s| serde_json::value::RawValue::from_string(s).map_err(|e| e.to_string()))
        {
            Ok(r) => r,
            Err(e) => {
                let outcome = self.unbuildable(&row, e);
                return self.finish(&app.id, row, outcome, permit).await;
            }
        };
        let envelope_id = uuid::Uuid::new_v4().to_string();
        let frame = tidings_core::socket_mode::events_api(&envelope_id, &raw, retry_num);
        let start = std::time::Instant::now();
        let acked = match self.hub.send(&app.id, &envelope_id, frame) {
            Err(SendError::NoConnection) => {
                // The connection went away before sending: no attempt was made.
                let hold = now_ms() + self.cfg.hold_recheck.as_millis() as i64;
                let _ = self
                    .store
                    .postpone(vec![(row.delivery.seq, row.lease)], hold)
                    .await;
                drop(permit);
                // No attempt was made: nothing to write, the delivery leaves its lane now.
                self.end_attempt(&app.id, row.delivery.seq, false, Some(hold));
                return;
            }
            Ok(wait) => match tokio::time::timeout(self.hub.cfg.ack_timeout, wait).await {
                Ok(Ok(())) => true,
                Ok(Err(_)) => false,
                Err(_) => {
                    self.hub.forget(&envelope_id);
                    false
                }
            },
        };
        let latency = start.elapsed();
        if !acked {
            tracing::info!(delivery = %row.delivery.id, event_id = %row.event.id, app = %app.id, envelope_id, retry_num, "socket mode envelope not acked");
        }
        let attempt = Attempt {
            at: now_ms() - latency.as_millis() as i64,
            transport: "socket".into(),
            status_code: None,
            reason: (!acked).then(|| "timeout".to_string()),
            latency_ms: latency.as_millis() as i64,
            retry_num,
        };
        let outcome = self.conclude(&app.id, &row, attempt, latency, false);
        self.finish(&app.id, row, outcome, permit).await;
    }

    fn unbuildable(&self, row: &DueDelivery, e: String) -> AttemptOutcome {
        tracing::error!(delivery = %row.delivery.id, error = %e, "cannot build the envelope");
        AttemptOutcome {
            seq: row.delivery.seq,
            lease: row.lease,
            attempt: None,
            next: NextStep::Failed {
                reason: FailureReason::UnknownError.as_str().into(),
            },
        }
    }

    /// What follows an attempt — delivered, a retry on Slack's schedule, or failed — with
    /// the attempt counted in metrics and the health rule.
    fn conclude(
        &self,
        app_id: &str,
        row: &DueDelivery,
        attempt: Attempt,
        latency: Duration,
        no_retry: bool,
    ) -> AttemptOutcome {
        let outcome = attempt.reason.as_deref().unwrap_or("success").to_string();
        metrics::counter!("tidings_delivery_attempts_total", "transport" => attempt.transport.clone(), "outcome" => outcome).increment(1);
        metrics::histogram!("tidings_delivery_latency_seconds", "transport" => attempt.transport.clone()).record(latency.as_secs_f64());
        let store = self.store.clone();
        self.health.record(
            &store,
            app_id,
            attempt.reason.is_none(),
            attempt.retry_num == 0 && !row.redeliver,
        );
        let next = match attempt.reason.clone() {
            None => NextStep::Delivered,
            Some(reason) if row.redeliver || no_retry => NextStep::Failed { reason },
            Some(reason) => match policy::retry_delay(&self.cfg.retry_schedule, row.attempts + 1) {
                Some(d) => NextStep::Retry {
                    at_ms: now_ms() + d.as_millis() as i64,
                    reason,
                },
                None => NextStep::Failed { reason },
            },
        };
        AttemptOutcome {
            seq: row.delivery.seq,
            lease: row.lease,
            attempt: Some(attempt),
            next,
        }
    }

    /// Records the outcome, then lets the delivery leave its lane. The attempt gives its
    /// place in the lane to the next one at once, but the row stays excluded from fetching
    /// until its outcome is durable, so it is never fetched again while its result is
    /// unknown to the store; the endpoint's concurrency does not wait on the group commit.
    async fn finish(
        &self,
        app_id: &str,
        row: DueDelivery,
        outcome: AttemptOutcome,
        permit: Result<tokio::sync::OwnedSemaphorePermit, tokio::sync::AcquireError>,
    ) {
        let seq = row.delivery.seq;
        let retry = match &outcome.next {
            NextStep::Retry { at_ms, reason } => Some((*at_ms, reason.clone())),
            _ => None,
        };
        if let Some(a) = &outcome.attempt {
            let connected = a.reason.as_deref() != Some(FailureReason::ConnectionFailed.as_str());
            self.reached(app_id, connected);
        }
        self.end_attempt(app_id, seq, true, None);
        let (done, written) = tokio::sync::oneshot::channel();
        if self.outcomes.send((outcome, done)).await.is_ok() {
            let _ = written.await;
        }
        self.lanes().settled(app_id, row, retry, now_ms());
        // The permit goes back before the wake-up, so the round it starts can use it.
        drop(permit);
        // A retry is due later, and a lane that was full of settling attempts has room.
        self.wake.notify_one();
    }

    fn log_failure(&self, app_id: &str, row: &DueDelivery, r: &SendResult) {
        if let Some(reason) = r.failure {
            tracing::info!(delivery = %row.delivery.id, event_id = %row.event.id, app = app_id, reason = reason.as_str(),
                status = ?r.status_code, detail = r.detail.as_deref().unwrap_or(""), "delivery attempt failed");
        }
    }
}

/// Writes attempt outcomes in batches: whatever has queued while the last write ran goes
/// in the next one (the same idea as the store's group commit, one level up). A failed
/// write is retried until it succeeds: an outcome is never dropped, and its delivery stays
/// in its lane (not re-fetched) until it is durable.
async fn write_outcomes(
    store: Arc<dyn Store>,
    mut queue: tokio::sync::mpsc::Receiver<QueuedOutcome>,
) {
    let mut batch = Vec::with_capacity(OUTCOME_BATCH);
    let mut waiters = Vec::with_capacity(OUTCOME_BATCH);
    while let Some((first, done)) = queue.recv().await {
        batch.push(first);
        waiters.push(done);
        while batch.len() < OUTCOME_BATCH {
            match queue.try_recv() {
                Ok((o, d)) => {
                    batch.push(o);
                    waiters.push(d);
                }
                Err(_) => break,
            }
        }
        let mut tries = 0u64;
        while let Err(e) = store.record_outcomes(batch.clone()).await {
            tries += 1;
            tracing::error!(error = %e, tries, outcomes = batch.len(), "cannot record attempts; retrying");
            tokio::time::sleep(Duration::from_millis(200 * tries.min(25))).await;
        }
        batch.clear();
        for w in waiters.drain(..) {
            let _ = w.send(());
        }
    }
}

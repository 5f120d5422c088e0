//! The dispatcher schedules: it takes due deliveries from the queue, app by app, and
//! starts one attempt each ([`attempts`]: prepare → send over a transport → conclude).
//!
//! - **Per-app lanes.** Each app has at most `max_in_flight_per_app` attempts in flight
//!   and its own next-due time, so a slow or dead endpoint fills only its own lane; a
//!   global semaphore bounds all in-flight attempts.
//! - **The store is the queue.** Memory holds only what is in flight (bounded), never the
//!   backlog: each round reads at most a lane's free capacity of due rows for an app,
//!   using the `(app_id, next_attempt_at)` index.
//! - **One doorbell.** After every commit that made work, the store rings once with a
//!   [`WorkNotice`] ([`Dispatcher::notice`]): the deliveries a publish just committed,
//!   handed over so a lane that has caught up with the store need not read them back (up
//!   to a bounded number; when a lane cannot take one, it drops what it holds — all of it
//!   is pending in the store — and reads from the store again, in order, until it has
//!   caught up), and the apps whose work changed otherwise. Other nodes' commits arrive
//!   the same way. Nothing else wakes the dispatcher.
//! - **At-least-once.** A delivery leaves its lane only after its outcome is committed, so
//!   it is never fetched twice while in flight; a crash leaves it pending and the next start
//!   sends it again with its attempt count intact.
//! - **Several nodes** (PostgreSQL): reading due rows claims them with a lease, so each
//!   delivery is attempted by one node per retry step: the node renews the leases of
//!   everything it holds (in flight or settling) every quarter lease ([`upkeep`]), its
//!   outcome writes and holds are fenced by the claim's lease token (a node that lost a
//!   lease changes nothing), and a lane counts settling attempts against
//!   `max_in_flight_per_app`, so a node that dies leaves at most that many
//!   sent-but-unsaved deliveries per app for others to send again (as retries). Lanes
//!   keep no retries there: each is claimed again. A periodic rescan finds work whose
//!   signal was missed (a dead node's expired leases, retries it had scheduled).
//!
//! Each round for one app (hold, read, start attempts) is in [`round`]; the background
//! upkeep is in [`upkeep`].
//!
//! Time comes from an injected [`Clock`], so the rules above run in paused tokio time in
//! the unit tests (`dispatcher/tests.rs`).
//!
//! `lanes` is a `std::sync::Mutex`: held only for map updates, never across an `.await`.

mod attempts;
mod round;
#[cfg(test)]
mod tests;
mod upkeep;

use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use futures::StreamExt;
use tidings_core::catalog::Catalog;
use tidings_store::{DeliveryQueue, WorkNotice};
use tokio::sync::{Notify, Semaphore};

use crate::clock::Clock;
use crate::lane::{Lane, Lanes};
use crate::outcomes::{Outcomes, OUTCOME_BATCH};
use crate::transport::Transport;

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
    /// Back-pressure answers in a row an app may give before they count as failed
    /// attempts (see `dispatcher/attempts.rs`).
    pub retry_after_budget: u32,
}

/// Told of every attempt made: `(app, succeeded, first attempt)`. The engine feeds the
/// health rule with it.
pub type AttemptHook = Arc<dyn Fn(&str, bool, bool) + Send + Sync>;

/// Told when an app's Request URL answers `410 Gone`: `(app, the URL)`. The engine marks
/// the app as needing a new URL with it.
pub type GoneHook = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// What the dispatcher works with, besides its configuration.
pub struct Parts {
    /// The store, as the engine sees it.
    pub queue: Arc<dyn DeliveryQueue>,
    pub catalog: Arc<Catalog>,
    /// Apps with a Request URL.
    pub http: Arc<dyn Transport>,
    /// Socket Mode apps.
    pub socket: Arc<dyn Transport>,
    pub on_attempt: AttemptHook,
    pub on_gone: GoneHook,
    pub clock: Arc<dyn Clock>,
}

/// The delivery engine's dispatcher. Cheap to share.
pub struct Dispatcher {
    queue: Arc<dyn DeliveryQueue>,
    catalog: Arc<Catalog>,
    key: Vec<u8>,
    http: Arc<dyn Transport>,
    socket: Arc<dyn Transport>,
    on_attempt: AttemptHook,
    on_gone: GoneHook,
    clock: Arc<dyn Clock>,
    cfg: DispatchConfig,
    lanes: Mutex<Lanes>,
    /// Rung by notices and by attempts ending: the claim loop looks again.
    wake: Notify,
    /// Rung when notices may have been missed: every app is looked at again.
    rescan_now: Notify,
    permits: Arc<Semaphore>,
    /// Started with the dispatcher's tasks ([`Dispatcher::spawn`]).
    outcomes: OnceLock<Outcomes>,
    /// Nodes share the store: deliveries are leased (see the module's docs).
    shared: bool,
    /// Which attempts go ahead while the engine stops (see [`crate::drain`]).
    gate: crate::drain::Gate,
    /// Also told of every notice (the apps it names), before the lanes take it: RTM
    /// connections read the deliveries a commit made (see [`Dispatcher::observe_work`]).
    observer: OnceLock<WorkObserver>,
}

/// Told which apps a commit made deliveries for (`None`: maybe every app).
pub type WorkObserver = Arc<dyn Fn(Option<&[String]>) + Send + Sync>;

/// A round's store read: the seqs to skip, and the lane's fence (read only below it).
type StoreRead = (Vec<i64>, Option<i64>);

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

impl Dispatcher {
    pub fn new(parts: Parts, cfg: DispatchConfig) -> Arc<Dispatcher> {
        let key = parts.queue.event_context_key();
        let shared = parts.queue.is_shared();
        let mut lanes = Lanes::new(READY_TOTAL);
        lanes.keep_retries = !shared;
        Arc::new(Dispatcher {
            shared,
            permits: Arc::new(Semaphore::new(cfg.max_in_flight_total)),
            queue: parts.queue,
            catalog: parts.catalog,
            key,
            http: parts.http,
            socket: parts.socket,
            on_attempt: parts.on_attempt,
            on_gone: parts.on_gone,
            clock: parts.clock,
            cfg,
            lanes: Mutex::new(lanes),
            wake: Notify::new(),
            rescan_now: Notify::new(),
            outcomes: OnceLock::new(),
            observer: OnceLock::new(),
            gate: Default::default(),
        })
    }

    fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    pub(crate) fn gate(&self) -> &crate::drain::Gate {
        &self.gate
    }

    pub(crate) fn queue(&self) -> &Arc<dyn DeliveryQueue> {
        &self.queue
    }

    /// Wakes the claim loop (to see that the engine is stopping).
    pub(crate) fn nudge(&self) {
        self.wake.notify_one();
    }

    /// What this node holds: the deliveries in flight, and how many attempts wait for
    /// their outcomes to be written.
    pub(crate) fn held(&self) -> (Vec<i64>, usize) {
        let lanes = self.lanes();
        let in_flight = lanes.values().flat_map(|l| l.in_flight.iter().copied());
        let in_flight = in_flight.collect();
        (in_flight, lanes.values().map(|l| l.settling.len()).sum())
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

    /// The doorbell: a commit made work. Handed-over rows go to their lanes (see
    /// [`Lanes::offer`]); named apps are looked at now, and since their work may lie above
    /// a lane's fence (deliveries a publish did not hand over), their lanes spill.
    pub(crate) fn notice(&self, n: WorkNotice) {
        if let Some(observe) = self.observer.get() {
            if n.everything {
                observe(None);
            } else {
                let mut apps: Vec<String> = n
                    .handed_over
                    .iter()
                    .map(|d| d.delivery.app_id.clone())
                    .chain(n.apps.iter().cloned())
                    .collect();
                apps.sort();
                apps.dedup();
                observe(Some(&apps));
            }
        }
        let now = self.now();
        {
            let mut lanes = self.lanes();
            if !n.handed_over.is_empty() {
                lanes.offer(n.handed_over, now);
            }
            for app in n.apps {
                lanes.spill(&app);
                lanes.entry(app).or_default().due_by(now);
            }
        }
        if n.everything {
            self.rescan_now.notify_one();
        }
        self.wake.notify_one();
    }

    /// Makes every app with pending deliveries due by its earliest one (at start, after
    /// missed signals, and periodically when nodes share the store). The doorbell is
    /// registered before the first rescan, so once it has succeeded every app with
    /// pending deliveries has a lane or gets them handed over (the census).
    async fn rescan(&self) -> bool {
        match self.queue.pending_apps().await {
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

    /// Registers a second listener on the doorbell (once; later calls are ignored): it
    /// hears which apps each commit made deliveries for, and must only note it (it runs
    /// on the writer's after-commit step).
    pub fn observe_work(&self, observer: WorkObserver) {
        let _ = self.observer.set(observer);
    }

    /// Registers the doorbell and spawns the claim loop ([`Dispatcher::run`]), the outcome
    /// writer and the upkeep tasks (rescans, lease renewal, the pending-depth gauge) on
    /// the current runtime.
    pub fn spawn(self: &Arc<Self>) {
        let outcomes = Outcomes::start(self.queue.clone(), self.cfg.max_in_flight_total);
        let _ = self.outcomes.set(outcomes);
        let me: Weak<Dispatcher> = Arc::downgrade(self);
        self.queue.set_work_sink(Arc::new(move |n| {
            if let Some(me) = me.upgrade() {
                me.notice(n);
            }
        }));
        let me = self.clone();
        tokio::spawn(async move { me.run().await });
        upkeep::spawn(self);
    }

    /// The claim loop: rebuilds from the store, then, round after round, reads what each
    /// lane has room for and starts its attempts; sleeps until the next due time, a
    /// notice or an attempt's end.
    async fn run(self: Arc<Self>) {
        // Rebuild from the store: which apps have pending work, and since when.
        while !self.rescan().await {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let mut round = 0usize;
        // Stopping (see `crate::drain`): claim nothing more.
        while !self.gate.stopping() {
            let now = self.now();
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
            let wait = earliest.map_or(1000, |t| (t - self.now()).clamp(0, 1000)) as u64;
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
}

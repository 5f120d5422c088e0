//! The dispatcher's per-app lanes: what each app has in flight, settling and handed over,
//! and when it next has work. Pure bookkeeping, kept under the dispatcher's one mutex;
//! the rules that keep a delivery from being started twice live here.
//!
//! A delivery reaches a lane in one of two ways: a store read (the store is the queue),
//! or a hand-over from the writer right after a publish committed it ([`Lanes::offer`]).
//! A lane that has caught up with the store (its last read came back short) takes
//! hand-overs as they come. A lane behind the store takes them too, and sets its *fence*
//! at the first one: every pending delivery at or above the fence is one the lane holds
//! or has under way, so its store reads ask only for what lies below the fence (the
//! backlog, and its retries) and take those first, in order; once a read comes
//! back short the lane has caught up and the fence goes. A pile that outgrows one read
//! no longer sends every new delivery through the store. Whatever could break that
//! promise — the global bound on what lanes hold, deliveries a publish did not hand over
//! (a wake-up), a retry of a delivery above the fence, a delivery put back untried —
//! makes the lane *spill*: it drops all it holds (every one of them is pending on disk)
//! and reads the store, in order, without a fence, until it takes hand-overs again.
//!
//! A lane also keeps the retries of the deliveries it started, once their outcome is
//! durable ([`Lanes::settled`]), and starts each when it falls due: its reads skip them
//! like hand-overs, so a failed attempt costs no store read. They count against the same
//! global bound; past it, for a paced lane, and when it is due later than
//! [`KEEP_RETRY_MS`], a retry is left to the store.
//!
//! An endpoint nobody answers at (its last [`UNREACHABLE_AFTER`] attempts all failed to
//! connect) gets a paced lane: at most [`PROBES`] attempts at a time, one round per
//! [`PACE_MS`]. The rest stay pending, in order, untouched (a paced lane holds no
//! hand-overs), and the first attempt that reaches the endpoint opens the lane again. A
//! down endpoint then costs a few hundred attempts a second however much piles up for
//! it, instead of taking the CPU the apps that answer need.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::ops::{Deref, DerefMut};

use tidings_store::DueDelivery;

/// Attempts in a row that failed to connect before a lane is paced.
pub const UNREACHABLE_AFTER: u32 = 16;
/// Attempts a paced lane has under way at most.
pub const PROBES: usize = 4;
/// Time between two rounds of a paced lane (ms): with [`PROBES`], at most 160 attempts a
/// second.
pub const PACE_MS: i64 = 25;
/// A lane keeps a retry due within this long (ms); later ones (Slack's schedule waits a
/// minute, then five) wait on disk rather than take the global bound from hand-overs.
pub const KEEP_RETRY_MS: i64 = 5_000;

#[derive(Default)]
pub struct Lane {
    /// Attempts under way: these count against `max_in_flight_per_app`. Ordered sets,
    /// not hash sets: every store read walks both for its exclusion list, and a hash set
    /// walks its whole table, which keeps the size of the lane's busiest moment (under
    /// `fanout` that walk was 2 % of the server's CPU).
    pub in_flight: BTreeSet<i64>,
    /// Attempts made whose outcomes are not yet durable: no longer holding the endpoint's
    /// capacity, but not to be fetched again until written.
    pub settling: BTreeSet<i64>,
    /// When the lane next has due work in the store (ms); `None`: nothing known.
    pub next_due: Option<i64>,
    /// Bumped whenever `next_due` is brought forward from outside a dispatch round (new
    /// work, a retry scheduled), so a round that read the store before that does not
    /// overwrite it with its older view.
    pub woken: u64,
    /// Deliveries handed over, in commit order, not yet started; their seqs are in
    /// `queued`.
    ready: VecDeque<DueDelivery>,
    /// Deliveries the lane started whose retry it keeps, by (when due, seq); their seqs
    /// are in `queued` too, and they count as held.
    retrying: BTreeMap<(i64, i64), DueDelivery>,
    /// Ordered, so a read behind a fence collects only the seqs below it (a lane behind
    /// the store can hold thousands above it, and the exclusion list is built every round).
    queued: BTreeSet<i64>,
    /// The last store read came back short: the store holds nothing due for the lane
    /// that the lane does not know of.
    caught_up: bool,
    /// Set while behind the store: every pending delivery at or above this seq is held
    /// or under way here, so store reads skip them (see the module's docs).
    fence: Option<i64>,
    /// Attempts in a row that found nobody at the endpoint (refused, unresolvable, no
    /// TLS handshake): past [`UNREACHABLE_AFTER`] the lane is paced.
    connect_failures: u32,
    /// A paced lane starts no round before this (ms).
    paced_until: i64,
    /// The endpoint asked to wait (`Retry-After`): no round before this (ms).
    backoff_until: i64,
    /// Back-pressure answers in a row, with no success between.
    backoffs: u32,
}

impl Lane {
    /// Brings `next_due` forward to `t` (never later).
    pub fn due_by(&mut self, t: i64) {
        self.next_due = Some(self.next_due.map_or(t, |d| d.min(t)));
        self.woken += 1;
    }

    /// Whether the store has work due for the lane at `now`.
    pub fn store_due(&self, now: i64) -> bool {
        self.next_due.is_some_and(|d| d <= now)
    }

    /// Whether the lane has anything to start at `now` (given room for it).
    pub fn has_work(&self, now: i64) -> bool {
        (self.store_due(now) || !self.ready.is_empty() || self.retry_due(now))
            && self.paced_until.max(self.backoff_until) <= now
    }

    /// When the lane next has work: now when it holds hand-overs; for a paced lane, not
    /// before its next round.
    pub fn next_work(&self, now: i64) -> Option<i64> {
        let t = if self.ready.is_empty() {
            self.next_due
        } else {
            Some(now)
        };
        let retry = self.retrying.keys().next().map(|(at, _)| *at);
        [t, retry]
            .into_iter()
            .flatten()
            .min()
            .map(|t| t.max(self.paced_until).max(self.backoff_until))
    }

    /// The endpoint asked to wait until `until` (ms): the lane starts no round before
    /// then. Returns the back-pressure answers in a row, this one included.
    pub fn back_off(&mut self, until: i64) -> u32 {
        self.backoff_until = self.backoff_until.max(until);
        self.backoffs = self.backoffs.saturating_add(1);
        self.backoffs
    }

    /// An attempt succeeded: the back-pressure count starts over.
    pub fn succeeded(&mut self) {
        self.backoffs = 0;
    }

    /// Whether a retry the lane keeps is due at `now`.
    fn retry_due(&self, now: i64) -> bool {
        self.retrying
            .keys()
            .next()
            .is_some_and(|(at, _)| *at <= now)
    }

    /// Whether the endpoint's recent attempts all failed to connect.
    pub fn unreachable(&self) -> bool {
        self.connect_failures >= UNREACHABLE_AFTER
    }

    /// Most attempts the lane may have under way, given its configured width.
    pub fn width(&self, configured: usize) -> usize {
        if self.unreachable() {
            configured.min(PROBES)
        } else {
            configured
        }
    }

    /// A round is starting at `now`: a paced lane starts its next one [`PACE_MS`] later.
    pub fn round_started(&mut self, now: i64) {
        if self.unreachable() {
            self.paced_until = now + PACE_MS;
        }
    }

    /// An attempt ended: `connected` tells whether it reached the endpoint (any answer,
    /// or a timeout after connecting). Returns the change in reachability, if any:
    /// `Some(false)` when the lane has just become paced, `Some(true)` when it opens again.
    pub fn attempted(&mut self, connected: bool) -> Option<bool> {
        let was = self.unreachable();
        if connected {
            self.connect_failures = 0;
            self.paced_until = 0;
        } else {
            self.connect_failures = self.connect_failures.saturating_add(1);
        }
        let now = self.unreachable();
        (was != now).then_some(!now)
    }

    /// Drops the hand-overs and retries the lane holds (all pending on disk) and its
    /// fence, so it reads the store in order again; returns how many it dropped.
    fn drop_held(&mut self) -> usize {
        let dropped = self.ready.len() + self.retrying.len();
        metrics::counter!("tidings_delivery_held_dropped_total").increment(dropped as u64);
        self.ready.clear();
        self.retrying.clear();
        self.queued.clear();
        self.caught_up = false;
        self.fence = None;
        dropped
    }

    /// Whether the lane holds hand-overs or retries.
    pub fn holds(&self) -> bool {
        !self.ready.is_empty() || !self.retrying.is_empty()
    }

    /// What a store read must skip: attempts under way or settling, and hand-overs held
    /// (those the fence does not already keep out).
    pub fn exclusion(&self) -> Vec<i64> {
        let held = match self.fence {
            Some(f) => self.queued.range(..f),
            None => self.queued.range(..),
        };
        self.in_flight
            .iter()
            .chain(&self.settling)
            .chain(held)
            .copied()
            .collect()
    }

    /// Store reads ask only for deliveries below this seq (see the module's docs).
    pub fn fence(&self) -> Option<i64> {
        self.fence
    }

    /// Whether the lane must drop its hand-overs before reading the store at `now`: it has
    /// store work due (a retry, a wake-up) that its fence does not account for.
    pub fn must_spill(&self, now: i64) -> bool {
        self.store_due(now) && self.holds() && self.fence.is_none()
    }

    /// Whether a retry of `seq` would be hidden from the lane's store reads by its fence.
    pub fn fenced_out(&self, seq: i64) -> bool {
        self.fence.is_some_and(|f| seq >= f)
    }
}

/// Every lane, and how many hand-overs they hold together.
#[derive(Default)]
pub struct Lanes {
    map: HashMap<String, Lane>,
    held: usize,
    /// Most hand-overs held in all lanes together.
    max_held: usize,
    /// Set once the store has told which apps have pending deliveries (the dispatcher's
    /// first rescan, which starts after hand-overs are registered). From then on, an app
    /// with no lane has nothing pending that was not handed over or announced by a
    /// wake-up, so a lane [`Lanes::offer`] creates starts caught up instead of reading
    /// the store: at start-up with 10,000 apps, that read was 10,000 store queries in
    /// the first second, and the publish calls waited behind them.
    census: bool,
    /// Whether lanes keep the retries of the deliveries they started (see
    /// [`Lanes::settled`]). Off when nodes share the store: a retry must be claimed again
    /// (its lease ended with the outcome), or another node could send it at the same time.
    pub keep_retries: bool,
}

impl Deref for Lanes {
    type Target = HashMap<String, Lane>;
    fn deref(&self) -> &Self::Target {
        &self.map
    }
}

impl DerefMut for Lanes {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.map
    }
}

impl Lanes {
    pub fn new(max_held: usize) -> Lanes {
        Lanes {
            max_held,
            keep_retries: true,
            ..Lanes::default()
        }
    }

    /// The store's list of apps with pending deliveries has been read, and every app on
    /// it has a lane (see the `census` field).
    pub fn census_taken(&mut self) {
        self.census = true;
    }

    /// Hand-overs held in all lanes.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Drops what the app's lane holds (it is pending in the store) and has it read the
    /// store again before taking hand-overs.
    pub fn spill(&mut self, app_id: &str) {
        if let Some(l) = self.map.get_mut(app_id) {
            self.held -= l.drop_held();
        }
    }

    /// An attempt of `seq` is over and its place in the lane free. With `settling`, its
    /// outcome is still to be written and the row stays excluded until then; without, it
    /// was put back untried, pending on disk, and the lane spills so that no fence hides
    /// it from the reads. `due_at`: when the lane next has store work.
    pub fn attempt_ended(&mut self, app_id: &str, seq: i64, settling: bool, due_at: Option<i64>) {
        if !settling {
            self.spill(app_id);
        }
        if let Some(l) = self.map.get_mut(app_id) {
            if l.in_flight.remove(&seq) && settling {
                l.settling.insert(seq);
            }
            if let Some(t) = due_at {
                l.due_by(t);
            }
        }
    }

    /// The outcome of `row` is durable; with `retry`, the delivery is pending again from
    /// then (when, and why it failed). The lane keeps the retry (it is skipped by its
    /// store reads like a hand-over) while the global bound allows and its endpoint
    /// answers; otherwise the retry is left to the store, and one at or above the lane's
    /// fence, which would be hidden from its reads, makes the lane spill and read the
    /// store from `now`. `counted`: the outcome recorded an attempt (a deferral for
    /// back-pressure does not).
    pub fn settled(
        &mut self,
        app_id: &str,
        mut row: DueDelivery,
        retry: Option<(i64, String)>,
        counted: bool,
        now: i64,
    ) {
        let seq = row.delivery.seq;
        let Some(l) = self.map.get_mut(app_id) else {
            return;
        };
        l.settling.remove(&seq);
        let Some((at, reason)) = retry else {
            return;
        };
        if self.keep_retries
            && self.held < self.max_held
            && !l.unreachable()
            && at - now <= KEEP_RETRY_MS
        {
            if counted {
                row.attempts += 1;
            }
            row.redeliver = false;
            row.delivery.reason = Some(reason);
            l.queued.insert(seq);
            l.retrying.insert((at, seq), row);
            self.held += 1;
            return;
        }
        if l.fenced_out(seq) {
            self.held -= l.drop_held();
            l.due_by(now);
        }
        l.due_by(at);
    }

    /// An attempt ended, reaching the endpoint or not (see [`Lane::attempted`]); a lane
    /// that becomes paced drops what it holds, leaving the global bound to the others.
    pub fn attempted(&mut self, app_id: &str, connected: bool) -> Option<bool> {
        let change = self.map.get_mut(app_id)?.attempted(connected);
        if change == Some(false) {
            self.spill(app_id);
        }
        change
    }

    /// Forgets the app's lane.
    pub fn remove(&mut self, app_id: &str) {
        self.spill(app_id);
        self.map.remove(app_id);
    }

    /// Deliveries a publish has just committed, in commit order. A lane queues them; one
    /// behind the store sets its fence at the first (and is due at `now`, to read what
    /// lies below). Past the global bound they are left to the store read: the lane
    /// spills what it holds and is due at `now`. A delivery already in flight, settling or
    /// queued (a store read took it first) is skipped.
    pub fn offer(&mut self, rows: Vec<DueDelivery>, now: i64) {
        for row in rows {
            let seq = row.delivery.seq;
            let app = row.delivery.app_id.as_str();
            if !self.map.contains_key(app) {
                let lane = Lane {
                    caught_up: self.census,
                    ..Lane::default()
                };
                self.map.insert(app.to_owned(), lane);
            }
            let Some(lane) = self.map.get_mut(app) else {
                continue;
            };
            if lane.in_flight.contains(&seq)
                || lane.settling.contains(&seq)
                || lane.queued.contains(&seq)
            {
                continue;
            }
            // Commit order is seq order, so nothing lands below the fence; should it
            // (another writer), the lane spills rather than hide it from its reads.
            // A paced lane holds nothing: its pile waits on disk.
            let fits = self.held < self.max_held
                && !lane.unreachable()
                && lane.fence.is_none_or(|f| seq >= f);
            if fits {
                if !lane.caught_up && lane.fence.is_none() {
                    lane.fence = Some(seq);
                    lane.due_by(now);
                }
                lane.queued.insert(seq);
                lane.ready.push_back(row);
                self.held += 1;
            } else {
                self.held -= lane.drop_held();
                lane.due_by(now);
            }
        }
    }

    /// The deliveries a round starts for the app: those its store read found (`read`;
    /// when that came back short of `capacity`, the lane has caught up), then hand-overs,
    /// up to `capacity`. A row both read and queued is taken once. All are marked in
    /// flight here, under the lock [`Lanes::offer`] runs under, so none starts twice.
    pub fn take(
        &mut self,
        app_id: &str,
        read: Option<Vec<DueDelivery>>,
        capacity: usize,
        now: i64,
    ) -> Vec<DueDelivery> {
        let Some(l) = self.map.get_mut(app_id) else {
            return Vec::new();
        };
        if read.as_ref().is_some_and(|r| r.len() < capacity) {
            l.caught_up = true;
            l.fence = None;
        }
        let mut rows: Vec<DueDelivery> = read
            .unwrap_or_default()
            .into_iter()
            .filter(|r| {
                !l.queued.contains(&r.delivery.seq) && !l.in_flight.contains(&r.delivery.seq)
            })
            .collect();
        let read = rows.len();
        while rows.len() < capacity && l.retry_due(now) {
            let Some((_, row)) = l.retrying.pop_first() else {
                break;
            };
            l.queued.remove(&row.delivery.seq);
            self.held -= 1;
            rows.push(row);
        }
        while rows.len() < capacity {
            let Some(row) = l.ready.pop_front() else {
                break;
            };
            l.queued.remove(&row.delivery.seq);
            self.held -= 1;
            rows.push(row);
        }
        l.in_flight.extend(rows.iter().map(|r| r.delivery.seq));
        metrics::counter!("tidings_delivery_rows_total", "source" => "store")
            .increment(read as u64);
        metrics::counter!("tidings_delivery_rows_total", "source" => "held")
            .increment((rows.len() - read) as u64);
        rows
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use tidings_core::fanout::Authorization;
    use tidings_store::{Delivery, DeliveryStatus, StoredEvent};

    fn row(app: &str, seq: i64) -> DueDelivery {
        DueDelivery {
            delivery: Delivery {
                id: format!("D{seq}"),
                seq,
                event_id: format!("E{seq}"),
                app_id: app.into(),
                team_id: "T1".into(),
                event_type: "message".into(),
                status: DeliveryStatus::Pending,
                reason: None,
                authorization: Authorization {
                    enterprise_id: None,
                    team_id: Some("T1".into()),
                    user_id: "U1".into(),
                    is_bot: true,
                    is_enterprise_install: false,
                },
                created_at: 0,
                attempts: Vec::new(),
            },
            event: Arc::new(StoredEvent {
                id: format!("E{seq}"),
                team_id: "T1".into(),
                enterprise_id: None,
                event_type: "message".into(),
                app_id: None,
                channel_id: None,
                actor_id: None,
                event_time: 0,
                payload: "{}".into(),
                idempotency_key: None,
                created_at: 0,
            }),
            attempts: 0,
            redeliver: false,
            lease: None,
        }
    }

    fn seqs(rows: &[DueDelivery]) -> Vec<i64> {
        rows.iter().map(|r| r.delivery.seq).collect()
    }

    /// A lane that has read the store and found it short of what it could take.
    fn caught_up(lanes: &mut Lanes, app: &str) {
        lanes.offer(vec![row(app, 0)], 0);
        lanes.take(app, Some(vec![row(app, 0)]), 10, 0);
        let l = lanes.get_mut(app).expect("lane");
        l.in_flight.clear();
        l.next_due = None;
    }

    #[test]
    fn after_the_census_a_new_lane_takes_hand_overs_without_reading_the_store() {
        let mut lanes = Lanes::new(100);
        lanes.entry("A1".into()).or_default().due_by(3);
        lanes.census_taken();
        lanes.offer(vec![row("A1", 1), row("A2", 2)], 5);
        let (a1, a2) = (&lanes["A1"], &lanes["A2"]);
        assert_eq!(
            a1.fence(),
            Some(1),
            "listed by the census: reads its backlog"
        );
        assert!(a1.store_due(5));
        assert_eq!(
            a2.fence(),
            None,
            "not listed: nothing pending it was not handed"
        );
        assert_eq!(a2.next_due, None, "no store read");
        assert_eq!(seqs(&lanes.take("A2", None, 10, 5)), vec![2]);
        lanes.offer(vec![row("A2", 3)], 6);
        assert_eq!(lanes["A2"].fence(), None, "still caught up");
    }

    #[test]
    fn after_the_census_a_woken_lane_drops_its_hand_overs_and_reads_the_store() {
        let mut lanes = Lanes::new(100);
        lanes.census_taken();
        lanes.offer(vec![row("A1", 5)], 0);
        // A publish that could not hand over all its rows wakes the app instead.
        lanes.get_mut("A1").expect("lane").due_by(1);
        assert!(
            lanes["A1"].must_spill(1),
            "unfenced: the read must see 5 too"
        );
        lanes.spill("A1");
        assert_eq!(lanes.held(), 0);
        assert!(lanes["A1"].store_due(1));
    }

    #[test]
    fn a_new_lane_holds_hand_overs_and_first_reads_what_lies_below_them() {
        let mut lanes = Lanes::new(100);
        lanes.offer(vec![row("A1", 1), row("A1", 2)], 5);
        assert_eq!(lanes.held(), 2);
        let l = &lanes["A1"];
        assert_eq!(l.fence(), Some(1), "reads ask only for what lies below");
        assert_eq!(l.next_due, Some(5));
        assert!(
            l.exclusion().is_empty(),
            "the fence keeps the held ones out"
        );
        // The store read finds an older one, comes back short, and the lane has caught up.
        let rows = lanes.take("A1", Some(vec![row("A1", 0)]), 10, 0);
        assert_eq!(seqs(&rows), vec![0, 1, 2]);
        assert_eq!(lanes["A1"].fence(), None);
        lanes.offer(vec![row("A1", 3)], 6);
        assert_eq!(lanes.held(), 1);
        assert_eq!(seqs(&lanes.take("A1", None, 10, 0)), vec![3]);
        assert_eq!(lanes.held(), 0);
    }

    #[test]
    fn a_lane_behind_the_store_keeps_its_hand_overs_and_takes_the_backlog_first() {
        let mut lanes = Lanes::new(100);
        lanes.offer(vec![row("A1", 10)], 0);
        // A full read: more lies below the fence, and the hand-over waits behind it.
        let rows = lanes.take("A1", Some(vec![row("A1", 1), row("A1", 2)]), 2, 0);
        assert_eq!(seqs(&rows), vec![1, 2]);
        lanes.offer(vec![row("A1", 11)], 1);
        assert_eq!(lanes.held(), 2, "kept, not sent back to the store");
        assert_eq!(lanes["A1"].fence(), Some(10));
        assert!(lanes["A1"].fenced_out(10) && !lanes["A1"].fenced_out(9));
        assert!(
            !lanes["A1"].must_spill(1),
            "a fenced lane reads below its fence without dropping what it holds"
        );
        let rows = lanes.take("A1", Some(vec![row("A1", 3)]), 4, 0);
        assert_eq!(
            seqs(&rows),
            vec![3, 10, 11],
            "the backlog, then the hand-overs"
        );
        assert_eq!(lanes["A1"].fence(), None, "caught up");
    }

    /// A lane behind the store, fenced at 10, holding 11, with 1, 2 and 10 under way.
    fn fenced_with_10_under_way(max_held: usize) -> Lanes {
        let mut lanes = Lanes::new(max_held);
        lanes.offer(vec![row("A1", 10), row("A1", 11)], 0);
        let rows = lanes.take("A1", Some(vec![row("A1", 1), row("A1", 2)]), 2, 0);
        assert_eq!(seqs(&rows), vec![1, 2], "a full read: still behind");
        assert_eq!(seqs(&lanes.take("A1", None, 1, 0)), vec![10]);
        assert_eq!(lanes["A1"].fence(), Some(10));
        // As the round that read would leave it: nothing more known to be due.
        lanes.get_mut("A1").expect("lane").next_due = None;
        lanes
    }

    #[test]
    fn the_lane_keeps_a_retry_and_starts_it_when_due_with_its_attempt_counted() {
        let mut lanes = fenced_with_10_under_way(100);
        lanes.attempt_ended("A1", 10, true, None);
        lanes.settled(
            "A1",
            row("A1", 10),
            Some((500, "http_error".into())),
            true,
            20,
        );
        assert_eq!(lanes.held(), 2, "11 and the retry of 10");
        let l = &lanes["A1"];
        assert!(l.settling.is_empty());
        assert_eq!(l.fence(), Some(10), "no spill: its reads never see 10");
        assert_eq!(l.next_due, None, "no store read for it");
        assert_eq!(l.next_work(20), Some(20), "11 is ready now");
        assert_eq!(seqs(&lanes.take("A1", None, 10, 499)), vec![11]);
        assert_eq!(lanes["A1"].next_work(499), Some(500));
        assert!(!lanes["A1"].has_work(499));
        let rows = lanes.take("A1", None, 10, 500);
        assert_eq!(seqs(&rows), vec![10]);
        assert_eq!(rows[0].attempts, 1);
        assert_eq!(rows[0].delivery.reason.as_deref(), Some("http_error"));
        assert_eq!(lanes.held(), 0);
    }

    #[test]
    fn past_the_bound_a_hand_over_drops_the_kept_retries_too() {
        let mut lanes = fenced_with_10_under_way(100);
        lanes.attempt_ended("A1", 10, true, None);
        lanes.settled(
            "A1",
            row("A1", 10),
            Some((500, "http_error".into())),
            true,
            20,
        );
        assert_eq!(lanes.held(), 2);
        lanes.max_held = 2;
        lanes.offer(vec![row("A1", 12)], 30);
        assert_eq!(
            lanes.held(),
            0,
            "the retry of 10 is pending on disk like 11"
        );
        assert!(
            !lanes["A1"].exclusion().contains(&10),
            "the read may find it"
        );
        assert!(
            lanes.take("A1", None, 10, 500).is_empty(),
            "only the store read may start 10 now, once"
        );
    }

    #[test]
    fn when_nodes_share_the_store_a_retry_is_claimed_again_not_kept() {
        let mut lanes = fenced_with_10_under_way(100);
        lanes.keep_retries = false;
        lanes.attempt_ended("A1", 10, true, None);
        lanes.settled(
            "A1",
            row("A1", 10),
            Some((500, "http_error".into())),
            true,
            20,
        );
        assert!(
            lanes["A1"].retrying.is_empty(),
            "the retry of 10 waits on disk"
        );
        assert!(
            !lanes["A1"].exclusion().contains(&10),
            "the claim may find it"
        );
        assert!(
            lanes["A1"].next_due.is_some_and(|t| t <= 500),
            "read by then"
        );
        assert!(
            !seqs(&lanes.take("A1", None, 10, 500)).contains(&10),
            "only a claim starts 10 again"
        );
    }

    #[test]
    fn a_retry_due_much_later_is_left_to_the_store() {
        let mut lanes = fenced_with_10_under_way(100);
        lanes.attempt_ended("A1", 1, true, None);
        let later = 20 + KEEP_RETRY_MS + 1;
        lanes.settled(
            "A1",
            row("A1", 1),
            Some((later, "http_error".into())),
            true,
            20,
        );
        assert_eq!(lanes.held(), 1, "only 11");
        assert_eq!(lanes["A1"].next_due, Some(later));
    }

    #[test]
    fn a_kept_retry_below_the_fence_is_skipped_by_the_reads() {
        let mut lanes = fenced_with_10_under_way(100);
        lanes.attempt_ended("A1", 1, true, None);
        lanes.settled("A1", row("A1", 1), Some((500, "timeout".into())), true, 20);
        assert_eq!(lanes["A1"].fence(), Some(10));
        let mut ex = lanes["A1"].exclusion();
        ex.sort();
        assert_eq!(ex, vec![1, 2, 10], "the retry and what is under way");
    }

    #[test]
    fn past_the_bound_a_retry_above_the_fence_makes_the_lane_spill_so_its_read_finds_it() {
        let mut lanes = fenced_with_10_under_way(100);
        lanes.max_held = 1; // full: 11 is held
        lanes.attempt_ended("A1", 10, true, None);
        lanes.settled(
            "A1",
            row("A1", 10),
            Some((500, "http_error".into())),
            true,
            20,
        );
        let l = &lanes["A1"];
        assert_eq!(l.fence(), None, "a read below 10 would never find it");
        assert_eq!(lanes.held(), 0);
        assert_eq!(lanes["A1"].next_due, Some(20), "11 is read back now");
        assert!(lanes["A1"].settling.is_empty());
    }

    #[test]
    fn past_the_bound_a_retry_below_the_fence_is_left_to_the_reads() {
        let mut lanes = fenced_with_10_under_way(100);
        lanes.max_held = 1; // full: 11 is held
        lanes.attempt_ended("A1", 1, true, None);
        lanes.settled(
            "A1",
            row("A1", 1),
            Some((500, "http_error".into())),
            true,
            20,
        );
        assert_eq!(lanes["A1"].fence(), Some(10), "its read below 10 finds it");
        assert_eq!(lanes.held(), 1);
        assert_eq!(lanes["A1"].next_due, Some(500));
    }

    #[test]
    fn a_delivery_put_back_untried_makes_the_lane_spill() {
        let mut lanes = fenced_with_10_under_way(100);
        lanes.attempt_ended("A1", 10, false, Some(900));
        assert_eq!(lanes["A1"].fence(), None);
        assert_eq!(lanes.held(), 0);
        assert!(!lanes["A1"].in_flight.contains(&10));
        assert!(lanes["A1"].settling.is_empty(), "nothing to write");
        assert_eq!(lanes["A1"].next_due, Some(900));
    }

    #[test]
    fn a_caught_up_lane_with_store_work_due_spills_before_it_reads() {
        let mut lanes = Lanes::new(100);
        caught_up(&mut lanes, "A1");
        lanes.offer(vec![row("A1", 5)], 1);
        assert_eq!(lanes["A1"].fence(), None);
        assert!(!lanes["A1"].must_spill(1));
        lanes.get_mut("A1").expect("lane").due_by(2);
        assert!(lanes["A1"].must_spill(2), "a retry or a wake-up is due");
        lanes.spill("A1");
        assert_eq!(lanes.held(), 0);
    }

    #[test]
    fn hand_overs_are_started_in_order_up_to_the_capacity() {
        let mut lanes = Lanes::new(100);
        caught_up(&mut lanes, "A1");
        lanes.offer((1..=5).map(|s| row("A1", s)).collect(), 1);
        assert_eq!(seqs(&lanes.take("A1", None, 2, 0)), vec![1, 2]);
        assert_eq!(seqs(&lanes.take("A1", None, 10, 0)), vec![3, 4, 5]);
        assert_eq!(lanes["A1"].in_flight.len(), 5);
    }

    #[test]
    fn past_the_bound_a_lane_drops_what_it_holds_and_reads_the_store() {
        let mut lanes = Lanes::new(3);
        caught_up(&mut lanes, "A1");
        lanes.offer((1..=5).map(|s| row("A1", s)).collect(), 7);
        // 1-3 were queued, 4 did not fit: 1-4 are left to the store, and 5 is held
        // with the fence at 5, so the store read below it comes first.
        assert_eq!(lanes.held(), 1);
        assert_eq!(lanes["A1"].fence(), Some(5));
        assert!(lanes["A1"].exclusion().is_empty());
        assert_eq!(lanes["A1"].next_due, Some(7));
        let read = (1..=4).map(|s| row("A1", s)).collect();
        assert_eq!(
            seqs(&lanes.take("A1", Some(read), 10, 0)),
            vec![1, 2, 3, 4, 5]
        );
    }

    #[test]
    fn store_rows_come_first_and_a_row_both_read_and_queued_starts_once() {
        let mut lanes = Lanes::new(100);
        caught_up(&mut lanes, "A1");
        lanes.offer(vec![row("A1", 10), row("A1", 11)], 1);
        // A retry came due (seq 3), and the read raced the hand-over of 10.
        let read = vec![row("A1", 3), row("A1", 10)];
        let rows = lanes.take("A1", Some(read), 10, 0);
        assert_eq!(seqs(&rows), vec![3, 10, 11]);
        assert_eq!(lanes.held(), 0);
    }

    #[test]
    fn a_hand_over_the_store_read_already_started_is_skipped() {
        let mut lanes = Lanes::new(100);
        caught_up(&mut lanes, "A1");
        lanes.get_mut("A1").expect("lane").due_by(1);
        lanes.take("A1", Some(vec![row("A1", 20)]), 10, 0);
        lanes.offer(vec![row("A1", 20)], 2);
        assert_eq!(lanes.held(), 0);
        lanes.get_mut("A1").expect("lane").in_flight.remove(&20);
        lanes.get_mut("A1").expect("lane").settling.insert(20);
        lanes.offer(vec![row("A1", 20)], 3);
        assert_eq!(lanes.held(), 0);
    }

    #[test]
    fn a_store_read_skips_what_the_lane_holds() {
        let mut lanes = Lanes::new(100);
        caught_up(&mut lanes, "A1");
        lanes.offer(vec![row("A1", 30)], 1);
        let l = lanes.get_mut("A1").expect("lane");
        l.in_flight.insert(31);
        l.settling.insert(32);
        let mut ex = l.exclusion();
        ex.sort();
        assert_eq!(ex, vec![30, 31, 32]);
    }

    #[test]
    fn a_lane_whose_attempts_keep_failing_to_connect_is_paced_until_one_connects() {
        let mut l = Lane::default();
        l.due_by(0);
        for _ in 1..UNREACHABLE_AFTER {
            assert_eq!(l.attempted(false), None);
        }
        assert_eq!(
            l.width(256),
            256,
            "not yet: a few refusals are not an outage"
        );
        assert_eq!(l.attempted(false), Some(false), "now paced");
        assert_eq!(l.width(256), PROBES);
        assert_eq!(l.width(2), 2, "never wider than configured");
        l.round_started(100);
        assert!(
            !l.has_work(100 + PACE_MS - 1),
            "no round before the pace allows"
        );
        assert!(l.has_work(100 + PACE_MS));
        assert_eq!(l.next_work(100), Some(100 + PACE_MS));
        assert_eq!(l.attempted(false), None, "still paced");
        assert_eq!(l.attempted(true), Some(true), "one answer opens it");
        assert_eq!(l.width(256), 256);
        assert!(l.has_work(100), "and the pace is lifted at once");
        l.round_started(200);
        assert!(l.has_work(200), "an open lane is never paced");
    }

    #[test]
    fn a_paced_lane_holds_no_hand_overs() {
        let mut lanes = Lanes::new(100);
        caught_up(&mut lanes, "A1");
        lanes.offer(vec![row("A1", 1), row("A1", 2)], 1);
        assert_eq!(lanes.held(), 2);
        for _ in 0..UNREACHABLE_AFTER {
            lanes.attempted("A1", false);
        }
        assert!(lanes["A1"].unreachable());
        assert_eq!(lanes.held(), 0, "dropped when it became paced");
        lanes.offer(vec![row("A1", 3)], 2);
        assert_eq!(lanes.held(), 0, "and none taken while paced");
        assert_eq!(lanes["A1"].fence(), None);
        assert_eq!(lanes.attempted("A1", true), Some(true));
        lanes.offer(vec![row("A1", 4)], 3);
        assert_eq!(lanes.held(), 1, "taken again once it answers");
    }

    #[test]
    fn an_answer_between_refusals_starts_the_count_again() {
        let mut l = Lane::default();
        for i in 0..(3 * UNREACHABLE_AFTER) {
            l.attempted(i % UNREACHABLE_AFTER == 0);
        }
        assert!(!l.unreachable());
    }

    #[test]
    fn removing_a_lane_releases_its_hand_overs() {
        let mut lanes = Lanes::new(100);
        caught_up(&mut lanes, "A1");
        caught_up(&mut lanes, "A2");
        lanes.offer(vec![row("A1", 1), row("A2", 2), row("A2", 3)], 1);
        assert_eq!(lanes.held(), 3);
        lanes.remove("A2");
        assert_eq!(lanes.held(), 1);
        lanes.spill("A1");
        assert_eq!(lanes.held(), 0);
    }
}

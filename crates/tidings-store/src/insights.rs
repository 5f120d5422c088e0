//! Insights, independent of the backend: what the rollups count, the in-memory [`Tally`]
//! that a group commit accumulates and writes with its batch, and the shapes queries answer.
//!
//! - Events are counted per team, event type and bucket of their own `event_time` (so an
//!   event a client held while offline lands in the minute it happened), at minute, hour and
//!   day granularity, with the distinct users who performed them (as exact sets per hour
//!   and per day). Every count is also kept under [`ALL`] for "all teams" and "all types".
//! - Events refused as too old are counted per type at the time they were refused.
//! - Deliveries are counted per app and bucket: attempts, successes, failures, retries, a
//!   latency histogram, and how deliveries ended (delivered, gave up, dropped), with the
//!   reasons for failures and drops.
//!
//! A write adds to a [`Tally`]; the backend flushes the tally once per group commit, in the
//! same transaction, so counting costs a few upserts per batch rather than per event.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

/// The key that stands for "every team" or "every event type" in the rollups.
pub const ALL: &str = "";

/// Most buckets one query may span (30 days of minutes fits).
pub const MAX_BUCKETS: i64 = 50_000;

/// The times a range may name, Unix seconds: 1970 to the end of year 9999. Bounds that
/// keep every bucket computation (floor, ceil, widths) far from `i64` overflow.
pub const TIMES: std::ops::RangeInclusive<i64> = 0..=253_402_300_799;

/// The width of a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Granularity {
    Minute,
    Hour,
    Day,
}

impl Granularity {
    pub const ALL: [Granularity; 3] = [Granularity::Minute, Granularity::Hour, Granularity::Day];
    /// The granularities that keep sets of distinct users.
    pub const WITH_USERS: [Granularity; 2] = [Granularity::Hour, Granularity::Day];

    pub fn secs(self) -> i64 {
        match self {
            Granularity::Minute => 60,
            Granularity::Hour => 3_600,
            Granularity::Day => 86_400,
        }
    }

    /// The number stored in the rollup tables' `g` column.
    pub fn code(self) -> i64 {
        match self {
            Granularity::Minute => 0,
            Granularity::Hour => 1,
            Granularity::Day => 2,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Granularity::Minute => "minute",
            Granularity::Hour => "hour",
            Granularity::Day => "day",
        }
    }

    pub fn parse(s: &str) -> Option<Granularity> {
        Granularity::ALL.into_iter().find(|g| g.as_str() == s)
    }

    /// What a chart of `range_secs` wants when the caller does not say: minutes up to six
    /// hours, hours up to a week, days beyond.
    pub fn auto(range_secs: i64) -> Granularity {
        if range_secs <= 6 * 3_600 {
            Granularity::Minute
        } else if range_secs <= 7 * 86_400 {
            Granularity::Hour
        } else {
            Granularity::Day
        }
    }

    /// The start of the bucket holding `t` (Unix seconds, UTC).
    pub fn floor(self, t: i64) -> i64 {
        t.div_euclid(self.secs()) * self.secs()
    }

    /// The start of the first bucket at or after `t`.
    pub fn ceil(self, t: i64) -> i64 {
        let f = self.floor(t);
        if f == t {
            t
        } else {
            f + self.secs()
        }
    }
}

/// What an insights query covers: `[from, to)` in Unix seconds, widened to whole buckets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InsightRange {
    /// `None` for every team (or, for deliveries, every app).
    pub scope: Option<String>,
    pub from: i64,
    pub to: i64,
    pub granularity: Granularity,
}

impl InsightRange {
    /// Checks the range; the error names the field and says what is wrong with it.
    pub fn new(
        scope: Option<String>,
        from: i64,
        to: i64,
        granularity: Granularity,
    ) -> Result<InsightRange, (&'static str, String)> {
        for (field, t) in [("from", from), ("to", to)] {
            if !TIMES.contains(&t) {
                return Err((field, out_of_range(t)));
            }
        }
        if from >= to {
            return Err(("from", "from must be before to".into()));
        }
        let r = InsightRange {
            scope,
            from,
            to,
            granularity,
        };
        let buckets = (r.bucket_to() - r.bucket_from()) / granularity.secs();
        if buckets > MAX_BUCKETS {
            return Err(("from", format!(
                "the range spans {buckets} {}s; at most {MAX_BUCKETS} fit in one query: choose a coarser granularity",
                granularity.as_str()
            )));
        }
        Ok(r)
    }

    /// The first bucket the range touches.
    pub fn bucket_from(&self) -> i64 {
        self.granularity.floor(self.from)
    }

    /// The end (exclusive) of the last bucket the range touches.
    pub fn bucket_to(&self) -> i64 {
        self.granularity.ceil(self.to)
    }

    /// How distinct users over the range are counted exactly from the per-day and per-hour
    /// sets: whole days inside the range, plus the hours around them. The range is widened
    /// to whole hours. Returns `(days_from, days_to, hours_from, hours_to)`: days in
    /// `[days_from, days_to)`, hours in `[hours_from, days_from) ∪ [days_to, hours_to)`.
    pub fn user_spans(&self) -> (i64, i64, i64, i64) {
        let hours_from = Granularity::Hour.floor(self.from);
        let hours_to = Granularity::Hour.ceil(self.to);
        let days_from = Granularity::Day.ceil(hours_from);
        let days_to = Granularity::Day.floor(hours_to);
        if days_from >= days_to {
            (hours_to, hours_to, hours_from, hours_to)
        } else {
            (days_from, days_to, hours_from, hours_to)
        }
    }
}

/// The message for a time outside [`TIMES`].
pub fn out_of_range(t: i64) -> String {
    format!(
        "{t} is not a time this server handles: Unix seconds from {} to {} (year 9999)",
        TIMES.start(),
        TIMES.end()
    )
}

// --- answers ---------------------------------------------------------------------------

/// One bucket of an event series.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventPoint {
    /// Bucket start, Unix seconds.
    pub t: i64,
    pub count: u64,
    /// Distinct users in the bucket (hour and day granularity only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub users: Option<u64>,
}

/// Counts for one event type (or, under [`ALL`], every type) over a range.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TypeInsight {
    pub event_type: String,
    pub count: u64,
    pub refused_too_old: u64,
    /// Distinct users over the whole range.
    pub users: u64,
    /// Non-empty buckets, ascending.
    pub series: Vec<EventPoint>,
}

/// The answer to an events insights query.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EventInsights {
    /// Every type together; `users` is the number of active users.
    pub totals: TypeInsight,
    /// Types with any count in the range, by name.
    pub types: Vec<TypeInsight>,
}

/// Upper bounds (ms) of the latency histogram's bins; one more bin holds the rest.
pub const LATENCY_BOUNDS_MS: [u64; 13] =
    [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000];
/// Bins in the latency histogram.
pub const LATENCY_BINS: usize = LATENCY_BOUNDS_MS.len() + 1;

/// The histogram bin a latency falls in.
pub fn latency_bin(ms: u64) -> usize {
    LATENCY_BOUNDS_MS
        .iter()
        .position(|&b| ms <= b)
        .unwrap_or(LATENCY_BOUNDS_MS.len())
}

/// The `p` quantile (0–1) of a latency histogram in ms, interpolated linearly inside its
/// bin; `None` when the histogram is empty. The overflow bin answers its lower bound.
pub fn latency_quantile(hist: &[u64; LATENCY_BINS], p: f64) -> Option<f64> {
    let total: u64 = hist.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = (p.clamp(0.0, 1.0) * total as f64).max(1.0);
    let mut seen = 0u64;
    for (i, &n) in hist.iter().enumerate() {
        if n == 0 {
            continue;
        }
        if (seen + n) as f64 >= rank {
            let lo = if i == 0 { 0 } else { LATENCY_BOUNDS_MS[i - 1] } as f64;
            let Some(&hi) = LATENCY_BOUNDS_MS.get(i) else {
                return Some(lo);
            };
            let within = (rank - seen as f64) / n as f64;
            return Some(lo + (hi as f64 - lo) * within);
        }
        seen += n;
    }
    Some(*LATENCY_BOUNDS_MS.last().unwrap_or(&0) as f64)
}

/// Delivery counters for one app (or all) in one bucket or over a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeliveryCounts {
    /// Attempts made (HTTP requests sent, Socket Mode envelopes written).
    pub attempts: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// Attempts after the first (retries and redeliveries).
    pub retries: u64,
    /// Deliveries that ended delivered, failed for good, or dropped.
    pub delivered: u64,
    pub gave_up: u64,
    pub dropped: u64,
    #[serde(skip)]
    pub latency: [u64; LATENCY_BINS],
}

impl DeliveryCounts {
    pub fn add(&mut self, o: &DeliveryCounts) {
        self.attempts += o.attempts;
        self.succeeded += o.succeeded;
        self.failed += o.failed;
        self.retries += o.retries;
        self.delivered += o.delivered;
        self.gave_up += o.gave_up;
        self.dropped += o.dropped;
        for (a, b) in self.latency.iter_mut().zip(o.latency) {
            *a += b;
        }
    }
}

/// One bucket of a delivery series.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeliveryPoint {
    pub t: i64,
    #[serde(flatten)]
    pub counts: DeliveryCounts,
}

/// One app's deliveries over a range.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AppDeliveryInsight {
    pub app_id: String,
    pub counts: DeliveryCounts,
    /// Dropped deliveries by reason (`rate_limited`, `app_disabled`).
    pub drops: BTreeMap<String, u64>,
    /// Deliveries that failed for good, by reason.
    pub failures: BTreeMap<String, u64>,
    /// Failed attempts by reason (`timeout`, `http_error`, …).
    pub attempt_failures: BTreeMap<String, u64>,
}

/// The answer to a deliveries insights query.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DeliveryInsights {
    pub totals: DeliveryCounts,
    /// Non-empty buckets, ascending.
    pub series: Vec<DeliveryPoint>,
    /// Apps with any count in the range, by id.
    pub apps: Vec<AppDeliveryInsight>,
}

/// An event type marked as a key event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyEvent {
    pub event_type: String,
    pub created_at: i64,
}

// --- the tally -------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventKey {
    pub g: Granularity,
    pub team_id: String,
    pub event_type: String,
    pub bucket: i64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventAdd {
    pub events: u64,
    pub too_old: u64,
    /// Users new to the bucket (filled in by the backend as it writes the user sets).
    pub users: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserKey {
    pub g: Granularity,
    pub team_id: String,
    pub event_type: String,
    pub bucket: i64,
    pub user_id: String,
}

impl UserKey {
    pub fn bucket_key(&self) -> EventKey {
        EventKey {
            g: self.g,
            team_id: self.team_id.clone(),
            event_type: self.event_type.clone(),
            bucket: self.bucket,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeliveryKey {
    pub g: Granularity,
    pub bucket: i64,
    pub app_id: String,
}

/// What a reason counts: a dropped delivery, one that failed for good, a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReasonKind {
    Dropped,
    Failed,
    Attempt,
}

impl ReasonKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonKind::Dropped => "dropped",
            ReasonKind::Failed => "failed",
            ReasonKind::Attempt => "attempt",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReasonKey {
    pub delivery: DeliveryKey,
    pub kind: ReasonKind,
    pub reason: String,
}

/// How a delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled<'a> {
    Delivered,
    GaveUp(&'a str),
    Dropped(&'a str),
}

/// Counts accumulated by writes and flushed once per group commit.
///
/// Published events are kept as they come ([`Tally::event`] is on the publish path, once per
/// event) and spread into their twelve rollup keys and eight user-set keys by
/// [`Tally::expand`], once per batch, after events of the same team, type and minute were
/// added up: the per-event cost is one push, not twenty hashed and allocated keys.
#[derive(Debug, Default)]
pub struct Tally {
    /// Expanded event counts; complete only after [`Tally::expand`].
    pub events: HashMap<EventKey, EventAdd>,
    /// Expanded user-set memberships; complete only after [`Tally::expand`].
    pub users: HashSet<UserKey>,
    pub deliveries: HashMap<DeliveryKey, DeliveryCounts>,
    pub reasons: HashMap<ReasonKey, u64>,
    raw: Vec<RawEvent>,
}

/// An event counted but not yet expanded.
#[derive(Debug)]
struct RawEvent {
    team: String,
    event_type: String,
    at: i64,
    user: Option<String>,
    too_old: bool,
}

/// The (team, type) pairs a count goes under: itself and the [`ALL`] rollups.
fn scopes<'a>(team: &'a str, event_type: &'a str) -> [(&'a str, &'a str); 4] {
    [
        (team, event_type),
        (team, ALL),
        (ALL, event_type),
        (ALL, ALL),
    ]
}

impl Tally {
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
            && self.events.is_empty()
            && self.users.is_empty()
            && self.deliveries.is_empty()
            && self.reasons.is_empty()
    }

    fn bump_event(&mut self, team: &str, event_type: &str, at: i64, f: impl Fn(&mut EventAdd)) {
        for g in Granularity::ALL {
            for (t, ty) in scopes(team, event_type) {
                let key = EventKey {
                    g,
                    team_id: t.to_string(),
                    event_type: ty.to_string(),
                    bucket: g.floor(at),
                };
                f(self.events.entry(key).or_default());
            }
        }
    }

    /// One published event of `event_type` in `team`, at its `event_time`, by `user`.
    pub fn event(&mut self, team: &str, event_type: &str, event_time: i64, user: Option<&str>) {
        self.raw.push(RawEvent {
            team: team.to_string(),
            event_type: event_type.to_string(),
            at: event_time,
            user: user.filter(|u| !u.is_empty()).map(str::to_string),
            too_old: false,
        });
    }

    /// One event refused as too old, counted when it was refused (`at`).
    pub fn too_old(&mut self, team: &str, event_type: &str, at: i64) {
        self.raw.push(RawEvent {
            team: team.to_string(),
            event_type: event_type.to_string(),
            at,
            user: None,
            too_old: true,
        });
    }

    /// Events counted and not yet expanded.
    pub fn unexpanded(&self) -> usize {
        self.raw.len()
    }

    /// Spreads the counted events into [`Tally::events`] and [`Tally::users`]: added up
    /// per (team, type, minute) and per (team, type, hour, user) first, then each sum goes
    /// under every scope and granularity.
    pub fn expand(&mut self) {
        if self.raw.is_empty() {
            return;
        }
        let raw = std::mem::take(&mut self.raw);
        let mut minutes: HashMap<(&str, &str, i64), (u64, u64)> = HashMap::new();
        let mut hours: HashSet<(&str, &str, i64, &str)> = HashSet::new();
        for r in &raw {
            let sum = minutes
                .entry((&r.team, &r.event_type, Granularity::Minute.floor(r.at)))
                .or_default();
            if r.too_old {
                sum.1 += 1;
            } else {
                sum.0 += 1;
            }
            if let Some(u) = r.user.as_deref().filter(|_| !r.too_old) {
                hours.insert((&r.team, &r.event_type, Granularity::Hour.floor(r.at), u));
            }
        }
        for ((team, ty, minute), (events, too_old)) in minutes {
            self.bump_event(team, ty, minute, |a| {
                a.events += events;
                a.too_old += too_old;
            });
        }
        for (team, ty, hour, user) in hours {
            for g in Granularity::WITH_USERS {
                for (t, et) in scopes(team, ty) {
                    self.users.insert(UserKey {
                        g,
                        team_id: t.to_string(),
                        event_type: et.to_string(),
                        bucket: g.floor(hour),
                        user_id: user.to_string(),
                    });
                }
            }
        }
    }

    fn bump_delivery(&mut self, app: &str, at: i64, f: impl Fn(&mut DeliveryCounts)) {
        for g in Granularity::ALL {
            let key = DeliveryKey {
                g,
                bucket: g.floor(at),
                app_id: app.to_string(),
            };
            f(self.deliveries.entry(key).or_default());
        }
    }

    fn bump_reason(&mut self, app: &str, at: i64, kind: ReasonKind, reason: &str) {
        for g in Granularity::ALL {
            let key = ReasonKey {
                delivery: DeliveryKey {
                    g,
                    bucket: g.floor(at),
                    app_id: app.to_string(),
                },
                kind,
                reason: reason.to_string(),
            };
            *self.reasons.entry(key).or_default() += 1;
        }
    }

    /// One attempt at `at` (Unix seconds): `failure` is its reason when it failed.
    pub fn attempt(
        &mut self,
        app: &str,
        at: i64,
        retry: bool,
        latency_ms: u64,
        failure: Option<&str>,
    ) {
        let bin = latency_bin(latency_ms);
        let ok = failure.is_none();
        self.bump_delivery(app, at, |c| {
            c.attempts += 1;
            if ok {
                c.succeeded += 1;
            } else {
                c.failed += 1;
            }
            if retry {
                c.retries += 1;
            }
            c.latency[bin] += 1;
        });
        if let Some(r) = failure {
            self.bump_reason(app, at, ReasonKind::Attempt, r);
        }
    }

    /// A delivery ended at `at`.
    pub fn settled(&mut self, app: &str, at: i64, how: Settled<'_>) {
        match how {
            Settled::Delivered => self.bump_delivery(app, at, |c| c.delivered += 1),
            Settled::GaveUp(r) => {
                self.bump_delivery(app, at, |c| c.gave_up += 1);
                self.bump_reason(app, at, ReasonKind::Failed, r);
            }
            Settled::Dropped(r) => {
                self.bump_delivery(app, at, |c| c.dropped += 1);
                self.bump_reason(app, at, ReasonKind::Dropped, r);
            }
        }
    }

    /// Adds another tally's counts to this one.
    pub fn merge(&mut self, mut other: Tally) {
        self.raw.append(&mut other.raw);
        for (k, v) in other.events {
            let e = self.events.entry(k).or_default();
            e.events += v.events;
            e.too_old += v.too_old;
            e.users += v.users;
        }
        self.users.extend(other.users);
        for (k, v) in other.deliveries {
            self.deliveries.entry(k).or_default().add(&v);
        }
        for (k, v) in other.reasons {
            *self.reasons.entry(k).or_default() += v;
        }
    }
}

/// The user who performed an event: its `user` (a string, or an object with an `id`, as in
/// `team_join`) or `user_id`.
pub fn event_user(event: &serde_json::Value) -> Option<&str> {
    match event.get("user") {
        Some(serde_json::Value::String(u)) => Some(u.as_str()),
        Some(serde_json::Value::Object(o)) => o.get("id").and_then(|v| v.as_str()),
        _ => event.get("user_id").and_then(|v| v.as_str()),
    }
}

#[cfg(test)]
mod tests;

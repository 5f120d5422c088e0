//! The scenarios: each starts a fresh server and receiver, builds its workspace through the
//! operator API, publishes through `/admin/v1/events/batch` (bounded in count and time,
//! loopback only), waits for the deliveries to drain, and reports.
//!
//! This module owns the HTTP scenarios that differ only in shape (`throughput`, `latency`,
//! `fanout`, `tenants`, `retries`) and the pieces every scenario shares: the operator API
//! call, building a team, publishing, percentiles. `backlog`, `socket`, `insights`,
//! `ceiling` and `retention` live in their own modules.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Value};
use tokio::task::JoinSet;

use crate::receiver::{self, now_us, Stats};
use crate::server::{Server, ADMIN};

/// One scenario's numbers.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub scenario: String,
    pub events: u64,
    pub deliveries: u64,
    pub events_per_sec: f64,
    pub deliveries_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub server_cpu_s: f64,
    pub peak_rss_mb: f64,
    /// p99 of the publish calls' response time (see [`Pace`] for each scenario's calls).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publish_p99_ms: Option<f64>,
    /// The server's resident set once its connections are open and idle (`socket` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_rss_mb: Option<f64>,
    pub note: String,
}

impl Outcome {
    /// What the receiver saw: deliveries, deliveries/s from `start_us` to the last
    /// arrival, and publish→arrival percentiles. The rest is the scenario's to fill in.
    pub(crate) fn arrivals(scenario: &str, stats: &Stats, start_us: u64) -> Outcome {
        let received = stats.received.load(Ordering::Relaxed);
        let (p50, p99, max) = percentiles(stats);
        Outcome {
            scenario: scenario.to_string(),
            events: 0,
            deliveries: received,
            events_per_sec: 0.0,
            deliveries_per_sec: received as f64 / arrival_span_s(stats, start_us).max(1e-9),
            p50_ms: p50,
            p99_ms: p99,
            max_ms: max,
            server_cpu_s: 0.0,
            peak_rss_mb: 0.0,
            publish_p99_ms: None,
            idle_rss_mb: None,
            note: String::new(),
        }
    }
}

pub struct Params {
    pub bin: String,
    pub duration: Duration,
    pub drain: Duration,
    /// CI mode: smaller shapes (`tenants` 100 teams instead of 1,000, `socket` 100 apps
    /// instead of 1,000, `backlog` a pile of 20,000 instead of 1,000,000).
    pub quick: bool,
    /// Requests/s of the ceiling measured earlier in the invocation (`None` when there was
    /// none, and in `--quick`): `tenants` is paced from it (see [`tenants_pace`]).
    pub ceiling_rps: Option<f64>,
}

struct Shape {
    teams: usize,
    apps: usize,
    pace: Pace,
    fail_first: bool,
}

/// How the publishers send.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Pace {
    /// This many events per second, in one call every 10 ms.
    Fixed(u64),
    /// As fast as the server takes them (closed loop with a [`Window`]): calls of
    /// `events`, `in_flight` of them at a time.
    Saturate { events: usize, in_flight: usize },
}

impl Pace {
    /// Large calls for the scenarios that measure deliveries, not publish calls.
    pub const BULK: Pace = Pace::Saturate {
        events: 500,
        in_flight: 2,
    };
}

/// `tenants`' slowest pace: 16,000 deliveries/s (1,600 events/s; the first benchmark
/// issue's bar was 15,000), its pace without a ceiling to go by.
const TENANTS_RATE: u64 = 16_000;
/// Deliveries each `tenants` event makes (10 apps installed in every team).
const TENANTS_APPS: usize = 10;

/// `tenants`' pace: the load issue 22's bars name (≥ 0.5 × ceiling deliveries/s with a
/// publish-call p99 ≤ 10 ms), half the ceiling's requests/s in deliveries/s, and never
/// below [`TENANTS_RATE`]; in events/s rounded up to whole events per 10 ms call. Events
/// are published as a platform with many workspaces does, a call every 10 ms, so the
/// calls' p99 is measured at that load rather than behind a saturated queue.
fn tenants_pace(ceiling_rps: Option<f64>) -> Pace {
    let half = ceiling_rps.map_or(0, |c| (c * 0.5).ceil() as u64);
    let events = half.max(TENANTS_RATE).div_ceil(TENANTS_APPS as u64);
    Pace::Fixed(events.div_ceil(100) * 100)
}

pub const ALL: &[&str] = &[
    "ceiling",
    "throughput",
    "latency",
    "fanout",
    "tenants",
    "retries",
    "backlog",
    "socket",
    "insights",
    "retention",
    "relay",
];

pub async fn run(name: &str, p: &Params) -> Result<Outcome, String> {
    let shape = match name {
        "insights" => return crate::insights::run(p).await,
        "backlog" => return crate::backlog::run(p).await,
        "socket" => return crate::socket::run(p).await,
        "ceiling" => return crate::ceiling::run(p).await,
        "retention" => return crate::retention::run(p).await,
        "relay" => return crate::relay::run(p).await,
        "throughput" => Shape {
            teams: 1,
            apps: 1,
            pace: Pace::BULK,
            fail_first: false,
        },
        "latency" => Shape {
            teams: 1,
            apps: 1,
            pace: Pace::Fixed(1000),
            fail_first: false,
        },
        "fanout" => Shape {
            teams: 1,
            apps: 100,
            pace: Pace::BULK,
            fail_first: false,
        },
        "tenants" => Shape {
            teams: if p.quick { 100 } else { 1000 },
            apps: TENANTS_APPS,
            pace: tenants_pace(p.ceiling_rps),
            fail_first: false,
        },
        "retries" => Shape {
            teams: 1,
            apps: 1,
            pace: Pace::BULK,
            fail_first: true,
        },
        other => {
            return Err(format!(
                "unknown scenario {other:?}; known: {}",
                ALL.join(", ")
            ))
        }
    };
    // Failing every first attempt trips the health rule (>95 % failures over 1,000 events)
    // before the retries catch up with the backlog; this scenario measures retries, so the
    // rule's minimum volume is raised out of the way.
    let env: &[(&str, &str)] = if shape.fail_first {
        &[("TIDINGS_HEALTH_MIN_EVENTS", "4000000000")]
    } else {
        &[]
    };
    let server = Server::start(&p.bin, env)?;
    let (recv_url, stats) = receiver::start().await?;
    stats.fail_first.store(shape.fail_first, Ordering::Relaxed);
    let c = http_client()?;
    let places = setup(&c, &server.url, shape.teams, shape.apps, &recv_url).await?;

    let cpu0 = server.cpu_seconds();
    let t0 = Instant::now();
    let start_us = now_us();
    let window = matches!(shape.pace, Pace::Saturate { .. }).then(|| Window {
        stats: stats.clone(),
        per_event: shape.apps as u64,
        max_outstanding: MAX_OUTSTANDING,
    });
    let published = publish(&c, &server.url, &places, p.duration, shape.pace, window).await?;
    let events = published.events;
    let publish_secs = t0.elapsed().as_secs_f64();
    let expected = events * shape.apps as u64;
    drain(&stats, expected, p.drain).await;
    let received = stats.received.load(Ordering::Relaxed);
    // The note's parts, in the order they read.
    let mut note = Vec::new();
    if shape.fail_first {
        let refused = stats.refused.load(Ordering::Relaxed);
        note.push(format!("{refused} first attempts refused"));
    }
    if let ("tenants", Pace::Fixed(events)) = (name, shape.pace) {
        let deliveries = events * shape.apps as u64;
        note.push(format!("paced at {deliveries} deliveries/s"));
    }
    if published.busy_retries > 0 {
        let n = published.busy_retries;
        note.push(format!("{n} publish calls refused busy and retried"));
    }
    if received < expected {
        note.push(format!(
            "only {received} of {expected} deliveries arrived within the drain time"
        ));
    }
    let note = note.join(" ");
    Ok(Outcome {
        events,
        events_per_sec: events as f64 / publish_secs.max(1e-9),
        server_cpu_s: server.cpu_seconds() - cpu0,
        peak_rss_mb: server.peak_rss_mb(),
        publish_p99_ms: Some(published.call_p99_ms()),
        note,
        ..Outcome::arrivals(name, &stats, start_us)
    })
}

/// Closed-loop publishing: the publishers wait while more than `max_outstanding`
/// deliveries are published and not yet arrived, so a saturation run measures what the
/// server sustains, not how a queue that grows for the whole run behaves.
#[derive(Clone)]
pub(crate) struct Window {
    pub stats: Arc<Stats>,
    /// Deliveries each event makes.
    pub per_event: u64,
    pub max_outstanding: u64,
}

/// Deliveries published and not yet arrived in saturation runs: enough to keep every
/// lane and the writer's batches full, small enough that the queue stays bounded.
pub(crate) const MAX_OUTSTANDING: u64 = 20_000;

/// What the publishers did: events accepted, and each publish call's response time.
pub(crate) struct Published {
    pub events: u64,
    pub calls_us: Vec<u64>,
    /// Busy refusals (503 with Retry-After) the publishers waited out and retried.
    pub busy_retries: u64,
}

impl Published {
    pub fn call_p99_ms(&self) -> f64 {
        let mut l = self.calls_us.clone();
        if l.is_empty() {
            return 0.0;
        }
        l.sort_unstable();
        l[((l.len() as f64 - 1.0) * 0.99).round() as usize] as f64 / 1000.0
    }
}

/// The harness's HTTP client: loopback only, no proxy, a pool large enough for the publishers.
pub(crate) fn http_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(64)
        .build()
        .map_err(|e| e.to_string())
}

/// Waits until `expected` deliveries arrived, or for at most `bound`.
pub(crate) async fn drain(stats: &Stats, expected: u64, bound: Duration) {
    let deadline = Instant::now() + bound;
    while stats.received.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Seconds from `start_us` to the last arrival the stats saw.
pub(crate) fn arrival_span_s(stats: &Stats, start_us: u64) -> f64 {
    (stats
        .last_arrival_us
        .load(Ordering::Relaxed)
        .saturating_sub(start_us)) as f64
        / 1e6
}

/// Publish→arrival p50, p99 and max in milliseconds.
pub(crate) fn percentiles(stats: &Stats) -> (f64, f64, f64) {
    let mut l = stats
        .latencies
        .lock()
        .map(|l| l.clone())
        .unwrap_or_default();
    if l.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    l.sort_unstable();
    let at = |q: f64| l[((l.len() as f64 - 1.0) * q).round() as usize] as f64 / 1000.0;
    (at(0.5), at(0.99), *l.last().unwrap_or(&0) as f64 / 1000.0)
}

/// One operator API call (`/admin/v1{path}`); an error names the path and what came back.
pub(crate) async fn admin(
    c: &reqwest::Client,
    url: &str,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> Result<Value, String> {
    let res = c
        .request(method, format!("{url}/admin/v1{path}"))
        .bearer_auth(ADMIN)
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("{path}: {e}"))?;
    let status = res.status();
    let v: Value = res.json().await.map_err(|e| format!("{path}: {e}"))?;
    if !status.is_success() {
        return Err(format!("{path}: {status} {v}"));
    }
    Ok(v)
}

/// (team, channel, user) where events are published.
pub(crate) type Place = (String, String, String);

/// `teams` teams, each with a user and a channel holding the bots of `apps` apps installed
/// there; every app's Request URL is the receiver.
pub(crate) async fn setup(
    c: &reqwest::Client,
    url: &str,
    teams: usize,
    apps: usize,
    recv: &str,
) -> Result<Vec<Place>, String> {
    let mut ids = Vec::with_capacity(apps);
    for a in 0..apps {
        let id = format!("A{a:06}");
        admin(
            c,
            url,
            reqwest::Method::POST,
            "/apps",
            json!({"id": id, "name": format!("bench {a}"),
            "request_url": format!("{recv}/a{a}"), "bot_events": ["message.channels"]}),
        )
        .await?;
        ids.push(id);
    }
    teams_with(c, url, (0..teams).map(|t| (t, ids.clone())).collect()).await
}

/// Builds each `(t, apps)` team (16 at a time, with [`team`]) and returns their places in
/// team order.
pub(crate) async fn teams_with(
    c: &reqwest::Client,
    url: &str,
    teams: Vec<(usize, Vec<String>)>,
) -> Result<Vec<Place>, String> {
    let sem = Arc::new(tokio::sync::Semaphore::new(16));
    let mut set = JoinSet::new();
    for (t, apps) in teams {
        let (c, url, sem) = (c.clone(), url.to_string(), sem.clone());
        set.spawn(async move {
            let _p = sem.acquire().await;
            team(&c, &url, t, &apps).await
        });
    }
    let mut places = Vec::new();
    while let Some(r) = set.join_next().await {
        places.push(r.map_err(|e| e.to_string())??);
    }
    places.sort();
    Ok(places)
}

/// Team `T{t}` with user `U{t}` and public channel `C{t}` holding the user and the bots of
/// `apps`, each installed there with `channels:history` (so `message.channels` reaches it).
pub(crate) async fn team(
    c: &reqwest::Client,
    url: &str,
    t: usize,
    apps: &[String],
) -> Result<Place, String> {
    use reqwest::Method;
    let (team, user, channel) = (format!("T{t:06}"), format!("U{t:06}"), format!("C{t:06}"));
    admin(
        c,
        url,
        Method::POST,
        "/teams",
        json!({"id": team, "name": team, "domain": format!("t{t}")}),
    )
    .await?;
    admin(
        c,
        url,
        Method::POST,
        &format!("/teams/{team}/users"),
        json!({"id": user, "name": "u"}),
    )
    .await?;
    let mut members = vec![user.clone()];
    for app in apps {
        let inst = admin(
            c,
            url,
            Method::POST,
            &format!("/apps/{app}/installations"),
            json!({"team_id": team, "installer_user_id": user, "bot_scopes": ["channels:history"]}),
        )
        .await?;
        let bot = inst["bot_user_id"]
            .as_str()
            .ok_or_else(|| format!("installing {app} in {team}: no bot_user_id in {inst}"))?;
        members.push(bot.to_string());
    }
    admin(
        c,
        url,
        Method::PUT,
        &format!("/teams/{team}/conversations/{channel}"),
        json!({"name": "bench", "kind": "public", "members": members}),
    )
    .await?;
    Ok((team, channel, user))
}

/// Publishes 1 KB message events spread over the places, for `duration`, in batches, at
/// `pace`. Returns how many were accepted.
pub(crate) async fn publish(
    c: &reqwest::Client,
    url: &str,
    places: &[Place],
    duration: Duration,
    pace: Pace,
    window: Option<Window>,
) -> Result<Published, String> {
    publish_up_to(c, url, places, duration, pace, u64::MAX, window).await
}

/// [`publish`], stopping early once about `max_events` have been sent (whole batches).
///
/// At a fixed pace the load is open: every 10 ms a call of `rate / 100` events starts
/// whether or not the earlier ones have answered (up to [`MAX_PACED_CALLS`] in flight),
/// so a slow call delays no later one and its time is measured in full. Saturating, each
/// of `in_flight` publishers sends its next call when its last one answered and the
/// [`Window`] has room.
pub(crate) async fn publish_up_to(
    c: &reqwest::Client,
    url: &str,
    places: &[Place],
    duration: Duration,
    pace: Pace,
    max_events: u64,
    window: Option<Window>,
) -> Result<Published, String> {
    let caller = Caller {
        c: c.clone(),
        url: url.to_string(),
        pad: Arc::new("x".repeat(800)),
        places: Arc::new(places.to_vec()),
        busy: Arc::new(AtomicU64::new(0)),
    };
    let end = Instant::now() + duration;
    let claimed = Arc::new(AtomicU64::new(0));
    let mut set = JoinSet::new();
    match pace {
        Pace::Fixed(rate) => {
            let batch = (rate / 100).max(1) as usize;
            let slots = Arc::new(tokio::sync::Semaphore::new(MAX_PACED_CALLS));
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut n = 0usize;
            while Instant::now() < end
                && claimed.fetch_add(batch as u64, Ordering::Relaxed) < max_events
            {
                tick.tick().await;
                let slot = slots
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|e| e.to_string())?;
                let (caller, first) = (caller.clone(), n);
                n += batch;
                set.spawn(async move {
                    let _slot = slot;
                    let (sent, us) = caller.call(first, 1, batch).await?;
                    Ok::<(u64, Vec<u64>), String>((sent, vec![us]))
                });
            }
        }
        Pace::Saturate { events, in_flight } => {
            let (batch, workers) = (events.max(1), in_flight.max(1));
            for w in 0..workers {
                let (window, caller, claimed) = (window.clone(), caller.clone(), claimed.clone());
                set.spawn(async move {
                    let mut sent = 0u64;
                    let mut calls = Vec::new();
                    let mut n = w;
                    while Instant::now() < end
                        && claimed.fetch_add(batch as u64, Ordering::Relaxed) < max_events
                    {
                        if let Some(w) = &window {
                            // Closed loop: publish only while the deliveries not yet
                            // arrived are within the window (bounded by the run's end).
                            let sent = claimed.load(Ordering::Relaxed).saturating_sub(batch as u64);
                            while sent * w.per_event
                                > w.stats.received.load(Ordering::Relaxed) + w.max_outstanding
                                && Instant::now() < end
                            {
                                tokio::time::sleep(Duration::from_millis(1)).await;
                            }
                        }
                        let (accepted, us) = caller.call(n, workers, batch).await?;
                        n += batch * workers;
                        sent += accepted;
                        calls.push(us);
                    }
                    Ok::<(u64, Vec<u64>), String>((sent, calls))
                });
            }
        }
    }
    let mut total = Published {
        events: 0,
        calls_us: Vec::new(),
        busy_retries: 0,
    };
    while let Some(r) = set.join_next().await {
        let (sent, calls) = r.map_err(|e| e.to_string())??;
        total.events += sent;
        total.calls_us.extend(calls);
    }
    total.busy_retries = caller.busy.load(Ordering::Relaxed);
    Ok(total)
}

/// Paced publish calls in flight at most; past it, the pace waits (bounded memory
/// should the server stall).
const MAX_PACED_CALLS: usize = 256;

/// What a publish call needs: the client, the server, the padding and the places.
#[derive(Clone)]
struct Caller {
    c: reqwest::Client,
    url: String,
    pad: Arc<String>,
    places: Arc<Vec<Place>>,
    /// Calls the server refused as busy (503 with Retry-After) and this caller retried.
    busy: Arc<AtomicU64>,
}

/// How often one publish call is retried after a busy refusal before the run fails.
const MAX_BUSY_RETRIES: u32 = 5;

impl Caller {
    /// One call of `batch` events, numbered from `first` by `step` (each picks its place
    /// by its number). Returns the events accepted and the call's time in µs.
    async fn call(&self, first: usize, step: usize, batch: usize) -> Result<(u64, u64), String> {
        let t = now_us();
        // The body is written as text: building a JSON tree per event made the harness,
        // not the server, the busier process.
        let mut body = String::with_capacity(batch * (self.pad.len() + 160) + 16);
        body.push_str("{\"events\":[");
        for i in 0..batch {
            let n = first + i * step;
            let (team, channel, user) = &self.places[n % self.places.len()];
            if i > 0 {
                body.push(',');
            }
            let _ = write!(
                body,
                r#"{{"team_id":"{team}","event":{{"type":"message","channel":"{channel}","user":"{user}","text":"b{t} {n}","pad":"{pad}"}}}}"#,
                pad = self.pad
            );
        }
        body.push_str("]}");
        let body = bytes::Bytes::from(body);
        let call = Instant::now();
        let mut refusals = 0;
        let (status, answer) = loop {
            let res = self
                .c
                .post(format!("{}/admin/v1/events/batch", self.url))
                .bearer_auth(ADMIN)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let status = res.status();
            // A server shedding load answers 503 with Retry-After; a publisher does as
            // it says, and the wait counts in this call's time.
            let retry_after = (status == reqwest::StatusCode::SERVICE_UNAVAILABLE)
                .then(|| res.headers().get(reqwest::header::RETRY_AFTER))
                .flatten()
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            let answer = res.bytes().await.map_err(|e| e.to_string())?;
            match retry_after {
                Some(secs) if refusals < MAX_BUSY_RETRIES => {
                    refusals += 1;
                    self.busy.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_secs(secs.min(10))).await;
                }
                _ => break (status, answer),
            }
        };
        let us = call.elapsed().as_micros() as u64;
        if !status.is_success() {
            return Err(format!(
                "publish: {status} {} (after {refusals} busy refusals)",
                String::from_utf8_lossy(&answer)
            ));
        }
        // Each accepted event's result carries an event_id (a relay's: `spooled`);
        // refusals carry an error.
        let sent = answer.windows(10).filter(|w| w == b"\"event_id\"").count() as u64
            + answer.windows(9).filter(|w| w == b"\"spooled\"").count() as u64;
        Ok((sent, us))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_is_paced_at_half_the_ceiling_and_never_below_16000_deliveries_a_second() {
        let events = |p: Pace| match p {
            Pace::Fixed(n) => n,
            Pace::Saturate { .. } => 0,
        };
        // No ceiling: 16,000 deliveries/s, 1,600 events/s, 16 per 10 ms call.
        assert_eq!(events(tenants_pace(None)), 1_600);
        // A ceiling of 50,534 requests/s: 25,267 deliveries/s, 2,527 events/s, rounded up
        // to 26 per call.
        assert_eq!(events(tenants_pace(Some(50_534.0))), 2_600);
        // Half a slow machine's ceiling is below the floor.
        assert_eq!(events(tenants_pace(Some(20_000.0))), 1_600);
    }
}

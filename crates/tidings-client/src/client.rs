//! [`Client`]: hand events over ([`Client::publish`], [`Client::publish_batch`]), which
//! returns once they are durable in the [`Spool`]; a background task sends them.
//!
//! - Hand-over fixes an event's `idempotency_key` (when the caller gave none) and its
//!   `event_time` (when absent: now), so every resend is the same event to the server and
//!   keeps its original time.
//! - Group fsync: each hand-over appends, then waits for one fsync that covers it; an fsync
//!   already under way when it appended does not, the next one does, and covers every
//!   hand-over waiting for it.
//! - Sending: batches of up to `batch_size`, sent when that many are waiting or `linger`
//!   after the first, up to `max_in_flight` at once (see [`send_loop`]); an event past `max_event_age` is dropped before sending (counted);
//!   an acknowledged event (published or duplicate) is done; one the node refused (4xx) is
//!   written to `dead-letter.ndjson` in the spool directory and done; when no node answers
//!   (or 5xx/408/429) the batch is resent after an exponential backoff with jitter.

use std::collections::{HashMap, HashSet};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::error::{Error, PublishError};
use crate::publisher::{ItemResult, Publisher};
use crate::spool::Spool;

/// How the client sends and spools.
#[derive(Debug, Clone)]
pub struct Config {
    /// Tidings base URLs (`http://127.0.0.1:3000`), tried in order.
    pub upstreams: Vec<String>,
    /// An admin or publisher token.
    pub token: String,
    pub spool_dir: PathBuf,
    /// The spool's bound; past it hand-over is refused with [`Error::SpoolFull`].
    pub max_spool_bytes: u64,
    /// Events per batch request (1 to 1000).
    pub batch_size: usize,
    /// How long a partial batch waits for more.
    pub linger: Duration,
    /// Batches sent at once, awaiting their answers (1 to 64): while one crosses the
    /// network and is written by the node, the next ones are on their way.
    pub max_in_flight: usize,
    /// The server's `events.max_event_age`: older events are dropped before sending.
    pub max_event_age: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl Config {
    /// Defaults: 1 GiB spool, batches of 500 after at most 100 ms, 4 batches in flight,
    /// 72 h age limit, backoff from 200 ms to 30 s.
    pub fn new(upstreams: Vec<String>, token: String, spool_dir: PathBuf) -> Config {
        Config {
            upstreams,
            token,
            spool_dir,
            max_spool_bytes: 1 << 30,
            batch_size: 500,
            linger: Duration::from_millis(100),
            max_in_flight: 4,
            max_event_age: Duration::from_secs(72 * 3600),
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(30),
        }
    }
}

/// Progress and drop counts since the client started (and what the spool holds now).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Events taken into the spool.
    pub handed: u64,
    /// Refused hand-overs because the spool was full.
    pub refused_full: u64,
    /// Events the server acknowledged (first publish or duplicate).
    pub acknowledged: u64,
    /// Of those, answered as duplicates (a resend after a lost answer).
    pub duplicates: u64,
    /// Events dropped before sending: past `max_event_age`.
    pub dropped_too_old: u64,
    /// Events a node refused (4xx), kept in `dead-letter.ndjson`.
    pub dead_lettered: u64,
    /// Batch sends that found no node available and were retried.
    pub retries: u64,
    /// Batches sent (answered or not).
    pub batches: u64,
    /// Batches awaiting their answer now, and the most there ever were at once.
    pub in_flight: u64,
    pub peak_in_flight: u64,
    /// Events in the spool not yet done.
    pub pending: u64,
    pub spool_bytes: u64,
    /// Torn tail cut off when the spool was opened.
    pub torn_bytes: u64,
}

#[derive(Default)]
struct Counters {
    handed: AtomicU64,
    refused_full: AtomicU64,
    acknowledged: AtomicU64,
    duplicates: AtomicU64,
    dropped_too_old: AtomicU64,
    dead_lettered: AtomicU64,
    retries: AtomicU64,
    batches: AtomicU64,
    in_flight: AtomicU64,
    peak_in_flight: AtomicU64,
}

struct Shared {
    spool: Mutex<Spool>,
    /// Appends so far, and appends covered by an fsync.
    appended: AtomicU64,
    synced: Mutex<u64>,
    counters: Counters,
    wake: tokio::sync::Notify,
    closed: AtomicBool,
    config: Config,
    dead_letter: PathBuf,
    last_error: Mutex<Option<String>>,
}

/// A publishing client with an on-disk spool. Cheap to share (`Arc` inside).
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
    sender: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Checks a publish body and fixes its idempotency key and event time; returns the key.
fn prepare(body: &mut Value, now: i64) -> Result<String, Error> {
    let Some(o) = body.as_object_mut() else {
        return Err(Error::Invalid("an event must be a JSON object".into()));
    };
    if !o.get("team_id").is_some_and(Value::is_string) {
        return Err(Error::Invalid(
            "team_id is required and must be a string".into(),
        ));
    }
    if !o
        .get("event")
        .and_then(|e| e.get("type"))
        .is_some_and(Value::is_string)
    {
        return Err(Error::Invalid(
            "event is required and must be an object with a string type".into(),
        ));
    }
    if !o.get("event_time").is_some_and(Value::is_i64) {
        if o.get("event_time").is_some_and(|t| !t.is_null()) {
            return Err(Error::Invalid(
                "event_time must be whole Unix seconds".into(),
            ));
        }
        o.insert("event_time".into(), now.into());
    }
    let key = match o.get("idempotency_key") {
        Some(Value::String(k)) if !k.is_empty() && k.chars().count() <= 255 => k.clone(),
        None | Some(Value::Null) => {
            let k = format!("tc-{}", uuid::Uuid::new_v4().simple());
            o.insert("idempotency_key".into(), k.clone().into());
            k
        }
        _ => {
            return Err(Error::Invalid(
                "idempotency_key must be a string of 1 to 255 characters".into(),
            ))
        }
    };
    Ok(key)
}

impl Client {
    /// Opens the spool (resending whatever it holds) and starts sending. Must be called
    /// within a Tokio runtime.
    pub fn open(config: Config) -> Result<Client, Error> {
        if config.upstreams.is_empty() {
            return Err(Error::Invalid("at least one upstream URL is needed".into()));
        }
        let publisher = Publisher::new(config.upstreams.clone(), config.token.clone())
            .map_err(|e| Error::Invalid(e.to_string()))?;
        let spool = Spool::open(&config.spool_dir, config.max_spool_bytes)?;
        let shared = Arc::new(Shared {
            spool: Mutex::new(spool),
            appended: AtomicU64::new(0),
            synced: Mutex::new(0),
            counters: Counters::default(),
            wake: tokio::sync::Notify::new(),
            closed: AtomicBool::new(false),
            dead_letter: config.spool_dir.join("dead-letter.ndjson"),
            config,
            last_error: Mutex::new(None),
        });
        let task = tokio::spawn(send_loop(shared.clone(), publisher));
        Ok(Client {
            shared,
            sender: Arc::new(Mutex::new(Some(task))),
        })
    }

    /// Hands one event over (a `POST /admin/v1/events` body); returns its idempotency key
    /// once it is durable in the spool.
    pub async fn publish(&self, body: Value) -> Result<String, Error> {
        let mut keys = self.publish_batch(vec![body]).await?;
        keys.pop().ok_or(Error::Closed)
    }

    /// Hands several events over, all or none; their idempotency keys, in order.
    pub async fn publish_batch(&self, mut bodies: Vec<Value>) -> Result<Vec<String>, Error> {
        if self.shared.closed.load(Ordering::Relaxed) {
            return Err(Error::Closed);
        }
        let now = now_secs();
        let keys = bodies
            .iter_mut()
            .map(|b| prepare(b, now))
            .collect::<Result<Vec<_>, _>>()?;
        let shared = self.shared.clone();
        let n = bodies.len() as u64;
        tokio::task::spawn_blocking(move || hand_over(&shared, bodies))
            .await
            .map_err(|_| Error::Closed)??;
        self.shared.counters.handed.fetch_add(n, Ordering::Relaxed);
        self.shared.wake.notify_one();
        Ok(keys)
    }

    pub fn stats(&self) -> Stats {
        let c = &self.shared.counters;
        let spool = self
            .shared
            .spool
            .lock()
            .map(|s| s.stats())
            .unwrap_or_default();
        Stats {
            handed: c.handed.load(Ordering::Relaxed),
            refused_full: c.refused_full.load(Ordering::Relaxed),
            acknowledged: c.acknowledged.load(Ordering::Relaxed),
            duplicates: c.duplicates.load(Ordering::Relaxed),
            dropped_too_old: c.dropped_too_old.load(Ordering::Relaxed),
            dead_lettered: c.dead_lettered.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            batches: c.batches.load(Ordering::Relaxed),
            in_flight: c.in_flight.load(Ordering::Relaxed),
            peak_in_flight: c.peak_in_flight.load(Ordering::Relaxed),
            pending: spool.events,
            spool_bytes: spool.bytes,
            torn_bytes: spool.torn_bytes,
        }
    }

    /// The last reason a send failed (cleared by the next success).
    pub fn last_error(&self) -> Option<String> {
        self.shared.last_error.lock().ok().and_then(|e| e.clone())
    }

    /// Where refused events are kept.
    pub fn dead_letter_path(&self) -> &std::path::Path {
        &self.shared.dead_letter
    }

    /// Waits until the spool is empty (every event done), up to `timeout`; whether it is.
    pub async fn flush(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.stats().pending == 0 {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            self.shared.wake.notify_one();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops sending; what is still spooled is sent by the next client on this spool.
    pub async fn close(&self) {
        self.shared.closed.store(true, Ordering::Relaxed);
        self.shared.wake.notify_one();
        let task = self.sender.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = task {
            let _ = t.await;
        }
    }
}

/// Appends, then waits for an fsync covering the append (group commit).
fn hand_over(shared: &Shared, bodies: Vec<Value>) -> Result<(), Error> {
    let mine = {
        let mut spool = shared.spool.lock().map_err(|_| Error::Closed)?;
        match spool.append(bodies) {
            Ok(_) => shared.appended.fetch_add(1, Ordering::SeqCst) + 1,
            Err(e) => {
                if matches!(e, Error::SpoolFull { .. }) {
                    shared.counters.refused_full.fetch_add(1, Ordering::Relaxed);
                }
                return Err(e);
            }
        }
    };
    let mut synced = shared.synced.lock().map_err(|_| Error::Closed)?;
    if *synced >= mine {
        return Ok(());
    }
    // Everything appended so far is covered by this fsync.
    let (target, file, path) = {
        let spool = shared.spool.lock().map_err(|_| Error::Closed)?;
        let target = shared.appended.load(Ordering::SeqCst);
        let file = std::fs::File::open(spool.path());
        (target, file, spool.path().to_path_buf())
    };
    file.and_then(|f| f.sync_data())
        .map_err(|e| Error::io(&path, e))?;
    *synced = target;
    Ok(())
}

/// One batch on its way: what was sent, and the answer.
struct Sent {
    batch: Vec<(u64, Value)>,
    outcome: Result<Vec<ItemResult>, PublishError>,
}

/// Sends the spool, keeping up to `max_in_flight` batches in flight. An event is in at
/// most one of them (`in_flight`): [`take`] passes over events being sent, so a later
/// batch never repeats an earlier one's events. Answers are settled in whatever order they
/// come: the spool records each acknowledged event as done on its own (by id, not an
/// offset), so an event stays live, and is resent, until its own batch is acknowledged,
/// whatever happened to the batches around it. A full batch goes whenever the window has
/// room; a partial one only when nothing is in flight, after `linger`. After a failed batch
/// no new batch starts until the backoff has passed; the failed batch's events are resent
/// then (with the same idempotency keys).
async fn send_loop(shared: Arc<Shared>, publisher: Publisher) {
    let publisher = Arc::new(publisher);
    let cfg = shared.config.clone();
    let batch_size = cfg.batch_size.clamp(1, 1000);
    let window = cfg.max_in_flight.clamp(1, 64);
    let mut in_flight: HashMap<tokio::task::Id, Vec<u64>> = HashMap::new();
    let mut busy: HashSet<u64> = HashSet::new();
    let mut sends: JoinSet<Sent> = JoinSet::new();
    let mut attempt: u32 = 0;
    let mut retry_at: Option<Instant> = None;
    loop {
        let closed = shared.closed.load(Ordering::Relaxed);
        if closed && sends.is_empty() {
            return;
        }
        let backing_off = retry_at.is_some_and(|t| Instant::now() < t);
        if !closed && !backing_off && sends.len() < window {
            let mut batch = take(&shared, batch_size, &busy);
            let full = batch.len() >= batch_size;
            if !batch.is_empty() && (full || sends.is_empty()) {
                if !full && attempt == 0 {
                    tokio::time::sleep(cfg.linger).await;
                    batch = take(&shared, batch_size, &busy);
                }
                let batch = drop_too_old(&shared, batch, cfg.max_event_age);
                if !batch.is_empty() {
                    let ids: Vec<u64> = batch.iter().map(|(id, _)| *id).collect();
                    busy.extend(ids.iter().copied());
                    shared.counters.batches.fetch_add(1, Ordering::Relaxed);
                    let p = publisher.clone();
                    let task = sends.spawn(async move {
                        let bodies: Vec<Value> = batch.iter().map(|(_, b)| b.clone()).collect();
                        let outcome = p.publish_batch(&bodies).await;
                        Sent { batch, outcome }
                    });
                    in_flight.insert(task.id(), ids);
                    let c = &shared.counters;
                    c.in_flight.store(sends.len() as u64, Ordering::Relaxed);
                    c.peak_in_flight
                        .fetch_max(sends.len() as u64, Ordering::Relaxed);
                }
                continue;
            }
        }
        // Nothing to start now: wait for an answer, new events, the backoff's end, or close.
        let wake_at = retry_at
            .filter(|t| *t > Instant::now())
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
        tokio::select! {
            Some(joined) = sends.join_next_with_id(), if !sends.is_empty() => {
                let (task, sent) = match joined {
                    Ok((task, sent)) => (task, Some(sent)),
                    Err(e) => (e.id(), None),
                };
                for id in in_flight.remove(&task).unwrap_or_default() {
                    busy.remove(&id);
                }
                shared
                    .counters
                    .in_flight
                    .store(sends.len() as u64, Ordering::Relaxed);
                let failed = match sent {
                    Some(sent) => settle(&shared, sent),
                    None => true,
                };
                if failed {
                    shared.counters.retries.fetch_add(1, Ordering::Relaxed);
                    let base = cfg
                        .backoff_min
                        .saturating_mul(1u32 << attempt.min(16))
                        .min(cfg.backoff_max);
                    // Full jitter over the upper half: nodes coming back are not hit in step.
                    let jitter = rand::random::<f64>() * 0.5 + 0.5;
                    attempt = attempt.saturating_add(1);
                    retry_at = Some(Instant::now() + base.mul_f64(jitter));
                } else {
                    attempt = 0;
                    retry_at = None;
                    set_error(&shared, None);
                }
            }
            _ = shared.wake.notified() => {}
            _ = tokio::time::sleep_until(wake_at) => {}
        }
    }
}

/// Drops the events past the server's age limit (counted); the rest.
fn drop_too_old(shared: &Shared, batch: Vec<(u64, Value)>, max_age: Duration) -> Vec<(u64, Value)> {
    let oldest = now_secs() - max_age.as_secs() as i64;
    let (old, batch): (Vec<_>, Vec<_>) = batch
        .into_iter()
        .partition(|(_, b)| b["event_time"].as_i64().is_some_and(|t| t < oldest));
    if !old.is_empty() {
        tracing::warn!(count = old.len(), "dropped events past max_event_age");
        shared
            .counters
            .dropped_too_old
            .fetch_add(old.len() as u64, Ordering::Relaxed);
        done(shared, old.iter().map(|(id, _)| *id).collect());
    }
    batch
}

/// Records a batch's answer: acknowledged and kept-aside events are done; whether some
/// of it must be resent.
fn settle(shared: &Shared, sent: Sent) -> bool {
    let Sent { batch, outcome } = sent;
    match outcome {
        Ok(results) => {
            let mut finished = Vec::new();
            let mut retry = false;
            for ((id, body), r) in batch.iter().zip(results) {
                match r {
                    ItemResult::Published(p) => {
                        shared.counters.acknowledged.fetch_add(1, Ordering::Relaxed);
                        if p.duplicate {
                            shared.counters.duplicates.fetch_add(1, Ordering::Relaxed);
                        }
                        finished.push(*id);
                    }
                    ItemResult::Refused(e @ PublishError::Refused { .. }) => {
                        if keep_aside(shared, body, &e) {
                            finished.push(*id);
                        } else {
                            retry = true;
                        }
                    }
                    ItemResult::Refused(e) => {
                        set_error(shared, Some(e.to_string()));
                        retry = true;
                    }
                }
            }
            done(shared, finished);
            retry
        }
        Err(e @ PublishError::Refused { .. }) => {
            tracing::error!(error = %e, events = batch.len(), "the node refused the batch; kept aside");
            let finished: Vec<u64> = batch
                .iter()
                .filter(|(_, body)| keep_aside(shared, body, &e))
                .map(|(id, _)| *id)
                .collect();
            let all = finished.len() == batch.len();
            done(shared, finished);
            !all
        }
        Err(e) => {
            tracing::warn!(error = %e, "no node accepted the batch; it will be resent");
            set_error(shared, Some(e.to_string()));
            true
        }
    }
}

fn set_error(shared: &Shared, e: Option<String>) {
    if let Ok(mut slot) = shared.last_error.lock() {
        *slot = e;
    }
}

/// Up to `n` live events, oldest first, passing over those being sent.
fn take(shared: &Shared, n: usize, busy: &HashSet<u64>) -> Vec<(u64, Value)> {
    shared
        .spool
        .lock()
        .map(|s| {
            s.live()
                .filter(|(id, _)| !busy.contains(id))
                .take(n)
                .map(|(id, v)| (id, v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

fn done(shared: &Shared, ids: Vec<u64>) {
    if ids.is_empty() {
        return;
    }
    if let Ok(mut s) = shared.spool.lock() {
        if let Err(e) = s.done(&ids) {
            // The events stay live and are resent; the server answers them as duplicates.
            tracing::error!(error = %e, "cannot record sent events in the spool");
        }
    }
}

/// Appends a refused event to the dead-letter file (fsynced); false if it cannot be
/// written, so the event stays in the spool instead of being lost.
fn keep_aside(shared: &Shared, body: &Value, e: &PublishError) -> bool {
    let (status, code, detail) = match e {
        PublishError::Refused {
            status,
            code,
            detail,
        } => (*status, code.as_str(), detail.as_str()),
        _ => (0, "refused", ""),
    };
    let line =
        json!({"at": now_secs(), "status": status, "code": code, "detail": detail, "body": body});
    let written = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&shared.dead_letter)
        .and_then(|mut f| {
            writeln!(f, "{line}")?;
            f.sync_data()
        });
    match written {
        Ok(()) => {
            tracing::warn!(
                status,
                code,
                detail,
                "event refused; kept in the dead-letter file"
            );
            shared
                .counters
                .dead_lettered
                .fetch_add(1, Ordering::Relaxed);
            true
        }
        Err(err) => {
            tracing::error!(error = %err, path = %shared.dead_letter.display(), "cannot write the dead-letter file");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_over_fixes_the_key_and_the_time_once() {
        let mut b = json!({"team_id": "T1", "event": {"type": "message"}});
        let k = prepare(&mut b, 1_700_000_000).unwrap();
        assert!(k.starts_with("tc-"));
        assert_eq!(b["idempotency_key"], k.as_str());
        assert_eq!(b["event_time"], 1_700_000_000);
        let mut again = b.clone();
        assert_eq!(prepare(&mut again, 1_800_000_000).unwrap(), k);
        assert_eq!(
            again["event_time"], 1_700_000_000,
            "the original time is kept"
        );
    }

    #[test]
    fn bodies_that_are_not_publish_bodies_are_refused() {
        for bad in [
            json!([]),
            json!({"event": {"type": "x"}}),
            json!({"team_id": "T1", "event": {}}),
            json!({"team_id": "T1", "event": {"type": "x"}, "event_time": "soon"}),
            json!({"team_id": "T1", "event": {"type": "x"}, "idempotency_key": ""}),
        ] {
            let mut b = bad.clone();
            assert!(
                matches!(prepare(&mut b, 0), Err(Error::Invalid(_))),
                "{bad}"
            );
        }
    }
}

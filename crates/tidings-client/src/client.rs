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
//!   after the first; an event past `max_event_age` is dropped before sending (counted);
//!   an acknowledged event (published or duplicate) is done; one the node refused (4xx) is
//!   written to `dead-letter.ndjson` in the spool directory and done; when no node answers
//!   (or 5xx/408/429) the batch is resent after an exponential backoff with jitter.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

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
    /// The server's `events.max_event_age`: older events are dropped before sending.
    pub max_event_age: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl Config {
    /// Defaults: 1 GiB spool, batches of 500 after at most 100 ms, 72 h age limit,
    /// backoff from 200 ms to 30 s.
    pub fn new(upstreams: Vec<String>, token: String, spool_dir: PathBuf) -> Config {
        Config {
            upstreams,
            token,
            spool_dir,
            max_spool_bytes: 1 << 30,
            batch_size: 500,
            linger: Duration::from_millis(100),
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

async fn send_loop(shared: Arc<Shared>, publisher: Publisher) {
    let cfg = shared.config.clone();
    let batch_size = cfg.batch_size.clamp(1, 1000);
    let mut attempt: u32 = 0;
    loop {
        if shared.closed.load(Ordering::Relaxed) {
            return;
        }
        let mut batch = take(&shared, batch_size);
        if batch.is_empty() {
            tokio::select! {
                _ = shared.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            continue;
        }
        if batch.len() < batch_size && attempt == 0 {
            tokio::time::sleep(cfg.linger).await;
            batch = take(&shared, batch_size);
        }
        // Past the server's age limit: dropped here, counted.
        let oldest = now_secs() - cfg.max_event_age.as_secs() as i64;
        let (old, batch): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .partition(|(_, b)| b["event_time"].as_i64().is_some_and(|t| t < oldest));
        if !old.is_empty() {
            tracing::warn!(count = old.len(), "dropped events past max_event_age");
            shared
                .counters
                .dropped_too_old
                .fetch_add(old.len() as u64, Ordering::Relaxed);
            done(&shared, old.iter().map(|(id, _)| *id).collect());
        }
        if batch.is_empty() {
            continue;
        }
        let bodies: Vec<Value> = batch.iter().map(|(_, b)| b.clone()).collect();
        shared.counters.batches.fetch_add(1, Ordering::Relaxed);
        let outcome = publisher.publish_batch(&bodies).await;
        let failed = match outcome {
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
                            if keep_aside(&shared, body, &e) {
                                finished.push(*id);
                            } else {
                                retry = true;
                            }
                        }
                        ItemResult::Refused(e) => {
                            set_error(&shared, Some(e.to_string()));
                            retry = true;
                        }
                    }
                }
                done(&shared, finished);
                retry
            }
            Err(e @ PublishError::Refused { .. }) => {
                tracing::error!(error = %e, events = batch.len(), "the node refused the batch; kept aside");
                let finished: Vec<u64> = batch
                    .iter()
                    .filter(|(_, body)| keep_aside(&shared, body, &e))
                    .map(|(id, _)| *id)
                    .collect();
                let all = finished.len() == batch.len();
                done(&shared, finished);
                !all
            }
            Err(e) => {
                tracing::warn!(error = %e, "no node accepted the batch; it will be resent");
                set_error(&shared, Some(e.to_string()));
                true
            }
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
            tokio::select! {
                _ = tokio::time::sleep(base.mul_f64(jitter)) => {}
                _ = wait_closed(&shared) => {}
            }
        } else {
            attempt = 0;
            set_error(&shared, None);
        }
    }
}

async fn wait_closed(shared: &Shared) {
    while !shared.closed.load(Ordering::Relaxed) {
        shared.wake.notified().await;
    }
}

fn set_error(shared: &Shared, e: Option<String>) {
    if let Ok(mut slot) = shared.last_error.lock() {
        *slot = e;
    }
}

fn take(shared: &Shared, n: usize) -> Vec<(u64, Value)> {
    shared
        .spool
        .lock()
        .map(|s| s.live().take(n).map(|(id, v)| (id, v.clone())).collect())
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

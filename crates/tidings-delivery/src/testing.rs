//! Test doubles for the engine's unit tests: [`MemQueue`], an in-memory
//! [`DeliveryQueue`] (the store is the queue, so it keeps every delivery with its due
//! time and status), and [`Script`], a transport whose answers a test decides and whose
//! attempts it can read back. Time is the runtime's (tests run paused).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use tidings_core::fanout::Authorization;
use tidings_store::{
    App, AttemptOutcome, Delivery, DeliveryQueue, DeliveryStatus, DueDelivery, EventShape,
    NextStep, StoreResult, StoredEvent, WorkNotice, WorkSink,
};

use crate::clock::Clock;
use crate::transport::{Prepared, Sent, Transport, Tried};

/// A pending delivery `seq` of `app`, first attempt.
pub fn row(seq: i64, app: &str) -> DueDelivery {
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
            payload: r#"{"type":"message","text":"hi"}"#.into(),
            idempotency_key: None,
            created_at: 0,
        }),
        attempts: 0,
        redeliver: false,
        lease: None,
    }
}

/// An app with a verified Request URL (or in Socket Mode).
pub fn app(id: &str, socket_mode: bool) -> App {
    App {
        id: id.into(),
        name: id.into(),
        request_url: (!socket_mode).then(|| "http://127.0.0.1:9/events".to_string()),
        request_url_verified: !socket_mode,
        socket_mode,
        bot_events: vec!["message".into()],
        user_events: Vec::new(),
        event_shape: EventShape::default(),
        signing_secret: "s".into(),
        verification_token: "v".into(),
        events_enabled: true,
        disabled_reason: None,
        disabled_at: None,
        created_at: 0,
        version: 1,
        enabled_at_ms: None,
        ..Default::default()
    }
}

/// One delivery as the in-memory store keeps it.
#[derive(Debug, Clone)]
pub struct Kept {
    pub row: DueDelivery,
    pub due_ms: i64,
    pub status: DeliveryStatus,
    pub created_ms: i64,
}

/// The in-memory queue. `std::sync::Mutex`es: held for map edits only.
pub struct MemQueue {
    pub clock: Arc<dyn Clock>,
    pub apps: Mutex<HashMap<String, App>>,
    pub rows: Mutex<BTreeMap<i64, Kept>>,
    sink: OnceLock<WorkSink>,
}

impl MemQueue {
    pub fn new(clock: Arc<dyn Clock>) -> Arc<MemQueue> {
        Arc::new(MemQueue {
            clock,
            apps: Mutex::default(),
            rows: Mutex::default(),
            sink: OnceLock::new(),
        })
    }

    pub fn put_app(&self, a: App) {
        self.apps.lock().unwrap().insert(a.id.clone(), a);
    }

    /// Writes pending deliveries due now, as a publish would, without ringing.
    pub fn publish(&self, rows: &[DueDelivery]) {
        let now = self.clock.now_ms();
        let mut kept = self.rows.lock().unwrap();
        for r in rows {
            kept.insert(
                r.delivery.seq,
                Kept {
                    row: r.clone(),
                    due_ms: now,
                    status: DeliveryStatus::Pending,
                    created_ms: now,
                },
            );
        }
    }

    /// Rings the doorbell as the store does after a commit.
    pub fn ring(&self, notice: WorkNotice) {
        if let Some(sink) = self.sink.get() {
            sink(notice);
        }
    }

    pub fn status(&self, seq: i64) -> DeliveryStatus {
        self.rows.lock().unwrap()[&seq].status
    }

    pub fn pending(&self) -> usize {
        let rows = self.rows.lock().unwrap();
        rows.values()
            .filter(|k| k.status == DeliveryStatus::Pending)
            .count()
    }
}

#[async_trait]
impl DeliveryQueue for MemQueue {
    fn set_work_sink(&self, sink: WorkSink) {
        let _ = self.sink.set(sink);
    }

    fn is_shared(&self) -> bool {
        false
    }

    fn lease(&self) -> Option<Duration> {
        None
    }

    fn event_context_key(&self) -> Vec<u8> {
        vec![7; 32]
    }

    async fn get_app(&self, id: &str) -> StoreResult<Option<App>> {
        Ok(self.apps.lock().unwrap().get(id).cloned())
    }

    async fn pending_apps(&self) -> StoreResult<Vec<(String, i64)>> {
        let mut due: HashMap<String, i64> = HashMap::new();
        for k in self.rows.lock().unwrap().values() {
            if k.status == DeliveryStatus::Pending {
                let d = due.entry(k.row.delivery.app_id.clone()).or_insert(k.due_ms);
                *d = (*d).min(k.due_ms);
            }
        }
        Ok(due.into_iter().collect())
    }

    async fn pending_count(&self) -> StoreResult<u64> {
        Ok(self.pending() as u64)
    }

    async fn due_deliveries(
        &self,
        app_id: &str,
        now_ms: i64,
        limit: usize,
        exclude: Vec<i64>,
        below: Option<i64>,
    ) -> StoreResult<(Vec<DueDelivery>, Option<i64>)> {
        let rows = self.rows.lock().unwrap();
        let mut open: Vec<&Kept> = rows
            .values()
            .filter(|k| k.status == DeliveryStatus::Pending && k.row.delivery.app_id == app_id)
            .filter(|k| !exclude.contains(&k.row.delivery.seq))
            .filter(|k| below.is_none_or(|b| k.row.delivery.seq < b))
            .collect();
        open.sort_by_key(|k| (k.due_ms, k.row.delivery.seq));
        let taken: Vec<DueDelivery> = open
            .iter()
            .filter(|k| k.due_ms <= now_ms)
            .take(limit)
            .map(|k| k.row.clone())
            .collect();
        if taken.len() == limit {
            return Ok((taken, Some(now_ms)));
        }
        let next = open.get(taken.len()).map(|k| k.due_ms);
        Ok((taken, next))
    }

    async fn record_outcomes(&self, outcomes: Vec<AttemptOutcome>) -> StoreResult<()> {
        let mut rows = self.rows.lock().unwrap();
        for o in outcomes {
            let Some(k) = rows.get_mut(&o.seq) else {
                continue;
            };
            if k.status != DeliveryStatus::Pending {
                continue;
            }
            if o.attempt.is_some() {
                k.row.attempts += 1;
            }
            k.row.redeliver = false;
            match o.next {
                NextStep::Delivered => k.status = DeliveryStatus::Delivered,
                NextStep::Retry { at_ms, reason } => {
                    k.due_ms = at_ms;
                    k.row.delivery.reason = Some(reason);
                }
                NextStep::Failed { reason } => {
                    k.status = DeliveryStatus::Failed;
                    k.row.delivery.reason = Some(reason);
                }
                NextStep::Dropped { reason } => {
                    k.status = DeliveryStatus::Dropped;
                    k.row.delivery.reason = Some(reason);
                }
            }
        }
        Ok(())
    }

    async fn renew_leases(&self, _seqs: Vec<i64>) -> StoreResult<usize> {
        Ok(0)
    }

    async fn postpone(&self, held: Vec<(i64, Option<i64>)>, until_ms: i64) -> StoreResult<usize> {
        let mut rows = self.rows.lock().unwrap();
        let mut n = 0;
        for (seq, _) in held {
            if let Some(k) = rows.get_mut(&seq) {
                k.due_ms = until_ms;
                n += 1;
            }
        }
        Ok(n)
    }

    async fn hand_back(&self, unsent: Vec<i64>, unknown: Vec<i64>) -> StoreResult<usize> {
        let mut rows = self.rows.lock().unwrap();
        let mut n = 0;
        for seq in unsent.iter().chain(&unknown) {
            let Some(k) = rows.get_mut(seq) else { continue };
            if k.status != DeliveryStatus::Pending {
                continue;
            }
            if unknown.contains(seq) && !k.row.redeliver {
                k.row.attempts += 1;
            }
            n += 1;
        }
        Ok(n)
    }

    async fn expire_held(&self, app_id: &str, created_before: i64) -> StoreResult<usize> {
        let mut n = 0;
        for k in self.rows.lock().unwrap().values_mut() {
            if k.row.delivery.app_id == app_id
                && k.status == DeliveryStatus::Pending
                && k.created_ms / 1000 <= created_before
            {
                k.status = DeliveryStatus::Failed;
                k.row.delivery.reason = Some("connection_failed".into());
                n += 1;
            }
        }
        Ok(n)
    }

    async fn remote_socket_connections(&self, _app_id: &str) -> StoreResult<usize> {
        Ok(0)
    }
}

/// One attempt a [`Script`] saw.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    pub seq: i64,
    pub at_ms: i64,
    pub retry_num: u32,
}

/// A transport that answers every send with `answer(seq)` after `latency`, and counts
/// how many sends are under way at once.
pub struct Script {
    pub clock: Arc<dyn Clock>,
    pub latency: Duration,
    pub answer: Box<dyn Fn(i64) -> Option<&'static str> + Send + Sync>,
    pub ready: std::sync::atomic::AtomicBool,
    pub seen: Mutex<Vec<Seen>>,
    pub busy: std::sync::atomic::AtomicUsize,
    pub most_busy: std::sync::atomic::AtomicUsize,
}

impl Script {
    pub fn new(
        clock: Arc<dyn Clock>,
        latency: Duration,
        answer: impl Fn(i64) -> Option<&'static str> + Send + Sync + 'static,
    ) -> Arc<Script> {
        Arc::new(Script {
            clock,
            latency,
            answer: Box::new(answer),
            ready: true.into(),
            seen: Mutex::default(),
            busy: 0.into(),
            most_busy: 0.into(),
        })
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

#[async_trait]
impl Transport for Script {
    fn name(&self) -> &'static str {
        "http"
    }

    fn ready(&self, _app: &App) -> bool {
        self.ready.load(std::sync::atomic::Ordering::SeqCst)
    }

    async fn send(&self, _app: &App, row: &DueDelivery, p: Prepared) -> Sent {
        use std::sync::atomic::Ordering::SeqCst;
        if !self.ready(_app) {
            return Sent::NoTransport;
        }
        let now = self.busy.fetch_add(1, SeqCst) + 1;
        self.most_busy.fetch_max(now, SeqCst);
        self.seen.lock().unwrap().push(Seen {
            seq: row.delivery.seq,
            at_ms: self.clock.now_ms(),
            retry_num: p.retry_num,
        });
        tokio::time::sleep(self.latency).await;
        self.busy.fetch_sub(1, SeqCst);
        Sent::Attempted(Tried {
            status_code: None,
            failure: (self.answer)(row.delivery.seq),
            latency: self.latency,
            no_retry: false,
            retry_after: None,
            gone: false,
        })
    }
}

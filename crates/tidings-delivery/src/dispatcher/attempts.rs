//! Running one attempt for the dispatcher, and what its end means for the lane:
//! [`crate::attempt::prepare`] → [`Transport::send`] → [`crate::attempt::conclude`], then
//! the outcome is queued for the store and the delivery leaves its lane once it is
//! durable. Both transports take the same path.
//!
//! Receiver back-pressure: a `429`/`503` with `Retry-After` pauses the app's lane for
//! the (bounded) delay it asks for. Up to `retry_after_budget` such answers in a row are
//! *deferrals*: the delivery is pending again after the delay with no attempt recorded,
//! so they count neither against the retry schedule nor the health rule; past the budget
//! they are failed attempts like any other (the lane still waits). An operator's
//! redelivery is one attempt, so it is never deferred. A `410 Gone` keeps the delivery
//! pending (its attempt recorded) and tells the engine, which marks the app as needing a
//! new Request URL: deliveries wait until one is verified.

use std::sync::Arc;

use tidings_core::policy::FailureReason;
use tidings_store::{App, AttemptOutcome, DueDelivery, NextStep};
use tokio::sync::{AcquireError, OwnedSemaphorePermit};

use super::Dispatcher;
use crate::attempt;
use crate::transport::{Sent, Transport, Tried};

impl Dispatcher {
    /// One attempt of `row` to `app` over `transport`, once a global permit is free.
    pub(super) async fn attempt(
        self: Arc<Self>,
        app: Arc<App>,
        transport: Arc<dyn Transport>,
        row: DueDelivery,
    ) {
        let permit = self.permits.clone().acquire_owned().await;
        if !self.gate.begin(row.delivery.seq) {
            // The engine is stopping: handed back unsent (see `crate::drain`).
            return self.release(&app.id, &[row.delivery.seq], None);
        }
        let prepared = attempt::prepare(
            &self.catalog,
            &self.key,
            &self.cfg.retry_schedule,
            &row,
            &app,
        );
        let outcome = match prepared {
            Err(e) => attempt::unbuildable(&row, &e),
            Ok(p) => match transport.send(&app, &row, p).await {
                Sent::Unbuildable(e) => attempt::unbuildable(&row, &e),
                Sent::NoTransport => {
                    let _ = self.gate.end(row.delivery.seq);
                    return self.unsent(&app.id, row, permit).await;
                }
                Sent::Attempted(tried) => {
                    let now = self.now();
                    if let Some(o) = self.deferral(&app.id, &row, &tried, now) {
                        o
                    } else {
                        self.observe(&app.id, &row, transport.name(), &tried);
                        let mut o = attempt::conclude(
                            &self.cfg.retry_schedule,
                            &row,
                            transport.name(),
                            &tried,
                            now,
                        );
                        if tried.gone {
                            self.gone(&app);
                            o.next = NextStep::Retry {
                                at_ms: now,
                                reason: FailureReason::HttpError.as_str().into(),
                            };
                        }
                        o
                    }
                }
            },
        };
        self.finish(&app.id, row, outcome, permit).await;
    }

    /// A back-pressure answer pauses the lane; within the budget (and not for an
    /// operator's redelivery) it is a deferral: pending again after the delay, no attempt
    /// recorded. `None`: the attempt is concluded as usual.
    fn deferral(
        &self,
        app_id: &str,
        row: &DueDelivery,
        tried: &Tried,
        now: i64,
    ) -> Option<AttemptOutcome> {
        let delay = tried.retry_after?;
        let until = now + delay.as_millis() as i64;
        let in_a_row = self
            .lanes()
            .get_mut(app_id)
            .map_or(u32::MAX, |l| l.back_off(until));
        let deferred = !row.redeliver && in_a_row <= self.cfg.retry_after_budget;
        metrics::counter!("tidings_delivery_backpressure_total",
            "counted" => if deferred { "no" } else { "yes" })
        .increment(1);
        tracing::info!(app = app_id, delivery = %row.delivery.id, status = ?tried.status_code,
            delay_ms = delay.as_millis() as u64, in_a_row, deferred,
            "receiver asked to wait (Retry-After): app paused");
        deferred.then(|| AttemptOutcome {
            seq: row.delivery.seq,
            lease: row.lease,
            attempt: None,
            next: NextStep::Retry {
                at_ms: until,
                reason: tried
                    .failure
                    .unwrap_or(FailureReason::HttpError.as_str())
                    .into(),
            },
        })
    }

    /// The Request URL answered `410 Gone`: the lane waits for the app's change (a
    /// recheck at most) and the engine marks the app.
    fn gone(&self, app: &App) {
        let Some(url) = app.request_url.as_deref() else {
            return;
        };
        let recheck = self.now() + self.cfg.hold_recheck.as_millis() as i64;
        if let Some(l) = self.lanes().get_mut(&app.id) {
            l.back_off(recheck);
        }
        metrics::counter!("tidings_delivery_request_url_gone_total").increment(1);
        tracing::warn!(app = %app.id, url = %tidings_core::redact::url(url),
            "Request URL answered 410 Gone: deliveries stop until a new URL is set");
        (self.on_gone)(&app.id, url);
    }

    /// The attempt counted in metrics and the health rule, and its lane paced while
    /// nobody answers at the endpoint.
    fn observe(&self, app_id: &str, row: &DueDelivery, transport: &'static str, tried: &Tried) {
        let outcome = tried.failure.unwrap_or("success");
        metrics::counter!("tidings_delivery_attempts_total", "transport" => transport, "outcome" => outcome).increment(1);
        metrics::histogram!("tidings_delivery_latency_seconds", "transport" => transport)
            .record(tried.latency.as_secs_f64());
        let first = row.attempts == 0 && !row.redeliver;
        (self.on_attempt)(app_id, tried.failure.is_none(), first);
        if tried.failure.is_none() {
            if let Some(l) = self.lanes().get_mut(app_id) {
                l.succeeded();
            }
        }
        self.reached(
            app_id,
            tried.failure != Some(FailureReason::ConnectionFailed.as_str()),
        );
    }

    /// The transport went away before sending: no attempt was made. The delivery is held
    /// until the next recheck (its lease given back), with nothing to write, and leaves
    /// its lane now.
    async fn unsent(
        &self,
        app_id: &str,
        row: DueDelivery,
        permit: Result<OwnedSemaphorePermit, AcquireError>,
    ) {
        let hold = self.now() + self.cfg.hold_recheck.as_millis() as i64;
        let held = vec![(row.delivery.seq, row.lease)];
        if let Err(e) = self.queue.postpone(held, hold).await {
            tracing::warn!(error = %e, "cannot hold an unsent delivery");
        }
        drop(permit);
        self.end_attempt(app_id, row.delivery.seq, false, Some(hold));
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
        permit: Result<OwnedSemaphorePermit, AcquireError>,
    ) {
        let seq = row.delivery.seq;
        if !self.gate.end(seq) {
            // The engine stopped and handed this delivery back (see `crate::drain`).
            return;
        }
        let retry = match &outcome.next {
            NextStep::Retry { at_ms, reason } => Some((*at_ms, reason.clone())),
            _ => None,
        };
        let counted = outcome.attempt.is_some();
        self.end_attempt(app_id, seq, true, None);
        if let Some(outcomes) = self.outcomes.get() {
            outcomes.record(outcome).await;
        }
        self.lanes()
            .settled(app_id, row, retry, counted, self.now());
        // The permit goes back before the wake-up, so the round it starts can use it.
        drop(permit);
        // A retry is due later, and a lane that was full of settling attempts has room.
        self.wake.notify_one();
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
    pub(super) fn release(&self, app_id: &str, seqs: &[i64], recheck: Option<i64>) {
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

    /// The transport went away between the check and the take: leave the rows pending,
    /// untouched, and look again at the next recheck.
    pub(super) fn recheck_later(&self, app_id: &str, now: i64, rows: &[DueDelivery]) {
        let seqs: Vec<i64> = rows.iter().map(|r| r.delivery.seq).collect();
        let at = now + self.cfg.hold_recheck.as_millis() as i64;
        if self.shared {
            // Claimed but not sent: give the leases back, so no node counts a take-over.
            let held = rows.iter().map(|r| (r.delivery.seq, r.lease)).collect();
            let queue = self.queue.clone();
            tokio::spawn(async move {
                if let Err(e) = queue.postpone(held, at).await {
                    tracing::warn!(error = %e, "cannot release unsent deliveries' leases");
                }
            });
        }
        self.release(app_id, &seqs, Some(at));
    }
}

//! One dispatch round for one app: the app looked up, held when it has no transport
//! (Socket Mode deliveries past the hold time failed), dropped when its events are
//! disabled, otherwise up to the lane's room of due deliveries taken (read from the store
//! and then from those handed over) and one attempt started for each ([`super::attempts`]).

use std::sync::Arc;

use tidings_store::{AttemptOutcome, NextStep};

use super::{Dispatcher, StoreRead};
use crate::transport::Transport;

impl Dispatcher {
    /// One round for one app: up to `capacity` deliveries, from the store when `read` is
    /// given (what the read must skip, and the lane's fence) and then from those handed
    /// over, and act on them.
    pub(super) async fn fill(
        self: &Arc<Self>,
        app_id: &str,
        capacity: usize,
        read: Option<StoreRead>,
        now: i64,
    ) -> Result<(), String> {
        let seen = self.lanes().get(app_id).map_or(0, |l| l.woken);
        let Some(app) = self
            .queue
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
        let transport = self.transport_for(&app);
        if app.events_enabled && !transport.ready(&app) {
            self.lanes().spill(app_id);
            // Another node holding a connection sends them; they are not expired here.
            let elsewhere = app.socket_mode
                && self.queue.is_shared()
                && self
                    .queue
                    .remote_socket_connections(app_id)
                    .await
                    .map_err(|e| e.to_string())?
                    > 0;
            if app.socket_mode && !elsewhere {
                let cutoff = (now - self.cfg.socket_hold_time.as_millis() as i64) / 1000;
                let expired = self
                    .queue
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
                .queue
                .due_deliveries(app_id, now, capacity, exclude, below)
                .await
                .map_err(|e| e.to_string())?;
            self.settle_due(app_id, seen, next);
            found = Some(rows);
        }
        let rows = self.lanes().take(app_id, found, capacity, self.now());
        metrics::gauge!("tidings_deliveries_in_flight").increment(rows.len() as f64);
        if rows.is_empty() {
            return Ok(());
        }
        if !app.events_enabled {
            let seqs: Vec<i64> = rows.iter().map(|r| r.delivery.seq).collect();
            let outcomes = rows
                .iter()
                .map(|row| AttemptOutcome {
                    seq: row.delivery.seq,
                    lease: row.lease,
                    attempt: None,
                    next: NextStep::Dropped {
                        reason: "app_disabled".into(),
                    },
                })
                .collect();
            let written = self.queue.record_outcomes(outcomes).await;
            self.release(app_id, &seqs, None);
            return written.map_err(|e| e.to_string());
        }
        // The transport went away between the check and the take: put them back.
        if !transport.ready(&app) {
            self.recheck_later(app_id, now, &rows);
            return Ok(());
        }
        let app = Arc::new(app);
        for row in rows {
            let (me, app, transport) = (self.clone(), app.clone(), transport.clone());
            tokio::spawn(async move { me.attempt(app, transport, row).await });
        }
        Ok(())
    }

    /// Socket Mode apps get events over their WebSocket connections only.
    fn transport_for(&self, app: &tidings_store::App) -> Arc<dyn Transport> {
        if app.socket_mode {
            self.socket.clone()
        } else {
            self.http.clone()
        }
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
}

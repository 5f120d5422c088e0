//! [`DeliveryQueue`] for [`SqlStore`]: the delivery engine's dozen operations, on the
//! writer (outcomes, holds) or the read pool (due rows, claims, lease renewals).

use async_trait::async_trait;

use super::{cluster, dispatch, SqlStore};
use crate::model::*;
use crate::queue::{DeliveryQueue, WorkSink};
use crate::{Store, StoreResult};

#[async_trait]
impl DeliveryQueue for SqlStore {
    fn set_work_sink(&self, sink: WorkSink) {
        self.work.set_sink(sink);
        let signals = self.signals.lock().ok().and_then(|mut s| s.take());
        if let Some(signals) = signals {
            self.work.forward(signals);
        }
    }

    fn is_shared(&self) -> bool {
        self.lease_ms > 0
    }

    fn event_context_key(&self) -> Vec<u8> {
        self.context_key.as_ref().clone()
    }

    async fn get_app(&self, id: &str) -> StoreResult<Option<App>> {
        Store::get_app(self, id).await
    }

    async fn pending_count(&self) -> StoreResult<u64> {
        Store::pending_count(self).await
    }

    async fn remote_socket_connections(&self, app_id: &str) -> StoreResult<usize> {
        let (node, app) = (self.node_id.clone(), app_id.to_owned());
        self.read(move |c| cluster::remote_sockets(c, &node, &app, super::now()))
            .await
    }

    async fn pending_apps(&self) -> StoreResult<Vec<(String, i64)>> {
        self.read(dispatch::pending_apps).await
    }

    async fn due_deliveries(
        &self,
        app_id: &str,
        now_ms: i64,
        limit: usize,
        exclude: Vec<i64>,
        below: Option<i64>,
    ) -> StoreResult<(Vec<DueDelivery>, Option<i64>)> {
        let app = app_id.to_owned();
        let (lease_ms, node, events) = (self.lease_ms, self.node_id.clone(), self.events.clone());
        // One trip to a pool connection for both reads: a dispatch round waits on it.
        self.read(move |c| {
            let rows = if lease_ms > 0 {
                // Nodes share the database: claim the rows (an autocommit UPDATE on a
                // pool connection, committed before any is sent).
                dispatch::claim(
                    c,
                    &events,
                    &app,
                    now_ms,
                    limit,
                    &exclude,
                    now_ms + lease_ms,
                    &node,
                )?
            } else {
                dispatch::due(c, &events, &app, now_ms, limit, &exclude, below)?
            };
            if rows.len() == limit {
                return Ok((rows, Some(now_ms)));
            }
            let mut taken = exclude;
            taken.extend(rows.iter().map(|r| r.delivery.seq));
            let below = below.filter(|_| lease_ms == 0);
            let next = dispatch::next_due(c, &app, &taken, below, lease_ms > 0)?;
            Ok((rows, next))
        })
        .await
    }

    async fn record_outcomes(&self, outcomes: Vec<AttemptOutcome>) -> StoreResult<()> {
        let counter = self.counter.clone();
        if self.lease_ms > 0 {
            let mut outcomes = outcomes;
            // Rows locked in seq order by every node: two batches never wait on each other
            // in a cycle. (Stable: outcomes of one delivery keep their order.)
            outcomes.sort_by_key(|o| o.seq);
            // Nodes sharing the database: outcomes go in a transaction of their own on a
            // pool connection, not behind the publish batches in the writer's queue, so
            // an outcome is saved within a round trip of its attempt, well inside the
            // lease. Their insight counts are written in the same transaction.
            return self
                .read(move |c| {
                    c.batch("BEGIN")?;
                    let mut tally = crate::insights::Tally::default();
                    let counts = super::insights::Counter::default();
                    let written = dispatch::record(c, &outcomes, &mut tally).and_then(|_| {
                        counts.add(tally);
                        counts.flush(c)
                    });
                    match written {
                        Ok(()) => c.batch("COMMIT"),
                        Err(e) => {
                            let _ = c.batch("ROLLBACK");
                            Err(e)
                        }
                    }
                })
                .await;
        }
        // Fails only before writing, or on the disk itself (see `dispatch::record`).
        self.write_lean(move |c| {
            let mut tally = crate::insights::Tally::default();
            dispatch::record(c, &outcomes, &mut tally)?;
            counter.add(tally);
            Ok(())
        })
        .await
    }

    async fn renew_leases(&self, seqs: Vec<i64>) -> StoreResult<usize> {
        if self.lease_ms == 0 || seqs.is_empty() {
            return Ok(0);
        }
        let (lease_ms, node) = (self.lease_ms, self.node_id.clone());
        self.read(move |c| dispatch::renew(c, &seqs, &node, dispatch::now_ms() + lease_ms))
            .await
    }

    fn lease(&self) -> Option<std::time::Duration> {
        (self.lease_ms > 0).then(|| std::time::Duration::from_millis(self.lease_ms as u64))
    }

    async fn postpone(&self, held: Vec<(i64, Option<i64>)>, until_ms: i64) -> StoreResult<usize> {
        self.write(move |c| dispatch::postpone(c, &held, until_ms))
            .await
    }

    async fn hand_back(&self, unsent: Vec<i64>, unknown: Vec<i64>) -> StoreResult<usize> {
        if unsent.is_empty() && unknown.is_empty() {
            return Ok(0);
        }
        let node = (self.lease_ms > 0).then(|| self.node_id.to_string());
        self.write(move |c| dispatch::hand_back(c, &unsent, &unknown, node.as_deref()))
            .await
    }

    async fn expire_held(&self, app_id: &str, created_before: i64) -> StoreResult<usize> {
        let app = app_id.to_owned();
        let counter = self.counter.clone();
        self.write(move |c| {
            let mut tally = crate::insights::Tally::default();
            let n = dispatch::expire_held(c, &app, created_before, &mut tally)?;
            counter.add(tally);
            Ok(n)
        })
        .await
    }
}

//! The doorbell: one [`WorkNotice`] after every commit that made delivery work, on both
//! backends, to the sink the delivery engine registered. Handlers never wake the engine;
//! the write that made the work does, once it is durable.
//!
//! A notice carries two things:
//!
//! - **Hand-over.** A publish keeps each pending row it wrote as a [`DueDelivery`]; once
//!   the batch has committed, the rows go to the engine so they need not be read back
//!   (with their events' payloads). The store stays the queue: the engine may decline
//!   rows (they are pending on disk and get read the usual way), and a batch that rolls
//!   back hands nothing over. Off when nodes share the database: there a delivery must be
//!   claimed with a lease before it is sent, which only the store read does.
//! - **Apps to look at.** Writes that make work due without handing it over (a
//!   redelivery, a verified URL, an opened socket, an enabled app, a publish past the
//!   hand-over limit) name the app. On PostgreSQL the same names go to every node as
//!   `NOTIFY tidings_work` inside the transaction (sent only if it commits), and what the
//!   listener hears from other nodes reaches the same sink ([`Work::forward`]).
//!
//! State: `batch` is written by writer jobs and taken by the writer thread's
//! after-commit/rollback step; a `std::sync::Mutex` because no `.await` happens while it
//! is held and each hold is a push or a swap.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, OnceLock};

use super::cluster;
use super::conn::Conn;
use crate::model::DueDelivery;
use crate::queue::{WorkNotice, WorkSink};
use crate::StoreResult;

/// Most rows one batch hands over; past it, a publish leaves its rows for the store read
/// (and names their apps), so a batch of wide fan-outs does not build rows nobody takes.
const MAX_ROWS: usize = 16_384;

/// The work of the batch in progress and where it goes on commit. Cheap to clone.
#[derive(Clone)]
pub struct Work {
    inner: Arc<Inner>,
}

struct Inner {
    sink: OnceLock<WorkSink>,
    batch: Mutex<Batch>,
    /// Nodes share the database: no hand-over (claims only), and apps are signalled.
    shared: bool,
}

#[derive(Default)]
struct Batch {
    rows: Vec<DueDelivery>,
    apps: BTreeSet<String>,
}

impl Work {
    pub fn new(shared: bool) -> Work {
        Work {
            inner: Arc::new(Inner {
                sink: OnceLock::new(),
                batch: Mutex::default(),
                shared,
            }),
        }
    }

    fn batch(&self) -> std::sync::MutexGuard<'_, Batch> {
        self.inner.batch.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers the sink (once; later calls are ignored).
    pub fn set_sink(&self, sink: WorkSink) {
        let _ = self.inner.sink.set(sink);
    }

    /// How many rows a job may still hand over in this batch (0 without a sink, and when
    /// nodes share the database).
    pub fn room(&self) -> usize {
        if self.inner.shared || self.inner.sink.get().is_none() {
            return 0;
        }
        MAX_ROWS.saturating_sub(self.batch().rows.len())
    }

    /// Rows a job wrote; called only when the job succeeded.
    pub fn hand_over(&self, rows: Vec<DueDelivery>) {
        if !rows.is_empty() {
            self.batch().rows.extend(rows);
        }
    }

    /// Apps a job made work due for; called only when the job succeeded.
    pub fn wake<I: IntoIterator<Item = String>>(&self, apps: I) {
        let mut apps = apps.into_iter().peekable();
        if apps.peek().is_some() {
            self.batch().apps.extend(apps);
        }
    }

    /// Just before the batch commits: tell the other nodes, inside the transaction.
    pub fn signal(&self, c: &Conn) -> StoreResult<()> {
        if !self.inner.shared {
            return Ok(());
        }
        let apps = self.batch().apps.clone();
        cluster::notify_work(c, &apps)
    }

    /// The batch rolled back: none of its work exists.
    pub fn clear(&self) {
        *self.batch() = Batch::default();
    }

    /// The batch committed: ring once. Rows of an app the batch also names are not handed
    /// over: the engine makes the lane of every app a notice names drop what it holds and
    /// read the store in order (its work may lie above the lane's fence), right after
    /// queueing the rows handed over, so those rows were built, queued and dropped at
    /// once. Under `fanout` (a publish call makes 50,000 deliveries, 16,384 fit in a hand
    /// over, the 100 apps are named for the rest) that was every row handed over.
    pub fn committed(&self) {
        let Batch { mut rows, apps } = std::mem::take(&mut *self.batch());
        if !apps.is_empty() {
            rows.retain(|r| !apps.contains(&r.delivery.app_id));
        }
        let notice = WorkNotice {
            handed_over: rows,
            apps: apps.into_iter().collect(),
            everything: false,
        };
        self.ring(notice);
    }

    fn ring(&self, notice: WorkNotice) {
        if notice.is_empty() {
            return;
        }
        if let Some(sink) = self.inner.sink.get() {
            sink(notice);
        }
    }

    /// Forwards what the PostgreSQL listener hears from every node to the sink (an empty
    /// signal: signals may have been missed, look at everything). Must run on a tokio
    /// runtime; ends when the listener stops.
    pub fn forward(&self, mut signals: tokio::sync::mpsc::UnboundedReceiver<cluster::Signal>) {
        let me = self.clone();
        tokio::spawn(async move {
            while let Some(apps) = signals.recv().await {
                let everything = apps.is_empty();
                me.ring(WorkNotice {
                    handed_over: Vec::new(),
                    apps,
                    everything,
                });
            }
        });
    }
}

/// The doorbell's part in every batch: signal other nodes inside the transaction, ring
/// once it committed, forget everything if it rolled back.
impl super::writer::CommitListener for Work {
    fn before_commit(&self, c: &Conn) -> StoreResult<()> {
        self.signal(c)
    }

    fn committed(&self) {
        Work::committed(self);
    }

    fn rolled_back(&self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collecting(work: &Work) -> Arc<Mutex<Vec<WorkNotice>>> {
        let seen: Arc<Mutex<Vec<WorkNotice>>> = Arc::default();
        let s = seen.clone();
        work.set_sink(Arc::new(move |n| s.lock().unwrap().push(n)));
        seen
    }

    #[test]
    fn one_notice_per_commit_and_none_for_a_rollback() {
        let work = Work::new(false);
        let seen = collecting(&work);
        work.wake(["A1".to_string(), "A2".to_string()]);
        work.wake(["A1".to_string()]);
        work.committed();
        work.wake(["A3".to_string()]);
        work.clear();
        work.committed();
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1, "an empty commit rings nothing");
        assert_eq!(seen[0].apps, vec!["A1", "A2"]);
    }

    fn row(app: &str, seq: i64) -> DueDelivery {
        use crate::model::{Delivery, DeliveryStatus};
        DueDelivery {
            delivery: Delivery {
                id: format!("D{seq}"),
                seq,
                event_id: "Ev1".into(),
                app_id: app.into(),
                team_id: "T1".into(),
                event_type: "message".into(),
                status: DeliveryStatus::Pending,
                reason: None,
                authorization: tidings_core::fanout::Authorization {
                    enterprise_id: None,
                    team_id: Some("T1".into()),
                    user_id: "U1".into(),
                    is_bot: true,
                    is_enterprise_install: false,
                },
                created_at: 0,
                attempts: Vec::new(),
            },
            event: Arc::new(super::super::event_cache::tests::event("Ev1", 2)),
            attempts: 0,
            redeliver: false,
            lease: None,
        }
    }

    #[test]
    fn an_app_the_batch_wakes_gets_no_hand_over_from_it() {
        let work = Work::new(false);
        let seen = collecting(&work);
        work.hand_over(vec![row("A1", 1), row("A2", 2), row("A1", 3)]);
        // The publish ran out of room before A2's later rows: A2 is woken for them.
        work.wake(["A2".to_string()]);
        work.committed();
        let seen = seen.lock().unwrap();
        let seqs: Vec<i64> = seen[0].handed_over.iter().map(|r| r.delivery.seq).collect();
        assert_eq!(seqs, vec![1, 3], "A1 keeps its hand-over");
        assert_eq!(seen[0].apps, vec!["A2"], "A2 reads the store, in order");
    }

    #[test]
    fn nothing_is_handed_over_where_nodes_share_the_database() {
        assert_eq!(Work::new(true).room(), 0);
        let work = Work::new(false);
        assert_eq!(work.room(), 0, "no sink yet");
        let _seen = collecting(&work);
        assert_eq!(work.room(), MAX_ROWS);
    }
}

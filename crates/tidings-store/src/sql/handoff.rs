//! Handing the deliveries a batch just committed straight to the dispatcher.
//!
//! A publish writes its pending deliveries and the dispatcher would then read them back
//! (with their events' payloads) from the store. Instead, the publish job keeps each row
//! it wrote as a [`DueDelivery`], and when the batch has committed — on the writer thread,
//! before any caller hears "done" — the rows go to the sink the dispatcher registered.
//! The store stays the queue: the sink may decline rows (they are pending on disk and get
//! read the usual way), and a batch that rolls back hands nothing over.
//!
//! Off when nodes share the database: there a delivery must be claimed with a lease
//! before it is sent, which only the store read does.

use std::sync::{Arc, Mutex, OnceLock};

use crate::model::DueDelivery;

/// Where committed rows go: the dispatcher's offer.
pub type HandoffSink = Arc<dyn Fn(Vec<DueDelivery>) + Send + Sync>;

/// Most rows one batch hands over; past it, a publish leaves its rows for the store read
/// (and wakes their apps), so a batch of wide fan-outs does not build rows nobody takes.
const MAX_ROWS: usize = 16_384;

#[derive(Clone, Default)]
pub struct Handoff {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    sink: OnceLock<HandoffSink>,
    rows: Mutex<Vec<DueDelivery>>,
}

impl Handoff {
    fn rows(&self) -> std::sync::MutexGuard<'_, Vec<DueDelivery>> {
        self.inner.rows.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers the sink (once; later calls are ignored).
    pub fn set_sink(&self, sink: HandoffSink) {
        let _ = self.inner.sink.set(sink);
    }

    /// How many rows a job may still hand over in this batch (0 without a sink).
    pub fn room(&self) -> usize {
        if self.inner.sink.get().is_none() {
            return 0;
        }
        MAX_ROWS.saturating_sub(self.rows().len())
    }

    /// Rows a job wrote; called only when the job succeeded.
    pub fn add(&self, rows: Vec<DueDelivery>) {
        if !rows.is_empty() {
            self.rows().extend(rows);
        }
    }

    /// The batch rolled back: its rows were never durable.
    pub fn clear(&self) {
        self.rows().clear();
    }

    /// The batch committed: hand its rows over.
    pub fn deliver(&self) {
        let rows = std::mem::take(&mut *self.rows());
        if rows.is_empty() {
            return;
        }
        if let Some(sink) = self.inner.sink.get() {
            sink(rows);
        }
    }
}

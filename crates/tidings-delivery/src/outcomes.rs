//! Attempt outcomes on their way to the store, batched: whatever has queued while the
//! last write ran goes in the next one (the store's group commit, one level up). A failed
//! write is retried until it succeeds: an outcome is never dropped, and its delivery stays
//! in its lane (not re-fetched) until it is durable.
//!
//! The queue is a bounded `mpsc` (as deep as the global in-flight bound, which settling
//! attempts keep their permit through, so it never fills in practice); each outcome comes
//! with a `oneshot` its attempt waits on until the batch holding it is written.

use std::sync::Arc;
use std::time::Duration;

use tidings_store::{AttemptOutcome, DeliveryQueue};
use tokio::sync::{mpsc, oneshot};

/// Most outcomes written in one store call.
pub const OUTCOME_BATCH: usize = 512;

/// An outcome, and who waits for it to be written.
type Queued = (AttemptOutcome, oneshot::Sender<()>);

/// The sending side: cheap to clone, one per dispatcher.
#[derive(Clone)]
pub struct Outcomes {
    tx: mpsc::Sender<Queued>,
}

impl Outcomes {
    /// Starts the writer task on the current runtime.
    pub fn start(queue: Arc<dyn DeliveryQueue>, depth: usize) -> Outcomes {
        let (tx, rx) = mpsc::channel(depth.max(1));
        tokio::spawn(write(queue, rx));
        Outcomes { tx }
    }

    /// Queues `outcome` and waits until it is durable (or the writer is gone, when the
    /// engine stops: the delivery is still pending on disk).
    pub async fn record(&self, outcome: AttemptOutcome) {
        let (done, written) = oneshot::channel();
        if self.tx.send((outcome, done)).await.is_ok() {
            let _ = written.await;
        }
    }
}

async fn write(queue: Arc<dyn DeliveryQueue>, mut rx: mpsc::Receiver<Queued>) {
    let mut batch = Vec::with_capacity(OUTCOME_BATCH);
    let mut waiters = Vec::with_capacity(OUTCOME_BATCH);
    while let Some((first, done)) = rx.recv().await {
        batch.push(first);
        waiters.push(done);
        while batch.len() < OUTCOME_BATCH {
            match rx.try_recv() {
                Ok((o, d)) => {
                    batch.push(o);
                    waiters.push(d);
                }
                Err(_) => break,
            }
        }
        let mut tries = 0u64;
        while let Err(e) = queue.record_outcomes(batch.clone()).await {
            tries += 1;
            tracing::error!(error = %e, tries, outcomes = batch.len(), "cannot record attempts; retrying");
            tokio::time::sleep(Duration::from_millis(200 * tries.min(25))).await;
        }
        batch.clear();
        for w in waiters.drain(..) {
            let _ = w.send(());
        }
    }
}

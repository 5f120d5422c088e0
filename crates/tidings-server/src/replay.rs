//! Bulk replay: the task (one per node, started at boot, stopped first in the graceful
//! shutdown) that advances running redelivery jobs. Each step has the store re-queue the
//! oldest running job's next batch in one transaction with the job's cursor, so a crash
//! resumes from the last commit and never re-queues a delivery twice; the store's work
//! notice after that commit wakes the engine. Steps are spaced so that at most
//! `delivery.redelivery_rate` deliveries per second are re-queued by this node.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tidings_store::Store;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The largest batch one transaction re-queues.
const MAX_BATCH: u32 = 1000;
/// How often an idle task looks for new jobs (or jobs another node left running).
const IDLE: Duration = Duration::from_secs(1);

/// The running task; [`Replayer::stop`] ends it between two batches.
pub struct Replayer {
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

/// Deliveries per transaction and the pause after each, for `rate` per second.
pub fn pacing(rate: u32) -> (usize, Duration) {
    let rate = rate.max(1);
    let batch = (rate / 10).clamp(1, MAX_BATCH);
    (
        batch as usize,
        Duration::from_secs_f64(f64::from(batch) / f64::from(rate)),
    )
}

impl Replayer {
    pub fn spawn(store: Arc<dyn Store>, rate: u32) -> Replayer {
        let (stop, mut stopped) = watch::channel(false);
        let (batch, pause) = pacing(rate);
        let task = tokio::spawn(async move {
            loop {
                let wait = match step(store.as_ref(), batch).await {
                    true => pause,
                    false => IDLE,
                };
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stopped.changed() => return,
                }
            }
        });
        Replayer {
            stop,
            task: Mutex::new(Some(task)),
        }
    }

    /// Stops the task and waits for the batch in progress (if any) to commit.
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// Advances the oldest running job by one batch; false when there was none (or the store
/// failed, logged).
async fn step(store: &dyn Store, batch: usize) -> bool {
    let ids = match store.running_redeliveries().await {
        Ok(ids) => ids,
        Err(e) => {
            tracing::warn!(error = %e, "replay: cannot list running jobs");
            return false;
        }
    };
    let Some(id) = ids.first() else {
        return false;
    };
    match store.advance_redelivery(id, batch).await {
        Ok(Some(job)) if job.state == "done" => {
            tracing::info!(id = %job.id, app = %job.app_id, sent = job.sent, total = job.total, "replay: job done");
            true
        }
        Ok(_) => true,
        Err(e) => {
            tracing::warn!(error = %e, id = %id, "replay: batch failed; retrying");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacing_keeps_batches_small_and_the_rate_bounded() {
        assert_eq!(pacing(500), (50, Duration::from_millis(100)));
        assert_eq!(pacing(1), (1, Duration::from_secs(1)));
        assert_eq!(pacing(0), (1, Duration::from_secs(1)));
        assert_eq!(pacing(100_000), (1000, Duration::from_millis(10)));
    }
}

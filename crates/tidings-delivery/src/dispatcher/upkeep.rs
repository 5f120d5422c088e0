//! The dispatcher's background upkeep, beside its claim loop: rescans (when notices may
//! have been missed, and periodically when nodes share the store), lease renewal, and the
//! pending-depth gauge.

use std::sync::Arc;
use std::time::Duration;

use super::Dispatcher;

/// How often a node sharing the store looks for work no signal announced.
const RESCAN: Duration = Duration::from_secs(10);
/// How often the pending-depth gauge is read.
const GAUGE: Duration = Duration::from_secs(5);

/// Spawns the upkeep tasks on the current runtime.
pub(super) fn spawn(d: &Arc<Dispatcher>) {
    let me = d.clone();
    tokio::spawn(async move {
        loop {
            if me.shared {
                tokio::select! {
                    _ = me.rescan_now.notified() => {}
                    _ = tokio::time::sleep(RESCAN) => {}
                }
            } else {
                me.rescan_now.notified().await;
            }
            me.rescan().await;
        }
    });
    if let Some(lease) = d.queue.lease() {
        let me = d.clone();
        tokio::spawn(async move { me.renew_leases(lease).await });
    }
    let me = d.clone();
    tokio::spawn(async move {
        loop {
            if let Ok(n) = me.queue.pending_count().await {
                metrics::gauge!("tidings_deliveries_pending").set(n as f64);
            }
            tokio::time::sleep(GAUGE).await;
        }
    });
}

impl Dispatcher {
    /// Keeps this node's leases on what it holds (in flight or settling) from running out
    /// while it still works on them: every quarter lease, one fenced update for all.
    async fn renew_leases(self: Arc<Self>, lease: Duration) {
        let every = (lease / 4).max(Duration::from_millis(50));
        loop {
            tokio::time::sleep(every).await;
            let held: Vec<i64> = self
                .lanes()
                .values()
                .flat_map(|l| l.in_flight.iter().chain(&l.settling).copied())
                .collect();
            if held.is_empty() {
                continue;
            }
            let asked = held.len();
            match self.queue.renew_leases(held).await {
                Ok(n) => {
                    metrics::counter!("tidings_delivery_leases_renewed_total").increment(n as u64);
                    if n < asked {
                        tracing::debug!(
                            asked,
                            renewed = n,
                            "some leases were concluded or taken over before renewal"
                        );
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot renew delivery leases"),
            }
        }
    }
}

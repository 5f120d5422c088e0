//! A thread that keeps the process's memory bounded whether or not anyone scrapes
//! `/metrics`: every few seconds it runs the Prometheus recorder's upkeep (which folds
//! histogram samples into their buckets; without it a server nobody scrapes keeps every
//! sample) and asks the allocator to hand freed memory back to the system (so memory
//! returns near its baseline after a burst, such as an attack, ends).

use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;

/// How often the upkeep runs.
pub const EVERY: Duration = Duration::from_secs(5);

/// Starts the upkeep thread. `trim` returns freed memory to the system; the binary
/// passes its allocator's (see `tidings`'s `memory.rs`).
pub fn spawn(
    handle: PrometheusHandle,
    every: Duration,
    trim: impl Fn() + Send + 'static,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("tidings-upkeep".into())
        .spawn(move || loop {
            std::thread::sleep(every);
            handle.run_upkeep();
            trim();
        })
        .map(|_| ())
}

//! Handing freed memory back to the system. mimalloc (the global allocator, see
//! `main.rs`) keeps freed pages in the heap of the thread that allocated them and
//! returns them only when that thread calls into it again, so after a burst (an attack
//! of large bodies, a big batch) an idle process would stay at its peak. Each async worker
//! therefore collects its own heap when it goes idle, at most every [`EVERY`]; and since a
//! worker that went idle right after a burst may sleep on for long, the upkeep thread
//! (`tidings_server::edge::upkeep`) calls [`collect_everywhere`] every few seconds, which
//! wakes each worker to collect (and collects its own heap).

use std::cell::Cell;
use std::time::{Duration, Instant};

/// A worker collects its heap at most this often.
pub const EVERY: Duration = Duration::from_secs(2);

thread_local! {
    static LAST: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Collects this thread's heap and returns what is free to the system.
pub fn collect() {
    // SAFETY: mi_collect only walks mimalloc's own structures for the calling thread.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

/// For the runtime's `on_thread_park`: collects when this worker last did so
/// [`EVERY`] ago or more.
pub fn collect_when_idle() {
    LAST.with(|last| {
        let now = Instant::now();
        if last.get().is_none_or(|t| now.duration_since(t) >= EVERY) {
            last.set(Some(now));
            collect();
        }
    });
}

/// Collects this thread's heap, and has each of `runtime`'s workers collect its own
/// (a task per worker: an idle worker wakes for it, and collects before it sleeps again).
pub fn collect_everywhere(runtime: &tokio::runtime::Handle) {
    collect();
    for _ in 0..runtime.metrics().num_workers() {
        runtime.spawn(async {
            collect();
            tokio::task::yield_now().await;
        });
    }
}

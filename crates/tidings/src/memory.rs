//! Handing freed memory back to the system. mimalloc (the global allocator, see
//! `main.rs`) keeps freed pages in the heap of the thread that allocated them and
//! returns them only when that thread calls into it again, so after a burst (an attack
//! of large bodies, a big batch) an idle process would stay at its peak. Each async worker
//! therefore collects its own heap when it goes idle, at most every [`EVERY`]; and since a
//! worker that went idle right after a burst may sleep on for long, the upkeep thread
//! (`tidings_server::edge::upkeep`) calls [`collect_everywhere`] every few seconds, which
//! wakes each worker to collect (and collects its own heap).
//!
//! It also keeps the process off transparent huge pages ([`use_small_pages`]).

use std::cell::Cell;
use std::time::{Duration, Instant};

/// Keeps the process off transparent huge pages, unless `MIMALLOC_ALLOW_THP` is set
/// (then mimalloc's own setting decides). Called first thing in `main`. mimalloc asks for
/// huge pages on the memory it reserves (before `main`, so its own option comes too late),
/// the kernel then zeroes 2 MiB on the first touch of any part of one, and purging freed
/// pages splits them again: in the benchmark's `tenants`, `throughput` and `fanout`
/// scenarios the peak resident set was 11–27 % lower without them, at the same CPU per
/// delivery, and the first second of `tenants` no longer spent a quarter of its samples
/// zeroing pages. The flag holds for every mapping of the process, present and future.
pub fn use_small_pages() {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
        return;
    }
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE only sets a flag on this process's memory map.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

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

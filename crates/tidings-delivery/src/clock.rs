//! The dispatcher's clock, injected so retries, holds and pacing can be tested in paused
//! tokio time. Times are milliseconds since the Unix epoch, the unit the store keeps
//! `next_attempt_at` in.

use std::sync::Arc;

/// Where "now" comes from.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// The wall clock: what the store's due times are written against.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
}

/// Tokio's clock from a starting wall time: under a paused runtime it moves only when
/// every task waits (or a test advances it), so timers and "now" agree exactly.
pub struct TokioClock {
    base_ms: i64,
    start: tokio::time::Instant,
}

impl TokioClock {
    /// A clock reading `base_ms` now. Must be made inside a tokio runtime.
    pub fn starting_at(base_ms: i64) -> Arc<TokioClock> {
        Arc::new(TokioClock {
            base_ms,
            start: tokio::time::Instant::now(),
        })
    }
}

impl Clock for TokioClock {
    fn now_ms(&self) -> i64 {
        self.base_ms + self.start.elapsed().as_millis() as i64
    }
}

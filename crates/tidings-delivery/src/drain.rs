//! Stopping the delivery engine gracefully (SIGTERM): no new work is claimed, attempts
//! under way finish and have their outcomes written within a grace period, and whatever
//! is not finished by then is handed back to the store at once
//! ([`tidings_store::DeliveryQueue::hand_back`]), so another node or the next start takes it with
//! no attempt counted twice or lost.
//!
//! The [`Gate`] is what the dispatcher's attempts pass through: one lock decides, for each
//! attempt, whether it is sent (and then whether its outcome is written) or handed back,
//! so the drain and the attempts never disagree about a delivery:
//! - an attempt that has not started sending when the drain begins is not sent: it is
//!   handed back unsent (no attempt counted);
//! - one sending when the grace period runs out is given up: its outcome, should it still
//!   come, is not written, and it is handed back as an attempt of unknown result (counted,
//!   as a take-over after a crash counts it), so the next attempt goes out as a retry.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::dispatcher::Dispatcher;

/// After the grace period, how long outcomes already queued get to be written.
const SETTLE_AFTER_GRACE: Duration = Duration::from_secs(2);
/// How often the drain looks whether the engine is idle.
const POLL: Duration = Duration::from_millis(20);

/// Decides, under one lock, which attempts go ahead while the engine stops.
#[derive(Default)]
pub(crate) struct Gate {
    stopping: AtomicBool,
    state: Mutex<GateState>,
}

#[derive(Default)]
struct GateState {
    /// Set when the grace period ran out: the attempts still sending are given up.
    closed: bool,
    /// Attempts sending now (delivery seqs).
    sending: HashSet<i64>,
    /// Claimed deliveries that were not sent because the engine is stopping.
    unsent: Vec<i64>,
}

impl Gate {
    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the engine is stopping (claim nothing new).
    pub(crate) fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// An attempt of `seq` is about to send: true if it may; false once the engine is
    /// stopping (the delivery is then handed back unsent).
    pub(crate) fn begin(&self, seq: i64) -> bool {
        let mut g = self.lock();
        if self.stopping() {
            g.unsent.push(seq);
            return false;
        }
        g.sending.insert(seq);
        true
    }

    /// The attempt of `seq` is over: true if its outcome is to be written; false when the
    /// drain gave up on it (it was handed back as an attempt of unknown result).
    pub(crate) fn end(&self, seq: i64) -> bool {
        let mut g = self.lock();
        g.sending.remove(&seq) || !g.closed
    }

    fn stop(&self) {
        let _g = self.lock();
        self.stopping.store(true, Ordering::Release);
    }

    /// Gives up the attempts still sending; returns them and the unsent ones.
    fn close(&self) -> (Vec<i64>, Vec<i64>) {
        let mut g = self.lock();
        g.closed = true;
        let unknown = g.sending.drain().collect();
        (std::mem::take(&mut g.unsent), unknown)
    }
}

/// What the drain did, for the shutdown's log line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Drained {
    /// Attempts that finished during the drain with their outcomes written.
    pub finished: usize,
    /// Claimed deliveries given back without an attempt.
    pub handed_back_unsent: usize,
    /// Attempts given up when the grace period ran out (counted, result unknown).
    pub handed_back_unknown: usize,
    /// Outcomes still not written when the drain ended (left to leases / the next start).
    pub unwritten: usize,
    /// Whether everything under way finished within the grace period.
    pub within_grace: bool,
}

impl Dispatcher {
    /// Stops claiming work, lets attempts under way finish until `deadline`, then hands
    /// back what is left (see the module's docs). Call once; the engine sends nothing
    /// afterwards.
    pub async fn drain(&self, deadline: Instant) -> Drained {
        self.gate().stop();
        self.nudge();
        let (in_flight, settling) = self.held();
        let under_way = in_flight.len() + settling;
        loop {
            let (in_flight, settling) = self.held();
            if in_flight.is_empty() && settling == 0 {
                break;
            }
            if Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(POLL).await;
        }
        let (in_flight, _) = self.held();
        let within_grace = in_flight.is_empty();
        let (mut unsent, unknown) = self.gate().close();
        // Claimed rows whose task never reached the gate (waiting for a permit).
        let unknown_set: HashSet<i64> = unknown.iter().copied().collect();
        unsent.extend(in_flight.into_iter().filter(|s| !unknown_set.contains(s)));
        unsent.sort_unstable();
        unsent.dedup();
        let (handed_back_unsent, handed_back_unknown) = (unsent.len(), unknown.len());
        if let Err(e) = self.queue().hand_back(unsent, unknown).await {
            tracing::warn!(error = %e, "shutdown: cannot hand back unfinished deliveries; their leases will expire");
        }
        // Outcomes already queued: give their writes a moment to commit.
        let settle_by = deadline.max(Instant::now()) + SETTLE_AFTER_GRACE;
        let unwritten = loop {
            let (_, settling) = self.held();
            if settling == 0 || Instant::now() >= settle_by {
                break settling;
            }
            tokio::time::sleep(POLL).await;
        };
        Drained {
            finished: under_way
                .saturating_sub(handed_back_unsent + handed_back_unknown + unwritten),
            handed_back_unsent,
            handed_back_unknown,
            unwritten,
            within_grace,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attempt_started_before_the_stop_is_sent_and_written() {
        let g = Gate::default();
        assert!(g.begin(1));
        g.stop();
        assert!(g.end(1));
        assert_eq!(g.close(), (vec![], vec![]));
    }

    #[test]
    fn an_attempt_starting_after_the_stop_is_handed_back_unsent() {
        let g = Gate::default();
        g.stop();
        assert!(!g.begin(2));
        assert_eq!(g.close(), (vec![2], vec![]));
    }

    #[test]
    fn an_attempt_still_sending_at_the_close_is_given_up_and_its_outcome_dropped() {
        let g = Gate::default();
        assert!(g.begin(3));
        g.stop();
        assert_eq!(g.close(), (vec![], vec![3]));
        assert!(!g.end(3), "a late outcome must not be written");
    }
}

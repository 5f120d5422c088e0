//! Getting events out: the envelope each delivery sends (this issue), and — as the delivery
//! issues add them — the dispatcher, HTTP sender, retry scheduler, Socket Mode hub, rate
//! limiter and health tracker.

pub mod envelope;

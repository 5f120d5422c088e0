//! Tidings' domain core: ids and token formats, the event catalog, audience and fan-out
//! rules, the Slack envelopes, the `event_context` codec, request signing, and the
//! retry/rate/health policies as pure functions of (state, clock).
//!
//! Nothing in this crate does I/O: the store, the delivery engine and the HTTP surface
//! build on it, and everything here is testable with plain values.

pub mod backpressure;
pub mod catalog;
pub mod envelope;
pub mod event_context;
pub mod fanout;
pub mod ids;
pub mod lifecycle;
pub mod manifest;
pub mod plan;
pub mod policy;
pub mod publish;
pub mod redact;
pub mod rtm;
pub mod sample;
pub mod signing;
pub mod socket_mode;
pub mod token;

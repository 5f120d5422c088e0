//! `tidings-client`: the publishing side of Tidings.
//!
//! - [`Publisher`]: `POST /admin/v1/events` and `/events/batch` over HTTP, failing over
//!   between several Tidings nodes, with typed errors ([`PublishError`]).
//! - [`Spool`]: an append-only file of events handed over and not yet acknowledged,
//!   fsynced in groups, bounded in bytes, with torn-tail detection on open.
//! - [`Client`]: both together. [`Client::publish`] returns once the event is in the
//!   spool (its idempotency key and `event_time` fixed then); a background task sends
//!   spooled events in batches (by size and by time), resends what the server did not
//!   acknowledge with exponential backoff and jitter, drops events past
//!   `max_event_age` before sending (counted), and keeps events a node refused (4xx)
//!   aside in a dead-letter file. [`Client::stats`] exposes the counters.
//!
//! A resend after a lost answer never makes a second event: the server answers a
//! repeated `(team_id, idempotency_key)` with the first event's id and `duplicate: true`.

mod client;
mod error;
mod publisher;
mod spool;

pub use client::{Client, Config, Stats};
pub use error::{Error, PublishError};
pub use publisher::{ItemResult, Published, Publisher};
pub use spool::{Spool, SpoolStats};

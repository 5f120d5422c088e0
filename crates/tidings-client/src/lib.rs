//! `tidings-client`: the publishing side of Tidings.
//!
//! - [`Publisher`]: `POST /admin/v1/events` and `/events/batch` over HTTP, failing over
//!   between several Tidings nodes, with typed errors ([`PublishError`]).
//! - [`Spool`]: an append-only file of events handed over and not yet acknowledged,
//!   fsynced in groups, bounded in bytes, with torn-tail detection on open.
//! - [`Client`]: both together. [`Client::publish`] returns once the event is in the
//!   spool (its idempotency key and `event_time` fixed then); a background task sends
//!   spooled events in batches (by size and by time; up to `max_in_flight` batches at
//!   once, each event in one of them at a time), resends what the server did not
//!   acknowledge with exponential backoff and jitter, drops events past
//!   `max_event_age` before sending (counted), and keeps events a node refused (4xx)
//!   aside in a dead-letter file. [`Client::stats`] exposes the counters.
//!
//! A resend after a lost answer never makes a second event: the server answers a
//! repeated `(team_id, idempotency_key)` with the first event's id and `duplicate: true`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), tidings_client::Error> {
//! use std::time::Duration;
//! use tidings_client::{Client, Config};
//!
//! let config = Config::new(
//!     vec!["http://127.0.0.1:3000".into()],
//!     std::env::var("TIDINGS_PUBLISHER_TOKEN").unwrap_or_default(),
//!     "/var/lib/my-service/tidings-spool".into(),
//! );
//! let client = Client::open(config)?;
//! let key = client
//!     .publish(serde_json::json!({
//!         "team_id": "T01",
//!         "event": {"type": "message", "channel": "C01", "user": "U01", "text": "hi"},
//!     }))
//!     .await?; // durable in the spool now; sent in the background
//! println!("handed over as {key}; {:?}", client.stats());
//! client.flush(Duration::from_secs(5)).await;
//! client.close().await;
//! # Ok(())
//! # }
//! ```

mod client;
mod error;
mod publisher;
mod spool;

pub use client::{Client, Config, Stats};
pub use error::{Error, PublishError};
pub use publisher::{ItemResult, Published, Publisher};
pub use spool::{Spool, SpoolStats};

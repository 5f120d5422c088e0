//! The errors callers match on: [`PublishError`] for one HTTP exchange with Tidings, and
//! [`Error`] for the spooling [`crate::Client`].

use std::path::PathBuf;

/// What a publish call to Tidings came to, when it was not accepted.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum PublishError {
    /// The node refused the request (4xx other than 408/429): resending the same request
    /// would be refused again. `code` is the problem's code (`unknown_team`,
    /// `unauthorized`, `event_too_old`, …).
    #[error("{status} {code}: {detail}")]
    Refused {
        status: u16,
        code: String,
        detail: String,
    },
    /// No node accepted it for now (5xx, 408, 429, or no answer): retry later.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The node answered something that is not the API's answer.
    #[error("unexpected answer: {0}")]
    Protocol(String),
}

impl PublishError {
    /// Whether sending again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, PublishError::Unavailable(_))
    }
}

/// Why the spooling client did not take an event.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spool holds `limit` bytes already: the event was not taken (the events in the
    /// spool are kept; the newest is refused).
    #[error("the spool is full ({bytes} of {limit} bytes); the event was not taken")]
    SpoolFull { bytes: u64, limit: u64 },
    /// The spool directory or file cannot be used.
    #[error("spool {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The spool file is not a spool (wrong header): it is left untouched.
    #[error("spool {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    /// The event is not a publish body (`{"team_id", "event": {"type", …}, …}`).
    #[error("invalid event: {0}")]
    Invalid(String),
    /// The client was closed.
    #[error("the client is closed")]
    Closed,
}

impl Error {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Error {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

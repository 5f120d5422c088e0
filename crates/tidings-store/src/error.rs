//! The store's error type: what went wrong, in words an API can hand to its caller.

/// Result of a store operation.
pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// A referenced record does not exist ("team T123 does not exist").
    #[error("{0}")]
    NotFound(String),
    /// The record exists already, or the change conflicts with stored state.
    #[error("{0}")]
    Conflict(String),
    /// A compare-and-swap write found the row changed since it was read (nothing was
    /// written): re-read and decide again, or tell the caller.
    #[error("{0}")]
    Stale(String),
    /// The change is well-formed but refused by a stored invariant.
    #[error("{0}")]
    Invalid(String),
    /// The database cannot be reached or is shutting down; safe to retry later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// An event refused for its content (publish only; carried out of the writer job so
    /// its savepoint rolls back).
    #[error("{}", .0.message)]
    Refused(crate::model::PublishRefusal),
    /// A bug or a corrupt database.
    #[error("store error: {0}")]
    Internal(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match &e {
            rusqlite::Error::SqliteFailure(f, _)
                if matches!(
                    f.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) =>
            {
                StoreError::Unavailable(e.to_string())
            }
            // The disk (or the quota) is full: the batch rolled back, and writes succeed
            // again once space returns. Safe to retry, so 503, not 500.
            rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DiskFull => {
                StoreError::Unavailable(format!("the disk is full ({e})"))
            }
            _ => StoreError::Internal(e.to_string()),
        }
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Internal(format!("stored JSON is corrupt: {e}"))
    }
}

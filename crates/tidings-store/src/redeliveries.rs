//! Records of bulk replay (issue 25): one job per `POST /apps/{app}/redeliveries`, with
//! the filter it was asked for, how many deliveries matched when it was created, and how
//! far it got. The SQL is in `sql::redeliveries`.

use serde::{Deserialize, Serialize};

use crate::model::Timestamp;

/// A bulk redelivery job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Redelivery {
    pub id: String,
    pub app_id: String,
    /// `running` until every matching delivery was made pending again, then `done`.
    pub state: String,
    /// Matching deliveries when the job was created.
    pub total: u64,
    /// Deliveries made pending again so far.
    pub sent: u64,
    /// The statuses it re-queues (`failed`, `dropped`, `delivered`).
    pub status: Vec<String>,
    /// Deliveries created at or after (Unix seconds).
    pub since: Option<i64>,
    /// Deliveries created at or before (Unix seconds).
    pub until: Option<i64>,
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub created_at: Timestamp,
}

/// What a new job covers (the store assigns `total` and `created_at`).
#[derive(Debug, Clone)]
pub struct NewRedelivery {
    pub id: String,
    pub app_id: String,
    pub status: Vec<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
}

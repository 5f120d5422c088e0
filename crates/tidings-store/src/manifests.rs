//! Records of the App Manifest API (issue 23): configuration tokens issued to a workspace
//! user (a developer), the developers who own an app, and the manifest an app was last
//! applied from. The SQL is in `sql::manifests`.

use serde::{Deserialize, Serialize};

use crate::model::Timestamp;

/// A configuration token pair as stored: only the hashes of the access and refresh
/// tokens are kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConfigToken {
    pub id: String,
    pub team_id: String,
    /// The developer the token acts for: apps it creates are owned by this user.
    pub user_id: String,
    /// When the access token stops working (Unix seconds).
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub expires_at: Timestamp,
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub created_at: Timestamp,
}

/// A new pair to store (the store sets `created_at`).
#[derive(Debug, Clone)]
pub struct NewConfigToken {
    pub id: String,
    pub team_id: String,
    pub user_id: String,
    pub access_hash: String,
    pub refresh_hash: String,
    pub expires_at: Timestamp,
}

/// An app's manifest as last applied (JSON text), and whether the app was deleted
/// through `apps.manifest.delete`.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredManifest {
    pub app_id: String,
    pub manifest: String,
    pub deleted: bool,
}

//! Records of the OAuth v2 install flow (issue 21): an app's OAuth client (its
//! `client_id`, the hash of its `client_secret`, redirect URLs and switches), the
//! short-lived codes the consent page hands out, and what a code or refresh token is
//! exchanged for. The SQL is in `sql::oauth`.

use serde::{Deserialize, Serialize};

use crate::model::{Installation, Timestamp};

/// An app's OAuth client. The secret itself is never stored, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OAuthClient {
    pub app_id: String,
    /// Slack-shaped: `<digits>.<digits>`.
    pub client_id: String,
    #[serde(skip)]
    pub client_secret_hash: String,
    /// The only redirect targets allowed (matched as Slack does).
    pub redirect_urls: Vec<String>,
    pub token_rotation_enabled: bool,
    pub org_deploy_enabled: bool,
}

/// A change to an app's OAuth settings: only the `Some` fields are written.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OAuthClientUpdate {
    pub redirect_urls: Option<Vec<String>>,
    pub token_rotation_enabled: Option<bool>,
    pub org_deploy_enabled: Option<bool>,
}

/// What the person at the consent page allowed; kept (by the code's hash) until the app
/// exchanges the code, once, before `expires_at`.
#[derive(Debug, Clone, PartialEq)]
pub struct OAuthGrant {
    pub app_id: String,
    /// The `redirect_uri` of the authorize request, when it named one: the exchange must
    /// name the same.
    pub redirect_uri: Option<String>,
    /// The team installed in; `None` for an org-wide install.
    pub team_id: Option<String>,
    /// Set for an org-wide install (by an org admin, for an app with `org_deploy_enabled`).
    pub enterprise_id: Option<String>,
    pub user_id: String,
    pub bot_scopes: Vec<String>,
    pub user_scopes: Vec<String>,
    pub expires_at: Timestamp,
}

/// Why a code or refresh token was refused (Slack's error codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthRefusal {
    InvalidCode,
    BadRedirectUri,
    InvalidRefreshToken,
}

impl OAuthRefusal {
    pub fn code(self) -> &'static str {
        match self {
            OAuthRefusal::InvalidCode => "invalid_code",
            OAuthRefusal::BadRedirectUri => "bad_redirect_uri",
            OAuthRefusal::InvalidRefreshToken => "invalid_refresh_token",
        }
    }
}

/// One token to add to an installation: its hash, when it expires (`None`: never), and
/// the hash of the refresh token that replaces it (with rotation).
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub hash: String,
    pub expires_at: Option<Timestamp>,
    pub refresh_hash: Option<String>,
}

/// A code exchange: the grant's code (hash) and the tokens made for it; the installation
/// is written as the operator API's install writes it.
#[derive(Debug, Clone)]
pub struct CodeExchange {
    pub code_hash: String,
    pub app_id: String,
    pub redirect_uri: Option<String>,
    pub installation_id: String,
    pub bot: IssuedToken,
    pub user: IssuedToken,
    pub now: Timestamp,
}

/// A refresh: the presented refresh token (hash) and a new pair for either side (the
/// store uses the one of the side the refresh token belongs to).
#[derive(Debug, Clone)]
pub struct Refresh {
    pub refresh_hash: String,
    pub app_id: String,
    pub bot: IssuedToken,
    pub user: IssuedToken,
    pub now: Timestamp,
}

/// What a refresh answers: the installation and which side (`bot` or `user`) it renewed.
#[derive(Debug, Clone, PartialEq)]
pub struct Refreshed {
    pub installation: Installation,
    pub kind: String,
}

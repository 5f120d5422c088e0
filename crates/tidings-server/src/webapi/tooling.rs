//! Configuration tokens (App Manifest API): how a pair is made, and
//! `tooling.tokens.rotate`, which exchanges a refresh token (once) for a new pair.
//!
//! The access token is shaped like Slack's (`xoxe.xoxp-1-…`, lasting `[oauth]
//! config_token_ttl`, 12 h by default), the refresh token too (`xoxe-1-…`); both are
//! stored hashed (`tidings_store::manifests`).

use axum::response::{IntoResponse, Response};
use serde_json::json;
use tidings_core::ids::{self, IdKind};
use tidings_core::token::{self, TokenKind};
use tidings_store::manifests::{ConfigToken, NewConfigToken};

use super::Params;
use crate::error::SlackError;
use crate::state::AppState;

/// What configuration access tokens start with (rotating user tokens share it: the store
/// tells them apart).
pub const CONFIG_TOKEN_PREFIX: &str = "xoxe.xoxp-";

/// A new pair's texts and what to store for it (`team_id`/`user_id` as given).
pub struct NewPair {
    pub token: String,
    pub refresh_token: String,
    pub record: NewConfigToken,
}

/// Makes a pair for a user of a team.
pub fn new_pair(s: &AppState, team_id: &str, user_id: &str) -> NewPair {
    let access = token::generate_rotating(TokenKind::User);
    let refresh = token::generate_refresh();
    let ttl = s.config.oauth.config_token_ttl.as_secs() as i64;
    NewPair {
        record: NewConfigToken {
            id: ids::generate(IdKind::AppToken),
            team_id: team_id.to_string(),
            user_id: user_id.to_string(),
            access_hash: token::hash(&access),
            refresh_hash: token::hash(&refresh),
            expires_at: crate::oauth::now() + ttl,
        },
        token: access,
        refresh_token: refresh,
    }
}

/// The pair as Slack's `tooling.tokens.rotate` answers it.
pub fn pair_json(pair: &NewPair, stored: &ConfigToken) -> serde_json::Value {
    json!({
        "token": pair.token,
        "refresh_token": pair.refresh_token,
        "team_id": stored.team_id,
        "user_id": stored.user_id,
        "iat": stored.created_at,
        "exp": stored.expires_at,
    })
}

/// `tooling.tokens.rotate`: needs no token, only `refresh_token`; a used or unknown one
/// is `invalid_refresh_token`.
pub async fn rotate(s: &AppState, p: &Params) -> Result<Response, SlackError> {
    let refresh = p
        .get("refresh_token")
        .filter(|r| !r.is_empty())
        .ok_or(SlackError::new("invalid_arguments"))?;
    let pair = new_pair(s, "", "");
    let stored = s
        .store
        .rotate_config_token(&token::hash(refresh), pair.record.clone())
        .await?
        .ok_or(SlackError::new("invalid_refresh_token"))?;
    let mut body = pair_json(&pair, &stored);
    body["ok"] = true.into();
    Ok(axum::Json(body).into_response())
}

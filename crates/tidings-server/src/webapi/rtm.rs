//! `rtm.connect` and `rtm.start` (OAUTH-RTM-WIRE.md §B1–B2): a bot or user token gets a
//! single-use WebSocket URL valid for `rtm.url_ttl`, with `self` (the token's user) and
//! `team`. `rtm.start` answers the same, with a `method_deprecated` warning, as Slack has
//! since 2022.

use axum::response::{IntoResponse, Response};
use serde_json::json;
use tidings_core::token::{self, TokenKind};
use tidings_store::RtmScope;

use super::{authenticate, Params};
use crate::error::SlackError;
use crate::rtm::RtmTicket;
use crate::state::AppState;

pub async fn handle(s: &AppState, p: &Params, start: bool) -> Result<Response, SlackError> {
    let (kind, grant) = authenticate(s, p).await?;
    if !matches!(kind, TokenKind::Bot | TokenKind::User) {
        return Err(SlackError::new("not_allowed_token_type"));
    }
    let presented = p.token().ok_or(SlackError::new("not_authed"))?;
    let app_id = grant
        .app_id
        .clone()
        .ok_or(SlackError::new("invalid_auth"))?;
    let user_id = grant.user_id.clone().unwrap_or_default();
    let user_name = s
        .store
        .get_user(&user_id)
        .await?
        .map(|u| u.name)
        .unwrap_or_default();
    let (scope, team) = match (&grant.team_id, &grant.enterprise_id) {
        (Some(t), _) => {
            let team = s
                .store
                .get_team(t)
                .await?
                .ok_or(SlackError::new("invalid_auth"))?;
            let mut body = json!({"id": team.id, "name": team.name, "domain": team.domain});
            if let Some(e) = &grant.enterprise_id {
                body["enterprise_id"] = e.clone().into();
            }
            (RtmScope::Team(team.id), body)
        }
        // An org-wide install: every workspace of the enterprise.
        (None, Some(e)) => {
            let ent = s
                .store
                .get_enterprise(e)
                .await?
                .ok_or(SlackError::new("invalid_auth"))?;
            let body = json!({"id": ent.id, "name": ent.name, "domain": ent.name.to_lowercase(), "enterprise_id": ent.id});
            (RtmScope::Enterprise(ent.id), body)
        }
        (None, None) => return Err(SlackError::new("invalid_auth")),
    };
    let after_seq = s.store.rtm_watermark(&app_id).await?;
    let secret = s.rtm.issue(RtmTicket {
        app_id,
        scope,
        token_hash: token::hash(presented),
        after_seq,
    });
    let base = s
        .public_url
        .replacen("https://", "wss://", 1)
        .replacen("http://", "ws://", 1);
    let mut body = json!({
        "ok": true,
        "url": format!("{base}/rtm/websocket?ticket={secret}"),
        "self": {"id": user_id, "name": user_name},
        "team": team,
    });
    if start {
        body["warning"] = "method_deprecated".into();
        body["response_metadata"] = json!({"warnings": ["method_deprecated"]});
    }
    Ok(axum::Json(body).into_response())
}

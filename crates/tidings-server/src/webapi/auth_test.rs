//! `auth.test` (SLACK-WIRE.md §3.2): who a bot or user token is, with its scopes in the
//! `x-oauth-scopes` header (Bolt Python reads them from there).

use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use tidings_core::token::TokenKind;

use super::{authenticate, Params};
use crate::error::SlackError;
use crate::state::AppState;

pub async fn handle(s: &AppState, p: &Params) -> Result<Response, SlackError> {
    let (kind, grant) = authenticate(s, p).await?;
    if !matches!(kind, TokenKind::Bot | TokenKind::User) {
        return Err(SlackError::new("not_allowed_token_type"));
    }
    let user_id = grant.user_id.clone().unwrap_or_default();
    let user = s.store.get_user(&user_id).await?;
    let app = match &grant.app_id {
        Some(a) => s.store.get_app(a).await?,
        None => None,
    };
    // Org-wide installs answer with the enterprise as the "team", as Slack does.
    let (team_id, team_name, domain) = match &grant.team_id {
        Some(t) => {
            let team = s
                .store
                .get_team(t)
                .await?
                .ok_or(SlackError::new("invalid_auth"))?;
            (team.id, team.name, team.domain)
        }
        None => {
            let e = grant.enterprise_id.clone().unwrap_or_default();
            let ent = s
                .store
                .get_enterprise(&e)
                .await?
                .ok_or(SlackError::new("invalid_auth"))?;
            let domain = ent
                .name
                .to_lowercase()
                .replace(|c: char| !c.is_ascii_alphanumeric(), "-");
            (ent.id, ent.name, domain)
        }
    };
    let mut body = serde_json::json!({
        "ok": true,
        "url": format!("{}/{}/", s.public_url, domain),
        "team": team_name,
        "user": user.map(|u| u.name).unwrap_or_default(),
        "team_id": team_id,
        "user_id": user_id,
        "is_enterprise_install": grant.is_enterprise_install,
        "app_id": grant.app_id,
    });
    if let Some(app) = app {
        body["app_name"] = app.name.into();
    }
    if let Some(b) = &grant.bot_id {
        body["bot_id"] = b.clone().into();
    }
    if let Some(e) = &grant.enterprise_id {
        body["enterprise_id"] = e.clone().into();
    }
    let mut res = axum::Json(body).into_response();
    if let Ok(v) = HeaderValue::from_str(&grant.scopes.join(",")) {
        res.headers_mut().insert("x-oauth-scopes", v);
    }
    Ok(res)
}

//! `apps.connections.open` (SLACK-WIRE.md §2.1): an app-level token with
//! `connections:write` gets a single-use WebSocket URL.

use axum::response::{IntoResponse, Response};
use serde_json::json;
use tidings_core::token::TokenKind;

use super::{authenticate, Params};
use crate::error::SlackError;
use crate::state::AppState;

pub async fn handle(s: &AppState, p: &Params) -> Result<Response, SlackError> {
    let (kind, grant) = authenticate(s, p).await?;
    if kind != TokenKind::App {
        return Err(SlackError::new("not_allowed_token_type"));
    }
    if !grant.scopes.iter().any(|sc| sc == "connections:write") {
        return Err(SlackError::missing_scope(
            "connections:write",
            &grant.scopes,
        ));
    }
    let app_id = grant.app_id.ok_or(SlackError::new("invalid_auth"))?;
    // The connection lives only as long as this token does (see crate::revocation).
    let token_id = grant.token_id.ok_or(SlackError::new("invalid_auth"))?;
    let ticket = s.engine.hub.issue_ticket(&app_id, &token_id, false);
    let base = s
        .public_url
        .replacen("https://", "wss://", 1)
        .replacen("http://", "ws://", 1);
    Ok(axum::Json(
        json!({"ok": true, "url": format!("{base}/link/?ticket={ticket}&app_id={app_id}")}),
    )
    .into_response())
}

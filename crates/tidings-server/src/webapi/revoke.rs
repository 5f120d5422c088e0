//! `auth.revoke` and `apps.uninstall` (OAUTH-RTM-WIRE.md A9), with their lifecycle
//! events (`tokens_revoked`, `app_uninstalled`), each published exactly once in the same
//! store transaction as the change it reports: `auth.revoke` through
//! `Store::revoke_installation_side`, `apps.uninstall` through the operator API's
//! uninstall path.

use axum::response::{IntoResponse, Response};
use serde_json::json;
use tidings_core::token::TokenKind;

use super::{authenticate, Params};
use crate::admin::installations::uninstall_with_events;
use crate::error::SlackError;
use crate::state::AppState;

fn truthy(v: Option<&str>) -> bool {
    matches!(v, Some("1" | "true" | "True" | "TRUE"))
}

/// `auth.revoke`: revokes the calling bot or user token (with `test`, only says it
/// would). The side's other tokens (earlier rotations) and refresh tokens go with it;
/// when nothing of the installation is left, it is uninstalled.
pub async fn auth_revoke(s: &AppState, p: &Params) -> Result<Response, SlackError> {
    let (kind, grant) = authenticate(s, p).await?;
    let side = match kind {
        TokenKind::Bot => "bot",
        TokenKind::User => "user",
        _ => return Err(SlackError::new("not_allowed_token_type")),
    };
    if truthy(p.get("test")) {
        return Ok(axum::Json(json!({"ok": true, "revoked": false})).into_response());
    }
    let inst_id = grant
        .installation_id
        .ok_or(SlackError::new("invalid_auth"))?;
    let inst = s
        .store
        .get_installation(&inst_id)
        .await?
        .ok_or(SlackError::new("invalid_auth"))?;
    let user = grant.user_id.unwrap_or_default();
    // One job: the side's revocation with its tokens_revoked, and when nothing of the
    // installation is left, its uninstall with app_uninstalled (when it was the last in
    // its team). An installation uninstalled meanwhile has nothing left to revoke.
    match s
        .store
        .revoke_installation_side(&inst.app_id, &inst.id, side, &user, &s.publish_policy)
        .await
    {
        Ok(_) | Err(tidings_store::StoreError::Conflict(_)) => {}
        Err(e) => return Err(e.into()),
    }
    // Its RTM connections here say goodbye now (other nodes' within their re-check).
    s.rtm.recheck_tokens();
    Ok(axum::Json(json!({"ok": true, "revoked": true})).into_response())
}

/// `apps.uninstall`: the client's credentials and a token of the installation.
pub async fn apps_uninstall(s: &AppState, p: &Params) -> Result<Response, SlackError> {
    let (_, grant) = authenticate(s, p).await?;
    let client = super::oauth_access::client(s, p).await?;
    if grant.app_id.as_deref() != Some(client.app_id.as_str()) {
        return Err(SlackError::new("client_id_token_mismatch"));
    }
    let inst_id = grant
        .installation_id
        .ok_or(SlackError::new("invalid_auth"))?;
    let inst = s
        .store
        .get_installation(&inst_id)
        .await?
        .ok_or(SlackError::new("invalid_auth"))?;
    match uninstall_with_events(s, &inst).await {
        Ok(_) | Err(tidings_store::StoreError::Conflict(_)) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(axum::Json(json!({"ok": true})).into_response())
}

//! `apps.event.authorizations.list` (SLACK-WIRE.md §3.4): every installation of the calling
//! app that can see the event an `event_context` names, paginated, with the next cursor in
//! both `cursor_next` (the docs) and `response_metadata.next_cursor` (what the SDKs follow).

use axum::response::{IntoResponse, Response};
use serde_json::json;
use tidings_core::event_context;
use tidings_core::token::TokenKind;
use tidings_store::Cursor;

use super::{authenticate, Params};
use crate::error::SlackError;
use crate::state::AppState;

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

pub async fn handle(s: &AppState, p: &Params) -> Result<Response, SlackError> {
    // The token must come in the header: this method does not read a `token` parameter.
    if p.token_only_in_params() {
        return Err(SlackError::new("not_authed"));
    }
    let (kind, grant) = authenticate(s, p).await?;
    if kind != TokenKind::App {
        return Err(SlackError::new("not_allowed_token_type"));
    }
    if !grant.scopes.iter().any(|sc| sc == "authorizations:read") {
        return Err(SlackError::missing_scope(
            "authorizations:read",
            &grant.scopes,
        ));
    }
    let handle = p
        .get("event_context")
        .filter(|h| !h.is_empty())
        .ok_or(SlackError::new("invalid_arguments"))?;
    let ctx = event_context::decode(handle, &s.store.event_context_key())
        .ok_or(SlackError::new("invalid_event_context"))?;
    if Some(ctx.app_id.as_str()) != grant.app_id.as_deref() {
        return Err(SlackError::new("auth_mismatch"));
    }
    let limit = match p.get("limit").filter(|l| !l.is_empty()) {
        None => DEFAULT_LIMIT,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => return Err(SlackError::new("invalid_limit")),
        },
    };
    let start = match p.get("cursor").filter(|c| !c.is_empty()) {
        None => 0,
        Some(c) => Cursor::decode(c)
            .and_then(|k| k.parse::<usize>().ok())
            .ok_or(SlackError::new("invalid_cursor"))?,
    };
    let all = s
        .store
        .event_audience(&s.catalog, &ctx.event_id, &ctx.app_id)
        .await?
        .ok_or(SlackError::new("invalid_event_context"))?;
    if start > all.len() {
        return Err(SlackError::new("invalid_cursor"));
    }
    let end = (start + limit).min(all.len());
    let next = if end < all.len() {
        Cursor::encode(&end.to_string())
    } else {
        String::new()
    };
    Ok(axum::Json(json!({
        "ok": true,
        "authorizations": &all[start..end],
        "cursor_next": next,
        "response_metadata": {"next_cursor": next},
    }))
    .into_response())
}

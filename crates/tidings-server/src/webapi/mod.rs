//! The Slack Web API under `/api/{method}`, with Slack's request conventions
//! (SLACK-WIRE.md §3.1): POST or GET; parameters from the query string, a form body or a
//! JSON body; the token in `Authorization: Bearer` or a `token` parameter; HTTP 200 with
//! `{"ok": false, "error"}` for application errors.

mod auth_test;
mod authorizations;
mod connections;
pub(crate) mod params;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use tidings_core::token::{self, TokenKind};
use tidings_store::TokenGrant;

use crate::error::SlackError;
use crate::state::AppState;
pub use params::Params;

/// `/api/{method}` for every HTTP verb.
pub async fn dispatch(
    State(s): State<AppState>,
    Path(method): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                axum::Json(serde_json::json!({"ok": false, "error": "request_too_large"})),
            )
                .into_response()
        }
        Err(_) => return SlackError::new("invalid_form_data").into_response(),
    };
    let params = match Params::parse(query.as_deref(), &headers, &body) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let result = match method.as_str() {
        "auth.test" => auth_test::handle(&s, &params).await,
        "apps.event.authorizations.list" => authorizations::handle(&s, &params).await,
        "apps.connections.open" => connections::handle(&s, &params).await,
        "api.test" => Ok(api_test(&params)),
        _ => Err(SlackError::new("unknown_method")),
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `api.test`: echoes its arguments; needs no token (as at Slack).
fn api_test(p: &Params) -> Response {
    let args: serde_json::Map<String, serde_json::Value> = p
        .iter()
        .filter(|(k, _)| *k != "token")
        .map(|(k, v)| (k.to_string(), v.to_string().into()))
        .collect();
    let mut body = serde_json::json!({"ok": true});
    if !args.is_empty() {
        body["args"] = args.into();
    }
    axum::Json(body).into_response()
}

/// Who is calling: the grant for the presented token, refused the way Slack refuses.
pub async fn authenticate(s: &AppState, p: &Params) -> Result<(TokenKind, TokenGrant), SlackError> {
    let presented = p.token().ok_or(SlackError::new("not_authed"))?;
    let kind = TokenKind::of(presented).ok_or(SlackError::new("invalid_auth"))?;
    if matches!(kind, TokenKind::Admin | TokenKind::Publisher) {
        return Err(SlackError::new("invalid_auth"));
    }
    let grant = s
        .store
        .authenticate(&token::hash(presented))
        .await?
        .ok_or(SlackError::new("invalid_auth"))?;
    if grant.revoked {
        return Err(SlackError::new("token_revoked"));
    }
    Ok((kind, grant))
}

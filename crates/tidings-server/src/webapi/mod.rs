//! The Slack Web API under `/api/{method}`, with Slack's request conventions
//! (SLACK-WIRE.md §3.1): POST or GET; parameters from the query string, a form body or a
//! JSON body; the token in `Authorization: Bearer` or a `token` parameter; HTTP 200 with
//! `{"ok": false, "error"}` for application errors.

mod auth_test;
mod authorizations;
mod connections;
mod events_list;
mod manifest;
mod oauth_access;
pub(crate) mod params;
mod revoke;
mod rtm;
pub(crate) mod tooling;

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use tidings_core::token::{self, TokenKind};
use tidings_store::TokenGrant;

use crate::error::SlackError;
use crate::extract::{read_limited, BodyError};
use crate::state::AppState;
pub(crate) use manifest::exported as exported_manifest;
pub use params::Params;

/// The methods served; any other is `unknown_method`, answered before reading a body.
const METHODS: &[&str] = &[
    "auth.test",
    "apps.event.authorizations.list",
    "apps.connections.open",
    "api.test",
    "oauth.v2.access",
    "oauth.v2.exchange",
    "auth.revoke",
    "apps.uninstall",
    "rtm.connect",
    "rtm.start",
    "apps.manifest.validate",
    "apps.manifest.create",
    "apps.manifest.update",
    "apps.manifest.export",
    "apps.manifest.delete",
    "tooling.tokens.rotate",
    "tidings.events.list",
];

/// `/api/{method}` for every HTTP verb.
///
/// The token is checked before the body is read where it can be: one in `Authorization`
/// (or the query string) is authenticated first, a bad one is refused at once, and a good
/// one allows a body up to `server.max_body_bytes`. Without it (a `token` form field,
/// which Slack allows, or `api.test`), at most `server.max_unauthenticated_body_bytes`
/// are read.
pub async fn dispatch(
    State(s): State<AppState>,
    Path(method): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if !METHODS.contains(&method.as_str()) {
        return SlackError::new("unknown_method").into_response();
    }
    let is_manifest = manifest::METHODS.contains(&method.as_str());
    // A configuration token (the manifest methods) is checked first the same way.
    let config = match early_token(query.as_deref(), &headers) {
        Some((t, in_header)) if is_manifest => match manifest::authenticate_config(&s, &t).await {
            Ok(ct) => Some((t, ct)),
            Err(e) if in_header => return e.into_response(),
            Err(_) => None,
        },
        _ => None,
    };
    let early = match early_token(query.as_deref(), &headers) {
        Some((t, in_header))
            if !is_manifest && method != "api.test" && method != "tooling.tokens.rotate" =>
        {
            match authenticate_token(&s, &t).await {
                Ok(grant) => Some((t, grant)),
                // The header's token is the one used, whatever the body says: refused now.
                Err(e) if in_header => return e.into_response(),
                // A token in the body would win over this one: read (a little of) it.
                Err(_) => None,
            }
        }
        _ => None,
    };
    let server = &s.config.server;
    let limit = if early.is_some() || config.is_some() {
        server.max_body_bytes
    } else {
        server.unauthenticated_body_limit()
    };
    let body = match read_body(&headers, body, limit).await {
        Ok(b) => b,
        Err(e) => return e,
    };
    let mut params = match Params::parse(query.as_deref(), &headers, &body) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    params.authenticated = early;
    params.config = config;
    let result = match method.as_str() {
        "auth.test" => auth_test::handle(&s, &params).await,
        "apps.event.authorizations.list" => authorizations::handle(&s, &params).await,
        "tidings.events.list" => events_list::handle(&s, &params).await,
        "apps.connections.open" => connections::handle(&s, &params).await,
        "api.test" => Ok(api_test(&params)),
        "oauth.v2.access" => oauth_access::handle(&s, &params).await,
        "oauth.v2.exchange" => oauth_access::exchange(&s, &params).await,
        "auth.revoke" => revoke::auth_revoke(&s, &params).await,
        "apps.uninstall" => revoke::apps_uninstall(&s, &params).await,
        "rtm.connect" => rtm::handle(&s, &params, false).await,
        "rtm.start" => rtm::handle(&s, &params, true).await,
        "apps.manifest.validate" => manifest::validate(&s, &params).await,
        "apps.manifest.create" => manifest::create(&s, &params).await,
        "apps.manifest.update" => manifest::update(&s, &params).await,
        "apps.manifest.export" => manifest::export(&s, &params).await,
        "apps.manifest.delete" => manifest::delete(&s, &params).await,
        "tooling.tokens.rotate" => tooling::rotate(&s, &params).await,
        _ => Err(SlackError::new("unknown_method")),
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

/// The token a request carries outside its body, and whether it is `Authorization:
/// Bearer`'s (else it is `?token=`).
fn early_token(query: Option<&str>, headers: &HeaderMap) -> Option<(String, bool)> {
    if let Some(t) = params::bearer(headers) {
        return Some((t, true));
    }
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, v)| k == "token" && !v.is_empty())
        .map(|(_, v)| (v.into_owned(), false))
}

/// Reads at most `limit` bytes of body (413 `request_too_large` beyond, declared or not).
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, Response> {
    read_limited(headers, body, limit)
        .await
        .map_err(|e| match e {
            BodyError::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                axum::Json(serde_json::json!({"ok": false, "error": "request_too_large"})),
            )
                .into_response(),
            BodyError::Unreadable => SlackError::new("invalid_form_data").into_response(),
        })
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
    if let Some((t, grant)) = &p.authenticated {
        if t == presented {
            return Ok(grant.clone());
        }
    }
    authenticate_token(s, presented).await
}

/// The grant for one presented token (see [`authenticate`]).
async fn authenticate_token(
    s: &AppState,
    presented: &str,
) -> Result<(TokenKind, TokenGrant), SlackError> {
    let kind = TokenKind::of(presented).ok_or(SlackError::new("invalid_auth"))?;
    if matches!(kind, TokenKind::Admin | TokenKind::Publisher) {
        return Err(SlackError::new("invalid_auth"));
    }
    let Some(grant) = s.store.authenticate(&token::hash(presented)).await? else {
        // A configuration token is good only for the manifest methods.
        if presented.starts_with(tooling::CONFIG_TOKEN_PREFIX)
            && s.store
                .config_token(&token::hash(presented))
                .await?
                .is_some()
        {
            return Err(SlackError::new("not_allowed_token_type"));
        }
        return Err(SlackError::new("invalid_auth"));
    };
    if grant.revoked {
        return Err(SlackError::new("token_revoked"));
    }
    // Rotating access tokens expire (`[oauth] access_token_ttl`); the others never do.
    if presented.starts_with(token::ROTATING_PREFIX) {
        if let Some(at) = s.store.token_expires_at(&token::hash(presented)).await? {
            if at <= crate::oauth::now() {
                return Err(SlackError::new("token_expired"));
            }
        }
    }
    Ok((kind, grant))
}

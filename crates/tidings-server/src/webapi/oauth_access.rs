//! `oauth.v2.access` (OAUTH-RTM-WIRE.md A3–A4, A7): a consent code, or a refresh token,
//! exchanged for tokens. Client credentials come from HTTP Basic (Python) or the form
//! body (Node). A code is single use, expires after `[oauth] code_ttl`, is bound to its
//! client and to the `redirect_uri` of the authorize request; its exchange writes the
//! installation (see `crate::oauth`). With token rotation, access tokens are
//! `xoxe.xoxb-1-…` / `xoxe.xoxp-1-…` lasting `[oauth] access_token_ttl`, each with a
//! single-use refresh token.

use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use tidings_core::token::{self, TokenKind};
use tidings_store::oauth::{CodeExchange, IssuedToken, OAuthClient, Refresh};
use tidings_store::Installation;

use super::Params;
use crate::error::SlackError;
use crate::state::AppState;

fn now() -> i64 {
    crate::oauth::now()
}

/// The client the request's credentials name, if its secret is right.
pub async fn client(s: &AppState, p: &Params) -> Result<OAuthClient, SlackError> {
    let (id, secret) = p
        .client_credentials()
        .ok_or(SlackError::new("invalid_client_id"))?;
    let client = s
        .store
        .oauth_client_by_id(&id)
        .await?
        .ok_or(SlackError::new("invalid_client_id"))?;
    if !token::constant_time_eq(
        token::hash(&secret).as_bytes(),
        client.client_secret_hash.as_bytes(),
    ) {
        return Err(SlackError::new("bad_client_secret"));
    }
    Ok(client)
}

/// A new access token of `kind` for this client, with expiry and refresh token when
/// the app rotates tokens; answers the texts and what the store keeps.
fn issue(s: &AppState, c: &OAuthClient, kind: TokenKind) -> (String, Option<String>, IssuedToken) {
    if c.token_rotation_enabled {
        let access = token::generate_rotating(kind);
        let refresh = token::generate_refresh();
        let issued = IssuedToken {
            hash: token::hash(&access),
            expires_at: Some(now() + ttl(s)),
            refresh_hash: Some(token::hash(&refresh)),
        };
        (access, Some(refresh), issued)
    } else {
        let access = token::generate(kind, None);
        let issued = IssuedToken {
            hash: token::hash(&access),
            expires_at: None,
            refresh_hash: None,
        };
        (access, None, issued)
    }
}

fn ttl(s: &AppState) -> i64 {
    s.config.oauth.access_token_ttl.as_secs() as i64
}

pub async fn handle(s: &AppState, p: &Params) -> Result<Response, SlackError> {
    let client = client(s, p).await?;
    let grant_type = match p.get("grant_type").filter(|g| !g.is_empty()) {
        Some(g) => g,
        None if p.get("refresh_token").is_some() && p.get("code").is_none() => "refresh_token",
        None => "authorization_code",
    };
    match grant_type {
        "authorization_code" => code(s, p, &client).await,
        "refresh_token" => refresh(s, p, &client).await,
        _ => Err(SlackError::new("invalid_grant_type")),
    }
}

/// `team`, `enterprise` and `is_enterprise_install` of an installation, as Slack shapes
/// them.
async fn workspace(s: &AppState, inst: &Installation) -> Result<Value, SlackError> {
    let mut out = json!({"team": null, "enterprise": null, "is_enterprise_install": inst.is_enterprise_install});
    if let Some(t) = &inst.team_id {
        if let Some(team) = s.store.get_team(t).await? {
            out["team"] = json!({"id": team.id, "name": team.name});
        }
    }
    if let Some(e) = &inst.enterprise_id {
        if let Some(ent) = s.store.get_enterprise(e).await? {
            out["enterprise"] = json!({"id": ent.id, "name": ent.name});
        }
    }
    Ok(out)
}

fn merge(into: &mut Value, from: Value) {
    if let (Some(a), Value::Object(b)) = (into.as_object_mut(), from) {
        a.extend(b);
    }
}

async fn code(s: &AppState, p: &Params, client: &OAuthClient) -> Result<Response, SlackError> {
    let code = p
        .get("code")
        .filter(|c| !c.is_empty())
        .ok_or(SlackError::new("invalid_code"))?;
    let (bot_token, bot_refresh, bot) = issue(s, client, TokenKind::Bot);
    let (user_token, user_refresh, user) = issue(s, client, TokenKind::User);
    let x = CodeExchange {
        code_hash: token::hash(code),
        app_id: client.app_id.clone(),
        redirect_uri: p
            .get("redirect_uri")
            .filter(|r| !r.is_empty())
            .map(str::to_string),
        installation_id: tidings_core::ids::generate(tidings_core::ids::IdKind::Installation),
        bot,
        user,
        now: now(),
    };
    let (inst, grant) = match s.store.exchange_oauth_code(x).await {
        Ok(Ok(done)) => done,
        Ok(Err(refusal)) => return Err(SlackError::new(refusal.code())),
        // The installer left the team, or the team is gone, since Allow.
        Err(tidings_store::StoreError::Invalid(_) | tidings_store::StoreError::NotFound(_)) => {
            return Err(SlackError::new("invalid_code"))
        }
        Err(e) => return Err(e.into()),
    };
    tracing::info!(app = %inst.app_id, installation = %inst.id, "installed through OAuth");
    let expires_in = ttl(s);
    let mut authed_user = json!({"id": grant.user_id});
    if !grant.user_scopes.is_empty() {
        merge(
            &mut authed_user,
            json!({"scope": grant.user_scopes.join(","), "access_token": user_token, "token_type": "user"}),
        );
        if let Some(r) = user_refresh {
            merge(
                &mut authed_user,
                json!({"refresh_token": r, "expires_in": expires_in}),
            );
        }
    }
    let mut body = json!({"ok": true, "app_id": inst.app_id, "authed_user": authed_user});
    if let (false, Some(bot_user)) = (grant.bot_scopes.is_empty(), &inst.bot_user_id) {
        merge(
            &mut body,
            json!({"scope": grant.bot_scopes.join(","), "token_type": "bot",
                   "access_token": bot_token, "bot_user_id": bot_user}),
        );
        if let Some(r) = bot_refresh {
            merge(
                &mut body,
                json!({"refresh_token": r, "expires_in": expires_in}),
            );
        }
    }
    merge(&mut body, workspace(s, &inst).await?);
    Ok(axum::Json(body).into_response())
}

async fn refresh(s: &AppState, p: &Params, client: &OAuthClient) -> Result<Response, SlackError> {
    let presented = p
        .get("refresh_token")
        .filter(|r| !r.is_empty())
        .ok_or(SlackError::new("invalid_refresh_token"))?;
    if !client.token_rotation_enabled {
        return Err(SlackError::new("invalid_refresh_token"));
    }
    let (bot_token, bot_refresh, bot) = issue(s, client, TokenKind::Bot);
    let (user_token, user_refresh, user) = issue(s, client, TokenKind::User);
    let x = Refresh {
        refresh_hash: token::hash(presented),
        app_id: client.app_id.clone(),
        bot,
        user,
        now: now(),
    };
    let done = match s.store.refresh_oauth_token(x).await? {
        Ok(d) => d,
        Err(refusal) => return Err(SlackError::new(refusal.code())),
    };
    let inst = &done.installation;
    let (access, refresh, scopes) = if done.kind == "bot" {
        (bot_token, bot_refresh, &inst.bot_scopes)
    } else {
        (user_token, user_refresh, &inst.user_scopes)
    };
    let mut body = json!({
        "ok": true, "app_id": inst.app_id, "scope": scopes.join(","), "token_type": done.kind,
        "access_token": access, "refresh_token": refresh, "expires_in": ttl(s),
    });
    if done.kind == "bot" {
        merge(&mut body, json!({"bot_user_id": inst.bot_user_id}));
    } else {
        merge(&mut body, json!({"user_id": inst.installer_user_id}));
    }
    merge(&mut body, workspace(s, inst).await?);
    Ok(axum::Json(body).into_response())
}

/// `oauth.v2.exchange` (OAUTH-RTM-WIRE.md A8): a long-lived bot or user token of the
/// client's app, given as `token` with the client's credentials, becomes a rotating
/// access token with a refresh token; the old token stops working.
pub async fn exchange(s: &AppState, p: &Params) -> Result<Response, SlackError> {
    let client = client(s, p).await?;
    let presented = p
        .get("token")
        .or(p.token())
        .filter(|t| !t.is_empty())
        .ok_or(SlackError::new("invalid_token"))?;
    if presented.starts_with(token::ROTATING_PREFIX) {
        return Err(SlackError::new("token_already_exchanged"));
    }
    let kind = match TokenKind::of(presented) {
        Some(k @ (TokenKind::Bot | TokenKind::User)) => k,
        _ => return Err(SlackError::new("invalid_token")),
    };
    if !client.token_rotation_enabled {
        return Err(SlackError::new("token_rotation_not_enabled"));
    }
    let (access, refresh, issued) = issue(s, &client, kind);
    let done = s
        .store
        .exchange_oauth_token(&token::hash(presented), &client.app_id, issued)
        .await?
        .ok_or(SlackError::new("authorization_not_found"))?;
    let inst = &done.installation;
    let scopes = if done.kind == "bot" {
        &inst.bot_scopes
    } else {
        &inst.user_scopes
    };
    let mut body = json!({
        "ok": true, "app_id": inst.app_id, "scope": scopes.join(","), "token_type": done.kind,
        "access_token": access, "refresh_token": refresh, "expires_in": ttl(s),
        "response_metadata": {"warnings": []},
    });
    if done.kind == "bot" {
        merge(&mut body, json!({"bot_user_id": inst.bot_user_id}));
    } else {
        merge(
            &mut body,
            json!({"authed_user": {"id": inst.installer_user_id}}),
        );
    }
    merge(&mut body, workspace(s, inst).await?);
    Ok(axum::Json(body).into_response())
}

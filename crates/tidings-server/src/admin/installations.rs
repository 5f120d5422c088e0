//! Operator API: installing an app in a team (or org-wide), listing and uninstalling.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use tidings_core::ids::{self, IdKind};
use tidings_core::token::{self, TokenKind};
use tidings_store::{Installation, NewInstallation, Page};

use super::apps::app_in_path;
use super::validate;
use crate::error::Problem;
use crate::extract::{ApiJson, Paging};
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Install {
    team_id: Option<String>,
    enterprise_id: Option<String>,
    installer_user_id: String,
    #[serde(default)]
    bot_scopes: Vec<String>,
    #[serde(default)]
    user_scopes: Vec<String>,
}

/// Installs the app. Answers the installation with `bot_token` / `user_token`, shown only
/// here: the store keeps their hashes.
pub async fn install(
    State(s): State<AppState>,
    Path(app): Path<String>,
    ApiJson(b): ApiJson<Install>,
) -> Result<(StatusCode, Json<serde_json::Value>), Problem> {
    let app = app_in_path(&s, &app).await?;
    if let Some(t) = &b.team_id {
        validate::field_id(IdKind::Team, "team_id", t)?;
    }
    if let Some(e) = &b.enterprise_id {
        validate::field_id(IdKind::Enterprise, "enterprise_id", e)?;
    }
    if b.team_id.is_none() && b.enterprise_id.is_none() {
        return Err(Problem::invalid_field(
            "team_id",
            "is required (or enterprise_id alone, for an org-wide install)",
        ));
    }
    validate::field_id(IdKind::User, "installer_user_id", &b.installer_user_id)?;
    let bot_scopes = validate::scopes("bot_scopes", &b.bot_scopes)?;
    let user_scopes = validate::scopes("user_scopes", &b.user_scopes)?;
    if bot_scopes.is_empty() && user_scopes.is_empty() {
        return Err(Problem::invalid_field(
            "bot_scopes",
            "an installation grants at least one bot or user scope",
        ));
    }
    let bot_token = (!bot_scopes.is_empty()).then(|| token::generate(TokenKind::Bot, None));
    let user_token = (!user_scopes.is_empty()).then(|| token::generate(TokenKind::User, None));
    let inst = s
        .store
        .install(NewInstallation {
            id: ids::generate(IdKind::Installation),
            app_id: app.id,
            team_id: b.team_id,
            enterprise_id: b.enterprise_id,
            installer_user_id: b.installer_user_id,
            bot_scopes,
            user_scopes,
            bot_token_hash: bot_token.as_deref().map(token::hash),
            user_token_hash: user_token.as_deref().map(token::hash),
        })
        .await?;
    let mut v = serde_json::to_value(&inst).map_err(|e| Problem::bad_request(e.to_string()))?;
    if let Some(t) = bot_token {
        v["bot_token"] = t.into();
    }
    if let Some(t) = user_token {
        v["user_token"] = t.into();
    }
    Ok((StatusCode::CREATED, Json(v)))
}

pub async fn list(
    State(s): State<AppState>,
    Path(app): Path<String>,
    Paging(p): Paging,
) -> Result<Json<Page<Installation>>, Problem> {
    app_in_path(&s, &app).await?;
    Ok(Json(s.store.list_installations(&app, &p).await?))
}

async fn installation_in_path(s: &AppState, app: &str, id: &str) -> Result<Installation, Problem> {
    app_in_path(s, app).await?;
    validate::path_id(IdKind::Installation, "id", id)?;
    s.store
        .get_installation(id)
        .await?
        .filter(|i| i.app_id == app)
        .ok_or_else(|| {
            Problem::not_found(format!("installation {id} does not exist for app {app}"))
        })
}

pub async fn get(
    State(s): State<AppState>,
    Path((app, id)): Path<(String, String)>,
) -> Result<Json<Installation>, Problem> {
    Ok(Json(installation_in_path(&s, &app, &id).await?))
}

pub async fn uninstall(
    State(s): State<AppState>,
    Path((app, id)): Path<(String, String)>,
) -> Result<Json<Installation>, Problem> {
    installation_in_path(&s, &app, &id).await?;
    Ok(Json(s.store.uninstall(&app, &id).await?))
}

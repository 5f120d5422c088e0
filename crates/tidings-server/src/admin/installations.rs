//! Operator API: installing an app in a team (or org-wide), listing and uninstalling.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use tidings_core::ids::{self, IdKind};
use tidings_core::token::{self, TokenKind};
use tidings_store::{Installation, NewInstallation, Page};

use super::apps::app_in_path;
use super::openapi::{AppPath, PageParams, PROBLEM_JSON};
use super::validate;
use crate::error::Problem;
use crate::extract::{ApiJson, Paging};
use crate::state::AppState;

/// At least one of `team_id` and `enterprise_id` (alone: an org-wide install), and at
/// least one bot or user scope (the document says both with `anyOf`, see `openapi.rs`).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Install {
    #[schema(pattern = "^T[A-Z0-9]{2,30}$", example = "T0ACME")]
    team_id: Option<String>,
    #[schema(pattern = "^E[A-Z0-9]{2,30}$")]
    enterprise_id: Option<String>,
    /// The installing user (in the team, or in the enterprise for org-wide installs).
    #[schema(pattern = "^[UW][A-Z0-9]{2,30}$", example = "U0ALICE")]
    installer_user_id: String,
    /// OAuth scopes of the bot (`channels:history`); a bot user is created when any.
    #[serde(default)]
    #[schema(inline, value_type = Vec<String>, pattern = "^[a-z0-9:._-]{1,64}$")]
    bot_scopes: Vec<String>,
    /// OAuth scopes of the installing user.
    #[serde(default)]
    #[schema(inline, value_type = Vec<String>, pattern = "^[a-z0-9:._-]{1,64}$")]
    user_scopes: Vec<String>,
}

/// An installation and its tokens, shown only here: the store keeps their hashes.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedInstallation {
    #[serde(flatten)]
    record: Installation,
    /// `xoxb-…`, when bot scopes were granted.
    #[serde(skip_serializing_if = "Option::is_none")]
    bot_token: Option<String>,
    /// `xoxp-…`, when user scopes were granted.
    #[serde(skip_serializing_if = "Option::is_none")]
    user_token: Option<String>,
}

/// `{app}` and the installation's `{id}` in the path.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct InstallationPath {
    #[param(pattern = "^A[A-Z0-9]{2,30}$", example = "A0HELLO")]
    app: String,
    #[param(pattern = "^I[A-Z0-9]{2,30}$")]
    id: String,
}

/// Installs the app. Answers the installation with `bot_token` / `user_token`, shown only
/// here: the store keeps their hashes.
#[utoipa::path(
    post, path = "/apps/{app}/installations", operation_id = "install_app", tag = "installations",
    params(AppPath),
    request_body = Install,
    responses(
        (status = 201, description = "The installation with its tokens", body = CreatedInstallation,
         links(("GetInstallation" = (operation_id = "get_installation", parameters(("app" = "$response.body#/app_id"), ("id" = "$response.body#/id")))), ("UninstallApp" = (operation_id = "uninstall_app", parameters(("app" = "$response.body#/app_id"), ("id" = "$response.body#/id")))))),
        (status = 422, description = "The installer, team or enterprise cannot take this \
         installation", body = Problem, content_type = PROBLEM_JSON),
    ),
)]
pub async fn install(
    State(s): State<AppState>,
    Path(app): Path<String>,
    ApiJson(b): ApiJson<Install>,
) -> Result<(StatusCode, Json<CreatedInstallation>), Problem> {
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
    Ok((
        StatusCode::CREATED,
        Json(CreatedInstallation {
            record: inst,
            bot_token,
            user_token,
        }),
    ))
}

#[utoipa::path(
    get, path = "/apps/{app}/installations", operation_id = "list_installations",
    tag = "installations",
    params(AppPath, PageParams),
    responses((status = 200, description = "One page of the app's installations, uninstalled \
               ones included", body = Page<Installation>)),
)]
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

#[utoipa::path(
    get, path = "/apps/{app}/installations/{id}", operation_id = "get_installation",
    tag = "installations",
    params(InstallationPath),
    responses((status = 200, description = "The installation", body = Installation)),
)]
pub async fn get(
    State(s): State<AppState>,
    Path((app, id)): Path<(String, String)>,
) -> Result<Json<Installation>, Problem> {
    Ok(Json(installation_in_path(&s, &app, &id).await?))
}

/// Uninstalls: its tokens stop working; the app receives `tokens_revoked`, and
/// `app_uninstalled` when nothing of it is left in the team.
#[utoipa::path(
    delete, path = "/apps/{app}/installations/{id}", operation_id = "uninstall_app",
    tag = "installations",
    params(InstallationPath),
    responses(
        (status = 200, description = "The installation, revoked (`revoked_at` set)", body = Installation),
        (status = 409, description = "It is uninstalled already", body = Problem, content_type = PROBLEM_JSON),
    ),
)]
pub async fn uninstall(
    State(s): State<AppState>,
    Path((app, id)): Path<(String, String)>,
) -> Result<Json<Installation>, Problem> {
    let inst = installation_in_path(&s, &app, &id).await?;
    if inst.revoked_at.is_some() {
        return Err(Problem::conflict(format!(
            "installation {id} is already uninstalled"
        )));
    }
    Ok(Json(uninstall_with_events(&s, &inst).await?))
}

/// Uninstalls with its lifecycle events (also `apps.uninstall` and a last `auth.revoke`).
pub(crate) async fn uninstall_with_events(
    s: &AppState,
    inst: &Installation,
) -> Result<Installation, tidings_store::StoreError> {
    // Its lifecycle events (`tokens_revoked`, and `app_uninstalled` when nothing of it is
    // left in the team) are published in the uninstall's own transaction, while the
    // installation can still authorize them.
    let done = s
        .store
        .uninstall(&inst.app_id, &inst.id, &s.publish_policy)
        .await;
    // Its RTM connections here say goodbye now (other nodes' within their re-check).
    s.rtm.recheck_tokens();
    done
}

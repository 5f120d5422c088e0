//! Operator API: configuration tokens for developers (App Manifest API) and the owners
//! and manifest of an app.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use tidings_core::ids::IdKind;

use super::apps::app_in_path;
use super::openapi::AppPath;
use super::validate;
use crate::error::Problem;
use crate::extract::ApiJson;
use crate::state::AppState;
use crate::webapi::tooling;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewConfigToken {
    #[schema(pattern = "^T[A-Z0-9]{2,30}$", example = "T0ACME")]
    team_id: String,
    /// A (human) member of the team: apps the token creates are owned by this user.
    #[schema(pattern = "^[UW][A-Z0-9]{2,30}$", example = "U0ALICE")]
    user_id: String,
}

/// A new configuration token pair, shown only here.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedConfigToken {
    /// `xoxe.xoxp-1-…`: the access token for `apps.manifest.*`.
    token: String,
    /// `xoxe-1-…`: exchanged once by `tooling.tokens.rotate` for a new pair.
    refresh_token: String,
    team_id: String,
    user_id: String,
    /// Issued at (Unix seconds).
    iat: i64,
    /// When the access token expires (Unix seconds).
    exp: i64,
}

#[utoipa::path(
    post, path = "/config_tokens", operation_id = "create_config_token", tag = "apps",
    request_body = NewConfigToken,
    responses(
        (status = 201, description = "The pair, shown once", body = CreatedConfigToken),
        (status = 404, description = "The user is not a member of the team", body = Problem, content_type = super::openapi::PROBLEM_JSON),
    ),
)]
pub async fn create(
    State(s): State<AppState>,
    ApiJson(b): ApiJson<NewConfigToken>,
) -> Result<(StatusCode, Json<CreatedConfigToken>), Problem> {
    validate::field_id(IdKind::Team, "team_id", &b.team_id)?;
    validate::field_id(IdKind::User, "user_id", &b.user_id)?;
    let pair = tooling::new_pair(&s, &b.team_id, &b.user_id);
    let t = s.store.create_config_token(pair.record).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedConfigToken {
            token: pair.token,
            refresh_token: pair.refresh_token,
            team_id: t.team_id,
            user_id: t.user_id,
            iat: t.created_at,
            exp: t.expires_at,
        }),
    ))
}

/// Who owns an app, and its manifest.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AppManifestView {
    app_id: String,
    /// Users who created the app with a configuration token (empty: operator-made).
    owners: Vec<String>,
    /// Deleted through `apps.manifest.delete` (uninstalled everywhere).
    deleted: bool,
    /// What `apps.manifest.export` gives its owners.
    #[schema(value_type = Object)]
    manifest: serde_json::Value,
}

#[utoipa::path(
    get, path = "/apps/{app}/manifest", operation_id = "get_app_manifest", tag = "apps",
    params(AppPath),
    responses((status = 200, description = "The app's owners and manifest", body = AppManifestView)),
)]
pub async fn get_manifest(
    State(s): State<AppState>,
    Path(app): Path<String>,
) -> Result<Json<AppManifestView>, Problem> {
    let a = app_in_path(&s, &app).await?;
    let owners = s.store.app_owners(&a.id).await?;
    let deleted = s
        .store
        .app_manifest(&a.id)
        .await?
        .is_some_and(|m| m.deleted);
    let manifest = crate::webapi::exported_manifest(&s, &a).await?;
    Ok(Json(AppManifestView {
        app_id: a.id,
        owners,
        deleted,
        manifest,
    }))
}

/// Owners of every app that has any.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AppOwners {
    /// App id → the users who own it.
    owners: std::collections::BTreeMap<String, Vec<String>>,
}

#[utoipa::path(
    get, path = "/app_owners", operation_id = "list_app_owners", tag = "apps",
    responses((status = 200, description = "The owners of every app created with a configuration token", body = AppOwners)),
)]
pub async fn list_owners(State(s): State<AppState>) -> Result<Json<AppOwners>, Problem> {
    let mut owners: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (app, user) in s.store.list_app_owners().await? {
        owners.entry(app).or_default().push(user);
    }
    Ok(Json(AppOwners { owners }))
}

//! The App Manifest API (`apps.manifest.validate|create|update|export|delete`, issue 23):
//! a developer holding a configuration token manages the apps they own from a manifest.
//!
//! The rules a manifest must pass are `tidings_core::manifest`'s; this file adds what
//! needs the server (which scopes exist, the SSRF policy, redirect URL syntax), checks
//! the caller's token and ownership, and applies a manifest with the same steps the
//! operator API takes (a Request URL is verified before anything is written: a manifest
//! whose URL fails creates or changes nothing).

use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use tidings_core::ids::IdKind;
use tidings_core::manifest::{self, Manifest, ManifestError, Rules};
use tidings_core::token;
use tidings_store::manifests::ConfigToken;
use tidings_store::oauth::OAuthClientUpdate;
use tidings_store::{App, AppUpdate, PageRequest, StoreError};

use super::{authenticate_token, Params};
use crate::error::SlackError;
use crate::state::AppState;

/// The methods a configuration token may call (and no other token may).
pub const METHODS: &[&str] = &[
    "apps.manifest.validate",
    "apps.manifest.create",
    "apps.manifest.update",
    "apps.manifest.export",
    "apps.manifest.delete",
];

/// The live configuration token a presented token is; any other token (even a good one)
/// is `not_allowed_token_type`.
pub async fn authenticate_config(s: &AppState, presented: &str) -> Result<ConfigToken, SlackError> {
    if let Some(ct) = s.store.config_token(&token::hash(presented)).await? {
        if ct.expires_at <= crate::oauth::now() {
            return Err(SlackError::new("token_expired"));
        }
        return Ok(ct);
    }
    authenticate_token(s, presented).await?;
    Err(SlackError::new("not_allowed_token_type"))
}

/// The caller's configuration token (authenticated before the body when it could be).
async fn caller(s: &AppState, p: &Params) -> Result<ConfigToken, SlackError> {
    let presented = p.token().ok_or(SlackError::new("not_authed"))?;
    if let Some((t, ct)) = &p.config {
        if t == presented {
            return Ok(ct.clone());
        }
    }
    authenticate_config(s, presented).await
}

/// Slack's answer to a manifest that does not pass.
fn invalid(errors: Vec<ManifestError>) -> Response {
    axum::Json(json!({"ok": false, "error": "invalid_manifest", "errors": errors})).into_response()
}

/// Runs `f` with the rules this server applies.
fn with_rules<T>(s: &AppState, f: impl FnOnce(&Rules) -> T) -> T {
    let d = &s.config.delivery;
    let policy = tidings_delivery::ssrf::TargetPolicy {
        allow_private: d.allow_private_targets.unwrap_or(false),
        allow_loopback: d.allow_loopback_targets.unwrap_or(s.dev),
    };
    let known = |sc: &str| crate::oauth::scopes::describe(sc).is_some();
    let request_url = move |u: &str| -> Option<String> {
        if let Err(p) = crate::admin::validate::request_url(u) {
            return Some(p.errors.first().map_or(p.detail, |e| e.message.clone()));
        }
        match url::Url::parse(u) {
            Ok(url) => tidings_delivery::ssrf::check_url(&url, policy).err(),
            Err(e) => Some(format!("is not a URL: {e}")),
        }
    };
    let redirect = |u: &str| {
        (!crate::oauth::redirect::valid_registration(u)).then(|| {
            format!(
                "must match {}",
                crate::oauth::redirect::REGISTRATION_PATTERN
            )
        })
    };
    f(&Rules {
        catalog: &s.catalog,
        known_scope: &known,
        request_url: &request_url,
        redirect_url: &redirect,
    })
}

/// The `manifest` parameter, checked.
fn manifest_param(
    s: &AppState,
    p: &Params,
) -> Result<Result<Manifest, Vec<ManifestError>>, SlackError> {
    let text = p
        .get("manifest")
        .ok_or(SlackError::new("invalid_arguments"))?;
    Ok(with_rules(s, |r| manifest::parse(text, r)))
}

/// The app named by `app_id`, if the caller owns it and it was not deleted
/// (`invalid_app_id` otherwise, whether it exists or not).
async fn owned_app(s: &AppState, p: &Params, ct: &ConfigToken) -> Result<App, SlackError> {
    let id = p
        .get("app_id")
        .filter(|a| !a.is_empty())
        .ok_or(SlackError::new("invalid_app_id"))?;
    let not_found = || SlackError::new("invalid_app_id");
    if tidings_core::ids::check(IdKind::App, id).is_err() {
        return Err(not_found());
    }
    let app = s.store.get_app(id).await?.ok_or_else(not_found)?;
    if !s.store.app_owners(id).await?.contains(&ct.user_id) {
        return Err(not_found());
    }
    if s.store.app_manifest(id).await?.is_some_and(|m| m.deleted) {
        return Err(not_found());
    }
    Ok(app)
}

/// `apps.manifest.validate`: the manifest's problems, or `ok`.
pub async fn validate(s: &AppState, p: &Params) -> Result<Response, SlackError> {
    let ct = caller(s, p).await?;
    if p.get("app_id").is_some_and(|a| !a.is_empty()) {
        owned_app(s, p, &ct).await?;
    }
    Ok(match manifest_param(s, p)? {
        Ok(_) => axum::Json(json!({"ok": true})).into_response(),
        Err(errors) => invalid(errors),
    })
}

/// Sends the `url_verification` challenge; the failure as Slack reports it.
async fn verify(s: &AppState, app: &App, url: &str) -> Result<(), Response> {
    let id = format!("msg_verify_{}", token::random_hex(8));
    let signer = tidings_delivery::http::Signer::for_app(app, &id);
    s.engine
        .sender
        .verify(url, &app.verification_token, &signer)
        .await
        .map_err(|why| {
            tracing::info!(app = %app.id, url, reason = %why, "manifest request URL verification failed");
            invalid(vec![ManifestError {
                message: format!(
                    "Your URL didn't respond with the value of the challenge parameter: {why}"
                ),
                pointer: "/settings/event_subscriptions/request_url".into(),
            }])
        })
}

fn oauth_settings(m: &Manifest) -> OAuthClientUpdate {
    OAuthClientUpdate {
        redirect_urls: Some(m.redirect_urls.clone()),
        token_rotation_enabled: Some(m.token_rotation),
        org_deploy_enabled: Some(m.org_deploy),
    }
}

/// `apps.manifest.create`: a new app owned by the caller, with its credentials.
pub async fn create(s: &AppState, p: &Params) -> Result<Response, SlackError> {
    let ct = caller(s, p).await?;
    let m = match manifest_param(s, p)? {
        Ok(m) => m,
        Err(errors) => return Ok(invalid(errors)),
    };
    let mut app = App {
        id: tidings_core::ids::generate(IdKind::App),
        name: m.name.clone(),
        request_url: m.request_url.clone(),
        request_url_verified: false,
        socket_mode: m.socket_mode,
        bot_events: m.bot_events.clone(),
        user_events: m.user_events.clone(),
        event_shape: Default::default(),
        signing_secret: token::random_hex(16),
        verification_token: token::random_secret()[..24].to_string(),
        events_enabled: true,
        disabled_reason: None,
        disabled_at: None,
        created_at: 0,
        version: 0,
        enabled_at_ms: None,
        // Every app can be switched to Standard Webhooks by the operator.
        webhook_secret: Some(tidings_core::signing::standard::new_secret()),
        webhook_signing_key: Some(tidings_core::signing::standard::new_signing_key()),
        ..App::default()
    };
    if let Some(url) = app.request_url.clone() {
        if let Err(r) = verify(s, &app, &url).await {
            return Ok(r);
        }
        app.request_url_verified = true;
    }
    let app = s.store.create_app(app).await?;
    let secret = crate::admin::new_client_secret(s, &app.id)
        .await
        .map_err(|_| SlackError::new("internal_error"))?;
    let client = s
        .store
        .update_oauth_client(&app.id, oauth_settings(&m))
        .await?;
    s.store
        .put_app_manifest(&app.id, &m.raw.to_string(), Some(&ct.user_id))
        .await?;
    let authorize = crate::oauth::redirect::with_query(
        &format!("{}/oauth/v2/authorize", s.public_url),
        &[
            ("client_id", &client.client_id),
            ("scope", &m.bot_scopes.join(",")),
            ("user_scope", &m.user_scopes.join(",")),
        ],
    );
    Ok(axum::Json(json!({
        "ok": true,
        "app_id": app.id,
        "credentials": {
            "client_id": client.client_id,
            "client_secret": secret,
            "verification_token": app.verification_token,
            "signing_secret": app.signing_secret,
        },
        "oauth_authorize_url": authorize,
    }))
    .into_response())
}

/// The scopes a stored manifest requests (bot and user), none without one.
fn stored_scopes(raw: Option<&Value>) -> Vec<String> {
    let Some(raw) = raw else { return Vec::new() };
    ["/oauth_config/scopes/bot", "/oauth_config/scopes/user"]
        .iter()
        .filter_map(|ptr| raw.pointer(ptr).and_then(Value::as_array))
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

/// `apps.manifest.update`: the app becomes what the manifest says. New scopes take effect
/// for installations when they are re-authorized (`permissions_updated`); subscriptions
/// change for new events at once.
pub async fn update(s: &AppState, p: &Params) -> Result<Response, SlackError> {
    let ct = caller(s, p).await?;
    let app = owned_app(s, p, &ct).await?;
    let m = match manifest_param(s, p)? {
        Ok(m) => m,
        Err(errors) => return Ok(invalid(errors)),
    };
    let mut u = AppUpdate {
        name: Some(m.name.clone()),
        socket_mode: Some(m.socket_mode),
        bot_events: Some(m.bot_events.clone()),
        user_events: Some(m.user_events.clone()),
        ..AppUpdate::default()
    };
    let mut verified_now = false;
    if m.request_url != app.request_url {
        if let Some(url) = &m.request_url {
            if let Err(r) = verify(s, &app, url).await {
                return Ok(r);
            }
            verified_now = true;
        }
        u.expect_request_url = Some(app.request_url.clone());
        u.request_url_verified = Some(m.request_url.is_some());
        u.request_url = Some(m.request_url.clone());
    }
    let updated = match s.store.update_app(&app.id, u).await {
        Err(StoreError::Stale(_)) => return Err(SlackError::new("app_modified_concurrently")),
        other => other?,
    };
    if s.store.oauth_client(&app.id).await?.is_none() {
        crate::admin::new_client_secret(s, &app.id)
            .await
            .map_err(|_| SlackError::new("internal_error"))?;
    }
    s.store
        .update_oauth_client(&app.id, oauth_settings(&m))
        .await?;
    let before = s.store.app_manifest(&app.id).await?;
    let old: Vec<String> = stored_scopes(
        before
            .and_then(|b| serde_json::from_str::<Value>(&b.manifest).ok())
            .as_ref(),
    );
    let permissions_updated = stored_scopes(Some(&m.raw))
        .iter()
        .any(|sc| !old.contains(sc));
    s.store
        .put_app_manifest(&app.id, &m.raw.to_string(), None)
        .await?;
    crate::admin::app_changed(s, &app, &updated, verified_now).await?;
    Ok(axum::Json(json!({
        "ok": true,
        "app_id": app.id,
        "permissions_updated": permissions_updated,
    }))
    .into_response())
}

/// `apps.manifest.export`: the manifest the app is now (see `tidings_core::manifest::export`).
pub async fn export(s: &AppState, p: &Params) -> Result<Response, SlackError> {
    let ct = caller(s, p).await?;
    let app = owned_app(s, p, &ct).await?;
    let manifest = exported(s, &app).await?;
    Ok(axum::Json(json!({"ok": true, "manifest": manifest})).into_response())
}

/// The manifest an app exports (also the operator API's `GET /apps/{app}/manifest`).
pub async fn exported(s: &AppState, app: &App) -> Result<Value, StoreError> {
    let stored = s
        .store
        .app_manifest(&app.id)
        .await?
        .and_then(|m| serde_json::from_str::<Value>(&m.manifest).ok())
        .filter(Value::is_object);
    let client = s.store.oauth_client(&app.id).await?;
    let state = manifest::AppState {
        name: app.name.clone(),
        request_url: app.request_url.clone(),
        socket_mode: app.socket_mode,
        bot_events: app.bot_events.clone(),
        user_events: app.user_events.clone(),
        redirect_urls: client
            .as_ref()
            .map(|c| c.redirect_urls.clone())
            .unwrap_or_default(),
        token_rotation: client.as_ref().is_some_and(|c| c.token_rotation_enabled),
        org_deploy: client.as_ref().is_some_and(|c| c.org_deploy_enabled),
    };
    Ok(with_rules(s, |r| manifest::export(stored, &state, r)))
}

/// `apps.manifest.delete`: uninstalls the app everywhere (each with its lifecycle events,
/// `app_uninstalled` included), revokes its app-level tokens, and removes it from the
/// Manifest API.
pub async fn delete(s: &AppState, p: &Params) -> Result<Response, SlackError> {
    let ct = caller(s, p).await?;
    let app = owned_app(s, p, &ct).await?;
    let mut page = PageRequest::default();
    loop {
        let listed = s.store.list_installations(&app.id, &page).await?;
        for inst in listed.items.iter().filter(|i| i.revoked_at.is_none()) {
            match crate::admin::installations::uninstall_with_events(s, inst).await {
                Ok(_) | Err(StoreError::Conflict(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        match listed.next_cursor {
            Some(c) => page.after = tidings_store::Cursor::decode(&c),
            None => break,
        }
    }
    for t in s.store.list_app_tokens(&app.id).await? {
        if t.revoked_at.is_none() {
            s.store.revoke_app_token(&app.id, &t.id).await?;
            crate::revocation::app_token_revoked(s, &app.id, &t.id).await;
        }
    }
    s.store.mark_app_deleted(&app.id).await?;
    Ok(axum::Json(json!({"ok": true})).into_response())
}

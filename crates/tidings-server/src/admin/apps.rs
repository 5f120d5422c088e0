//! Operator API: apps, their subscriptions, secrets and app-level tokens.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Deserializer};
use tidings_core::ids::IdKind;
use tidings_core::token::{self, TokenKind};
use tidings_store::{App, AppToken, EventShape, NewAppToken, Page};

use super::validate;
use crate::error::Problem;
use crate::extract::{ApiJson, Paging};
use crate::state::AppState;

/// App-level token scopes Tidings knows.
pub const APP_TOKEN_SCOPES: &[&str] = &["connections:write", "authorizations:read"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewApp {
    id: Option<String>,
    name: String,
    request_url: Option<String>,
    #[serde(default)]
    socket_mode: bool,
    #[serde(default)]
    bot_events: Vec<String>,
    #[serde(default)]
    user_events: Vec<String>,
    event_shape: Option<String>,
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppPatch {
    name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    request_url: Option<Option<String>>,
    socket_mode: Option<bool>,
    bot_events: Option<Vec<String>>,
    user_events: Option<Vec<String>>,
    event_shape: Option<String>,
}

/// Checks a subscription list against the catalog: every type must exist and be allowed
/// on that side (`star_added` is user-only, so it cannot be in `bot_events`).
fn subscriptions(
    s: &AppState,
    field: &str,
    list: &[String],
    bot: bool,
) -> Result<Vec<String>, Problem> {
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for name in list {
        let Some(t) = s.catalog.get(name) else {
            return Err(Problem::invalid_field(
                field,
                format!("unknown event type {name:?}"),
            ));
        };
        let allowed = if bot { t.bot } else { t.user };
        if !allowed {
            return Err(Problem::invalid_field(
                field,
                format!(
                    "event type {name:?} cannot be subscribed to in {field} (it is {} only)",
                    if bot { "user_events" } else { "bot_events" }
                ),
            ));
        }
        if !out.contains(name) {
            out.push(name.clone());
        }
    }
    Ok(out)
}

fn event_shape(v: &str) -> Result<EventShape, Problem> {
    EventShape::parse(v).ok_or_else(|| {
        Problem::invalid_field("event_shape", "must be \"authorizations\" or \"legacy\"")
    })
}

/// Sends a signed `url_verification` to the app's URL; a 422 with what came back if the
/// answer does not echo the challenge.
async fn verify(s: &AppState, app: &App, url: &str) -> Result<(), Problem> {
    s.engine
        .sender
        .verify(url, &app.verification_token, &app.signing_secret)
        .await
        .map_err(|why| {
            tracing::info!(app = %app.id, url, reason = %why, "request URL verification failed");
            Problem::unprocessable(
                "request_url_verification_failed",
                format!("request_url {url} failed verification: {why}"),
            )
            .with_field("request_url", why)
        })
}

pub async fn create_app(
    State(s): State<AppState>,
    ApiJson(b): ApiJson<NewApp>,
) -> Result<(StatusCode, Json<App>), Problem> {
    let mut app = App {
        id: validate::id_or_new(IdKind::App, b.id)?,
        name: validate::name("name", &b.name)?,
        request_url: b
            .request_url
            .as_deref()
            .map(validate::request_url)
            .transpose()?,
        request_url_verified: false,
        socket_mode: b.socket_mode,
        bot_events: subscriptions(&s, "bot_events", &b.bot_events, true)?,
        user_events: subscriptions(&s, "user_events", &b.user_events, false)?,
        event_shape: b
            .event_shape
            .as_deref()
            .map(event_shape)
            .transpose()?
            .unwrap_or_default(),
        signing_secret: token::random_hex(16),
        verification_token: token::random_secret()[..24].to_string(),
        events_enabled: true,
        disabled_reason: None,
        disabled_at: None,
        created_at: 0,
    };
    if let Some(url) = app.request_url.clone() {
        verify(&s, &app, &url).await?;
        app.request_url_verified = true;
    }
    Ok((StatusCode::CREATED, Json(s.store.create_app(app).await?)))
}

pub async fn list_apps(
    State(s): State<AppState>,
    Paging(p): Paging,
) -> Result<Json<Page<App>>, Problem> {
    Ok(Json(s.store.list_apps(&p).await?))
}

/// The app in the path, or 404.
pub async fn app_in_path(s: &AppState, app: &str) -> Result<App, Problem> {
    validate::path_id(IdKind::App, "app", app)?;
    s.store
        .get_app(app)
        .await?
        .ok_or_else(|| Problem::not_found(format!("app {app} does not exist")))
}

pub async fn get_app(
    State(s): State<AppState>,
    Path(app): Path<String>,
) -> Result<Json<App>, Problem> {
    Ok(Json(app_in_path(&s, &app).await?))
}

pub async fn update_app(
    State(s): State<AppState>,
    Path(app): Path<String>,
    ApiJson(p): ApiJson<AppPatch>,
) -> Result<Json<App>, Problem> {
    let mut a = app_in_path(&s, &app).await?;
    if let Some(n) = p.name {
        a.name = validate::name("name", &n)?;
    }
    let mut verified_now = false;
    if let Some(url) = p.request_url {
        let url = url.as_deref().map(validate::request_url).transpose()?;
        if url != a.request_url {
            // A new URL is saved only once it answers the challenge; the old one stays otherwise.
            if let Some(u) = &url {
                verify(&s, &a, u).await?;
                verified_now = true;
            }
            a.request_url_verified = url.is_some();
            a.request_url = url;
        }
    }
    let was_socket_mode = a.socket_mode;
    if let Some(m) = p.socket_mode {
        a.socket_mode = m;
    }
    if let Some(e) = p.bot_events {
        a.bot_events = subscriptions(&s, "bot_events", &e, true)?;
    }
    if let Some(e) = p.user_events {
        a.user_events = subscriptions(&s, "user_events", &e, false)?;
    }
    if let Some(shape) = p.event_shape {
        a.event_shape = event_shape(&shape)?;
    }
    let a = s.store.update_app(a).await?;
    if was_socket_mode && !a.socket_mode {
        // Socket Mode turned off: tell the app's sockets and close them.
        let frame = tidings_core::socket_mode::disconnect(
            tidings_core::socket_mode::DisconnectReason::LinkDisabled,
            "tidings",
        );
        s.engine.hub.close_app(&a.id, frame);
    }
    if verified_now || was_socket_mode != a.socket_mode {
        s.store.wake_app(&a.id).await?;
        s.engine.dispatcher.wake([a.id.clone()]);
    }
    Ok(Json(a))
}

pub async fn rotate_signing_secret(
    State(s): State<AppState>,
    Path(app): Path<String>,
) -> Result<Json<App>, Problem> {
    let mut a = app_in_path(&s, &app).await?;
    a.signing_secret = token::random_hex(16);
    Ok(Json(s.store.update_app(a).await?))
}

pub async fn enable_events(
    State(s): State<AppState>,
    Path(app): Path<String>,
) -> Result<Json<App>, Problem> {
    let mut a = app_in_path(&s, &app).await?;
    a.events_enabled = true;
    a.disabled_reason = None;
    a.disabled_at = None;
    s.engine.health.reset(&a.id);
    let a = s.store.update_app(a).await?;
    s.engine.dispatcher.wake([a.id.clone()]);
    Ok(Json(a))
}

/// Verifies the current Request URL again (the "Retry" button).
pub async fn verify_request_url(
    State(s): State<AppState>,
    Path(app): Path<String>,
) -> Result<Json<App>, Problem> {
    let mut a = app_in_path(&s, &app).await?;
    let url = a.request_url.clone().ok_or_else(|| {
        Problem::unprocessable("no_request_url", "the app has no request_url to verify")
    })?;
    verify(&s, &a, &url).await?;
    a.request_url_verified = true;
    let a = s.store.update_app(a).await?;
    s.store.wake_app(&a.id).await?;
    s.engine.dispatcher.wake([a.id.clone()]);
    Ok(Json(a))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    scopes: Vec<String>,
}

pub async fn create_app_token(
    State(s): State<AppState>,
    Path(app): Path<String>,
    ApiJson(b): ApiJson<NewToken>,
) -> Result<(StatusCode, Json<serde_json::Value>), Problem> {
    let a = app_in_path(&s, &app).await?;
    let scopes = validate::scopes("scopes", &b.scopes)?;
    if scopes.is_empty() {
        return Err(Problem::invalid_field(
            "scopes",
            format!("must name at least one of {}", APP_TOKEN_SCOPES.join(", ")),
        ));
    }
    if let Some(bad) = scopes
        .iter()
        .find(|sc| !APP_TOKEN_SCOPES.contains(&sc.as_str()))
    {
        return Err(Problem::invalid_field(
            "scopes",
            format!(
                "{bad:?} is not an app-level scope; use {}",
                APP_TOKEN_SCOPES.join(", ")
            ),
        ));
    }
    let text = token::generate(TokenKind::App, Some(&a.id));
    let t = s
        .store
        .create_app_token(NewAppToken {
            id: tidings_core::ids::generate(IdKind::AppToken),
            app_id: a.id,
            scopes,
            token_hash: token::hash(&text),
        })
        .await?;
    let mut v = serde_json::to_value(&t).map_err(|e| Problem::bad_request(e.to_string()))?;
    v["token"] = text.into();
    Ok((StatusCode::CREATED, Json(v)))
}

pub async fn list_app_tokens(
    State(s): State<AppState>,
    Path(app): Path<String>,
) -> Result<Json<serde_json::Value>, Problem> {
    app_in_path(&s, &app).await?;
    let items = s.store.list_app_tokens(&app).await?;
    Ok(Json(
        serde_json::json!({"items": items, "next_cursor": null}),
    ))
}

pub async fn revoke_app_token(
    State(s): State<AppState>,
    Path((app, id)): Path<(String, String)>,
) -> Result<Json<AppToken>, Problem> {
    app_in_path(&s, &app).await?;
    validate::path_id(IdKind::AppToken, "id", &id)?;
    let t = s.store.revoke_app_token(&app, &id).await?;
    // Answer only once nothing the token opened is still receiving.
    crate::revocation::app_token_revoked(&s, &app, &id).await;
    Ok(Json(t))
}

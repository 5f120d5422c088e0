//! Operator API: apps, their subscriptions, secrets and app-level tokens.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Deserializer, Serialize};
use tidings_core::ids::IdKind;
use tidings_core::signing::standard;
use tidings_core::token::{self, TokenKind};
use tidings_store::{
    App, AppToken, AppUpdate, EventShape, NewAppToken, Page, SigningScheme, StoreError, WebhookKeys,
};

use super::openapi::{AppPath, BotEventType, PageParams, UserEventType, PROBLEM_JSON};
use super::validate;
use crate::error::Problem;
use crate::extract::{ApiJson, Paging};
use crate::state::AppState;

/// App-level token scopes Tidings knows.
pub const APP_TOKEN_SCOPES: &[&str] = &["connections:write", "authorizations:read", "events:read"];

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApp {
    /// Your own id for it; generated when absent.
    #[schema(pattern = "^A[A-Z0-9]{2,30}$", example = "A0HELLO")]
    id: Option<String>,
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = "[^\\t\\n\\u000b\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]",
        example = "Hello"
    )]
    name: String,
    /// Verified with a signed `url_verification` before it is saved (422 when it fails).
    #[schema(
        max_length = 2048,
        pattern = "^https?://[^/?#\\t\\n\\u000b\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]"
    )]
    request_url: Option<String>,
    #[serde(default)]
    socket_mode: bool,
    /// Event types from the catalog that bots may receive.
    #[serde(default)]
    #[schema(value_type = Vec<BotEventType>)]
    bot_events: Vec<String>,
    /// Event types from the catalog that installing users may receive.
    #[serde(default)]
    #[schema(value_type = Vec<UserEventType>)]
    user_events: Vec<String>,
    /// `authorizations` (default) or `legacy`.
    #[schema(value_type = Option<EventShape>)]
    event_shape: Option<String>,
    /// How HTTP deliveries are signed: `slack_v0` (default) or `standard_webhooks`.
    #[schema(value_type = Option<SigningScheme>)]
    signing_scheme: Option<String>,
    /// OAuth redirect URLs (see `PATCH /apps/{app}/oauth`).
    #[schema(inline, max_items = 20, value_type = Option<Vec<String>>, max_length = 2048,
        pattern = "^https?://[A-Za-z0-9-]+(\\.[A-Za-z0-9-]+)*(:[0-9]{1,5})?(/[A-Za-z0-9_~-][A-Za-z0-9._~-]*)*/?$")]
    redirect_urls: Option<Vec<String>>,
    /// Access tokens expire and come with refresh tokens.
    token_rotation_enabled: Option<bool>,
    /// The app may be installed org-wide.
    org_deploy_enabled: Option<bool>,
}

/// A new app with its OAuth client and `client_secret`, shown only here.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedApp {
    #[serde(flatten)]
    app: App,
    client_id: String,
    client_secret: String,
    redirect_urls: Vec<String>,
    token_rotation_enabled: bool,
    org_deploy_enabled: bool,
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// Any field of [`NewApp`] but `id`; absent fields stay as they are.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppPatch {
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = "[^\\t\\n\\u000b\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]"
    )]
    name: Option<String>,
    /// A new URL is verified first (422 when it fails, and the old one stays); `null`
    /// removes it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, max_length = 2048, pattern = "^https?://[^/?#\\t\\n\\u000b\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]")]
    request_url: Option<Option<String>>,
    socket_mode: Option<bool>,
    #[schema(value_type = Option<Vec<BotEventType>>)]
    bot_events: Option<Vec<String>>,
    #[schema(value_type = Option<Vec<UserEventType>>)]
    user_events: Option<Vec<String>>,
    #[schema(value_type = Option<EventShape>)]
    event_shape: Option<String>,
    /// The OAuth client's registered redirect targets (as `PATCH /apps/{app}/oauth`,
    /// same validation); written with the rest, under the same `If-Match`.
    #[schema(inline, max_items = 20, value_type = Option<Vec<String>>, max_length = 2048,
        pattern = "^https?://[A-Za-z0-9-]+(\\.[A-Za-z0-9-]+)*(:[0-9]{1,5})?(/[A-Za-z0-9_~-][A-Za-z0-9._~-]*)*/?$")]
    redirect_urls: Option<Vec<String>>,
    /// Access tokens expire (`[oauth] access_token_ttl`) and come with refresh tokens.
    token_rotation_enabled: Option<bool>,
    /// The app may be installed org-wide by an org admin.
    org_deploy_enabled: Option<bool>,
    /// `slack_v0` or `standard_webhooks`.
    #[schema(value_type = Option<SigningScheme>)]
    signing_scheme: Option<String>,
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

fn signing_scheme(v: &str) -> Result<SigningScheme, Problem> {
    SigningScheme::parse(v).ok_or_else(|| {
        Problem::invalid_field(
            "signing_scheme",
            "must be \"slack_v0\" or \"standard_webhooks\"",
        )
    })
}

fn event_shape(v: &str) -> Result<EventShape, Problem> {
    EventShape::parse(v).ok_or_else(|| {
        Problem::invalid_field("event_shape", "must be \"authorizations\" or \"legacy\"")
    })
}

/// Sends a signed `url_verification` to the app's URL; a 422 with what came back if the
/// answer does not echo the challenge.
async fn verify(s: &AppState, app: &App, url: &str) -> Result<(), Problem> {
    let id = format!("msg_verify_{}", &token::random_hex(8));
    let signer = tidings_delivery::http::Signer::for_app(app, &id);
    s.engine
        .sender
        .verify(url, &app.verification_token, &signer)
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

#[utoipa::path(
    post, path = "/apps", operation_id = "create_app", tag = "apps",
    request_body = NewApp,
    responses(
        (status = 201, description = "The app, with its `signing_secret`, `verification_token` \
         and OAuth `client_id` / `client_secret`", body = CreatedApp,
         links(
             ("GetApp" = (operation_id = "get_app", parameters(("app" = "$response.body#/id")))),
             ("UpdateApp" = (operation_id = "update_app", parameters(("app" = "$response.body#/id")))),
             ("CreateAppToken" = (operation_id = "create_app_token", parameters(("app" = "$response.body#/id")))),
             ("ListDeliveries" = (operation_id = "list_deliveries", parameters(("app" = "$response.body#/id")))),
             ("VerifyRequestUrl" = (operation_id = "verify_request_url", parameters(("app" = "$response.body#/id")))),
         )),
        (status = 409, description = "The id exists", body = Problem, content_type = PROBLEM_JSON),
        (status = 422, description = "The Request URL failed verification", body = Problem, content_type = PROBLEM_JSON),
    ),
)]
pub async fn create_app(
    State(s): State<AppState>,
    ApiJson(b): ApiJson<NewApp>,
) -> Result<(StatusCode, Json<CreatedApp>), Problem> {
    let oauth = super::oauth_clients::settings(super::oauth_clients::OAuthSettings {
        redirect_urls: b.redirect_urls,
        token_rotation_enabled: b.token_rotation_enabled,
        org_deploy_enabled: b.org_deploy_enabled,
    })?;
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
        version: 0,
        enabled_at_ms: None,
        signing_scheme: b
            .signing_scheme
            .as_deref()
            .map(signing_scheme)
            .transpose()?
            .unwrap_or_default(),
        webhook_secret: Some(standard::new_secret()),
        webhook_signing_key: Some(standard::new_signing_key()),
        ..App::default()
    };
    if let Some(url) = app.request_url.clone() {
        verify(&s, &app, &url).await?;
        app.request_url_verified = true;
    }
    let app = s.store.create_app(app).await?;
    let created = super::oauth_clients::rotate(&s, &app.id).await?;
    let client = s.store.update_oauth_client(&app.id, oauth).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedApp {
            app,
            client_id: client.client_id,
            client_secret: created.client_secret,
            redirect_urls: client.redirect_urls,
            token_rotation_enabled: client.token_rotation_enabled,
            org_deploy_enabled: client.org_deploy_enabled,
        }),
    ))
}

#[utoipa::path(
    get, path = "/apps", operation_id = "list_apps", tag = "apps",
    params(PageParams),
    responses((status = 200, description = "One page of apps", body = Page<App>)),
)]
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

fn unix_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The app's `ETag`: its version, which every write bumps.
fn etag(a: &App) -> String {
    format!("\"{}\"", a.version)
}

/// The app as JSON with its `ETag`.
fn with_etag(a: App) -> Response {
    let tag = etag(&a);
    let mut res = Json(a).into_response();
    if let Ok(v) = HeaderValue::from_str(&tag) {
        res.headers_mut().insert(header::ETAG, v);
    }
    res
}

/// What an `If-Match` asks for: `None` without one (or with `*`: any version of an app
/// that exists); otherwise the version it names, or 412 when it names another than `a`'s.
fn if_match(headers: &HeaderMap, a: &App) -> Result<Option<i64>, Problem> {
    let values: Vec<&HeaderValue> = headers.get_all(header::IF_MATCH).iter().collect();
    if values.is_empty() {
        return Ok(None);
    }
    let current = etag(a);
    let mut any = false;
    for v in values {
        let Ok(text) = v.to_str() else {
            continue;
        };
        for tag in text.split(',').map(str::trim) {
            if tag == "*" {
                any = true;
            } else if tag == current {
                return Ok(Some(a.version));
            }
        }
    }
    if any {
        return Ok(None);
    }
    Err(Problem::precondition_failed(format!(
        "If-Match does not name the app's current version: its ETag is {current}"
    )))
}

#[utoipa::path(
    get, path = "/apps/{app}", operation_id = "get_app", tag = "apps",
    params(AppPath),
    responses((status = 200, description = "The app", body = App,
               headers(("ETag" = String, description = "The app's version; send it back in `If-Match` to PATCH only that version")))),
)]
pub async fn get_app(
    State(s): State<AppState>,
    Path(app): Path<String>,
) -> Result<Response, Problem> {
    Ok(with_etag(app_in_path(&s, &app).await?))
}

/// `If-Match` on PATCH.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct IfMatchHeader {
    /// An `ETag` from GET or PATCH (or `*`): the PATCH applies only to that version of the
    /// app, 412 otherwise.
    #[param(rename = "If-Match")]
    if_match: Option<String>,
}

/// Only the fields the PATCH names are written: a concurrent change to another field
/// (a rotated secret, the health rule's disable) is kept. A new Request URL is written
/// only if the URL it replaces is still the app's once the new one is verified.
#[utoipa::path(
    patch, path = "/apps/{app}", operation_id = "update_app", tag = "apps",
    params(AppPath, IfMatchHeader),
    request_body = AppPatch,
    responses(
        (status = 200, description = "The app", body = App,
         headers(("ETag" = String, description = "The app's new version"))),
        (status = 409, description = "The Request URL changed while the new one was being verified; nothing was written", body = Problem, content_type = PROBLEM_JSON),
        (status = 412, description = "`If-Match` does not name the app's current version; nothing was written", body = Problem, content_type = PROBLEM_JSON),
        (status = 422, description = "The new Request URL failed verification", body = Problem, content_type = PROBLEM_JSON),
    ),
)]
pub async fn update_app(
    State(s): State<AppState>,
    Path(app): Path<String>,
    headers: HeaderMap,
    ApiJson(p): ApiJson<AppPatch>,
) -> Result<Response, Problem> {
    let a = app_in_path(&s, &app).await?;
    let mut u = AppUpdate::default();
    // Everything is validated before If-Match and the (slow) verification.
    if let Some(n) = p.name {
        u.name = Some(validate::name("name", &n)?);
    }
    let new_url = match p.request_url {
        Some(url) => Some(url.as_deref().map(validate::request_url).transpose()?),
        None => None,
    };
    u.socket_mode = p.socket_mode;
    if let Some(e) = p.bot_events {
        u.bot_events = Some(subscriptions(&s, "bot_events", &e, true)?);
    }
    if let Some(e) = p.user_events {
        u.user_events = Some(subscriptions(&s, "user_events", &e, false)?);
    }
    if let Some(shape) = p.event_shape {
        u.event_shape = Some(event_shape(&shape)?);
    }
    let oauth = super::oauth_clients::settings(super::oauth_clients::OAuthSettings {
        redirect_urls: p.redirect_urls,
        token_rotation_enabled: p.token_rotation_enabled,
        org_deploy_enabled: p.org_deploy_enabled,
    })?;
    let oauth_fields = oauth.redirect_urls.is_some()
        || oauth.token_rotation_enabled.is_some()
        || oauth.org_deploy_enabled.is_some();
    if let Some(scheme) = p.signing_scheme {
        let scheme = signing_scheme(&scheme)?;
        if scheme == SigningScheme::StandardWebhooks && a.webhook_secret.is_none() {
            // An app from before Standard Webhooks: its first secret and key.
            u.webhook_keys = Some(WebhookKeys {
                secret: standard::new_secret(),
                signing_key: standard::new_signing_key(),
                ..WebhookKeys::default()
            });
        }
        u.signing_scheme = Some(scheme);
    }
    u.expect_version = if_match(&headers, &a)?;
    if oauth_fields {
        // Apps made before OAuth existed get their client first (as `/apps/{app}/oauth`).
        super::oauth_clients::client_of(&s, &a.id).await?;
        u.oauth = Some(oauth);
    }
    let mut verified_now = false;
    if let Some(url) = new_url.filter(|url| *url != a.request_url) {
        // A new URL is saved only once it answers the challenge; the old one stays otherwise.
        if let Some(new) = &url {
            verify(&s, &a, new).await?;
            verified_now = true;
        }
        // Only over the URL this verification replaced: another PATCH may have set a
        // different one meanwhile.
        u.expect_request_url = Some(a.request_url.clone());
        u.request_url_verified = Some(url.is_some());
        u.request_url = Some(url);
        // A new URL replaces one that answered 410 Gone.
        u.request_url_gone = Some(None);
        u.request_url_gone_at = Some(None);
    }
    let by_version = u.expect_version.is_some();
    let updated = match s.store.update_app(&a.id, u).await {
        Err(StoreError::Stale(_)) if by_version => {
            return Err(Problem::precondition_failed(
                "the app changed since the version If-Match names; nothing was written",
            ))
        }
        Err(StoreError::Stale(_)) => {
            return Err(Problem::conflict(
                "the app's request_url changed while the new one was being verified; nothing was written: read the app and try again",
            ))
        }
        other => other?,
    };
    app_changed(&s, &a, &updated, verified_now).await?;
    Ok(with_etag(updated))
}

/// What follows a change to an app (here and in `apps.manifest.update`): Socket Mode
/// turned off closes the app's sockets; a newly verified URL or a Socket Mode switch
/// makes its pending deliveries due.
pub(crate) async fn app_changed(
    s: &AppState,
    before: &App,
    updated: &App,
    verified_now: bool,
) -> Result<(), StoreError> {
    if before.socket_mode && !updated.socket_mode {
        // Socket Mode turned off: tell the app's sockets and close them.
        let frame = tidings_core::socket_mode::disconnect(
            tidings_core::socket_mode::DisconnectReason::LinkDisabled,
            "tidings",
        );
        s.engine.hub.close_app(&updated.id, frame);
    }
    if verified_now || before.socket_mode != updated.socket_mode {
        s.store.wake_app(&updated.id).await?;
    }
    Ok(())
}

/// Writes only the secret: nothing else the app holds is read or written back.
#[utoipa::path(
    post, path = "/apps/{app}/signing_secret/rotate", operation_id = "rotate_signing_secret",
    tag = "apps",
    params(AppPath),
    responses((status = 200, description = "The app with its new `signing_secret`", body = App)),
)]
pub async fn rotate_signing_secret(
    State(s): State<AppState>,
    Path(app): Path<String>,
) -> Result<Json<App>, Problem> {
    validate::path_id(IdKind::App, "app", &app)?;
    let u = AppUpdate {
        signing_secret: Some(token::random_hex(16)),
        ..AppUpdate::default()
    };
    Ok(Json(s.store.update_app(&app, u).await?))
}

/// The Standard Webhooks secret and ed25519 key rotate together; the previous ones keep
/// signing beside them for `delivery.webhook_secret_grace`. A compare-and-swap on the
/// app's version, so two rotations at once cannot lose a secret receivers may hold.
#[utoipa::path(
    post, path = "/apps/{app}/webhook_secret/rotate", operation_id = "rotate_webhook_secret",
    tag = "apps",
    params(AppPath),
    responses(
        (status = 200, description = "The app with its new `webhook_secret`, `webhook_public_key` \
         and `webhook_previous_until`", body = App),
        (status = 409, description = "The app changed meanwhile; nothing was written", body = Problem, content_type = PROBLEM_JSON),
    ),
)]
pub async fn rotate_webhook_secret(
    State(s): State<AppState>,
    Path(app): Path<String>,
) -> Result<Json<App>, Problem> {
    let a = app_in_path(&s, &app).await?;
    let grace = s.config.delivery.webhook_secret_grace.as_secs() as i64;
    let u = AppUpdate {
        expect_version: Some(a.version),
        webhook_keys: Some(WebhookKeys {
            secret: standard::new_secret(),
            signing_key: standard::new_signing_key(),
            previous_secret: a.webhook_secret.clone(),
            previous_signing_key: a.webhook_signing_key.clone(),
            previous_until: a
                .webhook_secret
                .as_ref()
                .map(|_| unix_now_ms() / 1000 + grace),
        }),
        ..AppUpdate::default()
    };
    match s.store.update_app(&a.id, u).await {
        Err(StoreError::Stale(_)) => Err(Problem::conflict(
            "the app changed while its webhook secret was being rotated; nothing was written: try again",
        )),
        other => Ok(Json(other?)),
    }
}

/// Re-enables event subscriptions after an automatic disable. The health rule's window
/// is cleared first and its disable is a compare-and-swap on the app's version, so a
/// disable decided before this enable cannot undo it.
#[utoipa::path(
    post, path = "/apps/{app}/events/enable", operation_id = "enable_events", tag = "apps",
    params(AppPath),
    responses((status = 200, description = "The app", body = App)),
)]
pub async fn enable_events(
    State(s): State<AppState>,
    Path(app): Path<String>,
) -> Result<Json<App>, Problem> {
    validate::path_id(IdKind::App, "app", &app)?;
    s.engine.health.reset(&app);
    let u = AppUpdate {
        events_enabled: Some(true),
        disabled_reason: Some(None),
        disabled_at: Some(None),
        enabled_at_ms: Some(Some(unix_now_ms())),
        ..AppUpdate::default()
    };
    let a = s.store.update_app(&app, u).await?;
    Ok(Json(a))
}

/// Verifies the current Request URL again (the "Retry" button).
#[utoipa::path(
    post, path = "/apps/{app}/request_url/verify", operation_id = "verify_request_url",
    tag = "apps",
    params(AppPath),
    responses(
        (status = 200, description = "The app, its Request URL verified", body = App),
        (status = 409, description = "The Request URL changed while it was being verified; nothing was written", body = Problem, content_type = PROBLEM_JSON),
        (status = 422, description = "No Request URL, or it failed verification", body = Problem, content_type = PROBLEM_JSON),
    ),
)]
pub async fn verify_request_url(
    State(s): State<AppState>,
    Path(app): Path<String>,
) -> Result<Json<App>, Problem> {
    let a = app_in_path(&s, &app).await?;
    let url = a.request_url.clone().ok_or_else(|| {
        Problem::unprocessable("no_request_url", "the app has no request_url to verify")
    })?;
    verify(&s, &a, &url).await?;
    // Verified is about this URL: written only if it is still the app's.
    // A URL that answered 410 Gone and now answers the challenge again is usable again.
    let u = AppUpdate {
        expect_request_url: Some(Some(url)),
        request_url_verified: Some(true),
        request_url_gone: Some(None),
        request_url_gone_at: Some(None),
        ..AppUpdate::default()
    };
    let a =
        match s.store.update_app(&a.id, u).await {
            Err(StoreError::Stale(_)) => return Err(Problem::conflict(
                "the app's request_url changed while it was being verified; nothing was written",
            )),
            other => other?,
        };
    s.store.wake_app(&a.id).await?;
    Ok(Json(a))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    #[schema(value_type = Vec<AppTokenScope>, min_items = 1)]
    scopes: Vec<String>,
}

/// An app-level token scope ([`APP_TOKEN_SCOPES`]).
#[derive(Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub enum AppTokenScope {
    #[serde(rename = "connections:write")]
    ConnectionsWrite,
    #[serde(rename = "authorizations:read")]
    AuthorizationsRead,
    /// The catch-up feed, `tidings.events.list`.
    #[serde(rename = "events:read")]
    EventsRead,
}

/// A new app-level token: the record, and the token itself, shown only here.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedAppToken {
    #[serde(flatten)]
    record: AppToken,
    /// `xapp-…`
    token: String,
}

/// `{app}` and the token's `{id}` in the path.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct AppTokenPath {
    #[param(pattern = "^A[A-Z0-9]{2,30}$", example = "A0HELLO")]
    app: String,
    #[param(pattern = "^XT[A-Z0-9]{2,30}$")]
    id: String,
}

#[utoipa::path(
    post, path = "/apps/{app}/tokens", operation_id = "create_app_token", tag = "apps",
    params(AppPath),
    request_body = NewToken,
    responses((status = 201, description = "The token, shown once", body = CreatedAppToken,
               links(("RevokeAppToken" = (operation_id = "revoke_app_token", parameters(("app" = "$response.body#/app_id"), ("id" = "$response.body#/id"))))))),
)]
pub async fn create_app_token(
    State(s): State<AppState>,
    Path(app): Path<String>,
    ApiJson(b): ApiJson<NewToken>,
) -> Result<(StatusCode, Json<CreatedAppToken>), Problem> {
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
    Ok((
        StatusCode::CREATED,
        Json(CreatedAppToken {
            record: t,
            token: text,
        }),
    ))
}

/// Not paginated (an app has few tokens): `next_cursor` is always `null`.
#[utoipa::path(
    get, path = "/apps/{app}/tokens", operation_id = "list_app_tokens", tag = "apps",
    params(AppPath),
    responses((status = 200, description = "The app's tokens, revoked ones included", body = Page<AppToken>)),
)]
pub async fn list_app_tokens(
    State(s): State<AppState>,
    Path(app): Path<String>,
) -> Result<Json<Page<AppToken>>, Problem> {
    app_in_path(&s, &app).await?;
    let items = s.store.list_app_tokens(&app).await?;
    Ok(Json(Page {
        items,
        next_cursor: None,
    }))
}

#[utoipa::path(
    delete, path = "/apps/{app}/tokens/{id}", operation_id = "revoke_app_token", tag = "apps",
    params(AppTokenPath),
    responses((status = 200, description = "The token, revoked", body = AppToken)),
)]
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

//! Operator API: an app's OAuth client (issue 21) — its Slack-shaped `client_id`, the
//! `client_secret` (shown only when created or rotated: the store keeps its hash, as it
//! does for tokens), the registered `redirect_urls`, and the switches
//! `token_rotation_enabled` and `org_deploy_enabled`.

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use tidings_core::token;
use tidings_store::oauth::{OAuthClient, OAuthClientUpdate};

use super::apps::app_in_path;
use super::openapi::AppPath;
use crate::error::Problem;
use crate::extract::ApiJson;
use crate::oauth::redirect;
use crate::state::AppState;

/// Redirect URLs an app may register, at most.
const MAX_REDIRECT_URLS: usize = 20;

/// OAuth settings to change; absent fields stay as they are.
#[derive(Deserialize, utoipa::ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct OAuthSettings {
    /// The only redirect targets allowed: absolute http(s) URLs; a `redirect_uri` must
    /// match one's scheme, host and port, and its path or a subdirectory of it.
    #[schema(inline, max_items = 20, value_type = Option<Vec<String>>, max_length = 2048,
        pattern = "^https?://[A-Za-z0-9-]+(\\.[A-Za-z0-9-]+)*(:[0-9]{1,5})?(/[A-Za-z0-9_~-][A-Za-z0-9._~-]*)*/?$")]
    pub redirect_urls: Option<Vec<String>>,
    /// Access tokens expire (`[oauth] access_token_ttl`) and come with refresh tokens.
    pub token_rotation_enabled: Option<bool>,
    /// The app may be installed org-wide by an org admin.
    pub org_deploy_enabled: Option<bool>,
}

/// The client with its secret, shown only here.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ClientWithSecret {
    #[serde(flatten)]
    pub client: OAuthClient,
    pub client_secret: String,
}

/// The client as the operator API shows it, with the link that starts an install.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ClientView {
    #[serde(flatten)]
    pub client: OAuthClient,
    /// `/oauth/v2/authorize` with the client and the scopes the app's subscriptions need
    /// (the first scope the catalog names for each event); `null` until a redirect URL is
    /// registered or when no subscription needs a scope.
    pub install_url: Option<String>,
}

/// The install link for an app (see [`ClientView::install_url`]).
fn install_url(s: &AppState, app: &tidings_store::App, c: &OAuthClient) -> Option<String> {
    if c.redirect_urls.is_empty() {
        return None;
    }
    let pick = |events: &[String], bot: bool| -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for e in events {
            let Some(t) = s.catalog.get(e) else { continue };
            let scopes = if bot { &t.bot_scopes } else { &t.user_scopes };
            if let Some(sc) = scopes
                .iter()
                .find(|sc| crate::oauth::scopes::describe(sc).is_some())
            {
                if !out.contains(sc) {
                    out.push(sc.clone());
                }
            }
        }
        out
    };
    let bot = pick(&app.bot_events, true);
    let user = pick(&app.user_events, false);
    if bot.is_empty() && user.is_empty() {
        return None;
    }
    Some(redirect::with_query(
        &format!("{}/oauth/v2/authorize", s.public_url),
        &[
            ("client_id", &c.client_id),
            ("scope", &bot.join(",")),
            ("user_scope", &user.join(",")),
        ],
    ))
}

/// A `client_id` shaped like Slack's: `<digits>.<digits>`.
pub fn new_client_id() -> String {
    let mut b = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut b);
    let a = u64::from_le_bytes(b[..8].try_into().unwrap_or_default()) % 9_000_000_000_000;
    let c = u64::from_le_bytes(b[8..].try_into().unwrap_or_default()) % 9_000_000_000_000;
    format!("{}.{}", a + 1_000_000_000_000, c + 1_000_000_000_000)
}

/// A new client secret: 32 hex characters, like Slack's.
fn new_secret() -> String {
    token::random_hex(16)
}

/// Checks settings; answers the store's update.
pub fn settings(b: OAuthSettings) -> Result<OAuthClientUpdate, Problem> {
    if let Some(urls) = &b.redirect_urls {
        if urls.len() > MAX_REDIRECT_URLS {
            return Err(Problem::invalid_field(
                "redirect_urls",
                format!("at most {MAX_REDIRECT_URLS} URLs"),
            ));
        }
        if let Some(bad) = urls.iter().find(|u| !redirect::valid_registration(u)) {
            return Err(Problem::invalid_field(
                "redirect_urls",
                format!("{bad:?} does not match {}", redirect::REGISTRATION_PATTERN),
            ));
        }
    }
    Ok(OAuthClientUpdate {
        redirect_urls: b.redirect_urls,
        token_rotation_enabled: b.token_rotation_enabled,
        org_deploy_enabled: b.org_deploy_enabled,
    })
}

/// Gives the app a client with a new secret (creating it if it has none yet).
pub async fn rotate(s: &AppState, app_id: &str) -> Result<ClientWithSecret, Problem> {
    let secret = new_secret();
    let client = s
        .store
        .put_oauth_secret(app_id, &new_client_id(), &token::hash(&secret))
        .await?;
    Ok(ClientWithSecret {
        client,
        client_secret: secret,
    })
}

/// Gives the app a client with a new secret (creating it if needed); answers the secret.
pub(crate) async fn new_client_secret(s: &AppState, app_id: &str) -> Result<String, Problem> {
    Ok(rotate(s, app_id).await?.client_secret)
}

/// The app's client; apps made before OAuth existed get one (whose secret nobody has
/// seen: rotate it to learn one).
pub(crate) async fn client_of(s: &AppState, app_id: &str) -> Result<OAuthClient, Problem> {
    match s.store.oauth_client(app_id).await? {
        Some(c) => Ok(c),
        None => Ok(rotate(s, app_id).await?.client),
    }
}

#[utoipa::path(
    get, path = "/apps/{app}/oauth", operation_id = "get_oauth_client", tag = "apps",
    params(AppPath),
    responses((status = 200, description = "The app's OAuth client (without its secret) and its install link", body = ClientView)),
)]
pub async fn get_client(
    State(s): State<AppState>,
    Path(app): Path<String>,
) -> Result<Json<ClientView>, Problem> {
    let a = app_in_path(&s, &app).await?;
    let client = client_of(&s, &a.id).await?;
    let install_url = install_url(&s, &a, &client);
    Ok(Json(ClientView {
        client,
        install_url,
    }))
}

#[utoipa::path(
    patch, path = "/apps/{app}/oauth", operation_id = "update_oauth_client", tag = "apps",
    params(AppPath),
    request_body = OAuthSettings,
    responses((status = 200, description = "The app's OAuth client", body = OAuthClient)),
)]
pub async fn update_client(
    State(s): State<AppState>,
    Path(app): Path<String>,
    ApiJson(b): ApiJson<OAuthSettings>,
) -> Result<Json<OAuthClient>, Problem> {
    let a = app_in_path(&s, &app).await?;
    let update = settings(b)?;
    client_of(&s, &a.id).await?;
    Ok(Json(s.store.update_oauth_client(&a.id, update).await?))
}

#[utoipa::path(
    post, path = "/apps/{app}/client_secret/rotate", operation_id = "rotate_client_secret",
    tag = "apps",
    params(AppPath),
    responses((status = 200, description = "The client with its new `client_secret`, shown only here; \
               the old secret stops working at once", body = ClientWithSecret)),
)]
pub async fn rotate_client_secret(
    State(s): State<AppState>,
    Path(app): Path<String>,
) -> Result<Json<ClientWithSecret>, Problem> {
    let a = app_in_path(&s, &app).await?;
    Ok(Json(rotate(&s, &a.id).await?))
}

#[cfg(test)]
mod tests {
    #[test]
    fn client_ids_are_shaped_like_slacks() {
        let id = super::new_client_id();
        let (a, b) = id.split_once('.').unwrap();
        assert!(a.len() == 13 && b.len() == 13, "{id}");
        assert!(a.bytes().chain(b.bytes()).all(|c| c.is_ascii_digit()));
    }
}

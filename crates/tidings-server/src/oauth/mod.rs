//! The OAuth v2 install flow's browser side (issue 21; API.md, OAuth): the consent page
//! at `/oauth/v2/authorize`, the platform's login hand-off at `/oauth/v2/login`, and
//! `--dev`'s user picker. The Web API side (`oauth.v2.access`, `auth.revoke`,
//! `apps.uninstall`) is in `crate::webapi`.

mod authorize;
pub mod login;
pub mod page;
pub mod redirect;
pub mod scopes;
pub mod session;

use axum::routing::get;
use axum::Router;

use crate::state::AppState;

/// The browser routes of the install flow.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/oauth/v2/authorize",
            get(authorize::show).post(authorize::decide),
        )
        .route("/oauth/v2/login", get(login::login))
        .route("/oauth/v2/dev_login", get(login::dev_login))
}

/// Seconds since the Unix epoch.
pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

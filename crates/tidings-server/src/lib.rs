//! Tidings' HTTP surface: the Slack Web API (`/api/*`), the operator API (`/admin/v1/*`),
//! the browser dashboard (`/ui`), health and metrics. Handlers are thin: they parse, call the store or core, and map the
//! result; business rules live in `tidings-core`.

pub mod admin;
pub mod boot;
pub mod config;
pub mod dev;
pub mod edge;
pub mod error;
pub mod extract;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod oauth;
pub mod observe;
pub mod replay;
pub mod retention;
pub mod revocation;
pub mod rtm;
pub mod shutdown;
pub mod socket;
pub mod state;
pub mod ui;
pub mod webapi;

use axum::extract::DefaultBodyLimit;
use axum::routing::{any, get};
use axum::{Extension, Router};
use tower_http::trace::TraceLayer;

use crate::extract::BodyLimit;
use crate::state::AppState;

/// The complete router for a running server.
pub fn router(state: AppState) -> Router {
    let max_body = state.config.server.max_body_bytes;
    Router::new()
        .route("/healthz", get(observe::healthz))
        .route("/readyz", get(observe::readyz))
        .route("/metrics", get(observe::metrics_text))
        .route("/api/{method}", any(webapi::dispatch))
        .route("/link", get(socket::link))
        .route("/link/", get(socket::link))
        .route("/rtm/websocket", get(rtm::socket::endpoint))
        .nest("/admin/v1", admin::router(state.clone()))
        .merge(ui::router())
        .merge(oauth::router())
        .fallback(|| async {
            error::Problem::not_found(
                "no such route; the Web API is under /api/, the operator API under /admin/v1/",
            )
        })
        .layer(axum::middleware::from_fn(observe::track))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(Extension(BodyLimit(max_body)))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

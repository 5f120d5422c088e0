//! The operator API under `/admin/v1`: directory, apps, installations, tokens, events,
//! deliveries and insights. Every call needs the admin token (publisher tokens may call
//! only the publish endpoints), except its OpenAPI document, `GET /admin/v1/openapi.json`.

mod apps;
mod auth;
mod config_tokens;
mod connections;
mod deliveries;
mod directory;
mod dry_run;
pub(crate) mod events;
pub(crate) mod insights;
pub(crate) mod installations;
mod key_events;
mod oauth_clients;
pub mod openapi;
mod operator_tokens;
mod redeliveries;
pub mod validate;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use tokio::sync::Semaphore;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

pub(crate) use apps::app_changed;
pub use auth::Operator;
pub(crate) use oauth_clients::new_client_secret;
pub use openapi::document;

/// A batch body may be this many times `max_body_bytes` (each event stays within it).
pub const BATCH_BODY_FACTOR: usize = 16;

/// The operator API's routes, relative to `/admin/v1`. Each line registers its handlers
/// and their `#[utoipa::path]` documentation together (utoipa-axum's `routes!`), so the
/// OpenAPI document (`openapi.rs`) lists exactly what is served: a handler without the
/// annotation does not compile here. Add new routes here, never with `.route(…)` on the
/// router below (the test `the_document_lists_every_route_the_router_serves` fails on
/// those). `batch_limit` is the body limit of `/events/batch`, `max_batches` how many
/// it serves at once (503 with Retry-After beyond, before the body is read).
pub fn routes(
    batch_limit: usize,
    max_batches: usize,
    batch_wait: std::time::Duration,
) -> OpenApiRouter<AppState> {
    let (schemas, paths, batch) = routes!(events::publish_batch);
    let in_progress = Arc::new(Semaphore::new(max_batches));
    let batch = (
        schemas,
        paths,
        batch
            .layer(DefaultBodyLimit::max(batch_limit))
            .layer(axum::middleware::from_fn(move |req, next| {
                events::one_of_few_batches(in_progress.clone(), batch_wait, req, next)
            })),
    );
    OpenApiRouter::new()
        .routes(routes!(
            directory::create_enterprise,
            directory::list_enterprises
        ))
        .routes(routes!(directory::get_enterprise))
        .routes(routes!(directory::create_team, directory::list_teams))
        .routes(routes!(directory::get_team))
        .routes(routes!(directory::create_user, directory::list_users))
        .routes(routes!(directory::get_user))
        .routes(routes!(
            directory::put_conversation,
            directory::get_conversation
        ))
        .routes(routes!(directory::add_member))
        .routes(routes!(directory::remove_member))
        .routes(routes!(key_events::event_types))
        .routes(routes!(key_events::list))
        .routes(routes!(key_events::put, key_events::delete))
        .routes(routes!(insights::events))
        .routes(routes!(insights::key_events))
        .routes(routes!(insights::deliveries))
        .routes(routes!(apps::create_app, apps::list_apps))
        .routes(routes!(apps::get_app, apps::update_app))
        .routes(routes!(apps::rotate_signing_secret))
        .routes(routes!(apps::rotate_webhook_secret))
        .routes(routes!(
            oauth_clients::get_client,
            oauth_clients::update_client
        ))
        .routes(routes!(oauth_clients::rotate_client_secret))
        .routes(routes!(apps::enable_events))
        .routes(routes!(apps::verify_request_url))
        .routes(routes!(connections::list))
        .routes(routes!(deliveries::redeliver_many))
        .routes(routes!(deliveries::redeliver))
        .routes(routes!(redeliveries::create, redeliveries::list))
        .routes(routes!(redeliveries::get))
        .routes(routes!(apps::create_app_token, apps::list_app_tokens))
        .routes(routes!(apps::revoke_app_token))
        .routes(routes!(installations::install, installations::list))
        .routes(routes!(installations::get, installations::uninstall))
        .routes(routes!(config_tokens::create))
        .routes(routes!(config_tokens::get_manifest))
        .routes(routes!(config_tokens::list_owners))
        .routes(routes!(operator_tokens::create, operator_tokens::list))
        .routes(routes!(operator_tokens::revoke))
        .routes(routes!(events::publish))
        .routes(routes!(dry_run::validate))
        .routes(batch)
        .routes(routes!(events::get_event))
        .routes(routes!(deliveries::list))
        .routes(routes!(deliveries::get))
}

/// Routes that need no token: the API's own description, public like `/healthz`.
pub fn public_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(openapi::openapi_json))
}

/// The operator API, to be nested at `/admin/v1`: [`routes`] behind the operator's token
/// (or dashboard session), then [`public_routes`].
pub fn router(state: AppState) -> Router<AppState> {
    let batch_limit = state
        .config
        .server
        .max_body_bytes
        .saturating_mul(BATCH_BODY_FACTOR);
    let max_batches = state.config.server.max_concurrent_batches as usize;
    let batch_wait = state.config.server.batch_queue_timeout;
    let (operator, _) = routes(batch_limit, max_batches, batch_wait).split_for_parts();
    let (public, _) = public_routes().split_for_parts();
    operator
        .fallback(auth::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state,
            auth::require_operator,
        ))
        .merge(public)
}

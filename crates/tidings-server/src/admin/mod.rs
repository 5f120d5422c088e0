//! The operator API under `/admin/v1`: directory, apps, installations, tokens (and, as
//! later issues add them, events and deliveries). Every call needs the admin token;
//! publisher tokens may call only the publish endpoints.

mod apps;
mod auth;
mod connections;
mod deliveries;
mod directory;
mod events;
mod insights;
mod installations;
mod key_events;
mod operator_tokens;
pub mod validate;

use axum::routing::{delete, get, post, put};
use axum::Router;

use crate::state::AppState;

pub use auth::Operator;

/// A batch body may be this many times `max_body_bytes` (each event stays within it).
pub const BATCH_BODY_FACTOR: usize = 16;

/// Routes relative to `/admin/v1`.
pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route(
            "/enterprises",
            post(directory::create_enterprise).get(directory::list_enterprises),
        )
        .route("/enterprises/{id}", get(directory::get_enterprise))
        .route(
            "/teams",
            post(directory::create_team).get(directory::list_teams),
        )
        .route("/teams/{team}", get(directory::get_team))
        .route(
            "/teams/{team}/users",
            post(directory::create_user).get(directory::list_users),
        )
        .route("/teams/{team}/users/{user}", get(directory::get_user))
        .route(
            "/teams/{team}/conversations/{channel}",
            put(directory::put_conversation).get(directory::get_conversation),
        )
        .route(
            "/teams/{team}/conversations/{channel}/members",
            post(directory::add_member),
        )
        .route(
            "/teams/{team}/conversations/{channel}/members/{user}",
            delete(directory::remove_member),
        )
        .route("/event_types", get(key_events::event_types))
        .route("/key_events", get(key_events::list))
        .route(
            "/key_events/{event_type}",
            put(key_events::put).delete(key_events::delete),
        )
        .route("/insights/events", get(insights::events))
        .route("/insights/key_events", get(insights::key_events))
        .route("/insights/deliveries", get(insights::deliveries))
        .route("/apps", post(apps::create_app).get(apps::list_apps))
        .route("/apps/{app}", get(apps::get_app).patch(apps::update_app))
        .route(
            "/apps/{app}/signing_secret/rotate",
            post(apps::rotate_signing_secret),
        )
        .route("/apps/{app}/events/enable", post(apps::enable_events))
        .route(
            "/apps/{app}/request_url/verify",
            post(apps::verify_request_url),
        )
        .route("/apps/{app}/connections", get(connections::list))
        .route("/apps/{app}/redeliver", post(deliveries::redeliver_many))
        .route("/deliveries/{id}/redeliver", post(deliveries::redeliver))
        .route(
            "/apps/{app}/tokens",
            post(apps::create_app_token).get(apps::list_app_tokens),
        )
        .route("/apps/{app}/tokens/{id}", delete(apps::revoke_app_token))
        .route(
            "/apps/{app}/installations",
            post(installations::install).get(installations::list),
        )
        .route(
            "/apps/{app}/installations/{id}",
            get(installations::get).delete(installations::uninstall),
        )
        .route(
            "/publisher_tokens",
            post(operator_tokens::create).get(operator_tokens::list),
        )
        .route("/publisher_tokens/{id}", delete(operator_tokens::revoke))
        .route("/events", post(events::publish))
        .route(
            "/events/batch",
            post(events::publish_batch).layer(axum::extract::DefaultBodyLimit::max(
                state
                    .config
                    .server
                    .max_body_bytes
                    .saturating_mul(BATCH_BODY_FACTOR),
            )),
        )
        .route("/events/{event_id}", get(events::get_event))
        .route("/apps/{app}/deliveries", get(deliveries::list))
        .route("/deliveries/{id}", get(deliveries::get))
        .fallback(auth::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state,
            auth::require_operator,
        ))
}

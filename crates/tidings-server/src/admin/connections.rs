//! Operator API: an app's open Socket Mode connections (`GET /apps/{app}/connections`), as
//! this node's socket hub holds them. Read-only; for the dashboard and for debugging.

use axum::extract::{Path, State};
use axum::Json;
use serde::Serialize;
use tidings_store::Page;

use super::apps::app_in_path;
use super::openapi::AppPath;
use crate::error::Problem;
use crate::state::AppState;

/// One open Socket Mode connection.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Connection {
    /// A string: connection ids are u64s, beyond what JSON numbers carry exactly.
    id: String,
    /// When it opened (Unix seconds).
    opened_at: i64,
    /// Envelopes sent on it and not acked yet.
    pending_acks: usize,
}

/// The connections open on this node, oldest first. Not paginated: an app has at most
/// `socket_mode.max_connections_per_app` of them.
#[utoipa::path(
    get, path = "/apps/{app}/connections", operation_id = "list_connections", tag = "apps",
    params(AppPath),
    responses((status = 200, description = "The app's open Socket Mode connections on this node \
               (`next_cursor` is always `null`)", body = Page<Connection>)),
)]
pub async fn list(
    State(s): State<AppState>,
    Path(app): Path<String>,
) -> Result<Json<Page<Connection>>, Problem> {
    let a = app_in_path(&s, &app).await?;
    let items: Vec<Connection> = s
        .engine
        .hub
        .list(&a.id)
        .into_iter()
        .map(|c| Connection {
            id: c.id.to_string(),
            opened_at: c.opened_at,
            pending_acks: c.pending_acks,
        })
        .collect();
    Ok(Json(Page {
        items,
        next_cursor: None,
    }))
}

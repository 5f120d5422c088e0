//! Operator API: an app's open Socket Mode connections (`GET /apps/{app}/connections`), as
//! this node's socket hub holds them. Read-only; for the dashboard and for debugging.

use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Value};

use super::apps::app_in_path;
use crate::error::Problem;
use crate::state::AppState;

/// The connections open on this node, oldest first. Not paginated: an app has at most
/// `socket_mode.max_connections_per_app` of them.
pub async fn list(
    State(s): State<AppState>,
    Path(app): Path<String>,
) -> Result<Json<Value>, Problem> {
    let a = app_in_path(&s, &app).await?;
    let items: Vec<Value> = s
        .engine
        .hub
        .list(&a.id)
        .into_iter()
        .map(|c| {
            json!({
                // A string: connection ids are u64s, beyond what JSON numbers carry exactly.
                "id": c.id.to_string(),
                "opened_at": c.opened_at,
                "pending_acks": c.pending_acks,
            })
        })
        .collect();
    Ok(Json(json!({"items": items, "next_cursor": null})))
}

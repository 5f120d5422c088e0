//! Operator API: the event types Tidings knows (`GET /event_types`) and which of them are
//! key events (`GET /key_events`, `PUT`/`DELETE /key_events/{event_type}`). Marking is a
//! label on counts that are kept for every type, so it applies to history too.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use tidings_core::catalog::Catalog;
use tidings_store::insights::KeyEvent;

use crate::error::Problem;
use crate::state::AppState;

fn list_json<T: serde::Serialize>(items: Vec<T>) -> Json<Value> {
    Json(json!({"items": items, "next_cursor": null}))
}

/// `GET /event_types`: the catalog, built-in types first, then the configured custom ones.
pub async fn event_types(State(s): State<AppState>) -> Result<Json<Value>, Problem> {
    let keys: Vec<String> = s
        .store
        .list_key_events()
        .await?
        .into_iter()
        .map(|k| k.event_type)
        .collect();
    let builtin = Catalog::builtin();
    let items: Vec<Value> = s
        .catalog
        .iter()
        .map(|t| {
            json!({
                "name": t.name,
                "inner_type": t.inner_type,
                "custom": builtin.get(&t.name).is_none(),
                "key_event": keys.contains(&t.name),
            })
        })
        .collect();
    Ok(list_json(items))
}

pub async fn list(State(s): State<AppState>) -> Result<Json<Value>, Problem> {
    Ok(list_json(s.store.list_key_events().await?))
}

fn known(s: &AppState, event_type: &str) -> Result<(), Problem> {
    if s.catalog.get(event_type).is_none() {
        return Err(Problem::not_found(format!(
            "{event_type:?} is not an event type in the catalog (see GET /admin/v1/event_types)"
        )));
    }
    Ok(())
}

/// `PUT /key_events/{event_type}`: 201 when newly marked, 200 when it already was.
pub async fn put(
    State(s): State<AppState>,
    Path(event_type): Path<String>,
) -> Result<(StatusCode, Json<KeyEvent>), Problem> {
    known(&s, &event_type)?;
    let (k, created) = s.store.put_key_event(&event_type).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(k)))
}

/// `DELETE /key_events/{event_type}`: 204, or 404 when it was not marked.
pub async fn delete(
    State(s): State<AppState>,
    Path(event_type): Path<String>,
) -> Result<StatusCode, Problem> {
    if s.store.delete_key_event(&event_type).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Problem::not_found(format!(
            "{event_type:?} is not marked as a key event"
        )))
    }
}

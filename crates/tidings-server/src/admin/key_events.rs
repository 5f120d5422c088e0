//! Operator API: the event types Tidings knows (`GET /event_types`) and which of them are
//! key events (`GET /key_events`, `PUT`/`DELETE /key_events/{event_type}`). Marking is a
//! label on counts that are kept for every type, so it applies to history too.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use tidings_core::catalog::Catalog;
use tidings_store::insights::KeyEvent;
use tidings_store::Page;

use crate::error::Problem;
use crate::state::AppState;

/// The whole list in one page (`next_cursor` is always `null`).
fn list_json<T>(items: Vec<T>) -> Json<Page<T>> {
    Json(Page {
        items,
        next_cursor: None,
    })
}

/// One catalog entry.
#[derive(Serialize, utoipa::ToSchema)]
pub struct EventTypeInfo {
    /// The subscription name (`message.channels`).
    name: String,
    /// The inner event's `type` (`message`).
    inner_type: String,
    /// Defined in the configuration (`events.custom`), not built in.
    custom: bool,
    key_event: bool,
    /// A realistic inner event with placeholders (`{team}`, `{channel}`, `{user}`, `{bot}`,
    /// `{ts}`, `{now}`), as `tidings trigger` publishes it; every built-in type has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    sample: Option<serde_json::Value>,
}

/// `{event_type}` in the path: a subscription name from the catalog.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct EventTypePath {
    #[param(example = "reaction_added")]
    event_type: String,
}

/// `GET /event_types`: the catalog, built-in types first, then the configured custom ones.
#[utoipa::path(
    get, path = "/event_types", operation_id = "list_event_types", tag = "insights",
    responses((status = 200, description = "Every event type of the catalog", body = Page<EventTypeInfo>)),
)]
pub async fn event_types(State(s): State<AppState>) -> Result<Json<Page<EventTypeInfo>>, Problem> {
    let keys: Vec<String> = s
        .store
        .list_key_events()
        .await?
        .into_iter()
        .map(|k| k.event_type)
        .collect();
    let builtin = Catalog::builtin();
    let items: Vec<EventTypeInfo> = s
        .catalog
        .iter()
        .map(|t| EventTypeInfo {
            name: t.name.clone(),
            inner_type: t.inner_type.clone(),
            custom: builtin.get(&t.name).is_none(),
            key_event: keys.contains(&t.name),
            sample: t.sample.clone(),
        })
        .collect();
    Ok(list_json(items))
}

#[utoipa::path(
    get, path = "/key_events", operation_id = "list_key_events", tag = "insights",
    responses((status = 200, description = "The event types marked as key events", body = Page<KeyEvent>)),
)]
pub async fn list(State(s): State<AppState>) -> Result<Json<Page<KeyEvent>>, Problem> {
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
#[utoipa::path(
    put, path = "/key_events/{event_type}", operation_id = "mark_key_event", tag = "insights",
    params(EventTypePath),
    responses(
        (status = 200, description = "It was marked already", body = KeyEvent),
        (status = 201, description = "Newly marked", body = KeyEvent,
         links(("UnmarkKeyEvent" = (operation_id = "unmark_key_event", parameters(("event_type" = "$response.body#/event_type")))))),
        (status = 404, description = "Not an event type of the catalog", body = Problem,
         content_type = super::openapi::PROBLEM_JSON),
    ),
)]
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
#[utoipa::path(
    delete, path = "/key_events/{event_type}", operation_id = "unmark_key_event", tag = "insights",
    params(EventTypePath),
    responses(
        (status = 204, description = "Unmarked"),
        (status = 404, description = "It was not marked", body = Problem,
         content_type = super::openapi::PROBLEM_JSON),
    ),
)]
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

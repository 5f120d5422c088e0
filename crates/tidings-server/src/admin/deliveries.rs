//! Operator API: an app's delivery log (`GET /apps/{app}/deliveries`) and one delivery.

use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use tidings_core::ids::IdKind;
use tidings_store::{Delivery, DeliveryFilter, DeliveryStatus, Page};

use super::apps::app_in_path;
use super::validate;
use crate::error::Problem;
use crate::extract::{ApiQuery, Paging};
use crate::state::AppState;

#[derive(Deserialize)]
pub struct Filter {
    status: Option<String>,
    team_id: Option<String>,
    event_type: Option<String>,
    since: Option<i64>,
    until: Option<i64>,
    #[allow(dead_code)]
    limit: Option<String>,
    #[allow(dead_code)]
    cursor: Option<String>,
}

pub async fn list(
    State(s): State<AppState>,
    Path(app): Path<String>,
    ApiQuery(q): ApiQuery<Filter>,
    Paging(p): Paging,
) -> Result<Json<Page<Delivery>>, Problem> {
    app_in_path(&s, &app).await?;
    let status = q
        .status
        .as_deref()
        .map(|st| {
            DeliveryStatus::parse(st).ok_or_else(|| {
                Problem::invalid_field(
                    "status",
                    "must be one of pending, delivered, failed, dropped",
                )
            })
        })
        .transpose()?;
    if let Some(t) = &q.team_id {
        validate::field_id(IdKind::Team, "team_id", t)?;
    }
    let filter = DeliveryFilter {
        status,
        team_id: q.team_id,
        event_type: q.event_type,
        since: q.since,
        until: q.until,
    };
    if p.after
        .as_deref()
        .is_some_and(|k| k.parse::<i64>().is_err())
    {
        return Err(Problem::invalid_field("cursor", "cursor is not valid"));
    }
    Ok(Json(s.store.list_deliveries(&app, &filter, &p).await?))
}

pub async fn get(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Delivery>, Problem> {
    validate::path_id(IdKind::Delivery, "id", &id)?;
    s.store
        .get_delivery(&id)
        .await?
        .map(Json)
        .ok_or_else(|| Problem::not_found(format!("delivery {id} does not exist")))
}

/// A new attempt now, outside the retry budget.
pub async fn redeliver(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Delivery>, Problem> {
    validate::path_id(IdKind::Delivery, "id", &id)?;
    let d = s.store.redeliver(&id).await?;
    s.engine.dispatcher.wake([d.app_id.clone()]);
    Ok(Json(d))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedeliverMany {
    status: Option<String>,
    since: Option<i64>,
    until: Option<i64>,
    team_id: Option<String>,
    event_type: Option<String>,
}

/// Redelivers every matching delivery of the app (default: the failed ones).
pub async fn redeliver_many(
    State(s): State<AppState>,
    Path(app): Path<String>,
    crate::extract::ApiJson(b): crate::extract::ApiJson<RedeliverMany>,
) -> Result<Json<serde_json::Value>, Problem> {
    app_in_path(&s, &app).await?;
    let status = match b.status.as_deref().unwrap_or("failed") {
        "failed" => DeliveryStatus::Failed,
        "dropped" => DeliveryStatus::Dropped,
        "delivered" => DeliveryStatus::Delivered,
        _ => {
            return Err(Problem::invalid_field(
                "status",
                "must be failed, dropped or delivered",
            ))
        }
    };
    let filter = DeliveryFilter {
        status: Some(status),
        team_id: b.team_id,
        event_type: b.event_type,
        since: b.since,
        until: b.until,
    };
    let n = s.store.redeliver_many(&app, &filter).await?;
    s.engine.dispatcher.wake([app.clone()]);
    Ok(Json(serde_json::json!({"redelivered": n})))
}

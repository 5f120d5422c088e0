//! Operator API: an app's delivery log (`GET /apps/{app}/deliveries`) and one delivery.

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use tidings_core::ids::IdKind;
use tidings_store::{Delivery, DeliveryFilter, DeliveryStatus, Page};

use super::apps::app_in_path;
use super::openapi::{AppPath, PageParams, PROBLEM_JSON};
use super::validate;
use crate::error::Problem;
use crate::extract::{ApiQuery, Paging};
use crate::state::AppState;

/// Filters of the delivery log (`limit` and `cursor` are [`PageParams`]).
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Filter {
    #[param(value_type = Option<DeliveryStatus>)]
    status: Option<String>,
    #[param(pattern = "^T[A-Z0-9]{2,30}$")]
    team_id: Option<String>,
    /// A catalog event type (`message.channels`).
    event_type: Option<String>,
    /// Created at or after (Unix seconds).
    since: Option<i64>,
    /// Created before (Unix seconds).
    until: Option<i64>,
    #[allow(dead_code)]
    #[param(ignore)]
    limit: Option<String>,
    #[allow(dead_code)]
    #[param(ignore)]
    cursor: Option<String>,
}

/// The app's deliveries, newest first.
#[utoipa::path(
    get, path = "/apps/{app}/deliveries", operation_id = "list_deliveries", tag = "deliveries",
    params(AppPath, Filter, PageParams),
    responses((status = 200, description = "One page of deliveries with their attempts", body = Page<Delivery>,
               links(("GetDelivery" = (operation_id = "get_delivery", parameters(("id" = "$response.body#/items/0/id"))))))),
)]
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

/// `{id}` of a delivery in the path.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct DeliveryPath {
    #[param(pattern = "^DL[A-Z0-9]{2,30}$")]
    id: String,
}

#[utoipa::path(
    get, path = "/deliveries/{id}", operation_id = "get_delivery", tag = "deliveries",
    params(DeliveryPath),
    responses((status = 200, description = "The delivery with its attempts", body = Delivery)),
)]
pub async fn get(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Delivery>, Problem> {
    validate::path_id(IdKind::Delivery, "id", &id)?;
    s.store
        .get_delivery(&id)
        .await?
        .map(Json)
        .ok_or_else(|| Problem::not_found(pruned(&s, &id)))
}

/// A new attempt now, outside the retry budget.
#[utoipa::path(
    post, path = "/deliveries/{id}/redeliver", operation_id = "redeliver", tag = "deliveries",
    params(DeliveryPath),
    responses(
        (status = 200, description = "The delivery, pending again", body = Delivery),
        (status = 409, description = "The delivery is already pending", body = Problem, content_type = PROBLEM_JSON),
    ),
)]
pub async fn redeliver(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Delivery>, Problem> {
    validate::path_id(IdKind::Delivery, "id", &id)?;
    let d = s.store.redeliver(&id).await.map_err(|e| match e {
        tidings_store::StoreError::NotFound(_) => Problem::not_found(pruned(&s, &id)),
        e => e.into(),
    })?;
    Ok(Json(d))
}

/// The 404 detail for a delivery id that is not stored (it may be past retention).
fn pruned(s: &AppState, id: &str) -> String {
    crate::retention::not_found_detail(&s.config, crate::retention::Kind::Delivery, id)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedeliverMany {
    /// Which deliveries: `failed` (default), `dropped` or `delivered`.
    #[schema(value_type = Option<RedeliverStatus>)]
    status: Option<String>,
    /// Created at or after (Unix seconds).
    #[serde(default, deserialize_with = "crate::extract::whole_number")]
    since: Option<i64>,
    /// Created before (Unix seconds).
    #[serde(default, deserialize_with = "crate::extract::whole_number")]
    until: Option<i64>,
    #[schema(pattern = "^T[A-Z0-9]{2,30}$")]
    team_id: Option<String>,
    event_type: Option<String>,
}

/// The statuses a bulk redelivery may pick.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum RedeliverStatus {
    Failed,
    Dropped,
    Delivered,
}

/// How many deliveries a bulk redelivery made pending again.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Redelivered {
    redelivered: usize,
}

/// Redelivers every matching delivery of the app (default: the failed ones).
#[utoipa::path(
    post, path = "/apps/{app}/redeliver", operation_id = "redeliver_many", tag = "deliveries",
    params(AppPath),
    request_body = RedeliverMany,
    responses((status = 200, description = "How many were redelivered", body = Redelivered)),
)]
pub async fn redeliver_many(
    State(s): State<AppState>,
    Path(app): Path<String>,
    crate::extract::ApiJson(b): crate::extract::ApiJson<RedeliverMany>,
) -> Result<Json<Redelivered>, Problem> {
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
    if let Some(t) = &b.team_id {
        validate::field_id(IdKind::Team, "team_id", t)?;
    }
    let filter = DeliveryFilter {
        status: Some(status),
        team_id: b.team_id,
        event_type: b.event_type,
        since: b.since,
        until: b.until,
    };
    let n = s.store.redeliver_many(&app, &filter).await?;
    Ok(Json(Redelivered { redelivered: n }))
}

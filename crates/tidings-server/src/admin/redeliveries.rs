//! Operator API: bulk replay jobs (`POST/GET /apps/{app}/redeliveries`,
//! `GET /redeliveries/{id}`). The handlers only create and read jobs; the replay task
//! (`crate::replay`) re-queues their deliveries.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use tidings_core::ids::{self, IdKind};
use tidings_store::redeliveries::{NewRedelivery, Redelivery};

use super::apps::app_in_path;
use super::openapi::{AppPath, PROBLEM_JSON};
use super::validate;
use crate::error::Problem;
use crate::state::AppState;

/// How many jobs the list answers (newest first).
const LISTED: usize = 100;

/// What to replay.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewJob {
    /// Statuses to re-queue: `failed` (default), `dropped`, `delivered`.
    #[schema(value_type = Option<Vec<super::deliveries::RedeliverStatus>>, min_items = 1)]
    status: Option<Vec<String>>,
    /// Deliveries created at or after (Unix seconds).
    #[serde(default, deserialize_with = "crate::extract::whole_number")]
    since: Option<i64>,
    /// Deliveries created at or before (Unix seconds).
    #[serde(default, deserialize_with = "crate::extract::whole_number")]
    until: Option<i64>,
}

/// A job id in the path.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct JobPath {
    /// The job id (`RD…`).
    #[allow(dead_code)]
    #[param(pattern = "^RD[A-Z0-9]{2,30}$", example = "RD0EXAMPLE")]
    id: String,
}

/// The app's jobs, newest first.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Jobs {
    redeliveries: Vec<Redelivery>,
}

fn statuses(asked: Option<Vec<String>>) -> Result<Vec<String>, Problem> {
    let asked = asked.unwrap_or_else(|| vec!["failed".into()]);
    if asked.is_empty() {
        return Err(Problem::invalid_field(
            "status",
            "must name at least one status",
        ));
    }
    let mut out: Vec<String> = Vec::new();
    for s in asked {
        if !matches!(s.as_str(), "failed" | "dropped" | "delivered") {
            return Err(Problem::invalid_field(
                "status",
                format!("{s:?} is not failed, dropped or delivered"),
            ));
        }
        if !out.contains(&s) {
            out.push(s);
        }
    }
    Ok(out)
}

/// Starts a job that re-queues every matching delivery of the app still kept, at most
/// `delivery.redelivery_rate` per second.
#[utoipa::path(
    post, path = "/apps/{app}/redeliveries", operation_id = "create_redelivery", tag = "deliveries",
    params(AppPath),
    request_body = NewJob,
    responses(
        (status = 202, description = "The job, running (or done when nothing matched)", body = Redelivery),
        (status = 400, description = "Unknown or no status", body = Problem, content_type = PROBLEM_JSON),
        (status = 422, description = "`invalid_range`: since after until", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "No such app", body = Problem, content_type = PROBLEM_JSON),
    ),
)]
pub async fn create(
    State(s): State<AppState>,
    Path(app): Path<String>,
    crate::extract::ApiJson(b): crate::extract::ApiJson<NewJob>,
) -> Result<(StatusCode, Json<Redelivery>), Problem> {
    app_in_path(&s, &app).await?;
    let status = statuses(b.status)?;
    if let (Some(since), Some(until)) = (b.since, b.until) {
        if since > until {
            // Well-formed (the document cannot relate two fields) but refused: a 422.
            return Err(Problem::unprocessable(
                "invalid_range",
                format!("until ({until}) is before since ({since})"),
            )
            .with_field("until", "must not be before since"));
        }
    }
    let job = s
        .store
        .create_redelivery(NewRedelivery {
            id: ids::generate(IdKind::Redelivery),
            app_id: app,
            status,
            since: b.since,
            until: b.until,
        })
        .await?;
    Ok((StatusCode::ACCEPTED, Json(job)))
}

/// The app's replay jobs, newest first (the last 100).
#[utoipa::path(
    get, path = "/apps/{app}/redeliveries", operation_id = "list_redeliveries", tag = "deliveries",
    params(AppPath),
    responses((status = 200, description = "The jobs", body = Jobs)),
)]
pub async fn list(
    State(s): State<AppState>,
    Path(app): Path<String>,
) -> Result<Json<Jobs>, Problem> {
    app_in_path(&s, &app).await?;
    let redeliveries = s.store.list_redeliveries(&app, LISTED).await?;
    Ok(Json(Jobs { redeliveries }))
}

/// One replay job and its progress.
#[utoipa::path(
    get, path = "/redeliveries/{id}", operation_id = "get_redelivery", tag = "deliveries",
    params(JobPath),
    responses(
        (status = 200, description = "The job", body = Redelivery),
        (status = 404, description = "No such job", body = Problem, content_type = PROBLEM_JSON),
    ),
)]
pub async fn get(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Redelivery>, Problem> {
    validate::path_id(IdKind::Redelivery, "id", &id)?;
    s.store
        .get_redelivery(&id)
        .await?
        .map(Json)
        .ok_or_else(|| Problem::not_found(format!("redelivery {id} does not exist")))
}

//! Operator API: publishing events (`POST /events`, `/events/batch`) and reading one back
//! with its deliveries and the exact envelope each sends (`GET /events/{event_id}`).

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tidings_core::ids::{self, IdKind};
use tidings_store::{Delivery, PublishRefusal, PublishRequest, Published, StoredEvent};

use tokio::sync::Semaphore;

use super::openapi::{InnerEvent, PROBLEM_JSON};
use crate::error::Problem;
use crate::extract::{parse_json, ApiJson};
use crate::state::AppState;

/// Most events in one batch call.
pub const MAX_BATCH: usize = 1000;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PublishBody {
    /// The team the event happened in (422 `unknown_team` when it does not exist).
    #[schema(pattern = "^T[A-Z0-9]{2,30}$", example = "T0ACME")]
    team_id: String,
    #[schema(value_type = InnerEvent)]
    event: Value,
    /// When it happened (Unix seconds; default now). Older than `events.max_event_age` is
    /// 422 `event_too_old`, further ahead than `events.max_future_skew` 422 `event_in_future`.
    #[serde(default, deserialize_with = "crate::extract::whole_number")]
    event_time: Option<i64>,
    /// The same key for the same team returns the first `event_id` with `duplicate: true`.
    #[schema(min_length = 1, max_length = 255)]
    idempotency_key: Option<String>,
    /// The app an app-level event (`app_uninstalled`, `tokens_revoked`, …) is about.
    #[schema(pattern = "^A[A-Z0-9]{2,30}$")]
    app_id: Option<String>,
}

/// Shape checks that need no store; the store checks references.
pub(crate) fn request(b: PublishBody, max_event_bytes: usize) -> Result<PublishRequest, Problem> {
    if !ids::is_valid(IdKind::Team, &b.team_id) {
        return Err(Problem::from(PublishRefusal::unprocessable(
            "unknown_team",
            "team_id",
            format!("{:?} is not a team id", b.team_id),
        )));
    }
    if let Some(a) = &b.app_id {
        if !ids::is_valid(IdKind::App, a) {
            return Err(Problem::from(PublishRefusal::unprocessable(
                "unknown_app",
                "app_id",
                format!("{a:?} is not an app id"),
            )));
        }
    }
    if let Some(k) = &b.idempotency_key {
        if k.is_empty() || k.chars().count() > 255 {
            return Err(Problem::invalid_field(
                "idempotency_key",
                "must be 1 to 255 characters",
            ));
        }
    }
    let Value::Object(event) = b.event else {
        return Err(Problem::invalid_field("event", "must be a JSON object"));
    };
    // Non-empty, as the document says: checked here so a repeated idempotency key (which
    // the store answers before reading the type) cannot let an empty one through.
    if event
        .get("type")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(Problem::invalid_field(
            "event.type",
            "is required and must be a non-empty string",
        ));
    }
    let size = serialized_len(&event);
    if size > max_event_bytes {
        return Err(Problem::too_large(max_event_bytes)
            .with_field("event", format!("the event is {size} bytes")));
    }
    Ok(PublishRequest {
        team_id: b.team_id,
        event,
        event_time: b.event_time,
        idempotency_key: b.idempotency_key,
        app_id: b.app_id,
    })
}

/// The length of a value's compact JSON, counted without building it.
fn serialized_len(v: &serde_json::Map<String, Value>) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut n = Count(0);
    match serde_json::to_writer(&mut n, v) {
        Ok(()) => n.0,
        Err(_) => usize::MAX,
    }
}

/// Publishes one event; the answer comes once the event and every delivery it implies are
/// on disk.
#[utoipa::path(
    post, path = "/events", operation_id = "publish_event", tag = "events",
    request_body = PublishBody,
    security(("admin_token" = []), ("publisher_token" = [])),
    responses(
        (status = 202, description = "Stored with its deliveries", body = Published,
         links(("GetEvent" = (operation_id = "get_event", parameters(("event_id" = "$response.body#/event_id")))))),
        (status = 413, description = "The body, or the inner event, is larger than \
         `server.max_body_bytes`", body = Problem, content_type = PROBLEM_JSON),
        (status = 422, description = "Refused: `unknown_team`, `unknown_event_type`, \
         `event_too_old`, `event_in_future`, …", body = Problem, content_type = PROBLEM_JSON),
    ),
)]
pub async fn publish(
    State(s): State<AppState>,
    ApiJson(b): ApiJson<PublishBody>,
) -> Result<Response, Problem> {
    let req = request(b, s.config.server.max_body_bytes)?;
    let mut results = s.store.publish(&s.publish_policy, vec![req]).await?;
    match results.pop() {
        Some(Ok(p)) => Ok((StatusCode::ACCEPTED, Json(p)).into_response()),
        Some(Err(r)) => Err(Problem::from(r)),
        None => Err(Problem::bad_request("nothing was published")),
    }
}

/// Each event is kept as its raw text and parsed once, on its own, so one bad event gets
/// its own error (naming its field) without failing the batch.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchBody {
    /// 1 to 1000 events, each as the body of `POST /admin/v1/events` (`PublishBody`). Each
    /// is checked on its own: one that does not fit gets its own `error` in `results`, and
    /// the others are published, so the items are any JSON values here.
    #[schema(value_type = Vec<Value>, min_items = 1, max_items = 1000)]
    pub(crate) events: Vec<Box<serde_json::value::RawValue>>,
}

/// The outcome of each event of a batch, in the order of the events.
#[derive(Serialize, utoipa::ToSchema)]
pub struct BatchResults {
    results: Vec<BatchResult>,
}

/// One event's outcome: published, or refused with the problem a single publish answers.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum BatchResult {
    Published(Published),
    Refused { error: Problem },
}

/// Publishes up to [`MAX_BATCH`] events; each result is in the same position as its event,
/// and one bad event does not fail the others.
#[utoipa::path(
    post, path = "/events/batch", operation_id = "publish_events", tag = "events",
    request_body = BatchBody,
    security(("admin_token" = []), ("publisher_token" = [])),
    responses(
        (status = 200, description = "One result per event, in order", body = BatchResults),
        (status = 413, description = "The body is larger than 16 × `server.max_body_bytes`",
         body = Problem, content_type = PROBLEM_JSON),
        (status = 503, description = "`server.max_concurrent_batches` batches were in progress for \
         `server.batch_queue_timeout`; retry after the `Retry-After` seconds (`busy`)", body = Problem, content_type = PROBLEM_JSON),
    ),
)]
pub async fn publish_batch(
    State(s): State<AppState>,
    ApiJson(b): ApiJson<BatchBody>,
) -> Result<Json<BatchResults>, Problem> {
    if b.events.is_empty() || b.events.len() > MAX_BATCH {
        return Err(Problem::invalid_field(
            "events",
            format!("must hold 1 to {MAX_BATCH} events, got {}", b.events.len()),
        ));
    }
    let max = s.config.server.max_body_bytes;
    let mut slots: Vec<Result<usize, Problem>> = Vec::with_capacity(b.events.len());
    let mut requests = Vec::new();
    for v in b.events {
        let parsed =
            parse_json::<PublishBody>(v.get().as_bytes()).and_then(|body| request(body, max));
        slots.push(parsed.map(|r| {
            requests.push(r);
            requests.len() - 1
        }));
    }
    let mut published: Vec<Option<Result<tidings_store::Published, PublishRefusal>>> = s
        .store
        .publish(&s.publish_policy, requests)
        .await?
        .into_iter()
        .map(Some)
        .collect();
    let results: Vec<BatchResult> = slots
        .into_iter()
        .map(|slot| match slot {
            Ok(i) => match published.get_mut(i).and_then(Option::take) {
                Some(Ok(p)) => BatchResult::Published(p),
                Some(Err(r)) => BatchResult::Refused {
                    error: Problem::from(r),
                },
                None => BatchResult::Refused {
                    error: Problem::bad_request("lost result"),
                },
            },
            Err(error) => BatchResult::Refused { error },
        })
        .collect();
    Ok(Json(BatchResults { results }))
}

/// Lets a batch through while fewer than `server.max_concurrent_batches` are in progress
/// (each may hold 16 × `max_body_bytes` of body). Others wait for a place with their
/// bodies unread, up to `server.batch_queue_timeout`, then get 503 `busy` with
/// `Retry-After: 1`.
pub async fn one_of_few_batches(
    in_progress: Arc<Semaphore>,
    wait: std::time::Duration,
    req: Request,
    next: Next,
) -> Response {
    let permit = match in_progress.clone().try_acquire_owned() {
        Ok(p) => Ok(p),
        Err(_) => tokio::time::timeout(wait, in_progress.acquire_owned())
            .await
            .map_err(|_| ())
            .and_then(|p| p.map_err(|_| ())),
    };
    let Ok(_permit) = permit else {
        metrics::counter!("tidings_batches_refused_total").increment(1);
        let mut res = Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "server.max_concurrent_batches batches are in progress; retry shortly",
        )
        .into_response();
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return res;
    };
    next.run(req).await
}

/// A stored event with the inner event as published.
#[derive(Serialize, utoipa::ToSchema)]
pub struct EventView {
    #[serde(flatten)]
    record: StoredEvent,
    /// The inner event as published (with `event_ts` filled in).
    #[schema(value_type = Object)]
    event: Value,
}

/// A delivery and the exact envelope it sends.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DeliveryView {
    #[serde(flatten)]
    record: Delivery,
    /// The `event_callback` envelope (absent when the app no longer exists).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    envelope: Option<Value>,
}

/// `GET /events/{event_id}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct EventDetail {
    event: EventView,
    deliveries: Vec<DeliveryView>,
}

/// `{event_id}` in the path.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct EventPath {
    #[param(pattern = "^Ev[A-Z0-9]{2,30}$")]
    event_id: String,
}

#[utoipa::path(
    get, path = "/events/{event_id}", operation_id = "get_event", tag = "events",
    params(EventPath),
    responses((status = 200, description = "The event, its deliveries and the envelope each \
               sends", body = EventDetail,
               links(("GetDelivery" = (operation_id = "get_delivery", parameters(("id" = "$response.body#/deliveries/0/id")))), ("Redeliver" = (operation_id = "redeliver", parameters(("id" = "$response.body#/deliveries/0/id"))))))),
)]
pub async fn get_event(
    State(s): State<AppState>,
    Path(event_id): Path<String>,
) -> Result<Json<EventDetail>, Problem> {
    if !ids::is_valid(IdKind::Event, &event_id) {
        return Err(Problem::invalid_field(
            "event_id",
            format!("{event_id:?} is not an event id"),
        ));
    }
    let ev = s.store.get_event(&event_id).await?.ok_or_else(|| {
        Problem::not_found(crate::retention::not_found_detail(
            &s.config,
            crate::retention::Kind::Event,
            &event_id,
        ))
    })?;
    let deliveries = s.store.event_deliveries(&event_id).await?;
    let key = s.store.event_context_key();
    let mut out = Vec::with_capacity(deliveries.len());
    for d in deliveries {
        let mut envelope = None;
        if let Some(app) = s.store.get_app(&d.app_id).await? {
            let body = tidings_delivery::envelope::for_delivery(&s.catalog, &key, &ev, &d, &app)
                .map_err(Problem::bad_request)?;
            envelope = Some(serde_json::from_slice(&body).unwrap_or(Value::Null));
        }
        out.push(DeliveryView {
            record: d,
            envelope,
        });
    }
    let event = serde_json::from_str(&ev.payload).unwrap_or(Value::Null);
    Ok(Json(EventDetail {
        event: EventView { record: ev, event },
        deliveries: out,
    }))
}

//! Operator API: publishing events (`POST /events`, `/events/batch`) and reading one back
//! with its deliveries and the exact envelope each sends (`GET /events/{event_id}`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use tidings_core::ids::{self, IdKind};
use tidings_store::{PublishRefusal, PublishRequest};

use crate::error::Problem;
use crate::extract::{parse_json, ApiJson};
use crate::state::AppState;

/// Most events in one batch call.
pub const MAX_BATCH: usize = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishBody {
    team_id: String,
    event: Value,
    event_time: Option<i64>,
    idempotency_key: Option<String>,
    app_id: Option<String>,
}

/// Shape checks that need no store; the store checks references.
fn request(b: PublishBody, max_event_bytes: usize) -> Result<PublishRequest, Problem> {
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
        if k.is_empty() || k.len() > 255 {
            return Err(Problem::invalid_field(
                "idempotency_key",
                "must be 1 to 255 characters",
            ));
        }
    }
    let Value::Object(event) = b.event else {
        return Err(Problem::invalid_field("event", "must be a JSON object"));
    };
    if !event.get("type").is_some_and(Value::is_string) {
        return Err(Problem::invalid_field(
            "event.type",
            "is required and must be a string",
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

pub async fn publish(
    State(s): State<AppState>,
    ApiJson(b): ApiJson<PublishBody>,
) -> Result<Response, Problem> {
    let req = request(b, s.config.server.max_body_bytes)?;
    let mut results = s.store.publish(&s.publish_policy, vec![req]).await?;
    match results.pop() {
        Some(Ok(p)) => {
            s.engine.dispatcher.wake(p.apps.iter().cloned());
            Ok((StatusCode::ACCEPTED, Json(p)).into_response())
        }
        Some(Err(r)) => Err(Problem::from(r)),
        None => Err(Problem::bad_request("nothing was published")),
    }
}

/// Each event is kept as its raw text and parsed once, on its own, so one bad event gets
/// its own error (naming its field) without failing the batch.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchBody {
    events: Vec<Box<serde_json::value::RawValue>>,
}

/// Publishes up to [`MAX_BATCH`] events; each result is in the same position as its event,
/// and one bad event does not fail the others.
pub async fn publish_batch(
    State(s): State<AppState>,
    ApiJson(b): ApiJson<BatchBody>,
) -> Result<Json<Value>, Problem> {
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
    let mut woken: Vec<String> = published
        .iter()
        .flatten()
        .flatten()
        .flat_map(|p| p.apps.iter().cloned())
        .collect();
    woken.sort();
    woken.dedup();
    s.engine.dispatcher.wake(woken);
    let results: Vec<Value> = slots
        .into_iter()
        .map(|slot| match slot {
            Ok(i) => match published.get_mut(i).and_then(Option::take) {
                Some(Ok(p)) => json!(p),
                Some(Err(r)) => json!({"error": Problem::from(r)}),
                None => json!({"error": Problem::bad_request("lost result")}),
            },
            Err(p) => json!({"error": p}),
        })
        .collect();
    Ok(Json(json!({"results": results})))
}

pub async fn get_event(
    State(s): State<AppState>,
    Path(event_id): Path<String>,
) -> Result<Json<Value>, Problem> {
    if !ids::is_valid(IdKind::Event, &event_id) {
        return Err(Problem::invalid_field(
            "event_id",
            format!("{event_id:?} is not an event id"),
        ));
    }
    let ev = s
        .store
        .get_event(&event_id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("event {event_id} does not exist")))?;
    let deliveries = s.store.event_deliveries(&event_id).await?;
    let key = s.store.event_context_key();
    let mut out = Vec::with_capacity(deliveries.len());
    for d in deliveries {
        let mut v = json!(d);
        if let Some(app) = s.store.get_app(&d.app_id).await? {
            let body = tidings_delivery::envelope::for_delivery(&s.catalog, &key, &ev, &d, &app)
                .map_err(Problem::bad_request)?;
            v["envelope"] = serde_json::from_slice(&body).unwrap_or(Value::Null);
        }
        out.push(v);
    }
    let mut event = json!(ev);
    event["event"] = serde_json::from_str(&ev.payload).unwrap_or(Value::Null);
    Ok(Json(json!({"event": event, "deliveries": out})))
}

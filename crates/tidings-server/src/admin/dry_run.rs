//! `POST /events/validate`: a dry run of `POST /events`. The body is checked by the same
//! shape checks ([`super::events::request`]: what they refuse is the same problem here) and
//! run through the store's own publish inside a savepoint that is rolled back
//! ([`tidings_store::Store::preview_publish`]), so the refusal codes, the catalog type and
//! the audience are publish's own, and nothing is stored.

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;
use tidings_core::fanout::Authorization;

use super::events::{request, PublishBody};
use super::openapi::PROBLEM_JSON;
use crate::error::Problem;
use crate::extract::{parse_json, ApiJson};
use crate::state::AppState;

/// The `event_id` every predicted envelope carries (no event is stored).
pub const PLACEHOLDER_EVENT_ID: &str = "Ev0000DRYRUN";

/// A check the event would fail, as publish would report it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Message {
    /// The field at fault (`event.channel`, `event_time`, …), or empty for the whole body.
    field_path: String,
    /// The code publish answers (`unknown_team`, `event_too_old`, `invalid_field`, …).
    code: String,
    description: String,
}

/// One delivery publish would make.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PredictedDelivery {
    app_id: String,
    team_id: String,
    authorization: Authorization,
    /// `pending` (it would be sent) or `dropped` (`reason`: `app_disabled`, `rate_limited`).
    status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// The exact `event_callback` envelope, with `event_id` (and the `event_context`
    /// naming it) a placeholder.
    #[schema(value_type = Object)]
    envelope: Value,
}

/// What publishing the body would do.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Validation {
    valid: bool,
    messages: Vec<Message>,
    /// The catalog type the event resolved to (absent when it did not resolve).
    #[serde(skip_serializing_if = "Option::is_none")]
    event_type: Option<String>,
    /// Set when the idempotency key was used before: publish would answer that event with
    /// `duplicate: true` and deliver nothing new.
    #[serde(skip_serializing_if = "Option::is_none")]
    duplicate_of: Option<String>,
    deliveries: Vec<PredictedDelivery>,
}

impl Validation {
    fn refused(p: Problem) -> Validation {
        let code = p
            .kind
            .strip_prefix("urn:tidings:problem:")
            .unwrap_or(&p.kind)
            .to_string();
        let (field_path, description) = match p.errors.into_iter().next() {
            Some(f) => (f.field, f.message),
            None => (String::new(), p.detail),
        };
        Validation {
            valid: false,
            messages: vec![Message {
                field_path,
                code,
                description,
            }],
            event_type: None,
            duplicate_of: None,
            deliveries: Vec::new(),
        }
    }
}

/// Checks an event as `POST /events` would and predicts its deliveries, storing nothing.
#[utoipa::path(
    post, path = "/events/validate", operation_id = "validate_event", tag = "events",
    request_body = PublishBody,
    security(("admin_token" = []), ("publisher_token" = [])),
    responses(
        (status = 200, description = "Whether publish would accept the event, the check it \
         would fail (with publish's code: `unknown_team`, `unknown_event_type`, `event_too_old`, …), \
         the catalog type it resolved to, and each delivery it would make with its exact \
         envelope (`event_id` a placeholder). Nothing is stored.",
         body = Validation),
        (status = 422, description = "A `team_id` or `app_id` that is not an id at all \
         (`unknown_team`, `unknown_app`), as publish answers it", body = Problem, content_type = PROBLEM_JSON),
        (status = 413, description = "The body, or the inner event, is larger than \
         `server.max_body_bytes` (as for publish)", body = Problem, content_type = PROBLEM_JSON),
    ),
)]
pub async fn validate(
    State(s): State<AppState>,
    ApiJson(raw): ApiJson<Box<RawValue>>,
) -> Result<Json<Validation>, Problem> {
    // What the document itself rules out (malformed: 400, too large: 413, a `team_id` or
    // `app_id` that is no id at all: 422) is answered as publish answers it: the request's
    // shape, not the event's fate. The store's refusals (422) are the verdict.
    let req = parse_json::<PublishBody>(raw.get().as_bytes())
        .and_then(|b| request(b, s.config.server.max_body_bytes))?;
    let preview = match s.store.preview_publish(&s.publish_policy, req).await? {
        Ok(p) => p,
        Err(r) if r.status == 422 => return Ok(Json(Validation::refused(Problem::from(r)))),
        Err(r) => return Err(Problem::from(r)),
    };
    let mut event = preview.event;
    event.id = PLACEHOLDER_EVENT_ID.to_string();
    let key = s.store.event_context_key();
    let mut deliveries = Vec::with_capacity(preview.deliveries.len());
    for mut d in preview.deliveries {
        d.event_id = event.id.clone();
        let Some(app) = s.store.get_app(&d.app_id).await? else {
            continue;
        };
        let body = tidings_delivery::envelope::for_delivery(&s.catalog, &key, &event, &d, &app)
            .map_err(Problem::bad_request)?;
        deliveries.push(PredictedDelivery {
            envelope: serde_json::from_slice(&body).unwrap_or(Value::Null),
            app_id: d.app_id,
            team_id: d.team_id,
            authorization: d.authorization,
            status: d.status.as_str().to_string(),
            reason: d.reason,
        });
    }
    Ok(Json(Validation {
        valid: true,
        messages: Vec::new(),
        event_type: Some(event.event_type),
        duplicate_of: preview.duplicate_of,
        deliveries,
    }))
}

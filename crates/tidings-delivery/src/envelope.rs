//! The exact bytes a delivery sends: its event's `event_callback` envelope for its app,
//! assembled from stored records (the event, the delivery's authorization, the app's
//! verification token and event shape) with `tidings_core::envelope`.

use serde_json::value::RawValue;
use tidings_core::catalog::Catalog;
use tidings_core::envelope::{self, EventCallbackParts};
use tidings_core::event_context;
use tidings_store::{App, Delivery, EventShape, StoredEvent};

/// The `event_context` handle an app gets for this event, if the type carries one.
pub fn event_context_for(
    catalog: &Catalog,
    key: &[u8],
    ev: &StoredEvent,
    app_id: &str,
) -> Option<String> {
    let kind = catalog.get(&ev.event_type)?;
    kind.event_context.then(|| {
        event_context::encode_parts(
            &ev.event_type,
            &ev.team_id,
            app_id,
            ev.channel_id.as_deref(),
            &ev.id,
            key,
        )
    })
}

/// The body for `delivery`: its `event_callback`, or for a rate-limit notice the
/// `app_rate_limited` payload.
pub fn for_delivery(
    catalog: &Catalog,
    key: &[u8],
    ev: &StoredEvent,
    delivery: &Delivery,
    app: &App,
) -> Result<Vec<u8>, String> {
    // A rate-limit notice is its own outer payload (SLACK-WIRE.md §1.5).
    if ev.event_type == "app_rate_limited" {
        let minute = serde_json::from_str::<serde_json::Value>(&ev.payload)
            .ok()
            .and_then(|v| v["minute_rate_limited"].as_i64())
            .unwrap_or(ev.event_time - ev.event_time.rem_euclid(60));
        return Ok(envelope::app_rate_limited(
            &app.verification_token,
            &ev.team_id,
            minute,
            &app.id,
        ));
    }
    // Borrowed: the payload is sent as stored, not copied first.
    let raw: &RawValue = serde_json::from_str(&ev.payload)
        .map_err(|e| format!("stored event {} is not JSON: {e}", ev.id))?;
    let ctx = event_context_for(catalog, key, ev, &app.id);
    Ok(envelope::event_callback(&EventCallbackParts {
        verification_token: &app.verification_token,
        team_id: &ev.team_id,
        enterprise_id: ev.enterprise_id.as_deref(),
        app_id: &app.id,
        event: raw,
        event_id: &ev.id,
        event_time: ev.event_time,
        authorization: &delivery.authorization,
        event_context: ctx.as_deref(),
        legacy: app.event_shape == EventShape::Legacy,
    }))
}

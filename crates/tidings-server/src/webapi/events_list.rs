//! `tidings.events.list` (beyond Slack): the catch-up feed. An app back from an outage
//! calls it with its app-level token (scope `events:read`) and gets every delivery it was
//! owed, oldest first, each with the exact envelope it is (or was) sent and the
//! delivery's id and status, for as long as retention keeps them; it reconciles by
//! `event_id`. The cursor is opaque and bound to the app: another app's is
//! `invalid_cursor`.

use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use tidings_core::token::TokenKind;
use tidings_store::{Cursor, DeliveryStatus, FeedQuery};

use super::{authenticate, Params};
use crate::error::SlackError;
use crate::state::AppState;

pub const SCOPE: &str = "events:read";
pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

/// The cursor after `seq` for `app`.
fn cursor(app: &str, seq: i64) -> String {
    Cursor::encode(&format!("{app}:{seq}"))
}

/// The seq a cursor names, if it is one of `app`'s.
fn after(app: &str, c: &str) -> Option<i64> {
    let text = Cursor::decode(c)?;
    let (owner, seq) = text.rsplit_once(':')?;
    (owner == app).then_some(())?;
    seq.parse().ok()
}

pub async fn handle(s: &AppState, p: &Params) -> Result<Response, SlackError> {
    let (kind, grant) = authenticate(s, p).await?;
    if kind != TokenKind::App {
        return Err(SlackError::new("not_allowed_token_type"));
    }
    if !grant.scopes.iter().any(|sc| sc == SCOPE) {
        return Err(SlackError::missing_scope(SCOPE, &grant.scopes));
    }
    let app_id = grant.app_id.ok_or(SlackError::new("invalid_auth"))?;
    let limit = match p.get("limit").filter(|l| !l.is_empty()) {
        None => DEFAULT_LIMIT,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => return Err(SlackError::new("invalid_limit")),
        },
    };
    let oldest = match p.get("oldest").filter(|o| !o.is_empty()) {
        None => 0,
        Some(o) => match o.parse::<f64>() {
            Ok(v) if v.is_finite() && v >= 0.0 => v.floor() as i64,
            _ => return Err(SlackError::new("invalid_ts_oldest")),
        },
    };
    let status = match p.get("status").filter(|st| !st.is_empty()) {
        None => None,
        Some(st) => Some(DeliveryStatus::parse(st).ok_or(SlackError::new("invalid_status"))?),
    };
    let after = match p.get("cursor").filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => Some(after(&app_id, c).ok_or(SlackError::new("invalid_cursor"))?),
    };
    let app = s
        .store
        .get_app(&app_id)
        .await?
        .ok_or(SlackError::new("invalid_auth"))?;
    let q = FeedQuery {
        oldest,
        after,
        team_id: p
            .get("team_id")
            .filter(|t| !t.is_empty())
            .map(str::to_string),
        status,
        limit,
    };
    let rows = s.store.feed(&app_id, &q).await?;
    let key = s.store.event_context_key();
    let next = match rows.last() {
        Some((d, _)) if rows.len() == limit => cursor(&app_id, d.seq),
        _ => String::new(),
    };
    let mut events = Vec::with_capacity(rows.len());
    for (d, ev) in rows {
        let envelope = match tidings_delivery::envelope::for_delivery(
            &s.catalog, &key, &ev, &d, &app,
        ) {
            Ok(body) => serde_json::from_slice(&body).unwrap_or(Value::Null),
            Err(e) => {
                tracing::error!(delivery = %d.id, error = %e, "cannot build the envelope for the feed");
                Value::Null
            }
        };
        events.push(json!({
            "envelope": envelope,
            "delivery": {"id": d.id, "status": d.status.as_str()},
        }));
    }
    let mut meta = json!({"next_cursor": next});
    if let Some(message) = past_retention(s, oldest) {
        meta["warnings"] = json!(["oldest_past_retention"]);
        meta["messages"] = json!([message]);
    }
    Ok(axum::Json(json!({
        "ok": true,
        "events": events,
        "response_metadata": meta,
    }))
    .into_response())
}

fn kept_for(age: std::time::Duration) -> String {
    if age.is_zero() {
        "forever".into()
    } else {
        crate::config::duration::format(age)
    }
}

/// When `oldest` reaches back past what retention keeps, what the feed cannot list (as
/// Slack's `response_metadata.warnings` / `messages`): the gap is not silent.
fn past_retention(s: &AppState, oldest: i64) -> Option<String> {
    let r = &s.config.retention;
    if !r.enabled {
        return None;
    }
    // The shortest age: deliveries older than it may be gone.
    let kept = [r.delivered, r.failed]
        .into_iter()
        .filter(|a| !a.is_zero())
        .min()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let horizon = now.saturating_sub(kept.as_secs() as i64);
    (oldest < horizon).then(|| {
        format!(
            "[retention] keeps delivered deliveries {} and failed and dropped ones {}: \
             anything older than {horizon} (Unix seconds) may have been pruned and is not listed",
            kept_for(r.delivered),
            kept_for(r.failed),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_names_a_seq_only_for_its_own_app() {
        let c = cursor("A01", 42);
        assert_eq!(after("A01", &c), Some(42));
        assert_eq!(after("A02", &c), None);
        assert_eq!(after("A01", "not a cursor"), None);
    }
}

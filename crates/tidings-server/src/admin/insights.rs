//! Operator API: insights (`/insights/events`, `/insights/key_events`,
//! `/insights/deliveries`), answered from the store's rollups, never from raw events.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use tidings_core::ids::IdKind;
use tidings_store::insights::{
    latency_quantile, out_of_range, DeliveryCounts, EventInsights, Granularity, InsightRange,
    TypeInsight, TIMES,
};
use tidings_store::{App, PageRequest};

use super::validate;
use crate::error::Problem;
use crate::extract::ApiQuery;
use crate::state::AppState;

/// The default range: the last day.
const DEFAULT_RANGE_SECS: i64 = 86_400;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    team_id: Option<String>,
    from: Option<i64>,
    to: Option<i64>,
    granularity: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    app_id: Option<String>,
    from: Option<i64>,
    to: Option<i64>,
    granularity: Option<String>,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The range asked for: `to` defaults to now, `from` to a day before `to`, the
/// granularity to what suits the range's length.
fn range(
    scope: Option<String>,
    from: Option<i64>,
    to: Option<i64>,
    granularity: Option<&str>,
) -> Result<InsightRange, Problem> {
    // Checked before any arithmetic: both are the client's.
    for (field, t) in [("from", from), ("to", to)] {
        if let Some(t) = t.filter(|t| !TIMES.contains(t)) {
            return Err(Problem::invalid_field(field, out_of_range(t)));
        }
    }
    let to = to.unwrap_or_else(now);
    let from = from.unwrap_or(to.saturating_sub(DEFAULT_RANGE_SECS).max(*TIMES.start()));
    let g = match granularity {
        None => Granularity::auto(to.saturating_sub(from)),
        Some(s) => Granularity::parse(s).ok_or_else(|| {
            Problem::invalid_field("granularity", "must be one of minute, hour, day")
        })?,
    };
    InsightRange::new(scope, from, to, g).map_err(|(field, m)| Problem::invalid_field(field, m))
}

fn range_json(r: &InsightRange) -> (i64, i64, &'static str) {
    (r.bucket_from(), r.bucket_to(), r.granularity.as_str())
}

async fn team_scope(s: &AppState, team: Option<String>) -> Result<Option<String>, Problem> {
    if let Some(t) = &team {
        validate::field_id(IdKind::Team, "team_id", t)?;
        if s.store.get_team(t).await?.is_none() {
            return Err(Problem::not_found(format!("team {t} does not exist")));
        }
    }
    Ok(team)
}

async fn key_event_names(s: &AppState) -> Result<Vec<String>, Problem> {
    Ok(s.store
        .list_key_events()
        .await?
        .into_iter()
        .map(|k| k.event_type)
        .collect())
}

/// `GET /insights/events`: per event type, its count, distinct users and series.
pub async fn events(
    State(s): State<AppState>,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> Result<Json<Value>, Problem> {
    let team = team_scope(&s, q.team_id).await?;
    let r = range(team, q.from, q.to, q.granularity.as_deref())?;
    let EventInsights { totals, types } = s.store.event_insights(&r).await?;
    let keys = key_event_names(&s).await?;
    let (from, to, g) = range_json(&r);
    let types: Vec<Value> = types
        .into_iter()
        .map(|t| {
            json!({
                "event_type": t.event_type,
                "key_event": keys.contains(&t.event_type),
                "count": t.count,
                "users": t.users,
                "refused_too_old": t.refused_too_old,
                "series": t.series,
            })
        })
        .collect();
    let series: Vec<Value> = totals
        .series
        .iter()
        .map(|p| match p.users {
            Some(u) => json!({"t": p.t, "events": p.count, "users": u}),
            None => json!({"t": p.t, "events": p.count}),
        })
        .collect();
    Ok(Json(json!({
        "team_id": r.scope,
        "from": from,
        "to": to,
        "granularity": g,
        "totals": {
            "events": totals.count,
            "users": totals.users,
            "refused_too_old": totals.refused_too_old,
        },
        "series": series,
        "event_types": types,
    })))
}

/// `GET /insights/key_events`: each key event's count, distinct users, and the share of
/// the range's active users who performed it.
pub async fn key_events(
    State(s): State<AppState>,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> Result<Json<Value>, Problem> {
    let team = team_scope(&s, q.team_id).await?;
    let r = range(team, q.from, q.to, q.granularity.as_deref())?;
    let EventInsights { totals, types } = s.store.event_insights(&r).await?;
    let active = totals.users;
    let (from, to, g) = range_json(&r);
    let items: Vec<Value> = key_event_names(&s)
        .await?
        .into_iter()
        .map(|name| {
            let t = types
                .iter()
                .find(|t| t.event_type == name)
                .cloned()
                .unwrap_or_else(|| TypeInsight {
                    event_type: name,
                    ..Default::default()
                });
            let share = if active == 0 {
                0.0
            } else {
                (t.users as f64 / active as f64 * 10_000.0).round() / 10_000.0
            };
            json!({
                "event_type": t.event_type,
                "count": t.count,
                "users": t.users,
                "share_of_active_users": share,
                "refused_too_old": t.refused_too_old,
                "series": t.series,
            })
        })
        .collect();
    Ok(Json(json!({
        "team_id": r.scope,
        "from": from,
        "to": to,
        "granularity": g,
        "active_users": active,
        "key_events": items,
    })))
}

fn counts_json(c: &DeliveryCounts) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    for (k, v) in [
        ("attempts", c.attempts),
        ("succeeded", c.succeeded),
        ("failed", c.failed),
        ("retries", c.retries),
        ("delivered", c.delivered),
        ("gave_up", c.gave_up),
        ("dropped", c.dropped),
    ] {
        m.insert(k.into(), v.into());
    }
    m
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Every app, or the one asked for.
async fn apps(s: &AppState, only: Option<&str>) -> Result<Vec<App>, Problem> {
    if let Some(a) = only {
        return Ok(vec![super::apps::app_in_path(s, a).await?]);
    }
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = s
            .store
            .list_apps(&PageRequest { limit: 1000, after })
            .await?;
        all.extend(page.items);
        match page.next_cursor {
            Some(_) => after = all.last().map(|a: &App| a.id.clone()),
            None => break,
        }
    }
    Ok(all)
}

/// `GET /insights/deliveries`: per app, attempts, success ratio, latency, retries, how
/// deliveries ended and why, and the numbers the health rule acts on now.
pub async fn deliveries(
    State(s): State<AppState>,
    ApiQuery(q): ApiQuery<DeliveriesQuery>,
) -> Result<Json<Value>, Problem> {
    let apps = apps(&s, q.app_id.as_deref()).await?;
    let r = range(q.app_id, q.from, q.to, q.granularity.as_deref())?;
    let ins = s.store.delivery_insights(&r).await?;
    let health = &s.engine.health;
    let cfg = health.config();
    let mut items: Vec<(bool, String, Value)> = apps
        .into_iter()
        .map(|app| {
            let a = ins.apps.iter().find(|a| a.app_id == app.id);
            let counts = a.map(|a| a.counts).unwrap_or_default();
            let mut m = counts_json(&counts);
            let ratio = (counts.attempts > 0).then(|| {
                (counts.succeeded as f64 / counts.attempts as f64 * 10_000.0).round() / 10_000.0
            });
            let latency = match (
                latency_quantile(&counts.latency, 0.5),
                latency_quantile(&counts.latency, 0.99),
            ) {
                (Some(p50), Some(p99)) => json!({"p50": round2(p50), "p99": round2(p99)}),
                _ => Value::Null,
            };
            let (ok, failed, events) = health.window(&app.id);
            let window_ratio = (ok + failed > 0).then(|| ok as f64 / (ok + failed) as f64);
            m.insert("success_ratio".into(), json!(ratio));
            m.insert("latency_ms".into(), latency);
            m.insert("drops".into(), json!(a.map(|a| &a.drops)));
            m.insert("failures".into(), json!(a.map(|a| &a.failures)));
            m.insert(
                "attempt_failures".into(),
                json!(a.map(|a| &a.attempt_failures)),
            );
            m.insert(
                "health".into(),
                json!({
                    "window_secs": cfg.window.as_secs(),
                    "attempts": ok + failed,
                    "events": events,
                    "success_ratio": window_ratio,
                    "min_events": cfg.min_events,
                    "min_success_ratio": cfg.min_success_ratio,
                }),
            );
            for (k, v) in [
                ("app_id", json!(app.id)),
                ("name", json!(app.name)),
                ("events_enabled", json!(app.events_enabled)),
                ("disabled_reason", json!(app.disabled_reason)),
                ("disabled_at", json!(app.disabled_at)),
                ("request_url", json!(app.request_url)),
                ("socket_mode", json!(app.socket_mode)),
            ] {
                m.insert(k.into(), v);
            }
            (app.events_enabled, app.id, Value::Object(m))
        })
        .collect();
    // Disabled apps first: they are the ones an operator must act on.
    items.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    let series: Vec<Value> = ins
        .series
        .iter()
        .map(|p| {
            let mut m = counts_json(&p.counts);
            m.insert("t".into(), p.t.into());
            Value::Object(m)
        })
        .collect();
    let mut totals = counts_json(&ins.totals);
    totals.insert("series".into(), Value::Array(series));
    let (from, to, g) = range_json(&r);
    Ok(Json(json!({
        "app_id": r.scope,
        "from": from,
        "to": to,
        "granularity": g,
        "totals": totals,
        "apps": items.into_iter().map(|i| i.2).collect::<Vec<_>>(),
    })))
}

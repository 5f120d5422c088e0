//! Operator API: insights (`/insights/events`, `/insights/key_events`,
//! `/insights/deliveries`), answered from the store's rollups, never from raw events.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use tidings_core::ids::IdKind;
use tidings_store::insights::{
    latency_quantile, out_of_range, DeliveryCounts, DeliveryPoint, EventInsights, EventPoint,
    Granularity, InsightRange, TypeInsight, TIMES,
};
use tidings_store::{App, PageRequest};

use super::validate;
use crate::error::Problem;
use crate::extract::ApiQuery;
use crate::state::AppState;

/// The default range: the last day.
const DEFAULT_RANGE_SECS: i64 = 86_400;

/// The range and scope of an events query.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// One team (default: every team).
    #[param(pattern = "^T[A-Z0-9]{2,30}$")]
    team_id: Option<String>,
    /// Start, Unix seconds (default: a day before `to`).
    #[param(minimum = 0, maximum = 253402300799.0)] // = tidings_store::insights::TIMES
    from: Option<i64>,
    /// End, Unix seconds (default: now).
    #[param(minimum = 0, maximum = 253402300799.0)] // = tidings_store::insights::TIMES
    to: Option<i64>,
    /// Bucket width (default: minute up to 6 h, hour up to 7 days, else day).
    #[param(value_type = Option<Granularity>)]
    granularity: Option<String>,
}

/// The range and scope of a deliveries query.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    /// One app (default: every app).
    #[param(pattern = "^A[A-Z0-9]{2,30}$")]
    app_id: Option<String>,
    /// Start, Unix seconds (default: a day before `to`).
    #[param(minimum = 0, maximum = 253402300799.0)] // = tidings_store::insights::TIMES
    from: Option<i64>,
    /// End, Unix seconds (default: now).
    #[param(minimum = 0, maximum = 253402300799.0)] // = tidings_store::insights::TIMES
    to: Option<i64>,
    /// Bucket width (default: minute up to 6 h, hour up to 7 days, else day).
    #[param(value_type = Option<Granularity>)]
    granularity: Option<String>,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The range asked for: `to` defaults to now, `from` to a day before `to`, the
/// granularity to what suits the range's length. Each parameter is checked on its own
/// (400); a range whose ends are each fine but that is refused as a whole (`from` not before
/// `to`, more buckets than one query spans) is a 422 `invalid_range`.
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
    // Each field is valid (checked above); a range refused as a whole (empty, or too many
    // buckets) is well-formed but refused: 422.
    InsightRange::new(scope, from, to, g).map_err(|(field, m)| {
        Problem::unprocessable("invalid_range", format!("{field}: {m}")).with_field(field, m)
    })
}

/// The range of an events query string as the handler reads it (for the fuzz targets).
#[cfg(feature = "fuzzing")]
pub(crate) fn events_query_range(q: &str) -> Result<InsightRange, Problem> {
    let q: EventsQuery = crate::extract::parse_query(q)?;
    range(q.team_id, q.from, q.to, q.granularity.as_deref())
}

/// The range of a deliveries query string as the handler reads it (for the fuzz targets).
#[cfg(feature = "fuzzing")]
pub(crate) fn deliveries_query_range(q: &str) -> Result<InsightRange, Problem> {
    let q: DeliveriesQuery = crate::extract::parse_query(q)?;
    range(q.app_id, q.from, q.to, q.granularity.as_deref())
}

/// What every insights answer starts with: the scope, and the range widened to whole
/// buckets.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RangeAnswer {
    /// Bucket start of the first bucket, Unix seconds.
    from: i64,
    /// End of the last bucket, Unix seconds.
    to: i64,
    granularity: Granularity,
}

fn range_json(r: &InsightRange) -> RangeAnswer {
    RangeAnswer {
        from: r.bucket_from(),
        to: r.bucket_to(),
        granularity: r.granularity,
    }
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

/// Every type together.
#[derive(Serialize, utoipa::ToSchema)]
pub struct EventTotals {
    events: u64,
    /// Distinct users over the range (the active users).
    users: u64,
    refused_too_old: u64,
}

/// One bucket of the totals' series.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TotalsPoint {
    /// Bucket start, Unix seconds.
    t: i64,
    events: u64,
    /// Distinct users in the bucket (hour and day granularity only).
    #[serde(skip_serializing_if = "Option::is_none")]
    users: Option<u64>,
}

/// One event type's counts over the range.
#[derive(Serialize, utoipa::ToSchema)]
pub struct EventTypeInsight {
    event_type: String,
    key_event: bool,
    count: u64,
    users: u64,
    refused_too_old: u64,
    /// Non-empty buckets, ascending.
    series: Vec<EventPoint>,
}

/// `GET /insights/events`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct EventsAnswer {
    team_id: Option<String>,
    #[serde(flatten)]
    range: RangeAnswer,
    totals: EventTotals,
    /// Non-empty buckets, ascending.
    series: Vec<TotalsPoint>,
    event_types: Vec<EventTypeInsight>,
}

/// `GET /insights/events`: per event type, its count, distinct users and series.
#[utoipa::path(
    get, path = "/insights/events", operation_id = "event_insights", tag = "insights",
    params(EventsQuery),
    responses(
        (status = 200, description = "Counts per event type over the range", body = EventsAnswer),
        (status = 404, description = "The team does not exist", body = Problem,
         content_type = super::openapi::PROBLEM_JSON),
        (status = 422, description = "`invalid_range`: `from` is not before `to`, or the range \
         spans more than 50,000 buckets", body = Problem,
         content_type = super::openapi::PROBLEM_JSON),
    ),
)]
pub async fn events(
    State(s): State<AppState>,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> Result<Json<EventsAnswer>, Problem> {
    let team = team_scope(&s, q.team_id).await?;
    let r = range(team, q.from, q.to, q.granularity.as_deref())?;
    let EventInsights { totals, types } = s.store.event_insights(&r).await?;
    let keys = key_event_names(&s).await?;
    let event_types = types
        .into_iter()
        .map(|t| EventTypeInsight {
            key_event: keys.contains(&t.event_type),
            event_type: t.event_type,
            count: t.count,
            users: t.users,
            refused_too_old: t.refused_too_old,
            series: t.series,
        })
        .collect();
    let series = totals
        .series
        .iter()
        .map(|p| TotalsPoint {
            t: p.t,
            events: p.count,
            users: p.users,
        })
        .collect();
    Ok(Json(EventsAnswer {
        range: range_json(&r),
        team_id: r.scope,
        totals: EventTotals {
            events: totals.count,
            users: totals.users,
            refused_too_old: totals.refused_too_old,
        },
        series,
        event_types,
    }))
}

/// One key event's counts over the range.
#[derive(Serialize, utoipa::ToSchema)]
pub struct KeyEventInsight {
    event_type: String,
    count: u64,
    users: u64,
    /// `users` / the range's active users, 0 to 1 (4 decimals).
    share_of_active_users: f64,
    refused_too_old: u64,
    series: Vec<EventPoint>,
}

/// `GET /insights/key_events`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct KeyEventsAnswer {
    team_id: Option<String>,
    #[serde(flatten)]
    range: RangeAnswer,
    /// Distinct users who did anything in the range.
    active_users: u64,
    key_events: Vec<KeyEventInsight>,
}

/// `GET /insights/key_events`: each key event's count, distinct users, and the share of
/// the range's active users who performed it.
#[utoipa::path(
    get, path = "/insights/key_events", operation_id = "key_event_insights", tag = "insights",
    params(EventsQuery),
    responses(
        (status = 200, description = "Counts per key event over the range", body = KeyEventsAnswer),
        (status = 404, description = "The team does not exist", body = Problem,
         content_type = super::openapi::PROBLEM_JSON),
        (status = 422, description = "`invalid_range`: `from` is not before `to`, or the range \
         spans more than 50,000 buckets", body = Problem,
         content_type = super::openapi::PROBLEM_JSON),
    ),
)]
pub async fn key_events(
    State(s): State<AppState>,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> Result<Json<KeyEventsAnswer>, Problem> {
    let team = team_scope(&s, q.team_id).await?;
    let r = range(team, q.from, q.to, q.granularity.as_deref())?;
    let EventInsights { totals, types } = s.store.event_insights(&r).await?;
    let active = totals.users;
    let key_events = key_event_names(&s)
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
            KeyEventInsight {
                event_type: t.event_type,
                count: t.count,
                users: t.users,
                share_of_active_users: share,
                refused_too_old: t.refused_too_old,
                series: t.series,
            }
        })
        .collect();
    Ok(Json(KeyEventsAnswer {
        range: range_json(&r),
        team_id: r.scope,
        active_users: active,
        key_events,
    }))
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

/// Latency quantiles of the attempts, in ms.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Latency {
    p50: f64,
    p99: f64,
}

/// What the health rule sees for the app now (its own window, not the query's range).
#[derive(Serialize, utoipa::ToSchema)]
pub struct HealthWindow {
    window_secs: u64,
    attempts: u64,
    events: u64,
    success_ratio: Option<f64>,
    min_events: u32,
    min_success_ratio: f64,
}

/// One app's deliveries over the range.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AppDeliveries {
    app_id: String,
    name: String,
    events_enabled: bool,
    disabled_reason: Option<String>,
    disabled_at: Option<i64>,
    request_url: Option<String>,
    socket_mode: bool,
    #[serde(flatten)]
    counts: DeliveryCounts,
    /// Successful attempts / attempts (4 decimals); `null` without attempts.
    success_ratio: Option<f64>,
    /// `null` without attempts.
    latency_ms: Option<Latency>,
    /// Dropped deliveries by reason (`rate_limited`, `app_disabled`).
    drops: Option<BTreeMap<String, u64>>,
    /// Deliveries that failed for good, by reason.
    failures: Option<BTreeMap<String, u64>>,
    /// Failed attempts by reason (`timeout`, `http_error`, …).
    attempt_failures: Option<BTreeMap<String, u64>>,
    health: HealthWindow,
}

/// Every app together.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DeliveryTotals {
    #[serde(flatten)]
    counts: DeliveryCounts,
    /// Non-empty buckets, ascending.
    series: Vec<DeliveryPoint>,
}

/// `GET /insights/deliveries`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DeliveriesAnswer {
    app_id: Option<String>,
    #[serde(flatten)]
    range: RangeAnswer,
    totals: DeliveryTotals,
    /// Disabled apps first, then by id.
    apps: Vec<AppDeliveries>,
}

/// `GET /insights/deliveries`: per app, attempts, success ratio, latency, retries, how
/// deliveries ended and why, and the numbers the health rule acts on now.
#[utoipa::path(
    get, path = "/insights/deliveries", operation_id = "delivery_insights", tag = "insights",
    params(DeliveriesQuery),
    responses(
        (status = 200, description = "Delivery counts per app over the range", body = DeliveriesAnswer),
        (status = 404, description = "The app does not exist", body = Problem,
         content_type = super::openapi::PROBLEM_JSON),
        (status = 422, description = "`invalid_range`: `from` is not before `to`, or the range \
         spans more than 50,000 buckets", body = Problem,
         content_type = super::openapi::PROBLEM_JSON),
    ),
)]
pub async fn deliveries(
    State(s): State<AppState>,
    ApiQuery(q): ApiQuery<DeliveriesQuery>,
) -> Result<Json<DeliveriesAnswer>, Problem> {
    let apps = apps(&s, q.app_id.as_deref()).await?;
    let r = range(q.app_id, q.from, q.to, q.granularity.as_deref())?;
    let ins = s.store.delivery_insights(&r).await?;
    let health = &s.engine.health;
    let cfg = health.config();
    let mut items: Vec<AppDeliveries> = apps
        .into_iter()
        .map(|app| {
            let a = ins.apps.iter().find(|a| a.app_id == app.id);
            let counts = a.map(|a| a.counts).unwrap_or_default();
            let ratio = (counts.attempts > 0).then(|| {
                (counts.succeeded as f64 / counts.attempts as f64 * 10_000.0).round() / 10_000.0
            });
            let latency = match (
                latency_quantile(&counts.latency, 0.5),
                latency_quantile(&counts.latency, 0.99),
            ) {
                (Some(p50), Some(p99)) => Some(Latency {
                    p50: round2(p50),
                    p99: round2(p99),
                }),
                _ => None,
            };
            let (ok, failed, events) = health.window(&app.id);
            let window_ratio = (ok + failed > 0).then(|| ok as f64 / (ok + failed) as f64);
            AppDeliveries {
                counts,
                success_ratio: ratio,
                latency_ms: latency,
                drops: a.map(|a| a.drops.clone()),
                failures: a.map(|a| a.failures.clone()),
                attempt_failures: a.map(|a| a.attempt_failures.clone()),
                health: HealthWindow {
                    window_secs: cfg.window.as_secs(),
                    attempts: ok + failed,
                    events,
                    success_ratio: window_ratio,
                    min_events: cfg.min_events,
                    min_success_ratio: cfg.min_success_ratio,
                },
                app_id: app.id,
                name: app.name,
                events_enabled: app.events_enabled,
                disabled_reason: app.disabled_reason,
                disabled_at: app.disabled_at,
                request_url: app.request_url,
                socket_mode: app.socket_mode,
            }
        })
        .collect();
    // Disabled apps first: they are the ones an operator must act on.
    items.sort_by(|a, b| (a.events_enabled, &a.app_id).cmp(&(b.events_enabled, &b.app_id)));
    Ok(Json(DeliveriesAnswer {
        range: range_json(&r),
        app_id: r.scope,
        totals: DeliveryTotals {
            counts: ins.totals,
            series: ins.series,
        },
        apps: items,
    }))
}

//! `tidings relay`: a local process any service (in any language) publishes to instead of
//! Tidings itself. It takes `POST /admin/v1/events` and `/admin/v1/events/batch` with the
//! same bodies and the publisher token, answers `202` once the events are fsynced in its
//! spool, and forwards them with `tidings-client` to one or several Tidings nodes (failing
//! over between them), resending through outages; a node's 4xx is kept aside in
//! `<spool>/dead-letter.ndjson`, never retried and never dropped silently.
//! `GET /metrics` (Prometheus text) and `GET /healthz` need no token.

use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Args;
use serde_json::{json, Value};
use tidings_client::{Client, Config, Error};

#[derive(Args, Debug)]
pub struct RelayOpts {
    /// Where to listen: `127.0.0.1:3900`, or `unix:/run/tidings-relay.sock`.
    #[arg(long, default_value = "127.0.0.1:3900")]
    pub listen: String,
    /// Tidings base URLs, comma-separated, tried in order (fail-over).
    #[arg(long, value_delimiter = ',', required = true)]
    pub upstream: Vec<String>,
    /// The spool directory (created if missing).
    #[arg(long)]
    pub spool: std::path::PathBuf,
    /// The spool's bound in bytes; past it publishes get 503 `spool_full`.
    #[arg(long, default_value_t = 1 << 30)]
    pub max_spool_bytes: u64,
    /// Events per batch sent upstream (1 to 1000).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub batch_size: u32,
    /// How long a partial batch waits for more, in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub linger_ms: u64,
    /// Batches sent upstream at once, awaiting their answers (1 to 64).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub max_in_flight: u32,
    /// The nodes' `events.max_event_age` in seconds: older events are dropped, counted.
    #[arg(long, default_value_t = 72 * 3600)]
    pub max_event_age_secs: u64,
    /// The publisher (or admin) token: sent upstream, and required from local callers.
    #[arg(long, env = "TIDINGS_PUBLISHER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

#[derive(Clone)]
struct Relay {
    client: Client,
    token: String,
    unauthorized: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// A problem+json answer, as the operator API gives.
fn problem(status: StatusCode, code: &str, detail: impl Into<String>) -> Response {
    let body = json!({
        "type": format!("urn:tidings:problem:{code}"),
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail.into(),
        "errors": [],
    });
    let mut res = (status, body.to_string()).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/problem+json"),
    );
    if status == StatusCode::SERVICE_UNAVAILABLE {
        res.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    res
}

fn refused(e: Error) -> Response {
    match e {
        Error::Invalid(m) => problem(StatusCode::BAD_REQUEST, "invalid_field", m),
        e @ Error::SpoolFull { .. } => {
            tracing::warn!(error = %e, "relay spool full");
            problem(StatusCode::SERVICE_UNAVAILABLE, "spool_full", e.to_string())
        }
        e => {
            tracing::error!(error = %e, "relay spool unusable");
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "spool_unavailable",
                e.to_string(),
            )
        }
    }
}

async fn require_token(State(r): State<Relay>, req: Request, next: Next) -> Response {
    let presented = bearer(req.headers()).unwrap_or("");
    if !tidings_core::token::constant_time_eq(presented.as_bytes(), r.token.as_bytes()) {
        r.unauthorized
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return problem(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong Authorization: Bearer <publisher token> (the relay's TIDINGS_PUBLISHER_TOKEN)",
        );
    }
    next.run(req).await
}

fn bearer(h: &HeaderMap) -> Option<&str> {
    let v = h.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

fn parse(body: &[u8]) -> Result<Value, Box<Response>> {
    serde_json::from_slice(body).map_err(|e| {
        Box::new(problem(
            StatusCode::BAD_REQUEST,
            "malformed",
            format!("the request body is not valid JSON: {e}"),
        ))
    })
}

async fn publish_one(State(r): State<Relay>, body: axum::body::Bytes) -> Response {
    let v = match parse(&body) {
        Ok(v) => v,
        Err(res) => return *res,
    };
    match r.client.publish(v).await {
        Ok(key) => (
            StatusCode::ACCEPTED,
            Json(json!({"idempotency_key": key, "spooled": true})),
        )
            .into_response(),
        Err(e) => refused(e),
    }
}

async fn publish_batch(State(r): State<Relay>, body: axum::body::Bytes) -> Response {
    let v = match parse(&body) {
        Ok(v) => v,
        Err(res) => return *res,
    };
    let Some(events) = v.get("events").and_then(Value::as_array).cloned() else {
        return problem(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            "events: must be an array of publish bodies",
        );
    };
    if events.is_empty() || events.len() > 1000 {
        return problem(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            format!("events: must hold 1 to 1000 events, got {}", events.len()),
        );
    }
    match r.client.publish_batch(events).await {
        Ok(keys) => {
            let results: Vec<Value> = keys
                .into_iter()
                .map(|k| json!({"idempotency_key": k, "spooled": true}))
                .collect();
            (StatusCode::ACCEPTED, Json(json!({"results": results}))).into_response()
        }
        Err(e) => refused(e),
    }
}

async fn metrics(State(r): State<Relay>) -> Response {
    let s = r.client.stats();
    let mut out = String::new();
    let mut line = |name: &str, kind: &str, help: &str, v: u64| {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"
        ));
    };
    line(
        "tidings_relay_events_spooled_total",
        "counter",
        "Events taken into the spool.",
        s.handed,
    );
    line(
        "tidings_relay_spool_full_total",
        "counter",
        "Publishes refused because the spool was full.",
        s.refused_full,
    );
    line(
        "tidings_relay_events_acknowledged_total",
        "counter",
        "Events a node acknowledged.",
        s.acknowledged,
    );
    line(
        "tidings_relay_events_duplicate_total",
        "counter",
        "Acknowledgements that were duplicates of a resend.",
        s.duplicates,
    );
    line(
        "tidings_relay_events_too_old_total",
        "counter",
        "Events dropped past max_event_age.",
        s.dropped_too_old,
    );
    line(
        "tidings_relay_events_dead_lettered_total",
        "counter",
        "Events a node refused (4xx), kept in dead-letter.ndjson.",
        s.dead_lettered,
    );
    line(
        "tidings_relay_retries_total",
        "counter",
        "Batches resent after no node accepted them.",
        s.retries,
    );
    line(
        "tidings_relay_batches_total",
        "counter",
        "Batches sent upstream.",
        s.batches,
    );
    line(
        "tidings_relay_batches_in_flight",
        "gauge",
        "Batches sent upstream and awaiting their answer.",
        s.in_flight,
    );
    line(
        "tidings_relay_batches_in_flight_peak",
        "gauge",
        "The most batches that were in flight at once since the relay started.",
        s.peak_in_flight,
    );
    line(
        "tidings_relay_unauthorized_total",
        "counter",
        "Local requests with a missing or wrong token.",
        r.unauthorized.load(std::sync::atomic::Ordering::Relaxed),
    );
    line(
        "tidings_relay_spool_events",
        "gauge",
        "Events in the spool not yet done.",
        s.pending,
    );
    line(
        "tidings_relay_spool_bytes",
        "gauge",
        "The spool file's size.",
        s.spool_bytes,
    );
    line(
        "tidings_relay_spool_torn_bytes",
        "gauge",
        "Torn tail cut off when the spool was opened.",
        s.torn_bytes,
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

async fn healthz(State(r): State<Relay>) -> Response {
    let s = r.client.stats();
    Json(json!({
        "ok": true,
        "pending": s.pending,
        "spool_bytes": s.spool_bytes,
        "last_error": r.client.last_error(),
    }))
    .into_response()
}

pub async fn run(o: RelayOpts) -> Result<(), String> {
    crate::logging::init("text");
    let token =
        o.token.clone().filter(|t| !t.is_empty()).ok_or(
            "no upstream token: set TIDINGS_PUBLISHER_TOKEN (a tdk_pub_… publisher token)",
        )?;
    let mut cfg = Config::new(o.upstream.clone(), token.clone(), o.spool.clone());
    cfg.max_spool_bytes = o.max_spool_bytes;
    cfg.batch_size = o.batch_size as usize;
    cfg.linger = Duration::from_millis(o.linger_ms);
    cfg.max_in_flight = o.max_in_flight as usize;
    cfg.max_event_age = Duration::from_secs(o.max_event_age_secs);
    let client = Client::open(cfg).map_err(|e| e.to_string())?;
    let stats = client.stats();
    let relay = Relay {
        client: client.clone(),
        token,
        unauthorized: Default::default(),
    };
    let publish = Router::new()
        .route("/admin/v1/events", post(publish_one))
        .route("/admin/v1/events/batch", post(publish_batch))
        .layer(DefaultBodyLimit::max(32 << 20))
        .layer(axum::middleware::from_fn_with_state(
            relay.clone(),
            require_token,
        ));
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .merge(publish)
        .with_state(relay);
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let upstreams = o.upstream.join(",");
    if let Some(path) = o.listen.strip_prefix("unix:") {
        let _ = std::fs::remove_file(path);
        let l = tokio::net::UnixListener::bind(path)
            .map_err(|e| format!("cannot listen on {path}: {e}"))?;
        println!(
            "tidings relay listening on unix:{path} (upstream {upstreams}, {} spooled)",
            stats.pending
        );
        axum::serve(l, app)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|e| e.to_string())?;
    } else {
        let l = tokio::net::TcpListener::bind(&o.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", o.listen))?;
        let addr = l.local_addr().map_err(|e| e.to_string())?;
        println!(
            "tidings relay listening on http://{addr} (upstream {upstreams}, {} spooled)",
            stats.pending
        );
        axum::serve(l, app)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|e| e.to_string())?;
    }
    client.close().await;
    Ok(())
}

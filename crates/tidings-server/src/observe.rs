//! Health, readiness and Prometheus metrics: `/healthz`, `/readyz`, `/metrics`, and the
//! middleware that counts and times every HTTP request by route.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::state::AppState;

/// The process-wide Prometheus recorder (a process may build several routers in tests,
/// but there is one global recorder).
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0,
                ])
                .expect("static buckets are valid")
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full("tidings_store_batch_jobs".into()),
                    &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0],
                )
                .expect("static buckets are valid")
                .build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder was installed first; then ours just is not global.
            let _ = metrics::set_global_recorder(recorder);
            // Counters of rare events exist from the start, at 0: Prometheus's increase()
            // cannot see a series' first sample, so an alert on the first app disabled
            // would never fire if the series appeared only then (deploy/prometheus).
            for name in [
                "tidings_apps_disabled_total",
                "tidings_delivery_lanes_paced_total",
                "tidings_rate_limited_minutes_total",
            ] {
                metrics::counter!(name).increment(0);
            }
            // Gauges the dashboard shows, there before the first Socket Mode connection
            // or delivery moves them.
            for name in [
                "tidings_socket_connections",
                "tidings_rtm_connections",
                "tidings_deliveries_in_flight",
            ] {
                metrics::gauge!(name).increment(0.0);
            }
            handle
        })
        .clone()
}

pub async fn healthz() -> &'static str {
    "ok"
}

pub async fn readyz(State(state): State<AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("store unreachable: {e}"),
        )
            .into_response(),
    }
}

/// The Prometheus text. Each scrape first asks the store whether it answers
/// (`tidings_store_up`, 1 or 0), so "the store is away" is a metric an alert can watch
/// without anything probing `/readyz`.
pub async fn metrics_text(State(state): State<AppState>) -> Response {
    let up = state.store.ping().await.is_ok();
    metrics::gauge!("tidings_store_up").set(if up { 1.0 } else { 0.0 });
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

/// Counts requests (`tidings_http_requests_total`) and times them
/// (`tidings_http_request_duration_seconds`) by method, matched route and status. Every
/// label comes from a closed set, whatever a client sends: the method is one of
/// [`method_label`]'s, the route is the route template that matched (or `unmatched`), and
/// the status is one the server chose.
pub async fn track(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = method_label(req.method());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let res = next.run(req).await;
    let status = res.status().as_u16().to_string();
    metrics::counter!("tidings_http_requests_total", "method" => method, "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("tidings_http_request_duration_seconds", "method" => method, "route" => route)
        .record(start.elapsed().as_secs_f64());
    res
}

/// The method as a label: the standard ones by name, anything else `other`.
pub fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_up_methods_share_one_label() {
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        for m in ["FOO", "BREW", "get", "CONNECT", "TRACE"] {
            let m = Method::from_bytes(m.as_bytes()).unwrap();
            assert_eq!(method_label(&m), "other", "{m}");
        }
    }
}

//! The `ceiling` scenario: what this machine's loopback HTTP does with no Tidings at all.
//! The harness's own client (reqwest, keep-alive, 64 requests in flight — one app's lane)
//! POSTs 1.3 KB envelope-shaped bodies to the harness's receiver for the duration. Its
//! requests per second bound what any server could deliver here over HTTP to this
//! receiver, and its CPU seconds (the whole harness process: client and receiver) show
//! what the HTTP exchanges alone cost. Nothing is stored, signed or fanned out.

use std::sync::atomic::Ordering;
use std::time::Instant;

use tokio::task::JoinSet;

use crate::receiver::{self, now_us};
use crate::scenarios::{percentiles, Outcome, Params};

/// Requests in flight at once: a lane's default `max_in_flight_per_app`.
const IN_FLIGHT: usize = 64;

/// CPU seconds this process has used (user + system).
fn own_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

pub async fn run(p: &Params) -> Result<Outcome, String> {
    let (url, stats) = receiver::start().await?;
    let c = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(IN_FLIGHT)
        .build()
        .map_err(|e| e.to_string())?;
    let pad = "x".repeat(800);
    let cpu0 = own_cpu_seconds();
    let t0 = Instant::now();
    let end = t0 + p.duration;
    let mut set = JoinSet::new();
    for w in 0..IN_FLIGHT {
        let (c, url, pad) = (c.clone(), format!("{url}/ceiling"), pad.clone());
        set.spawn(async move {
            let mut n = 0u64;
            while Instant::now() < end {
                let body = format!(
                    r#"{{"token":"verificationtoken0123456789","team_id":"T000000","api_app_id":"A000000","event":{{"type":"message","channel":"C000000","user":"U000000","text":"b{} {w}-{n}","pad":"{pad}","event_ts":"1700000000.000100","channel_type":"channel"}},"type":"event_callback","event_id":"Ev0000000000{n}","event_time":1700000000,"authorizations":[{{"enterprise_id":null,"team_id":"T000000","user_id":"U000001","is_bot":true,"is_enterprise_install":false}}],"is_ext_shared_channel":false,"event_context":"4-eyJldCI6Im1lc3NhZ2UuY2hhbm5lbHMiLCJ0aWQiOiJUMDEifQ"}}"#,
                    now_us()
                );
                let res = c
                    .post(&url)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .header("x-slack-signature", "v0=0000000000000000000000000000000000000000000000000000000000000000")
                    .header("x-slack-request-timestamp", "1700000000")
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                if !res.status().is_success() {
                    return Err(format!("the receiver answered {}", res.status()));
                }
                let _ = res.bytes().await;
                n += 1;
            }
            Ok::<u64, String>(n)
        });
    }
    let mut sent = 0;
    while let Some(r) = set.join_next().await {
        sent += r.map_err(|e| e.to_string())??;
    }
    let secs = t0.elapsed().as_secs_f64().max(1e-9);
    let cpu = own_cpu_seconds() - cpu0;
    let received = stats.received.load(Ordering::Relaxed);
    let (p50, p99, max) = percentiles(&stats);
    Ok(Outcome {
        scenario: "ceiling".into(),
        events: sent,
        deliveries: received,
        events_per_sec: sent as f64 / secs,
        deliveries_per_sec: received as f64 / secs,
        p50_ms: p50,
        p99_ms: p99,
        max_ms: max,
        server_cpu_s: cpu,
        peak_rss_mb: 0.0,
        publish_p99_ms: None,
        idle_rss_mb: None,
        note: format!(
            "no Tidings: loopback HTTP alone, {IN_FLIGHT} in flight; cpu s is the harness (client + receiver), {:.0} us per request",
            cpu / (received.max(1) as f64) * 1e6
        ),
    })
}

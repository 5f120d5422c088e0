//! The `backlog` scenario: one app's endpoint is down while a pile of deliveries for it
//! grows, and the healthy app next to it must still get its events on time.
//!
//! - The down app's Request URL is verified while its endpoint is up ([`receiver::Down`]
//!   answers the handshake), then the endpoint goes down: its port is closed, so every
//!   attempt is refused at connect and retried on Slack's schedule. The health rule's
//!   minimum volume is raised so the app is not disabled: the pile is what is measured.
//! - Fill: 1 KB events in a team where only the down app is installed, in batches of 500
//!   from 2 publishers, until 1,000,000 deliveries are pending (20,000 in `--quick`) or a
//!   time bound passes. The pile is read from the server's `tidings_deliveries_pending`.
//! - Measure: for `duration`, 1,000 events/s in a second team where the healthy app (the
//!   receiver) and the down app are both installed, so the pile keeps growing; latency is
//!   the healthy app's publish→arrival only. Peak RSS covers the whole run.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::receiver::{self, now_us};
use crate::scenarios::{
    admin, drain, http_client, publish, publish_up_to, team, Outcome, Pace, Params,
};
use crate::server::Server;

const DOWN: &str = "A000000";
const HEALTHY: &str = "A000001";

/// The server's `/metrics` text.
async fn metrics(c: &reqwest::Client, url: &str) -> Result<String, String> {
    c.get(format!("{url}/metrics"))
        .send()
        .await
        .map_err(|e| format!("/metrics: {e}"))?
        .text()
        .await
        .map_err(|e| format!("/metrics: {e}"))
}

/// The sum of the samples of metric `name` whose labels contain every one of `with` and
/// none of `without`.
fn metric_sum(text: &str, name: &str, with: &[&str], without: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let labels = series.strip_prefix(name)?;
            let labels_ok = (labels.is_empty() || labels.starts_with('{'))
                && with.iter().all(|w| labels.contains(w))
                && !without.iter().any(|w| labels.contains(w));
            labels_ok.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

/// Deliveries pending in the store, as the server last counted them (every 5 s).
async fn pending(c: &reqwest::Client, url: &str) -> Result<u64, String> {
    let text = metrics(c, url).await?;
    Ok(metric_sum(&text, "tidings_deliveries_pending", &[], &[]) as u64)
}

/// Waits (at most `bound`) for the server's pending count to reach `at_least`; returns the
/// last count seen.
async fn pending_at_least(
    c: &reqwest::Client,
    url: &str,
    at_least: u64,
    bound: Duration,
) -> Result<u64, String> {
    let deadline = Instant::now() + bound;
    loop {
        let n = pending(c, url).await?;
        if n >= at_least || Instant::now() >= deadline {
            return Ok(n);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub async fn run(p: &Params) -> Result<Outcome, String> {
    let (pile_target, fill_bound) = if p.quick {
        (20_000u64, Duration::from_secs(60))
    } else {
        (1_000_000u64, Duration::from_secs(300))
    };
    // Every attempt to the down app fails; with the default minimum volume the health rule
    // would disable it after 1,000 events and the pile would stop growing.
    let server = Server::start(&p.bin, &[("TIDINGS_HEALTH_MIN_EVENTS", "4000000000")])?;
    let (recv_url, stats) = receiver::start().await?;
    let (down_url, down) = receiver::start_down().await?;
    let c = http_client()?;
    let url = server.url.as_str();
    admin(&c, url, reqwest::Method::POST, "/apps",
        json!({"id": DOWN, "name": "bench down", "request_url": down_url, "bot_events": ["message.channels"]})).await?;
    down.take_down().await?;
    admin(&c, url, reqwest::Method::POST, "/apps",
        json!({"id": HEALTHY, "name": "bench healthy", "request_url": format!("{recv_url}/healthy"), "bot_events": ["message.channels"]})).await?;
    let fill_place = team(&c, url, 0, &[DOWN.to_string()]).await?;
    let live_place = team(&c, url, 1, &[HEALTHY.to_string(), DOWN.to_string()]).await?;

    // Fill: only the down app is installed in team 0.
    let t_fill = Instant::now();
    let filled = publish_up_to(
        &c,
        url,
        &[fill_place],
        fill_bound,
        Pace::BULK,
        pile_target,
        None,
    )
    .await?
    .events;
    let fill_s = t_fill.elapsed().as_secs_f64();
    let pile = pending_at_least(&c, url, filled, Duration::from_secs(15)).await?;

    // Measure: the healthy app and the down app in team 1, at 1,000 events/s.
    let cpu0 = server.cpu_seconds();
    let t0 = Instant::now();
    let start_us = now_us();
    let events = publish(&c, url, &[live_place], p.duration, Pace::Fixed(1000), None)
        .await?
        .events;
    let publish_secs = t0.elapsed().as_secs_f64();
    drain(&stats, events, p.drain).await;
    let received = stats.received.load(std::sync::atomic::Ordering::Relaxed);
    let cpu = server.cpu_seconds() - cpu0;
    // Every measured event left one more delivery for the down app; the gauge lags by up
    // to 5 s.
    let pile_end = pending_at_least(&c, url, pile + events, Duration::from_secs(6)).await?;
    let text = metrics(&c, url).await?;
    let refused = metric_sum(
        &text,
        "tidings_delivery_attempts_total",
        &["transport=\"http\""],
        &["outcome=\"success\""],
    ) as u64;

    let mut note = format!(
        "pile for the down app: {pile} pending after the fill ({filled} events in {fill_s:.0} s, {:.0}/s{}), {pile_end} at the end; {refused} attempts failed at its closed port; latency is the healthy app's",
        filled as f64 / fill_s.max(1e-9),
        if filled < pile_target { ", time bound hit" } else { "" },
    );
    let events_per_sec = events as f64 / publish_secs.max(1e-9);
    if events_per_sec < 950.0 {
        // One paced publisher waits for each call: a slow publish path lowers the rate.
        note.push_str(&format!(
            "; publishing held only {events_per_sec:.0} of the 1,000 events/s asked"
        ));
    }
    if received < events {
        note.push_str(&format!(
            "; only {received} of {events} healthy deliveries arrived within the drain time"
        ));
    }
    let hits = down.hits.load(std::sync::atomic::Ordering::Relaxed);
    if hits > 0 {
        note.push_str(&format!(
            "; {hits} deliveries reached the down endpoint before it went down"
        ));
    }
    Ok(Outcome {
        events,
        events_per_sec,
        server_cpu_s: cpu,
        peak_rss_mb: server.peak_rss_mb(),
        note,
        ..Outcome::arrivals("backlog", &stats, start_us)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_samples_are_summed_by_labels() {
        let text = "# TYPE tidings_deliveries_pending gauge\n\
            tidings_deliveries_pending 1200\n\
            tidings_deliveries_pending_other 7\n\
            tidings_delivery_attempts_total{transport=\"http\",outcome=\"success\"} 5\n\
            tidings_delivery_attempts_total{transport=\"http\",outcome=\"connection_failed\"} 30\n\
            tidings_delivery_attempts_total{transport=\"http\",outcome=\"http_timeout\"} 2\n";
        assert_eq!(
            metric_sum(text, "tidings_deliveries_pending", &[], &[]),
            1200.0
        );
        assert_eq!(
            metric_sum(
                text,
                "tidings_delivery_attempts_total",
                &["transport=\"http\""],
                &["outcome=\"success\""]
            ),
            32.0
        );
    }
}

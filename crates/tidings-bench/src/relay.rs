//! The `relay` scenario: `throughput` (one team, one app, batches of 500 as fast as the
//! closed loop allows) published through a `tidings relay` in front of the node instead of
//! to the node itself. The relay answers once events are fsynced in its spool and forwards
//! them in batches of up to 1,000; compare its events/s and deliveries/s with
//! `throughput`'s (the bar: within 10 %). `cpu s` is the server's only.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::receiver::{self, now_us};
use crate::scenarios::{
    drain, http_client, publish, setup, Outcome, Pace, Params, Window, MAX_OUTSTANDING,
};
use crate::server::{Server, ADMIN};

struct RelayProcess(Child);

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_relay(
    bin: &str,
    upstream: &str,
    spool: &std::path::Path,
) -> Result<(RelayProcess, String), String> {
    let mut child = Command::new(bin)
        .args(["relay", "--listen", "127.0.0.1:0", "--upstream", upstream])
        .args(["--batch-size", "1000", "--linger-ms", "5", "--spool"])
        .arg(spool)
        .env("TIDINGS_PUBLISHER_TOKEN", ADMIN)
        .env("TIDINGS_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start the relay: {e}"))?;
    let out = child.stdout.take().ok_or("no stdout")?;
    let relay = RelayProcess(child);
    let line = BufReader::new(out)
        .lines()
        .map_while(Result::ok)
        .find(|l| l.starts_with("tidings relay listening on "))
        .ok_or("the relay did not start")?;
    let url = line
        .trim_start_matches("tidings relay listening on ")
        .split(' ')
        .next()
        .unwrap_or_default()
        .to_string();
    Ok((relay, url))
}

pub async fn run(p: &Params) -> Result<Outcome, String> {
    let server = Server::start(&p.bin, &[])?;
    let (recv_url, stats) = receiver::start().await?;
    let c = http_client()?;
    let places = setup(&c, &server.url, 1, 1, &recv_url).await?;
    let spool = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (_relay, relay_url) = start_relay(&p.bin, &server.url, spool.path())?;

    let cpu0 = server.cpu_seconds();
    let t0 = Instant::now();
    let start_us = now_us();
    let window = Window {
        stats: stats.clone(),
        per_event: 1,
        max_outstanding: MAX_OUTSTANDING,
    };
    let published = publish(
        &c,
        &relay_url,
        &places,
        p.duration,
        Pace::BULK,
        Some(window),
    )
    .await?;
    let events = published.events;
    let publish_secs = t0.elapsed().as_secs_f64();
    drain(&stats, events, p.drain.max(Duration::from_secs(20))).await;
    let received = stats.received.load(std::sync::atomic::Ordering::Relaxed);
    let mut note = "through a relay (compare with throughput)".to_string();
    if received < events {
        note =
            format!("{note}; only {received} of {events} deliveries arrived within the drain time");
    }
    Ok(Outcome {
        events,
        events_per_sec: events as f64 / publish_secs.max(1e-9),
        server_cpu_s: server.cpu_seconds() - cpu0,
        peak_rss_mb: server.peak_rss_mb(),
        publish_p99_ms: Some(published.call_p99_ms()),
        note,
        ..Outcome::arrivals("relay", &stats, start_us)
    })
}

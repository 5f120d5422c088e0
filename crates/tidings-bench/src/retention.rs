//! The `retention` scenario: steady publishing against a server that keeps finished
//! deliveries and events for seconds (`[retention]` ages of 20 s, pruned every second),
//! sampling the database's size while it runs, to show the size levelling off instead of
//! growing with every event.
//!
//! SQLite: `tidings.db` plus its `-wal` file. PostgreSQL (when `TIDINGS_BENCH_DATABASE_URL`
//! is set; the scenario runs in a fresh schema of that database, dropped afterwards):
//! `pg_total_relation_size` summed over the schema's tables (indexes and TOAST included),
//! read with `psql`. The samples go to stderr as they are taken and into the note.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::receiver::{self, now_us};
use crate::scenarios::{drain, http_client, publish, setup, Outcome, Pace, Params};
use crate::server::Server;

/// Events per second (one delivery each).
const RATE: u64 = 1000;
/// How long finished deliveries and events are kept.
const KEEP: &str = "20s";
/// How often the size is sampled.
const SAMPLE: Duration = Duration::from_secs(10);

/// Where the scenario's data lives and how big it is.
enum Db {
    Sqlite(std::path::PathBuf),
    Postgres { base: String, schema: String },
}

impl Db {
    /// The WAL's part of [`Db::size_bytes`] (SQLite; 0 on PostgreSQL).
    fn wal_bytes(&self) -> u64 {
        match self {
            Db::Sqlite(dir) => std::fs::metadata(dir.join("tidings.db-wal")).map_or(0, |m| m.len()),
            Db::Postgres { .. } => 0,
        }
    }

    fn size_bytes(&self) -> Result<u64, String> {
        match self {
            Db::Sqlite(dir) => Ok(["tidings.db", "tidings.db-wal"]
                .iter()
                .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
                .map(|m| m.len())
                .sum()),
            Db::Postgres { base, schema } => psql(
                base,
                &format!(
                    "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class c \
                     JOIN pg_namespace n ON n.oid = c.relnamespace \
                     WHERE n.nspname = '{schema}' AND c.relkind = 'r'"
                ),
            )?
            .trim()
            .parse()
            .map_err(|e| format!("size from psql: {e}")),
        }
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Db::Postgres { base, schema } = self {
            let _ = psql(base, &format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
        }
    }
}

/// What the server's `/metrics` says about retention.
#[derive(Default)]
struct RetentionMetrics {
    pruned_deliveries: u64,
    pruned_events: u64,
    last_run_s: f64,
    vacuums: u64,
}

async fn metrics(c: &reqwest::Client, url: &str) -> RetentionMetrics {
    let text = match c.get(format!("{url}/metrics")).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    let value = |prefix: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    RetentionMetrics {
        pruned_deliveries: value("tidings_retention_pruned_rows_total{table=\"deliveries\"}")
            as u64,
        pruned_events: value("tidings_retention_pruned_rows_total{table=\"events\"}") as u64,
        last_run_s: value("tidings_retention_last_run_seconds "),
        vacuums: value("tidings_retention_vacuums_total ") as u64,
    }
}

fn psql(url: &str, sql: &str) -> Result<String, String> {
    let out = std::process::Command::new("psql")
        .args([url, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .map_err(|e| format!("cannot run psql: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "psql: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub async fn run(p: &Params) -> Result<Outcome, String> {
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let data = tmp.path().join("data");
    let mut env: Vec<(String, String)> = [
        ("TIDINGS_RETENTION_DELIVERED", KEEP),
        ("TIDINGS_RETENTION_FAILED", KEEP),
        ("TIDINGS_RETENTION_EVENTS", KEEP),
        ("TIDINGS_RETENTION_INTERVAL", "1s"),
        // PostgreSQL: VACUUM the pruned tables once a minute (the default is 10 minutes,
        // long next to a 20 s window); SQLite ignores it.
        ("TIDINGS_RETENTION_VACUUM_INTERVAL", "1m"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let db = match std::env::var("TIDINGS_BENCH_DATABASE_URL") {
        Ok(base) if !base.trim().is_empty() => {
            let schema = format!("bench_retention_{}", std::process::id());
            psql(&base, &format!("CREATE SCHEMA {schema}"))?;
            let sep = if base.contains('?') { '&' } else { '?' };
            env.push((
                "TIDINGS_SERVER_DATABASE_URL".into(),
                format!("{base}{sep}options=-csearch_path%3D{schema}"),
            ));
            Db::Postgres { base, schema }
        }
        _ => Db::Sqlite(data.clone()),
    };
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let server = Server::start_in(&p.bin, &data, &env_refs)?;
    let (recv_url, stats) = receiver::start().await?;
    let c = http_client()?;
    let places = setup(&c, &server.url, 1, 1, &recv_url).await?;

    let cpu0 = server.cpu_seconds();
    let t0 = Instant::now();
    let start_us = now_us();
    let publisher = {
        let (c, url, places, duration) =
            (c.clone(), server.url.clone(), places.clone(), p.duration);
        tokio::spawn(
            async move { publish(&c, &url, &places, duration, Pace::Fixed(RATE), None).await },
        )
    };
    let mut samples: Vec<(u64, f64)> = Vec::new();
    let mut next = t0;
    while !publisher.is_finished() {
        if Instant::now() >= next {
            let mb = db.size_bytes()? as f64 / 1e6;
            let at = t0.elapsed().as_secs();
            let m = metrics(&c, &server.url).await;
            eprintln!(
                "retention: t={at:>4}s  database {mb:>8.1} MB (WAL {:>5.1})  delivered {:>7}  pruned deliveries {:>7} events {:>7}  last run {:.3}s  vacuums {}",
                db.wal_bytes() as f64 / 1e6,
                stats.received.load(Ordering::Relaxed),
                m.pruned_deliveries,
                m.pruned_events,
                m.last_run_s,
                m.vacuums,
            );
            samples.push((at, mb));
            next += SAMPLE;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let published = publisher.await.map_err(|e| e.to_string())??;
    let publish_secs = t0.elapsed().as_secs_f64();
    drain(&stats, published.events, p.drain).await;
    let end_mb = db.size_bytes()? as f64 / 1e6;
    samples.push((t0.elapsed().as_secs(), end_mb));
    let series: Vec<String> = samples
        .iter()
        .map(|(t, mb)| format!("{t}s:{mb:.1}"))
        .collect();
    let backend = match db {
        Db::Sqlite(_) => "SQLite db+wal",
        Db::Postgres { .. } => "PostgreSQL tables",
    };
    Ok(Outcome {
        events: published.events,
        events_per_sec: published.events as f64 / publish_secs.max(1e-9),
        server_cpu_s: server.cpu_seconds() - cpu0,
        peak_rss_mb: server.peak_rss_mb(),
        publish_p99_ms: Some(published.call_p99_ms()),
        note: format!("keep {KEEP}; {backend} MB over time: {}", series.join(" ")),
        ..Outcome::arrivals("retention", &stats, start_us)
    })
}

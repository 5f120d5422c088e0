//! The pruner: a task started at boot (one per node) that deletes what `[retention]` no
//! longer keeps, in batches of `batch` rows per transaction through the store's writer,
//! pausing between batches so the hot path never waits long behind it; and the wording of
//! "not found" answers for ids that may have been pruned.
//!
//! Metrics: `tidings_retention_pruned_rows_total{table}` (deliveries, attempts, events,
//! minute_rollups), `tidings_retention_last_run_seconds` (how long the last run took),
//! `tidings_retention_last_run_timestamp_seconds` (when the last run that did not fail
//! ended; set at start, so `time() - it` is the pruner's lag from the first minute on) and
//! `tidings_retention_errors_total` (runs or vacuums the store failed). Each run logs at
//! debug, or at info when it pruned something.
//!
//! After a run that deleted rows, [`Vacuum`] has the store `VACUUM` the pruned tables
//! (PostgreSQL only), at most every `retention.vacuum_interval`:
//! `tidings_retention_vacuums_total`, `tidings_retention_last_vacuum_seconds`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tidings_store::{Pruned, Retention, Store};

use crate::config::{duration, Config, RetentionConfig};

/// Pause between two batches of one run.
const BETWEEN_BATCHES: Duration = Duration::from_millis(20);

/// What the store keeps, or `None` when retention keeps everything.
pub fn policy(r: &RetentionConfig) -> Option<Retention> {
    let p = Retention {
        delivered_secs: r.delivered.as_secs() as i64,
        failed_secs: r.failed.as_secs() as i64,
        events_secs: r.events.as_secs() as i64,
        minute_rollups_secs: r.minute_rollups.as_secs() as i64,
        batch: r.batch as usize,
    };
    let any =
        p.delivered_secs > 0 || p.failed_secs > 0 || p.events_secs > 0 || p.minute_rollups_secs > 0;
    (r.enabled && any).then_some(p)
}

/// Starts the pruner when retention prunes anything; warns about ages shorter than what
/// other settings read back from the store.
pub fn spawn(store: Arc<dyn Store>, config: &Config) {
    let r = &config.retention;
    let Some(policy) = policy(r) else {
        tracing::info!("retention is off: nothing is pruned");
        return;
    };
    for (name, age) in [("delivered", r.delivered), ("failed", r.failed)] {
        let reads = config.health.window.max(config.rate_limit.window);
        if !age.is_zero() && age < reads {
            tracing::warn!(
                "retention.{name} ({}) is shorter than health.window or rate_limit.window ({}): \
                 the health rule and rate limits recounted from the store see fewer deliveries",
                duration::format(age),
                duration::format(reads)
            );
        }
    }
    if !r.events.is_zero() && r.events < config.events.max_event_age {
        tracing::warn!(
            "retention.events ({}) is shorter than events.max_event_age ({}): a pruned event's \
             idempotency_key may publish again",
            duration::format(r.events),
            duration::format(config.events.max_event_age)
        );
    }
    for table in TABLES {
        metrics::counter!("tidings_retention_pruned_rows_total", "table" => table).increment(0);
    }
    metrics::counter!("tidings_retention_errors_total").increment(0);
    metrics::gauge!("tidings_retention_last_run_seconds").set(0.0);
    metrics::gauge!("tidings_retention_last_run_timestamp_seconds").set(chrono_now() as f64);
    metrics::counter!("tidings_retention_vacuums_total").increment(0);
    let interval = r.interval;
    let mut vacuum = Vacuum::new(r.vacuum_interval);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            let pruned = run(store.as_ref(), policy).await;
            vacuum.after(store.as_ref(), pruned).await;
        }
    });
}

/// When to `VACUUM` after pruning (PostgreSQL; the store does nothing on SQLite): what
/// the runs since the last vacuum deleted, and when that was. A vacuum follows a run once
/// something was deleted and `every` has passed since the last one (or none ran yet).
pub struct Vacuum {
    every: std::time::Duration,
    last: Option<Instant>,
    pending: Pruned,
}

impl Vacuum {
    pub fn new(every: std::time::Duration) -> Vacuum {
        Vacuum {
            every,
            last: None,
            pending: Pruned::default(),
        }
    }

    /// Called after each run with what it deleted; vacuums when due.
    pub async fn after(&mut self, store: &dyn Store, pruned: Pruned) {
        if self.every.is_zero() {
            return;
        }
        self.pending.add(pruned);
        let due = self.last.is_none_or(|t| t.elapsed() >= self.every);
        if self.pending.total() == 0 || !due {
            return;
        }
        let started = Instant::now();
        match store.vacuum_pruned(self.pending).await {
            Ok(tables) if tables.is_empty() => {
                // SQLite, or another node holds the pruner's lock: nothing ran.
                self.pending = Pruned::default();
            }
            Ok(tables) => {
                let took = started.elapsed();
                metrics::counter!("tidings_retention_vacuums_total").increment(1);
                metrics::gauge!("tidings_retention_last_vacuum_seconds").set(took.as_secs_f64());
                tracing::info!(
                    tables = tables.join(","),
                    ms = took.as_millis() as u64,
                    "retention: vacuumed"
                );
                self.pending = Pruned::default();
                self.last = Some(Instant::now());
            }
            Err(e) => {
                tracing::warn!(error = %e, "retention: VACUUM failed; retrying after the next run");
                metrics::counter!("tidings_retention_errors_total").increment(1);
            }
        }
    }
}

const TABLES: [&str; 4] = ["deliveries", "attempts", "events", "minute_rollups"];

/// One run: batches until nothing more is due (or the store fails; the next run retries).
pub async fn run(store: &dyn Store, policy: Retention) -> Pruned {
    let started = Instant::now();
    let mut total = Pruned::default();
    let mut batches = 0u64;
    let mut failed = false;
    loop {
        let now = chrono_now();
        match store.prune(policy, now).await {
            Ok(p) => {
                count(&p);
                total.add(p);
                batches += 1;
                if !p.more {
                    break;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "retention: pruning failed; retrying next run");
                metrics::counter!("tidings_retention_errors_total").increment(1);
                failed = true;
                break;
            }
        }
        tokio::time::sleep(BETWEEN_BATCHES).await;
    }
    let took = started.elapsed();
    metrics::gauge!("tidings_retention_last_run_seconds").set(took.as_secs_f64());
    if !failed {
        metrics::gauge!("tidings_retention_last_run_timestamp_seconds").set(chrono_now() as f64);
    }
    if total.total() > 0 {
        tracing::info!(
            deliveries = total.deliveries,
            attempts = total.attempts,
            events = total.events,
            minute_rollups = total.minute_rollups,
            batches,
            ms = took.as_millis() as u64,
            "retention: pruned"
        );
    } else {
        tracing::debug!(ms = took.as_millis() as u64, "retention: nothing to prune");
    }
    total
}

fn count(p: &Pruned) {
    for (table, n) in TABLES
        .into_iter()
        .zip([p.deliveries, p.attempts, p.events, p.minute_rollups])
    {
        if n > 0 {
            metrics::counter!("tidings_retention_pruned_rows_total", "table" => table).increment(n);
        }
    }
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The detail of a 404 for an event or delivery id: when retention prunes that kind of
/// row, it says the id may be past retention and how long such rows are kept.
pub fn not_found_detail(config: &Config, kind: Kind, id: &str) -> String {
    let r = &config.retention;
    let ages = |what: &str, age: Duration| {
        (!age.is_zero()).then(|| format!("{what} {}", duration::format(age)))
    };
    let kept: Vec<String> = match kind {
        Kind::Event => [ages("events are kept", r.events)]
            .into_iter()
            .flatten()
            .collect(),
        Kind::Delivery => [
            ages("delivered deliveries are kept", r.delivered),
            ages("failed and dropped ones", r.failed),
        ]
        .into_iter()
        .flatten()
        .collect(),
    };
    let noun = match kind {
        Kind::Event => "event",
        Kind::Delivery => "delivery",
    };
    if !r.enabled || kept.is_empty() {
        return format!("{noun} {id} does not exist");
    }
    format!(
        "{noun} {id} does not exist; it may be past retention ({}, [retention] in the configuration)",
        kept.join(", ")
    )
}

/// What [`not_found_detail`] speaks of.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Event,
    Delivery,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_mentions_retention_only_when_it_prunes() {
        let mut c = Config::default();
        let d = not_found_detail(&c, Kind::Delivery, "DL1");
        assert!(d.contains("past retention"), "{d}");
        assert!(d.contains("168h"), "{d}");
        c.retention.events = Duration::ZERO;
        assert_eq!(
            not_found_detail(&c, Kind::Event, "Ev1"),
            "event Ev1 does not exist"
        );
        c.retention.enabled = false;
        assert_eq!(
            not_found_detail(&c, Kind::Delivery, "DL1"),
            "delivery DL1 does not exist"
        );
    }

    #[test]
    fn retention_off_or_all_zero_starts_no_pruner() {
        let mut r = RetentionConfig::default();
        assert!(policy(&r).is_some());
        r.enabled = false;
        assert!(policy(&r).is_none());
        let r = RetentionConfig {
            delivered: Duration::ZERO,
            failed: Duration::ZERO,
            events: Duration::ZERO,
            minute_rollups: Duration::ZERO,
            ..RetentionConfig::default()
        };
        assert!(policy(&r).is_none());
    }
}

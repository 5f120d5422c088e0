//! The health rule: an app whose attempts succeed less than `min_success_ratio` over the
//! window, having received at least `min_events` events in it, gets its event
//! subscriptions disabled (`events_enabled: false`, a reason, a time, a log line, a metric).
//!
//! Counts live per app in minute windows (bounded by the window), fed by every attempt and
//! rebuilt from the store at start. When several nodes share the store, the windows are
//! refreshed from it every few seconds, so the rule sees every node's attempts. `apps` is a `std::sync::Mutex`: held only to
//! update counters, never across an `.await`.
//!
//! The disable never undoes an operator's change: it writes only the enable flag, reason
//! and time, as a compare-and-swap on the app's version, deciding again when the app
//! changed; and it counts no attempt from before the operator's last enable (stored with
//! the app, so the windows other nodes and restarts rebuild from the store honour it).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tidings_core::policy::{self, MinuteWindow};
use tidings_store::{AppUpdate, Store, StoreError};

/// How many times a disable is decided again when the app changed under it, and the
/// pause between tries (an operator busy with the app gets ahead of it for a moment).
const DISABLE_TRIES: usize = 50;
const DISABLE_RETRY_PAUSE: Duration = Duration::from_millis(10);

#[derive(Debug, Clone)]
pub struct HealthConfig {
    pub window: Duration,
    pub min_success_ratio: f64,
    pub min_events: u32,
}

#[derive(Default)]
struct AppHealth {
    successes: MinuteWindow,
    failures: MinuteWindow,
    events: MinuteWindow,
    disabling: bool,
    /// The first minute that counts (0: all), once the windows may hold attempts from
    /// before an operator's enable: the minute after it. Attempts before the enable are
    /// not evidence against the app as the operator left it; the rest of that minute is
    /// given up with them (minute windows cannot tell them apart).
    since: i64,
    /// When these windows began counting attempts live (Unix ms), after an enable's
    /// [`Health::reset`] or the first attempt; 0 when rebuilt from the store, whose
    /// counts go back a whole window.
    live_from_ms: i64,
}

impl AppHealth {
    /// (successful attempts, failed attempts, events) over the window ending at `minute`,
    /// from `since` on.
    fn totals(&mut self, minute: i64, window: i64) -> (u64, u64, u64) {
        let window = if self.since > 0 {
            window.min(minute - self.since + 1)
        } else {
            window
        };
        if window < 1 {
            return (0, 0, 0);
        }
        (
            self.successes.total(minute, window),
            self.failures.total(minute, window),
            self.events.total(minute, window),
        )
    }
}

/// Shared health tracker.
#[derive(Clone)]
pub struct Health {
    cfg: HealthConfig,
    apps: Arc<Mutex<HashMap<String, AppHealth>>>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn now_minute() -> i64 {
    policy::minute_of(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0),
    )
}

impl Health {
    pub fn new(cfg: HealthConfig) -> Health {
        Health {
            cfg,
            apps: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn apps(&self) -> std::sync::MutexGuard<'_, HashMap<String, AppHealth>> {
        self.apps.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the windows with the store's counts (every node's attempts), keeping
    /// which apps are being disabled: at start, and every few seconds when nodes share
    /// the store.
    pub async fn refresh(&self, store: &Arc<dyn Store>) {
        let since = (now_minute() - policy::window_minutes(self.cfg.window) + 1) * 60_000;
        match store.attempt_tallies(since).await {
            Ok(tallies) => {
                let mut fresh: HashMap<String, AppHealth> = HashMap::new();
                for t in tallies {
                    let h = fresh.entry(t.app_id).or_default();
                    // (Store counts: `live_from_ms` stays 0.)
                    h.successes.add(t.minute, t.successes);
                    h.failures.add(t.minute, t.failures);
                    h.events.add(t.minute, t.events);
                }
                let mut apps = self.apps();
                for (id, h) in fresh.iter_mut() {
                    if let Some(old) = apps.get(id) {
                        (h.disabling, h.since) = (old.disabling, old.since);
                    }
                }
                *apps = fresh;
            }
            Err(e) => tracing::warn!(error = %e, "cannot refresh delivery health from the store"),
        }
    }

    /// The rule's configuration.
    pub fn config(&self) -> &HealthConfig {
        &self.cfg
    }

    /// What the rule sees for an app now: (successful attempts, failed attempts, events
    /// received) over the window.
    pub fn window(&self, app_id: &str) -> (u64, u64, u64) {
        let minute = now_minute();
        let window = policy::window_minutes(self.cfg.window);
        let mut apps = self.apps();
        match apps.get_mut(app_id) {
            Some(h) => h.totals(minute, window),
            None => (0, 0, 0),
        }
    }

    /// Forgets an app's history (after an operator re-enables it).
    pub fn reset(&self, app_id: &str) {
        self.apps().remove(app_id);
    }

    /// Counts one attempt; disables the app when the rule says so.
    pub fn record(&self, store: &Arc<dyn Store>, app_id: &str, ok: bool, first_attempt: bool) {
        let minute = now_minute();
        let window = policy::window_minutes(self.cfg.window);
        let verdict = {
            let mut apps = self.apps();
            let h = apps.entry(app_id.to_string()).or_insert_with(|| AppHealth {
                live_from_ms: now_ms(),
                ..AppHealth::default()
            });
            if ok {
                &mut h.successes
            } else {
                &mut h.failures
            }
            .add(minute, 1);
            if first_attempt {
                h.events.add(minute, 1);
            }
            let (s, f, e) = h.totals(minute, window);
            if !h.disabling
                && policy::should_disable(s, f, e, self.cfg.min_success_ratio, self.cfg.min_events)
            {
                h.disabling = true;
                true
            } else {
                false
            }
        };
        if verdict {
            let (store, app, me) = (store.clone(), app_id.to_string(), self.clone());
            tokio::spawn(async move { me.disable(store, app).await });
        }
    }

    /// Why the rule disables an app with `s` successful and `f` failed attempts.
    fn reason(&self, s: u64, f: u64) -> String {
        format!(
            "more than {:.0}% of delivery attempts failed in the last {} ({} of {})",
            (1.0 - self.cfg.min_success_ratio) * 100.0,
            policy::format_duration(self.cfg.window),
            f,
            s + f
        )
    }

    /// Makes sure the app's windows count nothing from before the operator's last
    /// enable (`enabled_at_ms`, on any node): windows counting live since after it are
    /// clean (the enabling node reset its own); others count from the next minute on.
    fn enabled_at(&self, app_id: &str, enabled_at_ms: Option<i64>) {
        let Some(t) = enabled_at_ms else {
            return;
        };
        if let Some(h) = self.apps().get_mut(app_id) {
            if h.live_from_ms == 0 || h.live_from_ms <= t {
                h.since = h.since.max(policy::minute_of(t.div_euclid(1000)) + 1);
            }
        }
    }

    /// Disables the app with a compare-and-swap on the version read just before deciding
    /// again: only the enable flag, reason and time are written (never a secret or URL
    /// the operator changed), and only if nothing wrote the app since the read. On a
    /// conflict the app is read and the rule decided again. A decision never counts an
    /// attempt from before the operator's last enable (read with the app, so this holds
    /// for the enable of any node), so a stale one cannot undo it.
    async fn disable(&self, store: Arc<dyn Store>, app_id: String) {
        let mut disabled = true;
        for _ in 0..DISABLE_TRIES {
            let app = match store.get_app(&app_id).await {
                Ok(Some(app)) if app.events_enabled => app,
                Ok(_) => break,
                Err(e) => {
                    tracing::error!(app = %app_id, error = %e, "cannot read an unhealthy app");
                    break;
                }
            };
            self.enabled_at(&app_id, app.enabled_at_ms);
            let (s, f, e) = self.window(&app_id);
            if !policy::should_disable(s, f, e, self.cfg.min_success_ratio, self.cfg.min_events) {
                disabled = false;
                break;
            }
            let reason = self.reason(s, f);
            let update = AppUpdate {
                expect_version: Some(app.version),
                expect_events_enabled: Some(true),
                events_enabled: Some(false),
                disabled_reason: Some(Some(reason.clone())),
                disabled_at: Some(Some(now_minute() * 60)),
                ..AppUpdate::default()
            };
            match store.update_app(&app_id, update).await {
                Ok(_) => {
                    tracing::warn!(app = %app_id, reason = %reason, "event subscriptions disabled");
                    metrics::counter!("tidings_apps_disabled_total").increment(1);
                    break;
                }
                Err(StoreError::Stale(_)) => tokio::time::sleep(DISABLE_RETRY_PAUSE).await,
                Err(e) => {
                    tracing::error!(app = %app_id, error = %e, "cannot disable an unhealthy app");
                    break;
                }
            }
        }
        if disabled {
            self.reset(&app_id);
        } else if let Some(h) = self.apps().get_mut(&app_id) {
            // Decided against: keep what it learned (`since`); later attempts decide again.
            h.disabling = false;
        }
    }
}

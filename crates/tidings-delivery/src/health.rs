//! The health rule: an app whose attempts succeed less than `min_success_ratio` over the
//! window, having received at least `min_events` events in it, gets its event
//! subscriptions disabled (`events_enabled: false`, a reason, a time, a log line, a metric).
//!
//! Counts live per app in minute windows (bounded by the window), fed by every attempt and
//! rebuilt from the store at start. When several nodes share the store, the windows are
//! refreshed from it every few seconds, so the rule sees every node's attempts. `apps` is a `std::sync::Mutex`: held only to
//! update counters, never across an `.await`.

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
}

/// Shared health tracker.
#[derive(Clone)]
pub struct Health {
    cfg: HealthConfig,
    apps: Arc<Mutex<HashMap<String, AppHealth>>>,
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
                    h.successes.add(t.minute, t.successes);
                    h.failures.add(t.minute, t.failures);
                    h.events.add(t.minute, t.events);
                }
                let mut apps = self.apps();
                for (id, h) in fresh.iter_mut() {
                    h.disabling = apps.get(id).is_some_and(|old| old.disabling);
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
            Some(h) => (
                h.successes.total(minute, window),
                h.failures.total(minute, window),
                h.events.total(minute, window),
            ),
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
            let h = apps.entry(app_id.to_string()).or_default();
            if ok {
                &mut h.successes
            } else {
                &mut h.failures
            }
            .add(minute, 1);
            if first_attempt {
                h.events.add(minute, 1);
            }
            let (s, f, e) = (
                h.successes.total(minute, window),
                h.failures.total(minute, window),
                h.events.total(minute, window),
            );
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

    /// Disables the app with a compare-and-swap on the version read just before deciding
    /// again: only the enable flag, reason and time are written (never a secret or URL
    /// the operator changed), and only if nothing wrote the app since the read. On a
    /// conflict the app is read and the rule decided again: an operator's enable clears
    /// the window first, so a disable decided before it cannot undo it.
    async fn disable(&self, store: Arc<dyn Store>, app_id: String) {
        for _ in 0..DISABLE_TRIES {
            let app = match store.get_app(&app_id).await {
                Ok(Some(app)) if app.events_enabled => app,
                Ok(_) => break,
                Err(e) => {
                    tracing::error!(app = %app_id, error = %e, "cannot read an unhealthy app");
                    break;
                }
            };
            let (s, f, e) = self.window(&app_id);
            if !policy::should_disable(s, f, e, self.cfg.min_success_ratio, self.cfg.min_events) {
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
        self.reset(&app_id);
    }
}

//! Apps as last committed, kept in memory for [`crate::Store::get_app`].
//!
//! The dispatcher reads the app at the start of every round (its Request URL, whether it
//! is enabled, its signing secret). With 10,000 apps each round carries a delivery or
//! two, so that was about 10,000 reads a second on the blocking pool, each one also a
//! reader in the WAL that a restart has to wait for.
//!
//! The cache never serves a row older than the last commit that changed it: a write job
//! that changes an app names it ([`AppCache::changed`]), and the writer drops those
//! entries and bumps the generation after the commit, before the caller hears "done"
//! ([`AppCache::committed`]). A read that began before that bump does not fill the cache
//! ([`AppCache::put`]), so a row read just before a commit cannot outlive it.
//!
//! Off when nodes share the database: another node's change would not reach it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::model::App;

/// Most apps kept; past it the cache starts over (a few hundred bytes each).
const MAX_APPS: usize = 65_536;

#[derive(Clone)]
pub struct AppCache {
    inner: Arc<Mutex<Inner>>,
    enabled: bool,
}

#[derive(Default)]
struct Inner {
    generation: u64,
    apps: HashMap<String, Arc<App>>,
    /// Apps the batch in progress changed.
    changed: Vec<String>,
}

impl AppCache {
    pub fn new(enabled: bool) -> AppCache {
        AppCache {
            inner: Arc::default(),
            enabled,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The app, if cached; otherwise the generation to hand to [`AppCache::put`] with the
    /// row read from the store.
    pub fn get(&self, id: &str) -> Result<App, u64> {
        let inner = self.lock();
        match inner.apps.get(id) {
            Some(app) if self.enabled => Ok(App::clone(app)),
            _ => Err(inner.generation),
        }
    }

    /// Keeps a row read from the store, unless an app changed since the read began.
    pub fn put(&self, generation: u64, app: &App) {
        if !self.enabled {
            return;
        }
        let mut inner = self.lock();
        if inner.generation != generation {
            return;
        }
        if inner.apps.len() >= MAX_APPS {
            inner.apps.clear();
        }
        inner.apps.insert(app.id.clone(), Arc::new(app.clone()));
    }

    /// A write job changed the app (called on the writer thread, inside the batch).
    pub fn changed(&self, id: &str) {
        self.lock().changed.push(id.to_string());
    }

    /// The batch committed: its changes are what readers see from now on.
    pub fn committed(&self) {
        let mut inner = self.lock();
        if inner.changed.is_empty() {
            return;
        }
        inner.generation += 1;
        for id in std::mem::take(&mut inner.changed) {
            inner.apps.remove(&id);
        }
    }

    /// The batch rolled back: nothing it changed is visible, and nothing cached is stale.
    pub fn rolled_back(&self) {
        self.lock().changed.clear();
    }
}

impl super::writer::CommitListener for AppCache {
    fn committed(&self) {
        AppCache::committed(self);
    }

    fn rolled_back(&self) {
        AppCache::rolled_back(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(id: &str, url: &str) -> App {
        App {
            id: id.into(),
            name: "app".into(),
            request_url: Some(url.into()),
            request_url_verified: true,
            socket_mode: false,
            bot_events: vec!["message".into()],
            user_events: Vec::new(),
            event_shape: Default::default(),
            signing_secret: "s".into(),
            verification_token: "v".into(),
            events_enabled: true,
            disabled_reason: None,
            disabled_at: None,
            created_at: 0,
            version: 0,
            enabled_at_ms: None,
            ..Default::default()
        }
    }

    /// A cache that has read A1 (with the request URL `http://old`) from the store.
    fn with_a1(enabled: bool) -> AppCache {
        let cache = AppCache::new(enabled);
        let g = cache.get("A1").expect_err("empty");
        cache.put(g, &app("A1", "http://old"));
        cache
    }

    #[test]
    fn a_cached_app_is_served_until_a_commit_changes_it() {
        let cache = with_a1(true);
        assert_eq!(
            cache.get("A1").ok().and_then(|a| a.request_url),
            Some("http://old".into())
        );
        cache.changed("A1");
        assert!(
            cache.get("A1").is_ok(),
            "not committed yet: the old row is current"
        );
        cache.committed();
        assert!(cache.get("A1").is_err(), "dropped at the commit");
    }

    #[test]
    fn a_row_read_before_a_commit_does_not_fill_the_cache_after_it() {
        let cache = AppCache::new(true);
        let g = cache.get("A1").expect_err("empty");
        // The read is under way when another batch changes the app and commits.
        cache.changed("A1");
        cache.committed();
        cache.put(g, &app("A1", "http://old"));
        assert!(cache.get("A1").is_err(), "the stale row was not kept");
        let g = cache.get("A1").expect_err("still empty");
        cache.put(g, &app("A1", "http://new"));
        assert!(cache.get("A1").is_ok());
    }

    #[test]
    fn a_rolled_back_change_keeps_the_cached_row() {
        let cache = with_a1(true);
        cache.changed("A1");
        cache.rolled_back();
        cache.committed();
        assert!(cache.get("A1").is_ok());
    }

    #[test]
    fn a_disabled_cache_keeps_nothing() {
        let cache = with_a1(false);
        assert!(cache.get("A1").is_err());
    }
}

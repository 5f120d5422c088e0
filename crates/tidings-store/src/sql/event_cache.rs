//! Events recently read for delivery, shared between the rows that carry them.
//!
//! A store read of due work returns each delivery with its event. One event fans out to
//! many apps, and each app's lane reads its own rows: under `fanout` (100 apps) the same
//! event came back 100 times, each time copied out of SQLite into a fresh
//! [`StoredEvent`] with its own copy of the payload, and each copy lived as long as its
//! delivery waited in a lane or was under way. With this cache the first read of an
//! event maps it, and the later ones take the same `Arc` (the row's event columns are not
//! even read).
//!
//! An event never changes once stored (nothing updates `events`; retention deletes it
//! with its last delivery, and then no row refers to it), so an entry is never stale and
//! the cache needs no invalidation, on one node or several. It is bounded by the bytes
//! of the payloads it holds: past [`MAX_BYTES`] it starts over.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::model::StoredEvent;

/// Most payload bytes kept (with a fixed allowance per entry for its other fields).
const MAX_BYTES: usize = 8 << 20;
/// What an entry costs besides its payload: the key, the record's other fields, the map.
const ENTRY_BYTES: usize = 256;

#[derive(Clone, Default)]
pub struct EventCache {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    events: HashMap<String, Arc<StoredEvent>>,
    bytes: usize,
}

impl EventCache {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The event `id`, from the cache or else from `read` (which is then kept).
    pub fn get_or_read<E>(
        &self,
        id: &str,
        read: impl FnOnce() -> Result<StoredEvent, E>,
    ) -> Result<Arc<StoredEvent>, E> {
        if let Some(ev) = self.lock().events.get(id) {
            return Ok(ev.clone());
        }
        let ev = Arc::new(read()?);
        let size = ev.payload.len() + ENTRY_BYTES;
        if size <= MAX_BYTES {
            let mut inner = self.lock();
            if inner.bytes + size > MAX_BYTES {
                inner.events.clear();
                inner.bytes = 0;
            }
            if inner.events.insert(id.to_owned(), ev.clone()).is_none() {
                inner.bytes += size;
            }
        }
        Ok(ev)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().events.len()
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A stored event `id` whose payload is `payload_len` bytes.
    pub(in crate::sql) fn event(id: &str, payload_len: usize) -> StoredEvent {
        StoredEvent {
            id: id.into(),
            team_id: "T1".into(),
            enterprise_id: None,
            event_type: "message".into(),
            app_id: None,
            channel_id: None,
            actor_id: None,
            event_time: 0,
            payload: "x".repeat(payload_len),
            idempotency_key: None,
            created_at: 0,
        }
    }

    #[test]
    fn the_rows_of_one_event_share_one_record_and_read_it_once() {
        let cache = EventCache::default();
        let mut reads = 0;
        let mut get = |cache: &EventCache| {
            cache
                .get_or_read("Ev1", || {
                    reads += 1;
                    Ok::<_, ()>(event("Ev1", 1000))
                })
                .expect("read")
        };
        let (a, b) = (get(&cache), get(&cache));
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(reads, 1);
    }

    #[test]
    fn a_failed_read_is_not_kept() {
        let cache = EventCache::default();
        assert!(cache.get_or_read("Ev1", || Err("no")).is_err());
        assert_eq!(cache.len(), 0);
        let ev = cache.get_or_read("Ev1", || Ok::<_, ()>(event("Ev1", 10)));
        assert_eq!(ev.expect("read").id, "Ev1");
    }

    #[test]
    fn the_cache_starts_over_past_its_byte_bound() {
        let cache = EventCache::default();
        let per = 100_000;
        let fit = MAX_BYTES / (per + ENTRY_BYTES);
        for i in 0..fit {
            let id = format!("Ev{i}");
            let _ = cache.get_or_read(&id, || Ok::<_, ()>(event(&id, per)));
        }
        assert_eq!(cache.len(), fit);
        let _ = cache.get_or_read("EvLast", || Ok::<_, ()>(event("EvLast", per)));
        assert_eq!(cache.len(), 1, "started over with the newest");
        // A payload larger than the whole bound is served and not kept.
        let big = cache.get_or_read("EvBig", || Ok::<_, ()>(event("EvBig", MAX_BYTES)));
        assert_eq!(big.expect("read").payload.len(), MAX_BYTES);
        assert_eq!(cache.len(), 1);
    }
}

//! Insights on SQLite: flushing a group commit's [`Tally`] into the rollup tables (in the
//! same transaction as the writes it counts), answering range queries from the rollups,
//! and the key event marks.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use roaring::RoaringBitmap;
use rusqlite::{params, Connection, OptionalExtension};

use crate::insights::*;
use crate::StoreResult;

/// Entries kept in the writer's caches (set memberships known written, interned user ids)
/// before they are dropped and rebuilt from the database.
const CACHE_MAX: usize = 200_000;

/// The tally of the batch in progress and what the writer knows is already written. Touched
/// only on the writer thread (a `std::sync::Mutex` only to be shareable; never contended).
#[derive(Default)]
pub struct Counting {
    pub tally: Tally,
    /// (set, user) memberships known to be in the database.
    seen: HashSet<UserKey>,
    /// user id → its number in the sets.
    ids: HashMap<String, u32>,
}

#[derive(Clone, Default)]
pub struct Counter(Arc<Mutex<Counting>>);

impl Counter {
    pub fn lock(&self) -> MutexGuard<'_, Counting> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a job's counts to the batch's.
    pub fn add(&self, t: Tally) {
        if !t.is_empty() {
            self.lock().tally.merge(t);
        }
    }

    /// Forgets everything of a batch that did not commit.
    pub fn clear(&self) {
        let mut g = self.lock();
        g.tally = Tally::default();
        g.seen.clear();
        g.ids.clear();
    }

    /// Writes the batch's counts; runs just before the batch commits.
    pub fn flush(&self, c: &Connection) -> StoreResult<()> {
        let mut g = self.lock();
        if g.tally.is_empty() {
            return Ok(());
        }
        let tally = std::mem::take(&mut g.tally);
        flush(c, tally, &mut g)
    }
}

/// The number a user has in the sets, assigned on first sight.
fn user_number(c: &Connection, ids: &mut HashMap<String, u32>, user: &str) -> StoreResult<u32> {
    if let Some(&n) = ids.get(user) {
        return Ok(n);
    }
    if ids.len() > CACHE_MAX {
        ids.clear();
    }
    let found: Option<i64> = c
        .prepare_cached("SELECT n FROM insight_user_ids WHERE user_id = ?1")?
        .query_row([user], |r| r.get(0))
        .optional()?;
    let n = match found {
        Some(n) => n,
        None => {
            c.prepare_cached("INSERT INTO insight_user_ids (user_id) VALUES (?1)")?
                .execute([user])?;
            c.last_insert_rowid()
        }
    };
    let n = u32::try_from(n)
        .map_err(|_| crate::StoreError::Internal("more than 2^32 distinct users".into()))?;
    ids.insert(user.to_string(), n);
    Ok(n)
}

fn load_set(c: &Connection, k: &EventKey) -> StoreResult<RoaringBitmap> {
    let blob: Option<Vec<u8>> = c
        .prepare_cached(
            "SELECT users FROM insight_user_sets WHERE g = ?1 AND team_id = ?2 AND bucket = ?3 AND event_type = ?4",
        )?
        .query_row(params![k.g.code(), k.team_id, k.bucket, k.event_type], |r| r.get(0))
        .optional()?;
    blob.map_or(Ok(RoaringBitmap::new()), |b| decode_set(&b))
}

pub(crate) fn decode_set(b: &[u8]) -> StoreResult<RoaringBitmap> {
    RoaringBitmap::deserialize_from(b)
        .map_err(|e| crate::StoreError::Internal(format!("a stored user set does not decode: {e}")))
}

pub(crate) fn store_set(c: &Connection, k: &EventKey, set: &RoaringBitmap) -> StoreResult<()> {
    let mut blob = Vec::with_capacity(set.serialized_size());
    set.serialize_into(&mut blob)
        .map_err(|e| crate::StoreError::Internal(format!("cannot encode a user set: {e}")))?;
    c.prepare_cached(
        "INSERT INTO insight_user_sets (g, team_id, bucket, event_type, users) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (g, team_id, bucket, event_type) DO UPDATE SET users = excluded.users",
    )?
    .execute(params![k.g.code(), k.team_id, k.bucket, k.event_type, blob])?;
    Ok(())
}

fn flush(c: &Connection, mut t: Tally, known: &mut Counting) -> StoreResult<()> {
    // User sets first: users new to a bucket's set bump that bucket's `users` counter.
    if known.seen.len() > CACHE_MAX {
        known.seen.clear();
    }
    let mut by_set: HashMap<EventKey, Vec<String>> = HashMap::new();
    for u in t.users.drain() {
        if known.seen.contains(&u) {
            continue;
        }
        by_set
            .entry(u.bucket_key())
            .or_default()
            .push(u.user_id.clone());
        known.seen.insert(u);
    }
    for (key, users) in by_set {
        let mut set = load_set(c, &key)?;
        let before = set.len();
        for u in &users {
            set.insert(user_number(c, &mut known.ids, u)?);
        }
        let added = set.len() - before;
        if added > 0 {
            store_set(c, &key, &set)?;
            t.events.entry(key).or_default().users += added;
        }
    }
    let mut up = c.prepare_cached(
        "INSERT INTO insight_events (g, team_id, bucket, event_type, events, too_old, users) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (g, team_id, bucket, event_type) DO UPDATE SET events = events + excluded.events,
           too_old = too_old + excluded.too_old, users = users + excluded.users",
    )?;
    for (k, a) in &t.events {
        up.execute(params![
            k.g.code(),
            k.team_id,
            k.bucket,
            k.event_type,
            a.events as i64,
            a.too_old as i64,
            a.users as i64
        ])?;
    }
    let lat_cols: Vec<String> = (0..LATENCY_BINS).map(|i| format!("l{i}")).collect();
    let sql = format!(
        "INSERT INTO insight_deliveries (g, bucket, app_id, attempts, succeeded, failed, retries, delivered, gave_up, dropped, {})
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, {})
         ON CONFLICT (g, bucket, app_id) DO UPDATE SET attempts = attempts + excluded.attempts,
           succeeded = succeeded + excluded.succeeded, failed = failed + excluded.failed,
           retries = retries + excluded.retries, delivered = delivered + excluded.delivered,
           gave_up = gave_up + excluded.gave_up, dropped = dropped + excluded.dropped, {}",
        lat_cols.join(", "),
        (0..LATENCY_BINS)
            .map(|i| format!("?{}", 11 + i))
            .collect::<Vec<_>>()
            .join(", "),
        lat_cols
            .iter()
            .map(|l| format!("{l} = {l} + excluded.{l}"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    let mut up = c.prepare_cached(&sql)?;
    for (k, d) in &t.deliveries {
        let mut values: Vec<rusqlite::types::Value> =
            vec![k.g.code().into(), k.bucket.into(), k.app_id.clone().into()];
        for n in [
            d.attempts,
            d.succeeded,
            d.failed,
            d.retries,
            d.delivered,
            d.gave_up,
            d.dropped,
        ]
        .into_iter()
        .chain(d.latency)
        {
            values.push((n as i64).into());
        }
        up.execute(rusqlite::params_from_iter(values))?;
    }
    let mut up = c.prepare_cached(
        "INSERT INTO insight_delivery_reasons (g, bucket, app_id, kind, reason, n) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (g, bucket, app_id, kind, reason) DO UPDATE SET n = n + excluded.n",
    )?;
    for (k, n) in &t.reasons {
        up.execute(params![
            k.delivery.g.code(),
            k.delivery.bucket,
            k.delivery.app_id,
            k.kind.as_str(),
            k.reason,
            *n as i64
        ])?;
    }
    Ok(())
}

// --- queries ---------------------------------------------------------------------------

fn scope_key(r: &InsightRange) -> &str {
    r.scope.as_deref().unwrap_or(ALL)
}

/// Counts, distinct users and series per event type (and for every type together).
pub fn events(c: &Connection, r: &InsightRange) -> StoreResult<EventInsights> {
    let g = r.granularity;
    let mut st = c.prepare_cached(
        "SELECT event_type, bucket, events, too_old, users FROM insight_events
         WHERE g = ?1 AND team_id = ?2 AND bucket >= ?3 AND bucket < ?4 ORDER BY event_type, bucket",
    )?;
    let mut rows = st.query(params![
        g.code(),
        scope_key(r),
        r.bucket_from(),
        r.bucket_to()
    ])?;
    let mut by_type: BTreeMap<String, TypeInsight> = BTreeMap::new();
    while let Some(row) = rows.next()? {
        let ty: String = row.get(0)?;
        let (t, events, too_old, users): (i64, i64, i64, i64) =
            (row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?);
        let e = by_type.entry(ty.clone()).or_insert_with(|| TypeInsight {
            event_type: ty,
            ..Default::default()
        });
        e.count += events as u64;
        e.refused_too_old += too_old as u64;
        if events > 0 {
            e.series.push(EventPoint {
                t,
                count: events as u64,
                users: (g != Granularity::Minute).then_some(users as u64),
            });
        }
    }
    for (ty, n) in distinct_users(c, r)? {
        if let Some(e) = by_type.get_mut(&ty) {
            e.users = n;
        }
    }
    let totals = by_type.remove(ALL).unwrap_or_default();
    Ok(EventInsights {
        totals,
        types: by_type.into_values().collect(),
    })
}

/// Distinct users per event type (`''` for any type) over the range, to the hour: the
/// union of the day sets for the whole days inside it and the hour sets around them.
fn distinct_users(c: &Connection, r: &InsightRange) -> StoreResult<HashMap<String, u64>> {
    let (df, dt, hf, ht) = r.user_spans();
    let mut st = c.prepare_cached(
        "SELECT event_type, users FROM insight_user_sets WHERE g = 2 AND team_id = ?1 AND bucket >= ?2 AND bucket < ?3
         UNION ALL
         SELECT event_type, users FROM insight_user_sets WHERE g = 1 AND team_id = ?1
           AND ((bucket >= ?4 AND bucket < ?2) OR (bucket >= ?3 AND bucket < ?5))",
    )?;
    let mut rows = st.query(params![scope_key(r), df, dt, hf, ht])?;
    let mut sets: HashMap<String, RoaringBitmap> = HashMap::new();
    while let Some(row) = rows.next()? {
        let ty: String = row.get(0)?;
        let blob: Vec<u8> = row.get(1)?;
        *sets.entry(ty).or_default() |= decode_set(&blob)?;
    }
    Ok(sets.into_iter().map(|(k, v)| (k, v.len())).collect())
}

/// Delivery counts per app, over the range and as a series for all apps together.
pub fn deliveries(c: &Connection, r: &InsightRange) -> StoreResult<DeliveryInsights> {
    let g = r.granularity;
    let lat: Vec<String> = (0..LATENCY_BINS).map(|i| format!("l{i}")).collect();
    let sql = format!(
        "SELECT app_id, bucket, attempts, succeeded, failed, retries, delivered, gave_up, dropped, {}
         FROM insight_deliveries WHERE g = ?1 AND bucket >= ?2 AND bucket < ?3 AND (?4 IS NULL OR app_id = ?4)
         ORDER BY bucket",
        lat.join(", ")
    );
    let mut st = c.prepare_cached(&sql)?;
    let mut rows = st.query(params![g.code(), r.bucket_from(), r.bucket_to(), r.scope])?;
    let mut apps: BTreeMap<String, AppDeliveryInsight> = BTreeMap::new();
    let mut out = DeliveryInsights::default();
    while let Some(row) = rows.next()? {
        let app: String = row.get(0)?;
        let t: i64 = row.get(1)?;
        let mut n = [0u64; 7];
        for (i, v) in n.iter_mut().enumerate() {
            *v = row.get::<_, i64>(2 + i)? as u64;
        }
        let mut counts = DeliveryCounts {
            attempts: n[0],
            succeeded: n[1],
            failed: n[2],
            retries: n[3],
            delivered: n[4],
            gave_up: n[5],
            dropped: n[6],
            latency: [0; LATENCY_BINS],
        };
        for (i, l) in counts.latency.iter_mut().enumerate() {
            *l = row.get::<_, i64>(9 + i)? as u64;
        }
        apps.entry(app.clone())
            .or_insert_with(|| AppDeliveryInsight {
                app_id: app,
                ..Default::default()
            })
            .counts
            .add(&counts);
        out.totals.add(&counts);
        match out.series.last_mut() {
            Some(p) if p.t == t => p.counts.add(&counts),
            _ => out.series.push(DeliveryPoint { t, counts }),
        }
    }
    let mut st = c.prepare_cached(
        "SELECT app_id, kind, reason, SUM(n) FROM insight_delivery_reasons
         WHERE g = ?1 AND bucket >= ?2 AND bucket < ?3 AND (?4 IS NULL OR app_id = ?4)
         GROUP BY app_id, kind, reason",
    )?;
    let mut rows = st.query(params![g.code(), r.bucket_from(), r.bucket_to(), r.scope])?;
    while let Some(row) = rows.next()? {
        let app: String = row.get(0)?;
        let kind: String = row.get(1)?;
        let reason: String = row.get(2)?;
        let n = row.get::<_, i64>(3)? as u64;
        let a = apps
            .entry(app.clone())
            .or_insert_with(|| AppDeliveryInsight {
                app_id: app,
                ..Default::default()
            });
        let map = match kind.as_str() {
            "dropped" => &mut a.drops,
            "failed" => &mut a.failures,
            _ => &mut a.attempt_failures,
        };
        *map.entry(reason).or_default() += n;
    }
    out.apps = apps.into_values().collect();
    Ok(out)
}

// --- key events ------------------------------------------------------------------------

/// Marks a key event; the bool says whether it was newly marked.
pub fn put_key_event(c: &Connection, event_type: &str) -> StoreResult<(KeyEvent, bool)> {
    let existing = get_key_event(c, event_type)?;
    if let Some(k) = existing {
        return Ok((k, false));
    }
    let created_at = super::now();
    c.prepare_cached("INSERT INTO key_events (event_type, created_at) VALUES (?1, ?2)")?
        .execute(params![event_type, created_at])?;
    Ok((
        KeyEvent {
            event_type: event_type.to_string(),
            created_at,
        },
        true,
    ))
}

fn get_key_event(c: &Connection, event_type: &str) -> StoreResult<Option<KeyEvent>> {
    Ok(
        c.prepare_cached("SELECT event_type, created_at FROM key_events WHERE event_type = ?1")?
            .query_row([event_type], |r| {
                Ok(KeyEvent {
                    event_type: r.get(0)?,
                    created_at: r.get(1)?,
                })
            })
            .optional()?,
    )
}

/// Unmarks a key event; false if it was not marked.
pub fn delete_key_event(c: &Connection, event_type: &str) -> StoreResult<bool> {
    Ok(
        c.prepare_cached("DELETE FROM key_events WHERE event_type = ?1")?
            .execute([event_type])?
            > 0,
    )
}

pub fn list_key_events(c: &Connection) -> StoreResult<Vec<KeyEvent>> {
    let mut st =
        c.prepare_cached("SELECT event_type, created_at FROM key_events ORDER BY event_type")?;
    let v = st
        .query_map([], |r| {
            Ok(KeyEvent {
                event_type: r.get(0)?,
                created_at: r.get(1)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(v)
}

/// Builds the user sets from the events an older Tidings stored (by their actor); part of
/// the migration that adds insights.
pub(crate) fn backfill_user_sets(c: &Connection) -> StoreResult<()> {
    let mut st = c.prepare(
        "SELECT team_id, event_type, event_time, actor_id FROM events
         WHERE actor_id IS NOT NULL AND event_type <> 'app_rate_limited'",
    )?;
    let mut rows = st.query([])?;
    let mut t = Tally::default();
    while let Some(row) = rows.next()? {
        let (team, ty, at, user): (String, String, i64, String) =
            (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?);
        t.event(&team, &ty, at, Some(&user));
        if t.users.len() > 100_000 {
            write_sets_only(c, &mut t)?;
        }
    }
    write_sets_only(c, &mut t)
}

/// Writes a tally's user sets, not its counts (the backfill counts in SQL).
fn write_sets_only(c: &Connection, t: &mut Tally) -> StoreResult<()> {
    let mut known = Counting::default();
    let users = std::mem::take(&mut t.users);
    *t = Tally::default();
    flush(
        c,
        Tally {
            users,
            ..Default::default()
        },
        &mut known,
    )?;
    Ok(())
}

//! Insights in SQL: flushing a group commit's [`Tally`] into the rollup tables (in the
//! same transaction as the writes it counts), answering range queries from the rollups,
//! and the key event marks.
//!
//! On PostgreSQL several Tidings processes may flush into the same rollups at once, so
//! every write here is safe against another writer's: counters are additive upserts, user
//! numbers are taken with `ON CONFLICT DO NOTHING` and read back, a user set's
//! read-modify-write holds its row's lock (`SELECT ... FOR UPDATE`), and a flush touches
//! its rows in key order, so two flushes never wait on each other in a cycle. On SQLite
//! the one writer holds the database's write lock, and the same SQL runs without the
//! row locks.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use roaring::RoaringBitmap;

use super::conn::{Conn, Dialect, Param, Row};
use crate::insights::*;
use crate::params;
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
    pub fn flush(&self, c: &Conn) -> StoreResult<()> {
        let mut g = self.lock();
        if g.tally.is_empty() {
            return Ok(());
        }
        let tally = std::mem::take(&mut g.tally);
        flush(c, tally, &mut g)
    }
}

/// The batch's counts are written just before it commits, and forgotten if it rolls back.
impl super::writer::CommitListener for Counter {
    fn before_commit(&self, c: &Conn) -> StoreResult<()> {
        self.flush(c)
    }

    fn rolled_back(&self) {
        self.clear();
    }
}

/// The number a user has in the sets, assigned on first sight. A number is taken only
/// when the user has none (PostgreSQL spends a sequence value on every insert attempt,
/// even one that conflicts, and the numbers must stay below 2^32); when another process
/// numbers the same user at the same time, its number is the one read back.
fn user_number(c: &Conn, ids: &mut HashMap<String, u32>, user: &str) -> StoreResult<u32> {
    if let Some(&n) = ids.get(user) {
        return Ok(n);
    }
    if ids.len() > CACHE_MAX {
        ids.clear();
    }
    const SELECT: &str = "SELECT n FROM insight_user_ids WHERE user_id = ?1";
    let mut found: Option<i64> = c.query_opt(SELECT, params![user], |r| r.get(0))?;
    if found.is_none() {
        found = c.query_opt(
            "INSERT INTO insight_user_ids (user_id) VALUES (?1) ON CONFLICT (user_id) DO NOTHING RETURNING n",
            params![user],
            |r| r.get(0),
        )?;
    }
    if found.is_none() {
        // Numbered by another process since the first look (its insert has committed).
        found = c.query_opt(SELECT, params![user], |r| r.get(0))?;
    }
    let n = found.ok_or_else(|| {
        crate::StoreError::Internal(format!("user {user} has no number after numbering"))
    })?;
    let n = u32::try_from(n)
        .map_err(|_| crate::StoreError::Internal("more than 2^32 distinct users".into()))?;
    ids.insert(user.to_string(), n);
    Ok(n)
}

/// A user set's primary key, as parameters `?1`–`?4`.
fn set_key(k: &EventKey) -> [Param<'_>; 4] {
    [
        Param::Int(Some(k.g.code())),
        Param::Text(Some(&k.team_id)),
        Param::Int(Some(k.bucket)),
        Param::Text(Some(&k.event_type)),
    ]
}

/// Reads a user set for update. On PostgreSQL the row is made to exist (empty) and locked
/// until the transaction ends, so another process's flush of the same set waits for this
/// one and then reads what it wrote.
fn load_set(c: &Conn, k: &EventKey) -> StoreResult<RoaringBitmap> {
    let select = match c.dialect() {
        Dialect::Sqlite => {
            "SELECT users FROM insight_user_sets WHERE g = ?1 AND team_id = ?2 AND bucket = ?3 AND event_type = ?4"
        }
        Dialect::Postgres => {
            let empty = encode_set(&RoaringBitmap::new())?;
            let mut p = set_key(k).to_vec();
            p.push(Param::Blob(Some(&empty)));
            c.execute(
                "INSERT INTO insight_user_sets (g, team_id, bucket, event_type, users) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (g, team_id, bucket, event_type) DO NOTHING",
                &p,
            )?;
            "SELECT users FROM insight_user_sets WHERE g = ?1 AND team_id = ?2 AND bucket = ?3 AND event_type = ?4
             FOR UPDATE"
        }
    };
    let blob: Option<Vec<u8>> = c.query_opt(select, &set_key(k), |r| r.get(0))?;
    blob.map_or(Ok(RoaringBitmap::new()), |b| decode_set(&b))
}

pub(crate) fn decode_set(b: &[u8]) -> StoreResult<RoaringBitmap> {
    RoaringBitmap::deserialize_from(b)
        .map_err(|e| crate::StoreError::Internal(format!("a stored user set does not decode: {e}")))
}

fn encode_set(set: &RoaringBitmap) -> StoreResult<Vec<u8>> {
    let mut blob = Vec::with_capacity(set.serialized_size());
    set.serialize_into(&mut blob)
        .map_err(|e| crate::StoreError::Internal(format!("cannot encode a user set: {e}")))?;
    Ok(blob)
}

pub(crate) fn store_set(c: &Conn, k: &EventKey, set: &RoaringBitmap) -> StoreResult<()> {
    let blob = encode_set(set)?;
    let mut p = set_key(k).to_vec();
    p.push(Param::Blob(Some(&blob)));
    c.execute(
        "INSERT INTO insight_user_sets (g, team_id, bucket, event_type, users) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (g, team_id, bucket, event_type) DO UPDATE SET users = excluded.users",
        &p,
    )?;
    Ok(())
}

/// An event rollup key in the tables' primary-key order, to sort by.
fn event_order(k: &EventKey) -> (i64, &str, i64, &str) {
    (k.g.code(), &k.team_id, k.bucket, &k.event_type)
}

/// A delivery rollup key in the tables' primary-key order, to sort by.
fn delivery_order(k: &DeliveryKey) -> (i64, i64, &str) {
    (k.g.code(), k.bucket, &k.app_id)
}

/// A reason rollup key in the table's primary-key order, to sort by.
fn reason_order(k: &ReasonKey) -> (i64, i64, &str, &str, &str) {
    let (g, bucket, app) = delivery_order(&k.delivery);
    (g, bucket, app, k.kind.as_str(), &k.reason)
}

/// The upsert adding one bucket's delivery counts (built once: it spans every latency bin).
fn delivery_upsert() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        let lat_cols: Vec<String> = (0..LATENCY_BINS).map(|i| format!("l{i}")).collect();
        let add = |col: &str| format!("{col} = insight_deliveries.{col} + excluded.{col}");
        format!(
            "INSERT INTO insight_deliveries (g, bucket, app_id, attempts, succeeded, failed, retries, delivered, gave_up, dropped, {})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, {})
             ON CONFLICT (g, bucket, app_id) DO UPDATE SET {}",
            lat_cols.join(", "),
            (0..LATENCY_BINS)
                .map(|i| format!("?{}", 11 + i))
                .collect::<Vec<_>>()
                .join(", "),
            [
                "attempts",
                "succeeded",
                "failed",
                "retries",
                "delivered",
                "gave_up",
                "dropped"
            ]
            .iter()
            .map(|c| c.to_string())
            .chain(lat_cols.iter().cloned())
            .map(|c| add(&c))
            .collect::<Vec<_>>()
            .join(", "),
        )
    })
}

/// Writes a tally. Every table is written in its key order (users by id, sets, event
/// counts, delivery counts, reasons by key), the same in every process, so concurrent
/// flushes on PostgreSQL take their row locks in one global order and cannot deadlock.
fn flush(c: &Conn, mut t: Tally, known: &mut Counting) -> StoreResult<()> {
    t.expand();
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
    // Number the users first, in id order, then read-modify-write each set in key order.
    let mut users: Vec<&str> = by_set.values().flatten().map(String::as_str).collect();
    users.sort_unstable();
    users.dedup();
    for u in users {
        user_number(c, &mut known.ids, u)?;
    }
    let mut sets: Vec<(&EventKey, &Vec<String>)> = by_set.iter().collect();
    sets.sort_unstable_by(|a, b| event_order(a.0).cmp(&event_order(b.0)));
    for (key, users) in sets {
        let mut set = load_set(c, key)?;
        let before = set.len();
        for u in users {
            set.insert(user_number(c, &mut known.ids, u)?);
        }
        let added = set.len() - before;
        if added > 0 {
            store_set(c, key, &set)?;
            t.events.entry(key.clone()).or_default().users += added;
        }
    }

    let mut events: Vec<(&EventKey, &EventAdd)> = t.events.iter().collect();
    events.sort_unstable_by(|a, b| event_order(a.0).cmp(&event_order(b.0)));
    for (k, a) in events {
        c.execute(
            "INSERT INTO insight_events (g, team_id, bucket, event_type, events, too_old, users) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (g, team_id, bucket, event_type) DO UPDATE SET events = insight_events.events + excluded.events,
               too_old = insight_events.too_old + excluded.too_old, users = insight_events.users + excluded.users",
            params![
                k.g.code(),
                k.team_id,
                k.bucket,
                k.event_type,
                a.events as i64,
                a.too_old as i64,
                a.users as i64
            ],
        )?;
    }

    let mut deliveries: Vec<(&DeliveryKey, &DeliveryCounts)> = t.deliveries.iter().collect();
    deliveries.sort_unstable_by(|a, b| delivery_order(a.0).cmp(&delivery_order(b.0)));
    for (k, d) in deliveries {
        let mut values: Vec<Param> = vec![
            Param::Int(Some(k.g.code())),
            Param::Int(Some(k.bucket)),
            Param::Text(Some(&k.app_id)),
        ];
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
            values.push(Param::Int(Some(n as i64)));
        }
        c.execute(delivery_upsert(), &values)?;
    }

    let mut reasons: Vec<(&ReasonKey, &u64)> = t.reasons.iter().collect();
    reasons.sort_unstable_by(|a, b| reason_order(a.0).cmp(&reason_order(b.0)));
    for (k, n) in reasons {
        c.execute(
            "INSERT INTO insight_delivery_reasons (g, bucket, app_id, kind, reason, n) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (g, bucket, app_id, kind, reason) DO UPDATE SET n = insight_delivery_reasons.n + excluded.n",
            params![
                k.delivery.g.code(),
                k.delivery.bucket,
                k.delivery.app_id,
                k.kind.as_str(),
                k.reason,
                *n as i64
            ],
        )?;
    }
    Ok(())
}

// --- queries ---------------------------------------------------------------------------

fn scope_key(r: &InsightRange) -> &str {
    r.scope.as_deref().unwrap_or(ALL)
}

/// Counts, distinct users and series per event type (and for every type together).
pub fn events(c: &Conn, r: &InsightRange) -> StoreResult<EventInsights> {
    let g = r.granularity;
    let rows = c.query(
        "SELECT event_type, bucket, events, too_old, users FROM insight_events
         WHERE g = ?1 AND team_id = ?2 AND bucket >= ?3 AND bucket < ?4 ORDER BY event_type, bucket",
        params![g.code(), scope_key(r), r.bucket_from(), r.bucket_to()],
        |row| {
            Ok((
                row.get::<String>(0)?,
                row.get::<i64>(1)?,
                row.get::<i64>(2)?,
                row.get::<i64>(3)?,
                row.get::<i64>(4)?,
            ))
        },
    )?;
    let mut by_type: BTreeMap<String, TypeInsight> = BTreeMap::new();
    for (ty, t, events, too_old, users) in rows {
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
fn distinct_users(c: &Conn, r: &InsightRange) -> StoreResult<HashMap<String, u64>> {
    let (df, dt, hf, ht) = r.user_spans();
    let mut sets: HashMap<String, RoaringBitmap> = HashMap::new();
    // Each set is merged as it is read, so only one blob is held at a time.
    c.query(
        "SELECT event_type, users FROM insight_user_sets WHERE g = 2 AND team_id = ?1 AND bucket >= ?2 AND bucket < ?3
         UNION ALL
         SELECT event_type, users FROM insight_user_sets WHERE g = 1 AND team_id = ?1
           AND ((bucket >= ?4 AND bucket < ?2) OR (bucket >= ?3 AND bucket < ?5))",
        params![scope_key(r), df, dt, hf, ht],
        |row| {
            let ty: String = row.get(0)?;
            let blob: Vec<u8> = row.get(1)?;
            *sets.entry(ty).or_default() |= decode_set(&blob)?;
            Ok(())
        },
    )?;
    Ok(sets.into_iter().map(|(k, v)| (k, v.len())).collect())
}

/// Delivery counts per app, over the range and as a series for all apps together.
pub fn deliveries(c: &Conn, r: &InsightRange) -> StoreResult<DeliveryInsights> {
    let g = r.granularity;
    let lat: Vec<String> = (0..LATENCY_BINS).map(|i| format!("l{i}")).collect();
    let sql = format!(
        "SELECT app_id, bucket, attempts, succeeded, failed, retries, delivered, gave_up, dropped, {}
         FROM insight_deliveries WHERE g = ?1 AND bucket >= ?2 AND bucket < ?3 AND (?4 IS NULL OR app_id = ?4)
         ORDER BY bucket",
        lat.join(", ")
    );
    let rows = c.query(
        &sql,
        params![g.code(), r.bucket_from(), r.bucket_to(), r.scope],
        |row| {
            let app: String = row.get(0)?;
            let t: i64 = row.get(1)?;
            let mut n = [0u64; 7];
            for (i, v) in n.iter_mut().enumerate() {
                *v = row.get::<i64>(2 + i)? as u64;
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
                *l = row.get::<i64>(9 + i)? as u64;
            }
            Ok((app, t, counts))
        },
    )?;
    let mut apps: BTreeMap<String, AppDeliveryInsight> = BTreeMap::new();
    let mut out = DeliveryInsights::default();
    for (app, t, counts) in rows {
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
    let reasons = c.query(
        "SELECT app_id, kind, reason, SUM(n) FROM insight_delivery_reasons
         WHERE g = ?1 AND bucket >= ?2 AND bucket < ?3 AND (?4 IS NULL OR app_id = ?4)
         GROUP BY app_id, kind, reason",
        params![g.code(), r.bucket_from(), r.bucket_to(), r.scope],
        |row| {
            Ok((
                row.get::<String>(0)?,
                row.get::<String>(1)?,
                row.get::<String>(2)?,
                row.get::<i64>(3)? as u64,
            ))
        },
    )?;
    for (app, kind, reason, n) in reasons {
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
pub fn put_key_event(c: &Conn, event_type: &str) -> StoreResult<(KeyEvent, bool)> {
    if let Some(k) = get_key_event(c, event_type)? {
        return Ok((k, false));
    }
    let created_at = super::now();
    // Another process may mark the same type at the same time: then its mark stands.
    let inserted = c.execute(
        "INSERT INTO key_events (event_type, created_at) VALUES (?1, ?2) ON CONFLICT (event_type) DO NOTHING",
        params![event_type, created_at],
    )?;
    if inserted == 0 {
        if let Some(k) = get_key_event(c, event_type)? {
            return Ok((k, false));
        }
        return Err(crate::StoreError::Unavailable(format!(
            "key event {event_type} changed while it was being marked; try again"
        )));
    }
    Ok((
        KeyEvent {
            event_type: event_type.to_string(),
            created_at,
        },
        true,
    ))
}

fn map_key_event(r: &Row) -> StoreResult<KeyEvent> {
    Ok(KeyEvent {
        event_type: r.get(0)?,
        created_at: r.get(1)?,
    })
}

fn get_key_event(c: &Conn, event_type: &str) -> StoreResult<Option<KeyEvent>> {
    c.query_opt(
        "SELECT event_type, created_at FROM key_events WHERE event_type = ?1",
        params![event_type],
        map_key_event,
    )
}

/// Unmarks a key event; false if it was not marked.
pub fn delete_key_event(c: &Conn, event_type: &str) -> StoreResult<bool> {
    Ok(c.execute(
        "DELETE FROM key_events WHERE event_type = ?1",
        params![event_type],
    )? > 0)
}

pub fn list_key_events(c: &Conn) -> StoreResult<Vec<KeyEvent>> {
    c.query(
        "SELECT event_type, created_at FROM key_events ORDER BY event_type",
        params![],
        map_key_event,
    )
}

/// Builds the user sets from the events an older Tidings stored (by their actor); part of
/// the migration that adds insights.
pub(crate) fn backfill_user_sets(c: &Conn) -> StoreResult<()> {
    let mut t = Tally::default();
    // Rows are counted as they are read (not collected), writing the sets every 100,000
    // memberships so memory stays bounded however many events there are.
    c.query(
        "SELECT team_id, event_type, event_time, actor_id FROM events
         WHERE actor_id IS NOT NULL AND event_type <> 'app_rate_limited'",
        params![],
        |row| {
            let (team, ty, at, user): (String, String, i64, String) =
                (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?);
            t.event(&team, &ty, at, Some(&user));
            if t.unexpanded() > 100_000 {
                write_sets_only(c, &mut t)?;
            }
            Ok(())
        },
    )?;
    write_sets_only(c, &mut t)
}

/// Writes a tally's user sets, not its counts (the backfill counts in SQL).
fn write_sets_only(c: &Conn, t: &mut Tally) -> StoreResult<()> {
    let mut known = Counting::default();
    t.expand();
    let mut only_sets = Tally::default();
    only_sets.users = std::mem::take(&mut t.users);
    *t = Tally::default();
    flush(c, only_sets, &mut known)?;
    Ok(())
}

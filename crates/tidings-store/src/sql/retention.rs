//! Retention: deleting what is older than the operator keeps, in small batches.
//!
//! Each call of [`prune`] runs three short transactions (on SQLite writer jobs, sharing
//! group commits with the hot path and holding the write lock for one batch each; on
//! PostgreSQL on a pooled connection, beside the writer):
//! - **deliveries** finished longer ago than their status's age (`delivered`; `failed` and
//!   `dropped`), by `updated_at` (when they finished), with their attempts; never a pending
//!   one. Their events go with them when no delivery of the event is left and the event is
//!   older than the events age;
//! - **events** older than the events age with no delivery left, found by a cursor over
//!   `(created_at, id)` kept in `settings` (`retention_events_cursor`): the cursor only
//!   passes events older than the age, so each is looked at once; one that still had a
//!   delivery then is deleted by the deliveries job when its last delivery goes;
//! - **minute rollups** (`g = 0` in the insight tables) older than their age; hour and day
//!   rollups stay.
//!
//! Every job touches at most `batch` rows of its table (attempts follow their deliveries).
//! On PostgreSQL each job first takes a transaction-scoped advisory lock and does nothing
//! when another node holds it, and the deliveries it deletes are locked with
//! `FOR UPDATE SKIP LOCKED`: nodes pruning at once, or a redelivery racing a prune, are
//! harmless. Migration 6 adds the indexes these reads seek on (`deliveries_finished`,
//! `events_created`, `insight_events_bucket`).

use super::conn::{Conn, Dialect};
use super::SqlStore;
use crate::{params, StoreResult};

/// How long each kind of row is kept, in seconds (0 keeps it forever), and how many rows
/// one batch deletes at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Delivered deliveries, after they were delivered.
    pub delivered_secs: i64,
    /// Failed and dropped deliveries, after they failed or were dropped.
    pub failed_secs: i64,
    /// Events, after they were published (and only once none of their deliveries is left).
    pub events_secs: i64,
    /// Minute insight rollups, after their minute.
    pub minute_rollups_secs: i64,
    /// Rows one batch deletes at most (per table).
    pub batch: usize,
}

/// Rows one [`prune`] call deleted, per table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub deliveries: u64,
    pub attempts: u64,
    pub events: u64,
    pub minute_rollups: u64,
    /// Some job deleted a full batch: more may be waiting.
    pub more: bool,
}

impl Pruned {
    pub fn total(&self) -> u64 {
        self.deliveries + self.attempts + self.events + self.minute_rollups
    }

    /// Adds another call's counts (`more` is the latest call's).
    pub fn add(&mut self, o: Pruned) {
        self.deliveries += o.deliveries;
        self.attempts += o.attempts;
        self.events += o.events;
        self.minute_rollups += o.minute_rollups;
        self.more = o.more;
    }
}

/// One batch of each job, as of `now` (Unix seconds).
pub async fn prune(store: &SqlStore, r: Retention, now: i64) -> StoreResult<Pruned> {
    let batch = r.batch.max(1) as i64;
    let cut = |age: i64| (age > 0).then(|| now - age);
    let (delivered, failed, events) = (
        cut(r.delivered_secs),
        cut(r.failed_secs),
        cut(r.events_secs),
    );
    let mut out = Pruned::default();
    if delivered.is_some() || failed.is_some() {
        let (d, a, e) = job(store, move |c| {
            prune_deliveries(c, delivered, failed, events, batch)
        })
        .await?;
        out.deliveries = d;
        out.attempts = a;
        out.events += e;
        out.more |= d as i64 >= batch;
    }
    if let Some(events) = events {
        let (e, full) = job(store, move |c| prune_events(c, events, batch)).await?;
        out.events += e;
        out.more |= full;
    }
    if let Some(minutes) = cut(r.minute_rollups_secs) {
        let (n, full) = job(store, move |c| prune_minute_rollups(c, minutes, batch)).await?;
        out.minute_rollups = n;
        out.more |= full;
    }
    Ok(out)
}

/// The tables a round that pruned `p` left dead rows in: what it deleted from, and
/// `settings` (the events cursor is rewritten on every events batch).
pub fn pruned_tables(p: &Pruned) -> Vec<&'static str> {
    let mut t = Vec::new();
    if p.deliveries > 0 {
        t.push("deliveries");
    }
    if p.attempts > 0 {
        t.push("delivery_attempts");
    }
    if p.events > 0 {
        t.extend(["events", "settings"]);
    }
    if p.minute_rollups > 0 {
        t.extend([
            "insight_events",
            "insight_user_sets",
            "insight_deliveries",
            "insight_delivery_reasons",
        ]);
    }
    t
}

/// After pruning rounds that deleted `p`: on PostgreSQL, a plain `VACUUM` (not `FULL`: no
/// exclusive lock, the space is kept for the table's next rows) of each table they
/// deleted from, so the tables stay bounded when autovacuum is off or lags. It runs
/// outside any transaction (as `VACUUM` must) on a pooled connection with its
/// `statement_timeout` lifted for the while, holding the pruner's advisory lock (at
/// session level, released before the connection goes back to the pool), so no node
/// prunes or vacuums beside it. Returns the tables vacuumed: none on SQLite (freed pages
/// are reused by the next inserts), or when another node holds the lock.
pub async fn vacuum(store: &SqlStore, p: Pruned) -> StoreResult<Vec<&'static str>> {
    let tables = pruned_tables(&p);
    let pool = match &store.readers {
        super::Readers::Postgres(pool) if !tables.is_empty() => pool.clone(),
        _ => return Ok(Vec::new()),
    };
    pool.maintain(move |c| {
        const KEY: &str = "hashtext('tidings_retention'), hashtext(current_schema())";
        let locked: bool = c.query_one(
            &format!("SELECT pg_try_advisory_lock({KEY})"),
            params![],
            |r| r.get(0),
        )?;
        if !locked {
            return Ok(Vec::new());
        }
        let timeout: String = c.query_one(
            "SELECT current_setting('statement_timeout')",
            params![],
            |r| r.get(0),
        )?;
        let vacuumed = c.batch("SET statement_timeout = 0").and_then(|()| {
            for t in &tables {
                c.batch(&format!("VACUUM {t}"))?;
            }
            Ok(tables)
        });
        let restored = c.query_one(
            "SELECT set_config('statement_timeout', ?1, false)",
            params![timeout],
            |r| r.get::<String>(0),
        );
        let unlocked = c.query_one(
            &format!("SELECT pg_advisory_unlock({KEY})"),
            params![],
            |r| r.get::<bool>(0),
        );
        let tables = vacuumed?;
        restored?;
        unlocked?;
        Ok(tables)
    })
    .await
}

/// Runs one batch in a transaction of its own: on SQLite through the writer (the one
/// write connection; the batch shares a group commit with the hot path), on PostgreSQL on
/// a pooled connection, so a backlog in this node's writer queue does not hold pruning up
/// and a batch's row locks never sit inside a publish's transaction.
async fn job<T, F>(store: &SqlStore, f: F) -> StoreResult<T>
where
    T: Send + 'static,
    F: FnOnce(&Conn) -> StoreResult<T> + Send + 'static,
{
    match &store.readers {
        super::Readers::Sqlite(_) => store.write(f).await,
        super::Readers::Postgres(p) => {
            p.read(move |c| {
                c.batch("BEGIN")?;
                match f(c) {
                    Ok(v) => {
                        c.batch("COMMIT")?;
                        Ok(v)
                    }
                    Err(e) => {
                        let _ = c.batch("ROLLBACK");
                        Err(e)
                    }
                }
            })
            .await
        }
    }
}

/// Whether this node may prune now (PostgreSQL: no other node is pruning in its open
/// transaction). The lock is released when the batch's transaction ends.
fn may_prune(c: &Conn) -> StoreResult<bool> {
    match c.dialect() {
        Dialect::Sqlite => Ok(true),
        Dialect::Postgres => c.query_one(
            "SELECT pg_try_advisory_xact_lock(hashtext('tidings_retention'), hashtext(current_schema()))",
            params![],
            |r| r.get::<bool>(0),
        ),
    }
}

/// `?1` (a JSON array) as a set of values, for `x IN (…)`.
fn json_set(d: Dialect, int: bool) -> &'static str {
    match (d, int) {
        (Dialect::Sqlite, _) => "(SELECT value FROM json_each(?1))",
        (Dialect::Postgres, true) => "(SELECT jsonb_array_elements_text(?1::jsonb)::bigint)",
        (Dialect::Postgres, false) => "(SELECT jsonb_array_elements_text(?1::jsonb))",
    }
}

/// Deletes the attempts of the deliveries whose seqs are in the JSON array `?1`. Read
/// through the attempt log's primary key, its one index (see migration 13's test).
pub(crate) fn delete_attempts_sql(d: Dialect) -> String {
    format!(
        "DELETE FROM delivery_attempts WHERE delivery_seq IN {}",
        json_set(d, true)
    )
}

/// Up to `batch` finished deliveries past their age, their attempts, and their events
/// when nothing of them is left; returns (deliveries, attempts, events) deleted.
fn prune_deliveries(
    c: &Conn,
    delivered: Option<i64>,
    failed: Option<i64>,
    events: Option<i64>,
    batch: i64,
) -> StoreResult<(u64, u64, u64)> {
    if !may_prune(c)? {
        return Ok((0, 0, 0));
    }
    let lock = match c.dialect() {
        Dialect::Sqlite => "",
        Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
    };
    // `status <> 'pending'` lets SQLite use the partial index.
    let mut picked: Vec<(i64, String)> = Vec::new();
    for (statuses, cutoff) in [
        ("('delivered')", delivered),
        ("('failed', 'dropped')", failed),
    ] {
        let (Some(cutoff), left) = (cutoff, batch - picked.len() as i64) else {
            continue;
        };
        if left <= 0 {
            break;
        }
        let sql = format!(
            "SELECT seq, event_id FROM deliveries
             WHERE status IN {statuses} AND status <> 'pending' AND updated_at < ?1
             ORDER BY status, updated_at LIMIT ?2{lock}"
        );
        picked.extend(c.query(&sql, params![cutoff, left], |r| Ok((r.get(0)?, r.get(1)?)))?);
    }
    if picked.is_empty() {
        return Ok((0, 0, 0));
    }
    let d = c.dialect();
    let seqs = serde_json::to_string(&picked.iter().map(|p| p.0).collect::<Vec<_>>())?;
    let attempts = c.execute(&delete_attempts_sql(d), params![seqs])?;
    let deliveries = c.execute(
        &format!("DELETE FROM deliveries WHERE seq IN {}", json_set(d, true)),
        params![seqs],
    )?;
    let mut gone_events = 0;
    if let Some(cutoff) = events {
        let mut ids: Vec<&str> = picked.iter().map(|p| p.1.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        gone_events = c.execute(
            &format!(
                "DELETE FROM events WHERE id IN {} AND created_at < ?2
                 AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = events.id)",
                json_set(d, false)
            ),
            params![serde_json::to_string(&ids)?, cutoff],
        )?;
    }
    Ok((deliveries as u64, attempts as u64, gone_events as u64))
}

/// Looks at the next `batch` events older than `cutoff` past the cursor and deletes those
/// with no delivery left; returns how many it deleted and whether it looked at a full
/// batch (more to look at).
fn prune_events(c: &Conn, cutoff: i64, batch: i64) -> StoreResult<(u64, bool)> {
    if !may_prune(c)? {
        return Ok((0, false));
    }
    let cursor: (i64, String) = c
        .query_opt(
            "SELECT value FROM settings WHERE key = 'retention_events_cursor'",
            params![],
            |r| r.get::<String>(0),
        )?
        .and_then(|v| {
            let (t, id) = v.split_once(' ')?;
            Some((t.parse().ok()?, id.to_string()))
        })
        .unwrap_or((i64::MIN, String::new()));
    let seen: Vec<(i64, String)> = c.query(
        "SELECT created_at, id FROM events
         WHERE (created_at, id) > (?1, ?2) AND created_at < ?3
         ORDER BY created_at, id LIMIT ?4",
        params![cursor.0, cursor.1, cutoff, batch],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let Some(last) = seen.last() else {
        return Ok((0, false));
    };
    let ids = serde_json::to_string(&seen.iter().map(|s| &s.1).collect::<Vec<_>>())?;
    let deleted = c.execute(
        &format!(
            "DELETE FROM events WHERE id IN {}
             AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = events.id)",
            json_set(c.dialect(), false)
        ),
        params![ids],
    )?;
    c.execute(
        "INSERT INTO settings (key, value) VALUES ('retention_events_cursor', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![format!("{} {}", last.0, last.1)],
    )?;
    Ok((deleted as u64, seen.len() as i64 >= batch))
}

/// Minute rollups (`g = 0`) whose minute is older than `cutoff`, up to `batch` per table;
/// returns the rows deleted and whether some table had a full batch.
fn prune_minute_rollups(c: &Conn, cutoff: i64, batch: i64) -> StoreResult<(u64, bool)> {
    if !may_prune(c)? {
        return Ok((0, false));
    }
    let mut total = 0;
    let mut full = false;
    for (table, key) in [
        ("insight_events", "g, team_id, bucket, event_type"),
        ("insight_user_sets", "g, team_id, bucket, event_type"),
        ("insight_deliveries", "g, bucket, app_id"),
        (
            "insight_delivery_reasons",
            "g, bucket, app_id, kind, reason",
        ),
    ] {
        let n = c.execute(
            &format!(
                "DELETE FROM {table} WHERE ({key}) IN
                 (SELECT {key} FROM {table} WHERE g = 0 AND bucket < ?1 LIMIT ?2)"
            ),
            params![cutoff, batch],
        )?;
        total += n as u64;
        full |= n as i64 >= batch;
    }
    Ok((total, full))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::postgres::TestSchema;

    const DAY: i64 = 86_400;
    const NOW: i64 = 2_000_000_000;

    fn retention(batch: usize) -> Retention {
        Retention {
            delivered_secs: 7 * DAY,
            failed_secs: 30 * DAY,
            events_secs: 7 * DAY,
            minute_rollups_secs: 2 * DAY,
            batch,
        }
    }

    /// An event published `age` days before [`NOW`] with deliveries `(id, status, days
    /// since it finished, attempts)`.
    fn event(c: &Conn, id: &str, age: i64, deliveries: &[(&str, &str, i64, i64)]) {
        c.execute(
            "INSERT INTO events (id, team_id, event_type, event_time, payload, created_at)
             VALUES (?1, 'T1', 'message', ?2, '{}', ?2)",
            params![id, NOW - age * DAY],
        )
        .unwrap();
        for (did, status, finished, attempts) in deliveries {
            let seq = c
                .insert_seq(
                    "INSERT INTO deliveries (id, event_id, app_id, team_id, event_type, status, auth, next_attempt_at, created_at, updated_at)
                     VALUES (?1, ?2, 'A1', 'T1', 'message', ?3, '{}', 0, ?4, ?5)",
                    params![*did, id, *status, NOW - age * DAY, NOW - finished * DAY],
                )
                .unwrap();
            for n in 1..=*attempts {
                c.execute(
                    "INSERT INTO delivery_attempts (delivery_seq, n, at, transport, latency_ms, retry_num)
                     VALUES (?1, ?2, 0, 'http', 1, 0)",
                    params![seq, n],
                )
                .unwrap();
            }
        }
    }

    fn fixture(c: &Conn) -> StoreResult<()> {
        c.batch(
            "INSERT INTO teams (id, name, domain, created_at) VALUES ('T1', 't', 't', 0);
             INSERT INTO apps (id, name, bot_events, user_events, event_shape, signing_secret, verification_token, created_at)
               VALUES ('A1', 'a', '[]', '[]', 'slack', 's', 'v', 0);",
        )?;
        event(c, "EvOLDDONE", 20, &[("DLOLDDONE", "delivered", 20, 2)]);
        event(c, "EvOLDPEND", 20, &[("DLOLDPEND", "pending", 20, 1)]);
        event(
            c,
            "EvMIXED",
            20,
            &[
                ("DLMIXDONE", "delivered", 20, 1),
                ("DLMIXPEND", "pending", 20, 3),
            ],
        );
        event(c, "EvRECENT", 1, &[("DLRECENT", "delivered", 1, 1)]);
        event(c, "EvFAILNEW", 40, &[("DLFAILNEW", "failed", 10, 4)]);
        event(c, "EvFAILOLD", 40, &[("DLFAILOLD", "dropped", 40, 0)]);
        event(c, "EvBAREOLD", 9, &[]);
        event(c, "EvBARENEW", 3, &[]);
        // Minute, hour and day rollups, old and new.
        for (g, age) in [(0, 3 * DAY), (0, 60), (1, 3 * DAY), (2, 30 * DAY)] {
            c.execute(
                "INSERT INTO insight_events (g, team_id, bucket, event_type, events) VALUES (?1, '', ?2, 'message', 1)",
                params![g, NOW - age],
            )?;
            c.execute(
                "INSERT INTO insight_deliveries (g, bucket, app_id, attempts) VALUES (?1, ?2, 'A1', 1)",
                params![g, NOW - age],
            )?;
        }
        Ok(())
    }

    fn ids(c: &Conn, sql: &str) -> Vec<String> {
        let mut v: Vec<String> = c.query(sql, params![], |r| r.get(0)).unwrap();
        v.sort();
        v
    }

    async fn old_rows_go_and_pending_work_stays(store: SqlStore) {
        store.write(fixture).await.unwrap();
        let mut total = Pruned::default();
        loop {
            let p = prune(&store, retention(1000), NOW).await.unwrap();
            total.add(p);
            if !p.more {
                break;
            }
        }
        assert_eq!(total.deliveries, 3, "{total:?}");
        assert_eq!(total.attempts, 3, "{total:?}");
        assert_eq!(total.events, 3, "{total:?}");
        assert_eq!(total.minute_rollups, 2, "{total:?}");
        store
            .read(|c| {
                assert_eq!(
                    ids(c, "SELECT id FROM deliveries"),
                    ["DLFAILNEW", "DLMIXPEND", "DLOLDPEND", "DLRECENT"]
                );
                assert_eq!(
                    ids(c, "SELECT id FROM events"),
                    ["EvBARENEW", "EvFAILNEW", "EvMIXED", "EvOLDPEND", "EvRECENT"]
                );
                let attempts: Vec<i64> = c.query(
                    "SELECT COUNT(*) FROM delivery_attempts a LEFT JOIN deliveries d ON d.seq = a.delivery_seq
                     WHERE d.seq IS NULL",
                    params![],
                    |r| r.get(0),
                )?;
                assert_eq!(attempts, [0], "no attempt outlives its delivery");
                let kept: i64 = c.query_one(
                    "SELECT COUNT(*) FROM delivery_attempts",
                    params![],
                    |r| r.get(0),
                )?;
                assert_eq!(kept, 1 + 3 + 1 + 4);
                for table in ["insight_events", "insight_deliveries"] {
                    let gs: Vec<(i64, i64)> = c.query(
                        &format!("SELECT g, bucket FROM {table} ORDER BY g, bucket"),
                        params![],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )?;
                    assert_eq!(
                        gs,
                        [(0, NOW - 60), (1, NOW - 3 * DAY), (2, NOW - 30 * DAY)],
                        "{table}: old minutes go, new minutes, hours and days stay"
                    );
                }
                Ok(())
            })
            .await
            .unwrap();
        // Nothing more to do, and a second pass changes nothing.
        let again = prune(&store, retention(1000), NOW).await.unwrap();
        assert_eq!(again.total(), 0, "{again:?}");
    }

    async fn batches_are_bounded(store: SqlStore) {
        store
            .write(|c| {
                fixture(c)?;
                for i in 0..25 {
                    let (e, d) = (format!("EvMANY{i:02}"), format!("DLMANY{i:02}"));
                    event(c, &e, 10, &[(&d, "delivered", 10, 1)]);
                }
                Ok(())
            })
            .await
            .unwrap();
        let first = prune(&store, retention(10), NOW).await.unwrap();
        assert_eq!(first.deliveries, 10, "{first:?}");
        assert_eq!(
            first.attempts, 11,
            "two old deliveries with 3 attempts, 8 with one: {first:?}"
        );
        assert!(first.more);
        let mut rounds = 1;
        let mut total = first;
        while total.more {
            total.add(prune(&store, retention(10), NOW).await.unwrap());
            rounds += 1;
            assert!(rounds < 10, "pruning ends");
        }
        assert_eq!(total.deliveries, 25 + 3);
        assert!(rounds >= 3, "28 deliveries take three batches of 10");
    }

    fn sqlite() -> (tempfile::TempDir, SqlStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::sql::sqlite::open(dir.path()).unwrap();
        (dir, store)
    }

    async fn postgres() -> Option<(TestSchema, SqlStore)> {
        let Some(schema) = TestSchema::from_env() else {
            eprintln!("needs PostgreSQL (TIDINGS_TEST_DATABASE_URL); not run");
            return None;
        };
        let options = crate::PgOptions {
            url: schema.url(),
            max_connections: 4,
            lease: std::time::Duration::from_secs(30),
            connect_timeout: std::time::Duration::from_secs(3),
            statement_timeout: std::time::Duration::from_secs(3),
            ca_file: None,
        };
        let store = tokio::task::spawn_blocking(move || crate::sql::postgres::open(&options))
            .await
            .unwrap()
            .unwrap();
        Some((schema, store))
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn sqlite_prunes_old_rows_and_keeps_pending_work() {
        let (_dir, store) = sqlite();
        old_rows_go_and_pending_work_stays(store).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn sqlite_prunes_in_bounded_batches() {
        let (_dir, store) = sqlite();
        batches_are_bounded(store).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn postgres_prunes_old_rows_and_keeps_pending_work() {
        let Some((_schema, store)) = postgres().await else {
            return;
        };
        old_rows_go_and_pending_work_stays(store).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn postgres_prunes_in_bounded_batches() {
        let Some((_schema, store)) = postgres().await else {
            return;
        };
        batches_are_bounded(store).await;
    }

    /// Prunes everything due, then vacuums what that deleted from.
    async fn prune_then_vacuum(store: &SqlStore) -> Vec<&'static str> {
        store.write(fixture).await.unwrap();
        let mut total = Pruned::default();
        loop {
            let p = prune(store, retention(1000), NOW).await.unwrap();
            total.add(p);
            if !p.more {
                break;
            }
        }
        vacuum(store, total).await.unwrap()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn sqlite_needs_no_vacuum_after_pruning() {
        let (_dir, store) = sqlite();
        assert!(prune_then_vacuum(&store).await.is_empty());
    }

    /// Whether VACUUM has run on each of the three big tables, and their dead rows.
    async fn vacuum_stats(store: &SqlStore) -> (Vec<bool>, i64) {
        store
            .read(|c| {
                let at = c.query(
                    "SELECT last_vacuum IS NOT NULL FROM pg_stat_user_tables
                     WHERE schemaname = current_schema()
                       AND relname IN ('deliveries', 'delivery_attempts', 'events')",
                    params![],
                    |r| r.get(0),
                )?;
                let dead = c.query_one(
                    "SELECT COALESCE(SUM(n_dead_tup), 0)::bigint FROM pg_stat_user_tables
                     WHERE schemaname = current_schema()
                       AND relname IN ('deliveries', 'delivery_attempts', 'events')",
                    params![],
                    |r| r.get(0),
                )?;
                Ok((at, dead))
            })
            .await
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn postgres_vacuums_the_pruned_tables_and_keeps_its_statement_timeout() {
        let Some((_schema, store)) = postgres().await else {
            return;
        };
        let vacuumed = prune_then_vacuum(&store).await;
        assert_eq!(
            vacuumed,
            [
                "deliveries",
                "delivery_attempts",
                "events",
                "settings",
                "insight_events",
                "insight_user_sets",
                "insight_deliveries",
                "insight_delivery_reasons"
            ]
        );
        let (vacuumed_at, mut dead) = vacuum_stats(&store).await;
        assert_eq!(vacuumed_at, [true, true, true], "VACUUM ran on each");
        // VACUUM frees only rows that no open snapshot in the database can still see, and
        // the other tests share this database: while one of them holds a transaction open,
        // some deleted rows stay dead. The store's vacuum is run again until they are free.
        for _ in 0..40 {
            if dead == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            vacuum(
                &store,
                Pruned {
                    deliveries: 1,
                    attempts: 1,
                    events: 1,
                    ..Pruned::default()
                },
            )
            .await
            .unwrap();
            dead = vacuum_stats(&store).await.1;
        }
        assert_eq!(dead, 0, "the deleted rows' space is free for reuse");
        // The pooled connections keep the store's statement_timeout and no lock is left.
        for _ in 0..8 {
            let (timeout, free): (String, bool) = store
                .read(|c| {
                    let t = c.query_one(
                        "SELECT current_setting('statement_timeout')",
                        params![],
                        |r| r.get(0),
                    )?;
                    let free = c.query_one(
                        "SELECT pg_try_advisory_xact_lock(hashtext('tidings_retention'), hashtext(current_schema()))",
                        params![],
                        |r| r.get(0),
                    )?;
                    Ok((t, free))
                })
                .await
                .unwrap();
            assert_eq!(timeout, "3s");
            assert!(free, "the vacuum released the pruner's lock");
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn nodes_pruning_one_postgres_at_once_delete_each_row_once() {
        let Some((schema, a)) = postgres().await else {
            return;
        };
        let url = schema.url();
        let b = tokio::task::spawn_blocking(move || {
            crate::sql::postgres::open(&crate::PgOptions {
                url,
                max_connections: 4,
                lease: std::time::Duration::from_secs(30),
                connect_timeout: std::time::Duration::from_secs(3),
                statement_timeout: std::time::Duration::from_secs(3),
                ca_file: None,
            })
        })
        .await
        .unwrap()
        .unwrap();
        a.write(|c| {
            fixture(c)?;
            for i in 0..40 {
                let (e, d) = (format!("EvMANY{i:02}"), format!("DLMANY{i:02}"));
                event(c, &e, 10, &[(&d, "delivered", 10, 1)]);
            }
            Ok(())
        })
        .await
        .unwrap();
        let run = |s: SqlStore| async move {
            let mut total = Pruned::default();
            for _ in 0..50 {
                total.add(prune(&s, retention(5), NOW).await.unwrap());
            }
            total
        };
        let (x, y) = tokio::join!(run(a.clone()), run(b));
        assert_eq!(x.deliveries + y.deliveries, 43, "{x:?} {y:?}");
        assert_eq!(x.events + y.events, 43, "{x:?} {y:?}");
        let left: i64 = a
            .read(|c| c.query_one("SELECT COUNT(*) FROM deliveries", params![], |r| r.get(0)))
            .await
            .unwrap();
        assert_eq!(left, 4);
    }
}

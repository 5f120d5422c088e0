//! SQL for the delivery engine: due work per app, attempt outcomes, postponing, waking,
//! redelivery, and the tallies the health rule is rebuilt from after a restart.

use super::conn::{Conn, Dialect};
use super::event_cache::EventCache;
use super::events::{delivery_columns, map_delivery, map_event, EVENT_COLUMNS_E};
use super::now;
pub use super::outcomes::record;
use crate::insights::{Settled, Tally};
use crate::model::*;
use crate::params;
use crate::{StoreError, StoreResult};

/// The `X-Slack-Retry-Reason` of an attempt that follows a take-over (the node that held
/// the delivery's lease went away without saying how its attempt went): of Slack's
/// reasons, the one that says the result is not known.
pub const TAKE_OVER_REASON: &str = "unknown_error";

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub fn pending_apps(c: &Conn) -> StoreResult<Vec<(String, i64)>> {
    c.query(
        "SELECT app_id, MIN(next_attempt_at) FROM deliveries WHERE status = 'pending' GROUP BY app_id",
        params![],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
}

/// The in-flight rows to skip, as a JSON array: one static statement for any number of
/// them, so it is prepared once and cached.
fn exclusion_json(exclude: &[i64]) -> String {
    serde_json::to_string(exclude).unwrap_or_else(|_| "[]".into())
}

/// `d.seq` is not among the JSON array of seqs in parameter `?N`, in the dialect's words.
fn not_excluded(dialect: Dialect, n: usize) -> String {
    match dialect {
        Dialect::Sqlite => format!("d.seq NOT IN (SELECT value FROM json_each(?{n}))"),
        Dialect::Postgres => {
            format!("d.seq NOT IN (SELECT value::int8 FROM json_array_elements_text(?{n}::json))")
        }
    }
}

/// `events`: the rows' events are taken from there when another row brought them already.
pub fn due(
    c: &Conn,
    events: &EventCache,
    app: &str,
    now_ms: i64,
    limit: usize,
    exclude: &[i64],
    below: Option<i64>,
) -> StoreResult<Vec<DueDelivery>> {
    let sql = format!(
        "SELECT {}, d.attempts, d.redeliver, {EVENT_COLUMNS_E} FROM deliveries d JOIN events e ON e.id = d.event_id
         WHERE d.app_id = ?1 AND d.status = 'pending' AND d.next_attempt_at <= ?2
           AND {} AND (?5 IS NULL OR d.seq < ?5)
         ORDER BY d.next_attempt_at, d.seq LIMIT ?3",
        delivery_columns("d"),
        not_excluded(c.dialect(), 4),
    );
    c.query(
        &sql,
        params![app, now_ms, limit as i64, exclusion_json(exclude), below],
        |r| {
            let delivery = map_delivery(r)?;
            let event = events.get_or_read(&delivery.event_id, || map_event(r, 12))?;
            Ok(DueDelivery {
                delivery,
                attempts: r.get::<i64>(10)? as u32,
                redeliver: r.get(11)?,
                event,
                lease: None,
            })
        },
    )
}

/// [`due`] for nodes sharing the database: the rows are claimed for `lease_until_ms` by
/// `node` in the same statement (`FOR UPDATE SKIP LOCKED`), so two nodes never take the
/// same delivery; a row claimed by a node that died is claimable again once its lease ends.
///
/// Every claim bumps the row's `lease_token` and returns it: the claimer's outcome is
/// written only while the token is unchanged (see [`record`]). A row still marked as
/// leased (`leased_by` set, its lease ended without an outcome) is a *take-over*: its last
/// holder may have sent it, so the claim counts that as an attempt whose result is unknown
/// (`attempts + 1`, reason [`TAKE_OVER_REASON`]), and the next attempt goes out as a retry
/// with `X-Slack-Retry-Num` / `retry_attempt`. An operator's redeliver is not counted so.
#[allow(clippy::too_many_arguments)]
pub fn claim(
    c: &Conn,
    events: &EventCache,
    app: &str,
    now_ms: i64,
    limit: usize,
    exclude: &[i64],
    lease_until_ms: i64,
    node: &str,
) -> StoreResult<Vec<DueDelivery>> {
    let sql = format!(
        "WITH due AS (
           SELECT seq FROM deliveries d
           WHERE d.app_id = ?1 AND d.status = 'pending' AND d.next_attempt_at <= ?2
             AND (d.lease_until IS NULL OR d.lease_until <= ?2) AND {}
           ORDER BY d.next_attempt_at, d.seq LIMIT ?3
           FOR UPDATE SKIP LOCKED)
         UPDATE deliveries d SET lease_until = ?5, leased_by = ?6, lease_token = d.lease_token + 1,
           attempts = d.attempts + CASE WHEN d.leased_by IS NULL OR d.redeliver <> 0 THEN 0 ELSE 1 END,
           reason = CASE WHEN d.leased_by IS NULL OR d.redeliver <> 0 THEN d.reason ELSE ?7 END
         FROM due, events e WHERE d.seq = due.seq AND e.id = d.event_id
         RETURNING {}, d.attempts, d.redeliver, d.lease_token, {EVENT_COLUMNS_E}",
        not_excluded(c.dialect(), 4),
        delivery_columns("d"),
    );
    let mut rows = c.query(
        &sql,
        params![
            app,
            now_ms,
            limit as i64,
            exclusion_json(exclude),
            lease_until_ms,
            node,
            TAKE_OVER_REASON
        ],
        |r| {
            let delivery = map_delivery(r)?;
            let event = events.get_or_read(&delivery.event_id, || map_event(r, 13))?;
            Ok(DueDelivery {
                delivery,
                attempts: r.get::<i64>(10)? as u32,
                redeliver: r.get(11)?,
                lease: Some(r.get(12)?),
                event,
            })
        },
    )?;
    rows.sort_by_key(|r| r.delivery.seq);
    Ok(rows)
}

/// Extends this node's leases on `seqs` (deliveries it claimed and has not concluded) to
/// `lease_until_ms`. Fenced like outcomes: a row another node has taken over since (its
/// `leased_by` changed) is left alone, and so is a row locked by a transaction concluding
/// it (skipped, not waited for). Returns how many leases were extended.
pub fn renew(c: &Conn, seqs: &[i64], node: &str, lease_until_ms: i64) -> StoreResult<usize> {
    if seqs.is_empty() {
        return Ok(0);
    }
    let sql = format!(
        "WITH held AS (
           SELECT seq FROM deliveries
           WHERE seq IN (SELECT value{} FROM {}) AND leased_by = ?2 AND status = 'pending'
           ORDER BY seq FOR UPDATE SKIP LOCKED)
         UPDATE deliveries SET lease_until = ?3 FROM held WHERE deliveries.seq = held.seq",
        match c.dialect() {
            Dialect::Sqlite => "",
            Dialect::Postgres => "::int8",
        },
        match c.dialect() {
            Dialect::Sqlite => "json_each(?1)",
            Dialect::Postgres => "json_array_elements_text(?1::json)",
        },
    );
    c.execute(&sql, params![exclusion_json(seqs), node, lease_until_ms])
}

/// When the app's next pending delivery is due; one claimed by another node counts from
/// when its lease ends (the earliest it could be taken over). Without leases (one node)
/// this reads the due index in order and stops at the first row not in flight, so it
/// costs the same with a million deliveries piled up as with none.
pub fn next_due(
    c: &Conn,
    app: &str,
    exclude: &[i64],
    below: Option<i64>,
    leases: bool,
) -> StoreResult<Option<i64>> {
    if !leases {
        let sql = format!(
            "SELECT d.next_attempt_at FROM deliveries d
             WHERE d.app_id = ?1 AND d.status = 'pending' AND {} AND (?3 IS NULL OR d.seq < ?3)
             ORDER BY d.next_attempt_at, d.seq LIMIT 1",
            not_excluded(c.dialect(), 2),
        );
        return c.query_opt(&sql, params![app, exclusion_json(exclude), below], |r| {
            r.get(0)
        });
    }
    let sql = format!(
        "SELECT MIN(CASE WHEN d.lease_until IS NOT NULL AND d.lease_until > d.next_attempt_at
                         THEN d.lease_until ELSE d.next_attempt_at END)
         FROM deliveries d WHERE d.app_id = ?1 AND d.status = 'pending'
           AND {}",
        not_excluded(c.dialect(), 2),
    );
    c.query_one(&sql, params![app, exclusion_json(exclude)], |r| r.get(0))
}

/// Moves held deliveries' next attempt to `until_ms` and gives their leases back, without
/// counting an attempt. Fenced like [`record`]: a `(seq, lease token)` whose token no
/// longer holds (another node took the delivery over) is left alone. Returns how many
/// were moved.
pub fn postpone(c: &Conn, held: &[(i64, Option<i64>)], until_ms: i64) -> StoreResult<usize> {
    let mut moved = 0;
    for (seq, lease) in held {
        moved += c.execute(
            "UPDATE deliveries SET next_attempt_at = ?2, lease_until = NULL, leased_by = NULL
             WHERE seq = ?1 AND status = 'pending' AND (?3 IS NULL OR lease_token = ?3)",
            params![seq, until_ms, lease],
        )?;
    }
    Ok(moved)
}

/// Gives back deliveries this node holds but will not finish (it is shutting down), so
/// another node or the next start takes them at once instead of after their lease:
/// - `unsent` were claimed but never sent: their claim is simply withdrawn (no attempt);
/// - `unknown` were being sent when the grace period ran out: like a take-over (see
///   [`claim`]), they count as an attempt whose result is not known (`attempts + 1`,
///   reason [`TAKE_OVER_REASON`]; not for an operator's redeliver), so the next attempt
///   goes out as a retry and no attempt number is used twice.
///
/// The lease token is bumped, so an outcome that still arrives for them changes nothing.
/// With `node` (nodes sharing the database) only rows this node still holds change.
/// Returns how many rows changed.
pub fn hand_back(
    c: &Conn,
    unsent: &[i64],
    unknown: &[i64],
    node: Option<&str>,
) -> StoreResult<usize> {
    let mut n = 0;
    for s in unsent {
        n += c.execute(
            "UPDATE deliveries SET lease_until = NULL, leased_by = NULL, lease_token = lease_token + 1
             WHERE seq = ?1 AND status = 'pending' AND (?2 IS NULL OR leased_by = ?2)",
            params![s, node],
        )?;
    }
    for s in unknown {
        n += c.execute(
            "UPDATE deliveries SET lease_until = NULL, leased_by = NULL, lease_token = lease_token + 1,
               attempts = attempts + CASE WHEN redeliver <> 0 THEN 0 ELSE 1 END,
               reason = CASE WHEN redeliver <> 0 THEN reason ELSE ?3 END
             WHERE seq = ?1 AND status = 'pending' AND (?2 IS NULL OR leased_by = ?2)",
            params![s, node, TAKE_OVER_REASON],
        )?;
    }
    Ok(n)
}

pub fn expire_held(
    c: &Conn,
    app: &str,
    created_before: i64,
    tally: &mut Tally,
) -> StoreResult<usize> {
    let t = now();
    let n = c.execute(
        "UPDATE deliveries SET status = 'failed', reason = 'connection_failed', updated_at = ?3
         WHERE app_id = ?1 AND status = 'pending' AND created_at <= ?2
           AND (lease_until IS NULL OR lease_until <= ?4)",
        params![app, created_before, t, now_ms()],
    )?;
    for _ in 0..n {
        tally.settled(app, t, Settled::GaveUp("connection_failed"));
    }
    Ok(n)
}

pub fn wake_app(c: &Conn, app: &str) -> StoreResult<()> {
    c.execute(
        "UPDATE deliveries SET next_attempt_at = ?2 WHERE app_id = ?1 AND status = 'pending' AND next_attempt_at > ?2",
        params![app, now_ms()],
    )?;
    Ok(())
}

pub fn redeliver(c: &Conn, id: &str) -> StoreResult<()> {
    let n = c.execute(
        "UPDATE deliveries SET status = 'pending', reason = NULL, redeliver = 1, next_attempt_at = ?2, updated_at = ?3,
           lease_until = NULL, leased_by = NULL
         WHERE id = ?1 AND status <> 'pending'",
        params![id, now_ms(), now()],
    )?;
    if n == 0 {
        let exists = c.query_one(
            "SELECT COUNT(*) FROM deliveries WHERE id = ?1",
            params![id],
            |r| r.get::<i64>(0),
        )? > 0;
        return Err(if exists {
            StoreError::Conflict(format!("delivery {id} is already pending"))
        } else {
            StoreError::NotFound(format!("delivery {id} does not exist"))
        });
    }
    Ok(())
}

pub fn redeliver_many(c: &Conn, app: &str, f: &DeliveryFilter) -> StoreResult<usize> {
    let status = f.status.map(DeliveryStatus::as_str).unwrap_or("failed");
    if status == "pending" {
        return Err(StoreError::Invalid(
            "pending deliveries are already going to be attempted".into(),
        ));
    }
    c.execute(
        "UPDATE deliveries SET status = 'pending', reason = NULL, redeliver = 1, next_attempt_at = ?3, updated_at = ?4,
           lease_until = NULL, leased_by = NULL
         WHERE app_id = ?1 AND status = ?2 AND (?5 IS NULL OR created_at >= ?5) AND (?6 IS NULL OR created_at <= ?6)
           AND (?7 IS NULL OR team_id = ?7) AND (?8 IS NULL OR event_type = ?8)",
        params![app, status, now_ms(), now(), f.since, f.until, f.team_id, f.event_type],
    )
}

/// Attempts per app and minute since `since_ms`, from the insight rollups (written in the
/// same transactions as the attempts, by every node): cheap enough to re-read every few
/// seconds when nodes share the database.
pub fn tallies(c: &Conn, since_ms: i64) -> StoreResult<Vec<AttemptTally>> {
    c.query(
        "SELECT app_id, bucket / 60, SUM(succeeded), SUM(failed), SUM(attempts - retries)
         FROM insight_deliveries WHERE g = 0 AND bucket >= ?1 AND attempts > 0
         GROUP BY app_id, bucket / 60",
        params![since_ms.div_euclid(1000)],
        |r| {
            Ok(AttemptTally {
                app_id: r.get(0)?,
                minute: r.get(1)?,
                successes: r.get::<i64>(2)? as u64,
                failures: r.get::<i64>(3)? as u64,
                events: r.get::<i64>(4)? as u64,
            })
        },
    )
}

pub fn pending_count(c: &Conn) -> StoreResult<u64> {
    Ok(c.query_one(
        "SELECT COUNT(*) FROM deliveries WHERE status = 'pending'",
        params![],
        |r| r.get::<i64>(0),
    )? as u64)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::sql::migrations::sqlite::migrate;

    pub(in crate::sql) fn attempt(reason: Option<&str>) -> Option<Attempt> {
        Some(Attempt {
            at: 1_000,
            transport: "http".into(),
            status_code: reason.is_none().then_some(200),
            reason: reason.map(str::to_string),
            latency_ms: 3,
            retry_num: 0,
        })
    }

    /// One pending delivery (seq 1) of event Ev1 for app A1 in team T1.
    const ONE_DELIVERY: &str = r#"
        INSERT INTO teams (id, name, domain, created_at) VALUES ('T1', 't', 't', 0);
        INSERT INTO apps (id, name, bot_events, user_events, event_shape, signing_secret, verification_token, created_at)
          VALUES ('A1', 'a', '[]', '[]', 'slack', 's', 'v', 0);
        INSERT INTO events (id, team_id, event_type, event_time, payload, created_at)
          VALUES ('Ev1', 'T1', 'message', 0, '{}', 0);
        INSERT INTO deliveries (id, event_id, app_id, team_id, event_type, status, auth, next_attempt_at, created_at, updated_at)
          VALUES ('DL1', 'Ev1', 'A1', 'T1', 'message', 'pending',
            '{"enterprise_id":null,"team_id":"T1","user_id":"U1","is_bot":true,"is_enterprise_install":false}', 0, 0, 0);"#;

    /// An SQLite store in memory holding [`ONE_DELIVERY`].
    pub(in crate::sql) fn one_delivery() -> rusqlite::Connection {
        let db = rusqlite::Connection::open_in_memory().unwrap();
        migrate(&db).unwrap();
        db.execute_batch(ONE_DELIVERY).unwrap();
        db
    }

    /// A PostgreSQL schema of its own holding [`ONE_DELIVERY`], when
    /// `TIDINGS_TEST_DATABASE_URL` names a server (the schema is dropped with the first
    /// value, so it must outlive the connection).
    pub(in crate::sql) fn pg_one_delivery(
    ) -> Option<(crate::sql::postgres::TestSchema, crate::sql::conn::PgConn)> {
        let Some(schema) = crate::sql::postgres::TestSchema::from_env() else {
            eprintln!("needs PostgreSQL (TIDINGS_TEST_DATABASE_URL); not run");
            return None;
        };
        let pg = crate::sql::conn::PgConn::new(schema.opener().client().unwrap());
        crate::sql::migrations::postgres::migrate(&pg).unwrap();
        Conn::Postgres(&pg).batch(ONE_DELIVERY).unwrap();
        Some((schema, pg))
    }

    /// The status and attempt count of delivery `seq`.
    pub(in crate::sql) fn status_and_attempts(c: &Conn, seq: i64) -> (String, i64) {
        c.query_one(
            "SELECT status, attempts FROM deliveries WHERE seq = ?1",
            params![seq],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    }

    #[test]
    fn a_hold_under_a_lost_lease_changes_nothing() {
        let db = one_delivery();
        let c = Conn::Sqlite(&db);
        c.execute(
            "UPDATE deliveries SET lease_token = 2, leased_by = 'n-b', lease_until = 9000 WHERE seq = 1",
            &[],
        )
        .unwrap();
        let row = || {
            c.query_one(
                "SELECT next_attempt_at, leased_by FROM deliveries WHERE seq = 1",
                &[],
                |r| Ok((r.get::<i64>(0)?, r.get::<Option<String>>(1)?)),
            )
            .unwrap()
        };
        assert_eq!(postpone(&c, &[(1, Some(1))], 7_000).unwrap(), 0);
        assert_eq!(
            row(),
            (0, Some("n-b".to_string())),
            "the new holder keeps it"
        );
        assert_eq!(postpone(&c, &[(1, Some(2))], 7_000).unwrap(), 1);
        assert_eq!(row(), (7_000, None), "the holder gives it back");
    }

    #[test]
    fn the_due_rows_of_one_event_for_two_apps_share_one_event_record() {
        let db = one_delivery();
        db.execute_batch(
            r#"INSERT INTO apps (id, name, bot_events, user_events, event_shape, signing_secret, verification_token, created_at)
                 SELECT 'A2', name, bot_events, user_events, event_shape, signing_secret, verification_token, created_at
                 FROM apps WHERE id = 'A1';
               INSERT INTO deliveries (id, event_id, app_id, team_id, event_type, status, auth, next_attempt_at, created_at, updated_at)
                 SELECT 'DL2', event_id, 'A2', team_id, event_type, status, auth, next_attempt_at, created_at, updated_at
                 FROM deliveries WHERE id = 'DL1';"#,
        )
        .unwrap();
        let c = Conn::Sqlite(&db);
        let events = EventCache::default();
        let a1 = due(&c, &events, "A1", 1, 10, &[], None).unwrap();
        let a2 = due(&c, &events, "A2", 1, 10, &[], None).unwrap();
        assert_eq!((a1.len(), a2.len()), (1, 1));
        assert_eq!(a2[0].delivery.app_id, "A2");
        assert_eq!(
            (a2[0].event.id.as_str(), a2[0].event.payload.as_str()),
            ("Ev1", "{}")
        );
        assert!(
            std::sync::Arc::ptr_eq(&a1[0].event, &a2[0].event),
            "the second app's row takes the record the first read made"
        );
    }

    /// Against a real server (`TIDINGS_TEST_DATABASE_URL`): a claim whose lease ran out
    /// is taken over as a retry, and the first holder's outcome is fenced off.
    #[test]
    fn a_take_over_counts_as_a_retry_and_fences_the_first_holder() {
        let Some((_schema, pg)) = pg_one_delivery() else {
            return;
        };
        let c = Conn::Postgres(&pg);
        let now = now_ms();
        let events = EventCache::default();
        let claim_as =
            |node, lease_until| claim(&c, &events, "A1", now, 10, &[], lease_until, node).unwrap();
        // Node a claims it with a lease that has already ended (it went away).
        let first = claim_as("a", now);
        assert_eq!((first.len(), first[0].attempts), (1, 0));
        assert!(renew(&c, &[first[0].delivery.seq], "b", now + 60_000).unwrap() == 0);
        let taken = claim_as("b", now + 60_000);
        assert_eq!(taken.len(), 1, "an ended lease is claimable");
        assert_eq!(taken[0].attempts, 1, "the take-over counts as an attempt");
        assert_eq!(taken[0].delivery.reason.as_deref(), Some(TAKE_OVER_REASON));
        assert_ne!(taken[0].lease, first[0].lease);
        assert!(claim_as("c", now + 60_000).is_empty());
        let seq = taken[0].delivery.seq;
        let outcome = |lease| AttemptOutcome {
            seq,
            attempt: attempt(None),
            next: NextStep::Delivered,
            lease,
        };
        let mut tally = Tally::default();
        assert_eq!(
            record(&c, &[outcome(first[0].lease)], &mut tally).unwrap(),
            1
        );
        assert_eq!(renew(&c, &[seq], "b", now + 90_000).unwrap(), 1);
        assert_eq!(
            record(&c, &[outcome(taken[0].lease)], &mut tally).unwrap(),
            0
        );
        assert_eq!(status_and_attempts(&c, seq), ("delivered".into(), 2));
    }
}

//! SQL for attempt outcomes: how each attempt went, logged, and its delivery moved on
//! (delivered, retried, failed or dropped).
//!
//! The dispatcher hands the writer hundreds of outcomes at a time. On PostgreSQL a batch
//! is one `UPDATE` joined to the outcomes passed as one JSON array and one `INSERT …
//! SELECT` from another: two round trips, not two per outcome. On SQLite (in process, no
//! round trips) each outcome is a plain `UPDATE`, a read of the row and the attempt
//! `INSERT`, without `RETURNING`, which costs SQLite a statement journal and a table for
//! the returned rows on every execution.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use super::conn::{Conn, Dialect};
use super::now;
use crate::insights::{Settled, Tally};
use crate::model::*;
use crate::params;
use crate::StoreResult;

/// Writes attempt outcomes: each attempt is logged (numbered by the delivery's attempt
/// count) and its delivery moves on — delivered, retried at a time, failed or dropped —
/// and both are counted into `tally`. Returns how many were skipped, changing nothing: the
/// delivery is gone or no longer pending (so a delivery ends once in the counts), or
/// (nodes sharing the database) carries another lease token than the outcome's (another
/// node took it over). An attempt number already logged is left as it is.
///
/// Outcomes apply in order: a batch that holds two for one delivery is written in runs in
/// which no delivery appears twice (on PostgreSQL, one pair of statements per run). Fails only before writing or on the disk itself (the
/// statements' input is built here), so the writer runs it without a savepoint.
pub fn record(c: &Conn, outcomes: &[AttemptOutcome], tally: &mut Tally) -> StoreResult<usize> {
    let t = now();
    let mut skipped = 0;
    let mut start = 0;
    let mut seen = HashSet::with_capacity(outcomes.len());
    for (i, o) in outcomes.iter().enumerate() {
        if !seen.insert(o.seq) {
            skipped += record_run(c, &outcomes[start..i], t, tally)?;
            start = i;
            seen.clear();
            seen.insert(o.seq);
        }
    }
    skipped += record_run(c, &outcomes[start..], t, tally)?;
    if skipped > 0 {
        metrics::counter!("tidings_delivery_outcomes_fenced_total").increment(skipped as u64);
    }
    Ok(skipped)
}

/// One outcome as the `UPDATE` reads it from its JSON array.
#[derive(Serialize)]
struct Moved<'a> {
    s: i64,
    /// 1 when an attempt was made (it counts), 0 for a drop decided before sending.
    a: i64,
    st: &'a str,
    r: Option<&'a str>,
    n: Option<i64>,
    l: Option<i64>,
}

/// One attempt as the `INSERT` reads it from its JSON array.
#[derive(Serialize)]
struct Logged<'a> {
    s: i64,
    n: i64,
    at: i64,
    t: &'a str,
    c: Option<u16>,
    r: Option<&'a str>,
    ms: i64,
    rn: u32,
}

/// Moves every delivery of a run (no seq twice) on, in one `UPDATE`. Rows are locked in
/// seq order first, as every node locks them, so two nodes' batches never wait on each
/// other in a cycle.
const UPDATE_PG: &str = "WITH o AS MATERIALIZED (
       SELECT * FROM json_to_recordset(?1::json)
         AS x(s int8, a int8, st text, r text, n int8, l int8)),
     locked AS MATERIALIZED (
       SELECT d.seq FROM deliveries d WHERE d.seq IN (SELECT s FROM o)
       ORDER BY d.seq FOR UPDATE)
     UPDATE deliveries d SET attempts = d.attempts + o.a, status = o.st, reason = o.r,
       next_attempt_at = COALESCE(o.n, d.next_attempt_at), redeliver = 0,
       updated_at = ?2, lease_until = NULL, leased_by = NULL
     FROM o, locked
     WHERE d.seq = o.s AND locked.seq = o.s AND d.status = 'pending'
       AND (o.l IS NULL OR d.lease_token = o.l)
     RETURNING d.seq, d.app_id, d.attempts";

/// Logs the attempts of a run, numbered; a number already logged is left as it is.
const INSERT_PG: &str = "INSERT INTO delivery_attempts
       (delivery_seq, n, at, transport, status_code, reason, latency_ms, retry_num)
     SELECT s, n, at, t, c, r, ms, rn FROM json_to_recordset(?1::json)
       AS x(s int8, n int8, at int8, t text, c int8, r text, ms int8, rn int8)
     ON CONFLICT DO NOTHING";

/// [`record`] for outcomes of distinct deliveries; returns how many were skipped.
fn record_run(c: &Conn, run: &[AttemptOutcome], t: i64, tally: &mut Tally) -> StoreResult<usize> {
    if run.is_empty() {
        return Ok(0);
    }
    let written = match c.dialect() {
        Dialect::Sqlite => write_rows(c, run, t)?,
        Dialect::Postgres => write_batch(c, run, t)?,
    };
    let mut skipped = 0;
    for o in run {
        let Some((app, _)) = written.get(&o.seq) else {
            skipped += 1;
            tracing::debug!(
                seq = o.seq,
                lease = ?o.lease,
                "outcome not written: the delivery is gone or another node holds its lease"
            );
            continue;
        };
        if let Some(a) = &o.attempt {
            tally.attempt(
                app,
                a.at.div_euclid(1000),
                a.retry_num > 0,
                a.latency_ms.max(0) as u64,
                a.reason.as_deref(),
            );
        }
        match &o.next {
            NextStep::Delivered => tally.settled(app, t, Settled::Delivered),
            NextStep::Failed { reason } => tally.settled(app, t, Settled::GaveUp(reason)),
            NextStep::Dropped { reason } => tally.settled(app, t, Settled::Dropped(reason)),
            NextStep::Retry { .. } => {}
        }
    }
    Ok(skipped)
}

/// Where an outcome moves its delivery: (status, reason, next attempt at).
fn step(next: &NextStep) -> (&str, Option<&str>, Option<i64>) {
    match next {
        NextStep::Delivered => ("delivered", None, None),
        NextStep::Retry { at_ms, reason } => ("pending", Some(reason.as_str()), Some(*at_ms)),
        NextStep::Failed { reason } => ("failed", Some(reason.as_str()), None),
        NextStep::Dropped { reason } => ("dropped", Some(reason.as_str()), None),
    }
}

/// The written deliveries of a run: seq → (app, attempt count after the outcome).
type Written = HashMap<i64, (String, i64)>;

/// SQLite: three cached statements per outcome, none with `RETURNING` (which makes SQLite
/// open a statement journal and a table for the returned rows on every execution), and no
/// JSON (`json_each` renders each element as text and `->>` parses it again: measured, a
/// batch through it cost more than these statements).
fn write_rows(c: &Conn, run: &[AttemptOutcome], t: i64) -> StoreResult<Written> {
    let mut written = HashMap::with_capacity(run.len());
    for o in run {
        let (status, reason, next) = step(&o.next);
        let attempted = o.attempt.is_some() as i64;
        let moved = c.execute(
            "UPDATE deliveries SET attempts = attempts + ?2, status = ?3, reason = ?4,
               next_attempt_at = COALESCE(?5, next_attempt_at), redeliver = 0, updated_at = ?6,
               lease_until = NULL, leased_by = NULL
             WHERE seq = ?1 AND status = 'pending' AND (?7 IS NULL OR lease_token = ?7)",
            params![o.seq, attempted, status, reason, next, t, o.lease],
        )?;
        if moved == 0 {
            continue;
        }
        let (app, n): (String, i64) = c.query_one(
            "SELECT app_id, attempts FROM deliveries WHERE seq = ?1",
            params![o.seq],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        if let Some(a) = &o.attempt {
            c.execute(
                "INSERT INTO delivery_attempts (delivery_seq, n, at, transport, status_code, reason, latency_ms, retry_num)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT DO NOTHING",
                params![o.seq, n, a.at, a.transport, a.status_code, a.reason, a.latency_ms, a.retry_num],
            )?;
        }
        written.insert(o.seq, (app, n));
    }
    Ok(written)
}

/// PostgreSQL: one `UPDATE … RETURNING` and one `INSERT … SELECT` for the whole run, the
/// outcomes passed as JSON arrays (one round trip each instead of two per outcome).
fn write_batch(c: &Conn, run: &[AttemptOutcome], t: i64) -> StoreResult<Written> {
    let moved: Vec<Moved> = run
        .iter()
        .map(|o| {
            let (st, r, n) = step(&o.next);
            Moved {
                s: o.seq,
                a: o.attempt.is_some() as i64,
                st,
                r,
                n,
                l: o.lease,
            }
        })
        .collect();
    let written: Written = c
        .query(UPDATE_PG, params![serde_json::to_string(&moved)?, t], |r| {
            Ok((r.get::<i64>(0)?, (r.get::<String>(1)?, r.get::<i64>(2)?)))
        })?
        .into_iter()
        .collect();
    let logged: Vec<Logged> = run
        .iter()
        .filter_map(|o| {
            let a = o.attempt.as_ref()?;
            let (_, n) = written.get(&o.seq)?;
            Some(Logged {
                s: o.seq,
                n: *n,
                at: a.at,
                t: &a.transport,
                c: a.status_code,
                r: a.reason.as_deref(),
                ms: a.latency_ms,
                rn: a.retry_num,
            })
        })
        .collect();
    if !logged.is_empty() {
        c.execute(INSERT_PG, params![serde_json::to_string(&logged)?])?;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::dispatch::tests::{attempt, one_delivery};

    #[test]
    fn outcomes_number_their_attempts_and_move_the_delivery_on() {
        let db = one_delivery();
        let c = Conn::Sqlite(&db);
        let failed = AttemptOutcome {
            seq: 1,
            attempt: attempt(Some("http_error")),
            next: NextStep::Retry {
                at_ms: 5_000,
                reason: "http_error".into(),
            },
            lease: None,
        };
        let delivered = AttemptOutcome {
            seq: 1,
            attempt: attempt(None),
            next: NextStep::Delivered,
            lease: None,
        };
        let mut tally = Tally::default();
        record(&c, &[failed, delivered], &mut tally).unwrap();
        let ns: Vec<i64> = c
            .query(
                "SELECT n FROM delivery_attempts WHERE delivery_seq = 1 ORDER BY n",
                &[],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(ns, vec![1, 2]);
        let (status, attempts): (String, i64) = c
            .query_one(
                "SELECT status, attempts FROM deliveries WHERE seq = 1",
                &[],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((status.as_str(), attempts), ("delivered", 2));
    }

    #[test]
    fn a_batch_moves_each_delivery_on_and_skips_only_the_stale_ones() {
        let db = one_delivery();
        a_batch_moves_each_delivery_on(&Conn::Sqlite(&db));
    }

    /// The same against a real server (`TIDINGS_TEST_DATABASE_URL`), where a batch is one
    /// statement over the outcomes as JSON.
    #[test]
    fn a_batch_moves_each_delivery_on_and_skips_only_the_stale_ones_on_postgres() {
        use crate::sql::conn::PgConn;
        let Some(schema) = crate::sql::postgres::TestSchema::from_env() else {
            eprintln!("needs PostgreSQL (TIDINGS_TEST_DATABASE_URL); not run");
            return;
        };
        let pg = PgConn::new(schema.opener().client().unwrap());
        crate::sql::migrations::postgres::migrate(&pg).unwrap();
        let c = Conn::Postgres(&pg);
        c.batch(
            "INSERT INTO teams (id, name, domain, created_at) VALUES ('T1', 't', 't', 0);
             INSERT INTO apps (id, name, bot_events, user_events, event_shape, signing_secret, verification_token, created_at)
               VALUES ('A1', 'a', '[]', '[]', 'slack', 's', 'v', 0);
             INSERT INTO events (id, team_id, event_type, event_time, payload, created_at)
               VALUES ('Ev1', 'T1', 'message', 0, '{}', 0);
             INSERT INTO deliveries (id, event_id, app_id, team_id, event_type, status, auth, next_attempt_at, created_at, updated_at)
               VALUES ('DL1', 'Ev1', 'A1', 'T1', 'message', 'pending', '{}', 0, 0, 0);",
        )
        .unwrap();
        a_batch_moves_each_delivery_on(&c);
    }

    /// Seqs 1–4 pending (seq 1 exists): 3's lease token is not the outcome's, 2 has two
    /// outcomes in the batch (a retry, then delivered).
    fn a_batch_moves_each_delivery_on(c: &Conn) {
        for id in ["DL2", "DL3", "DL4"] {
            c.execute(
                "INSERT INTO deliveries (id, event_id, app_id, team_id, event_type, status, auth, next_attempt_at, created_at, updated_at)
                 VALUES (?1, 'Ev1', 'A1', 'T1', 'message', 'pending', '{}', 0, 0, 0)",
                params![id],
            )
            .unwrap();
        }
        c.execute("UPDATE deliveries SET lease_token = 5 WHERE seq = 3", &[])
            .unwrap();
        let outcome = |seq, next, lease| AttemptOutcome {
            seq,
            attempt: attempt(None),
            next,
            lease,
        };
        let retry = NextStep::Retry {
            at_ms: 9_000,
            reason: "http_error".into(),
        };
        let batch = [
            outcome(1, NextStep::Delivered, None),
            outcome(2, retry, None),
            outcome(3, NextStep::Delivered, Some(4)),
            outcome(
                4,
                NextStep::Failed {
                    reason: "http_error".into(),
                },
                None,
            ),
            outcome(2, NextStep::Delivered, None),
        ];
        let mut tally = Tally::default();
        assert_eq!(
            record(c, &batch, &mut tally).unwrap(),
            1,
            "seq 3's lease is stale"
        );
        let rows: Vec<(i64, String, i64, i64)> = c
            .query(
                "SELECT seq, status, attempts, (SELECT COUNT(*) FROM delivery_attempts WHERE delivery_seq = seq)
                 FROM deliveries ORDER BY seq",
                &[],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .unwrap();
        assert_eq!(
            rows,
            vec![
                (1, "delivered".into(), 1, 1),
                // Delivered after its retry: in the other order the retry would be skipped.
                (2, "delivered".into(), 2, 2),
                (3, "pending".into(), 0, 0),
                (4, "failed".into(), 1, 1),
            ]
        );
    }

    #[test]
    fn an_outcome_for_a_delivery_that_is_not_there_writes_nothing() {
        let db = one_delivery();
        let c = Conn::Sqlite(&db);
        let before = c.total_changes();
        let stray = AttemptOutcome {
            seq: 99,
            attempt: attempt(None),
            next: NextStep::Delivered,
            lease: None,
        };
        record(&c, &[stray], &mut Tally::default()).unwrap();
        assert_eq!(
            c.total_changes(),
            before,
            "so it may run without a savepoint"
        );
    }

    #[test]
    fn an_outcome_under_a_lost_lease_changes_nothing() {
        let db = one_delivery();
        let c = Conn::Sqlite(&db);
        c.execute("UPDATE deliveries SET lease_token = 2 WHERE seq = 1", &[])
            .unwrap();
        let stale = AttemptOutcome {
            seq: 1,
            attempt: attempt(None),
            next: NextStep::Delivered,
            lease: Some(1),
        };
        let mut tally = Tally::default();
        assert_eq!(record(&c, &[stale], &mut tally).unwrap(), 1);
        let (status, attempts): (String, i64) = c
            .query_one(
                "SELECT status, attempts FROM deliveries WHERE seq = 1",
                &[],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((status.as_str(), attempts), ("pending", 0));
        let logged: i64 = c
            .query_one("SELECT COUNT(*) FROM delivery_attempts", &[], |r| r.get(0))
            .unwrap();
        assert_eq!(logged, 0);
        let current = AttemptOutcome {
            seq: 1,
            attempt: attempt(None),
            next: NextStep::Delivered,
            lease: Some(2),
        };
        assert_eq!(record(&c, &[current], &mut tally).unwrap(), 0);
        let status: String = c
            .query_one("SELECT status FROM deliveries WHERE seq = 1", &[], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(status, "delivered");
    }

    #[test]
    fn a_delivery_ends_once_in_the_counts() {
        let db = one_delivery();
        let c = Conn::Sqlite(&db);
        let delivered = || AttemptOutcome {
            seq: 1,
            attempt: attempt(None),
            next: NextStep::Delivered,
            lease: None,
        };
        let mut tally = Tally::default();
        assert_eq!(record(&c, &[delivered()], &mut tally).unwrap(), 0);
        assert_eq!(record(&c, &[delivered()], &mut tally).unwrap(), 1);
        let sum = |f: fn(&crate::insights::DeliveryCounts) -> u64| -> u64 {
            tally.deliveries.values().map(f).sum()
        };
        // Each count is kept under every granularity and scope: compare with one outcome's.
        let mut one = Tally::default();
        record(&Conn::Sqlite(&one_delivery()), &[delivered()], &mut one).unwrap();
        let once: u64 = one.deliveries.values().map(|c| c.delivered).sum();
        assert!(once > 0);
        assert_eq!(
            sum(|c| c.delivered),
            once,
            "the second outcome adds nothing"
        );
        assert_eq!(sum(|c| c.attempts), once);
    }

    #[test]
    fn an_attempt_number_already_logged_does_not_fail_the_batch() {
        let db = one_delivery();
        let c = Conn::Sqlite(&db);
        c.execute(
            "INSERT INTO delivery_attempts (delivery_seq, n, at, transport, status_code, reason, latency_ms, retry_num)
             VALUES (1, 1, 0, 'http', 200, NULL, 1, 0)",
            &[],
        )
        .unwrap();
        let delivered = AttemptOutcome {
            seq: 1,
            attempt: attempt(None),
            next: NextStep::Delivered,
            lease: None,
        };
        record(&c, &[delivered], &mut Tally::default()).unwrap();
        let status: String = c
            .query_one("SELECT status FROM deliveries WHERE seq = 1", &[], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(status, "delivered");
    }
}

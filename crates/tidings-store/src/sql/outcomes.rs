//! SQL for attempt outcomes: how each attempt went, logged, and its delivery moved on
//! (delivered, retried, failed or dropped).
//!
//! The dispatcher hands the writer hundreds of outcomes at a time, in one job. On SQLite
//! each outcome is a plain `UPDATE`, a read of the row and the attempt `INSERT`: no
//! `RETURNING`, which costs SQLite a statement journal and a table for the returned rows
//! on every execution. On PostgreSQL it is one `UPDATE … RETURNING` and the `INSERT`.

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
/// Outcomes apply in order, so a batch may hold several for one delivery. Fails only
/// before writing or on the disk itself (the statements' input is built here), so the
/// writer runs it without a savepoint.
pub fn record(c: &Conn, outcomes: &[AttemptOutcome], tally: &mut Tally) -> StoreResult<usize> {
    let t = now();
    let mut skipped = 0;
    for o in outcomes {
        let Some((app, n)) = move_on(c, o, t)? else {
            skipped += 1;
            tracing::debug!(
                seq = o.seq,
                lease = ?o.lease,
                "outcome not written: the delivery is gone or another node holds its lease"
            );
            continue;
        };
        if let Some(a) = &o.attempt {
            insert_attempt(c, o.seq, n, a)?;
            tally.attempt(
                &app,
                a.at.div_euclid(1000),
                a.retry_num > 0,
                a.latency_ms.max(0) as u64,
                a.reason.as_deref(),
            );
        }
        match &o.next {
            NextStep::Delivered => tally.settled(&app, t, Settled::Delivered),
            NextStep::Failed { reason } => tally.settled(&app, t, Settled::GaveUp(reason)),
            NextStep::Dropped { reason } => tally.settled(&app, t, Settled::Dropped(reason)),
            NextStep::Retry { .. } => {}
        }
    }
    if skipped > 0 {
        metrics::counter!("tidings_delivery_outcomes_fenced_total").increment(skipped as u64);
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

/// Moves one delivery on, fenced by its status and (nodes sharing the database) lease token.
macro_rules! update_sql {
    () => {
        "UPDATE deliveries SET attempts = attempts + ?2, status = ?3, reason = ?4,
           next_attempt_at = COALESCE(?5, next_attempt_at), redeliver = 0, updated_at = ?6,
           lease_until = NULL, leased_by = NULL
         WHERE seq = ?1 AND status = 'pending' AND (?7 IS NULL OR lease_token = ?7)"
    };
}

/// One outcome's `UPDATE`; the delivery's app and attempt count after it, if it was written.
/// SQLite runs the plain `UPDATE` and reads the row back by rowid: with `RETURNING` it
/// would open a statement journal and a table for the returned rows on every execution
/// (the measurements, and the batched forms tried on both backends, are in
/// `docs/benchmarks.md`, issue 22's third pass). PostgreSQL returns them in the one round
/// trip.
fn move_on(c: &Conn, o: &AttemptOutcome, t: i64) -> StoreResult<Option<(String, i64)>> {
    let (status, reason, next) = step(&o.next);
    let attempted = o.attempt.is_some() as i64;
    let args = params![o.seq, attempted, status, reason, next, t, o.lease];
    match c.dialect() {
        Dialect::Sqlite => {
            if c.execute(update_sql!(), args)? == 0 {
                return Ok(None);
            }
            c.query_opt(
                "SELECT app_id, attempts FROM deliveries WHERE seq = ?1",
                params![o.seq],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
        }
        Dialect::Postgres => c.query_opt(
            concat!(update_sql!(), " RETURNING app_id, attempts"),
            args,
            |r| Ok((r.get(0)?, r.get(1)?)),
        ),
    }
}

/// Logs attempt `n` of delivery `seq`; a number already logged is left as it is.
fn insert_attempt(c: &Conn, seq: i64, n: i64, a: &Attempt) -> StoreResult<()> {
    c.execute(
        "INSERT INTO delivery_attempts (delivery_seq, n, at, transport, status_code, reason, latency_ms, retry_num)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT DO NOTHING",
        params![seq, n, a.at, a.transport, a.status_code, a.reason, a.latency_ms, a.retry_num],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::dispatch::tests::{
        attempt, one_delivery, pg_one_delivery, status_and_attempts,
    };

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
        assert_eq!(status_and_attempts(&c, 1), ("delivered".into(), 2));
    }

    #[test]
    fn a_batch_moves_each_delivery_on_and_skips_only_the_stale_ones() {
        let db = one_delivery();
        a_batch_moves_each_delivery_on(&Conn::Sqlite(&db));
    }

    /// The same against a real server (`TIDINGS_TEST_DATABASE_URL`), where an outcome is
    /// one `UPDATE … RETURNING`.
    #[test]
    fn a_batch_moves_each_delivery_on_and_skips_only_the_stale_ones_on_postgres() {
        let Some((_schema, pg)) = pg_one_delivery() else {
            return;
        };
        let c = Conn::Postgres(&pg);
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
        assert_eq!(status_and_attempts(&c, 1), ("pending".into(), 0));
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
        assert_eq!(status_and_attempts(&c, 1).0, "delivered");
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
        assert_eq!(status_and_attempts(&c, 1).0, "delivered");
    }
}

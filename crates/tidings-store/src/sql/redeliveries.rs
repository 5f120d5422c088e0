//! Bulk replay jobs: creating one (counting what it covers), reading them, and advancing
//! one by a batch — the batch's deliveries made pending again exactly as a single
//! redelivery does, and the job's cursor (`after_seq`) and `sent`, in one transaction, so
//! a crash resumes from the committed cursor and never re-queues a delivery twice.

use super::conn::{Conn, Dialect, Row};
use super::dispatch::now_ms;
use super::now;
use crate::params;
use crate::redeliveries::{NewRedelivery, Redelivery};
use crate::StoreResult;

const COLUMNS: &str = "id, app_id, state, total, sent, statuses, since_at, until_at, created_at";

/// The deliveries a job covers: the app's, up to `max_seq` (what existed when it was
/// created), in one of its statuses and its time range. Parameters: ?1 app, ?2 after_seq,
/// ?3 max_seq, ?4–?6 statuses, ?7 since, ?8 until.
const MATCHING: &str = "app_id = ?1 AND seq > ?2 AND seq <= ?3 AND status IN (?4, ?5, ?6)
    AND (?7 IS NULL OR created_at >= ?7) AND (?8 IS NULL OR created_at <= ?8)";

fn map(r: &Row) -> StoreResult<Redelivery> {
    let statuses: String = r.get(5)?;
    Ok(Redelivery {
        id: r.get(0)?,
        app_id: r.get(1)?,
        state: r.get(2)?,
        total: r.get(3)?,
        sent: r.get(4)?,
        status: statuses.split(',').map(str::to_owned).collect(),
        since: r.get(6)?,
        until: r.get(7)?,
        created_at: r.get(8)?,
    })
}

/// Three status parameters (the last one repeated when fewer are asked for).
fn three(status: &[String]) -> [String; 3] {
    let at = |i: usize| {
        status
            .get(i)
            .or(status.last())
            .cloned()
            .unwrap_or_else(|| "failed".into())
    };
    [at(0), at(1), at(2)]
}

pub fn create(c: &Conn, n: &NewRedelivery) -> StoreResult<Redelivery> {
    let max_seq: i64 = c.query_one(
        "SELECT COALESCE(MAX(seq), 0) FROM deliveries WHERE app_id = ?1",
        params![n.app_id],
        |r| r.get(0),
    )?;
    let [s1, s2, s3] = three(&n.status);
    let total: i64 = c.query_one(
        &format!("SELECT COUNT(*) FROM deliveries WHERE {MATCHING}"),
        params![n.app_id, 0i64, max_seq, s1, s2, s3, n.since, n.until],
        |r| r.get(0),
    )?;
    let t = now();
    let state = if total == 0 { "done" } else { "running" };
    c.execute(
        "INSERT INTO redeliveries (id, app_id, state, total, sent, statuses, since_at, until_at,
           max_seq, after_seq, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6, ?7, ?8, 0, ?9, ?9)",
        params![
            n.id,
            n.app_id,
            state,
            total,
            n.status.join(","),
            n.since,
            n.until,
            max_seq,
            t
        ],
    )?;
    get(c, &n.id)?.ok_or_else(|| crate::StoreError::Internal("job not stored".into()))
}

pub fn get(c: &Conn, id: &str) -> StoreResult<Option<Redelivery>> {
    c.query_opt(
        &format!("SELECT {COLUMNS} FROM redeliveries WHERE id = ?1"),
        params![id],
        map,
    )
}

/// The app's jobs, newest first (at most `limit`).
pub fn list(c: &Conn, app: &str, limit: usize) -> StoreResult<Vec<Redelivery>> {
    c.query(
        &format!(
            "SELECT {COLUMNS} FROM redeliveries WHERE app_id = ?1 ORDER BY created_at DESC, id LIMIT ?2"
        ),
        params![app, limit as i64],
        map,
    )
}

pub fn running(c: &Conn) -> StoreResult<Vec<String>> {
    c.query(
        "SELECT id FROM redeliveries WHERE state = 'running' ORDER BY created_at, id",
        params![],
        |r| r.get(0),
    )
}

/// Re-queues up to `limit` more of the job's deliveries; returns the job as committed and
/// how many were re-queued (`None` when the job is unknown or already done).
pub fn advance(c: &Conn, id: &str, limit: usize) -> StoreResult<Option<(Redelivery, usize)>> {
    // On PostgreSQL nodes sharing the database serialize on the job's row.
    let lock = if c.dialect() == Dialect::Postgres {
        " FOR UPDATE"
    } else {
        ""
    };
    type Job = (String, String, Option<i64>, Option<i64>, i64, i64);
    let job: Option<Job> = c.query_opt(
        &format!(
            "SELECT app_id, statuses, since_at, until_at, max_seq, after_seq FROM redeliveries
             WHERE id = ?1 AND state = 'running'{lock}"
        ),
        params![id],
        |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        },
    )?;
    let Some((app, statuses, since, until, max_seq, after)) = job else {
        return Ok(None);
    };
    let status: Vec<String> = statuses.split(',').map(str::to_owned).collect();
    let [s1, s2, s3] = three(&status);
    let seqs: Vec<i64> = c.query(
        &format!("SELECT seq FROM deliveries WHERE {MATCHING} ORDER BY seq LIMIT ?9"),
        params![app, after, max_seq, s1, s2, s3, since, until, limit as i64],
        |r| r.get(0),
    )?;
    let mut n = 0;
    if let Some(&last) = seqs.last() {
        n = c.execute(
            &format!(
                "UPDATE deliveries SET status = 'pending', reason = NULL, redeliver = 1, next_attempt_at = ?9,
                   updated_at = ?10, lease_until = NULL, leased_by = NULL
                 WHERE {MATCHING}"
            ),
            params![app, after, last, s1, s2, s3, since, until, now_ms(), now()],
        )?;
    }
    let done = seqs.len() < limit;
    let cursor = seqs.last().copied().unwrap_or(after);
    c.execute(
        "UPDATE redeliveries SET after_seq = ?2, sent = sent + ?3, state = ?4, updated_at = ?5 WHERE id = ?1",
        params![
            id,
            cursor,
            n as i64,
            if done { "done" } else { "running" },
            now()
        ],
    )?;
    Ok(get(c, id)?.map(|j| (j, n)))
}

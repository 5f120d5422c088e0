//! The single SQLite writer and its group commit.
//!
//! Every write in Tidings is a closure sent to one dedicated thread that owns the only
//! write connection. The thread takes whatever has queued (up to [`MAX_BATCH`] jobs), runs
//! each inside its own SAVEPOINT within one transaction, commits once, and only then
//! answers the callers. So:
//! - throughput comes from batching: one commit (and, in WAL with `synchronous=NORMAL`, no
//!   fsync) for many writes; the batch grows by itself while a commit is in progress;
//! - a failing job rolls back only its own savepoint: a failed create leaves nothing behind
//!   and does not fail its neighbours;
//! - nobody hears "done" before the commit that made it durable.
//!
//! The queue is a bounded tokio channel, so a flood of writers waits instead of growing
//! memory without bound.

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use crate::{StoreError, StoreResult};

/// Most jobs folded into one transaction.
pub const MAX_BATCH: usize = 512;
/// Jobs that may wait for the writer before senders are made to wait.
const QUEUE_DEPTH: usize = 4096;

/// A queued write: run inside the batch, or refused when the batch cannot start.
trait Job: Send {
    /// Runs the work; returns whether it succeeded and how to answer once the batch ends.
    fn run(self: Box<Self>, conn: &Connection) -> (bool, Finisher);
    /// Answers the caller without running (the batch failed before reaching this job).
    fn fail(self: Box<Self>, err: StoreError);
}

/// Called after the commit with the commit's error, if any.
type Finisher = Box<dyn FnOnce(Option<StoreError>) + Send>;

struct WriteJob<F, T> {
    work: F,
    done: oneshot::Sender<StoreResult<T>>,
}

impl<F, T> Job for WriteJob<F, T>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
{
    fn run(self: Box<Self>, conn: &Connection) -> (bool, Finisher) {
        let WriteJob { work, done } = *self;
        let result = work(conn);
        let ok = result.is_ok();
        let finish: Finisher = Box::new(move |commit_err| {
            let _ = done.send(match commit_err {
                Some(e) => Err(e),
                None => result,
            });
        });
        (ok, finish)
    }

    fn fail(self: Box<Self>, err: StoreError) {
        let _ = self.done.send(Err(err));
    }
}

/// Work run inside a batch's transaction just before it commits.
pub type BeforeCommit = Box<dyn Fn(&Connection) -> StoreResult<()> + Send>;

/// What the store does around each batch.
pub struct Hooks {
    /// Runs inside the transaction after the batch's jobs and before the commit (writes
    /// that summarize the batch, such as insight counters). An error fails the batch.
    pub before_commit: BeforeCommit,
    /// Runs after a batch failed to commit (callers drop caches that may have seen its
    /// uncommitted state).
    pub on_rollback: Box<dyn Fn() + Send>,
}

impl Default for Hooks {
    fn default() -> Hooks {
        Hooks {
            before_commit: Box::new(|_| Ok(())),
            on_rollback: Box::new(|| {}),
        }
    }
}

/// Handle to the writer thread; cheap to clone. The thread ends when the last handle is
/// dropped and the queue has drained.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Box<dyn Job>>,
}

impl Writer {
    /// Starts the writer thread on `conn` with its [`Hooks`].
    pub fn start(conn: Connection, hooks: Hooks) -> std::io::Result<Writer> {
        let (tx, rx) = mpsc::channel::<Box<dyn Job>>(QUEUE_DEPTH);
        std::thread::Builder::new()
            .name("tidings-sqlite-writer".into())
            .spawn(move || run(conn, rx, hooks))?;
        Ok(Writer { tx })
    }

    /// Runs `f` in the next group commit and returns its result once committed.
    pub async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let (done, done_rx) = oneshot::channel::<StoreResult<T>>();
        self.tx
            .send(Box::new(WriteJob { work: f, done }))
            .await
            .map_err(|_| StoreError::Unavailable("the writer has stopped".into()))?;
        done_rx
            .await
            .map_err(|_| StoreError::Unavailable("the writer stopped before committing".into()))?
    }
}

fn run(conn: Connection, mut rx: mpsc::Receiver<Box<dyn Job>>, hooks: Hooks) {
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_BATCH);
    let mut finishers: Vec<Finisher> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let outcome = commit_batch(&conn, &mut batch, &mut finishers, &*hooks.before_commit);
        if let Err(e) = &outcome {
            tracing::error!(error = %e, "a write batch failed to commit");
            (hooks.on_rollback)();
        }
        for finish in finishers.drain(..) {
            finish(outcome.clone().err());
        }
    }
    tracing::debug!("sqlite writer stopped");
}

/// Runs every job of the batch in one transaction, each in its own savepoint. On a
/// transaction-level failure the remaining jobs are refused with the error and the
/// finished ones hear it through their finishers.
fn commit_batch(
    conn: &Connection,
    batch: &mut Vec<Box<dyn Job>>,
    finishers: &mut Vec<Finisher>,
    before_commit: &dyn Fn(&Connection) -> StoreResult<()>,
) -> StoreResult<()> {
    let refuse_rest = |batch: &mut Vec<Box<dyn Job>>, err: &StoreError| {
        for job in batch.drain(..) {
            job.fail(err.clone());
        }
    };
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        let err = StoreError::from(e);
        refuse_rest(batch, &err);
        return Err(err);
    }
    let mut jobs = std::mem::take(batch);
    let mut iter = jobs.drain(..);
    while let Some(job) = iter.next() {
        if let Err(e) = conn
            .prepare_cached("SAVEPOINT job")
            .and_then(|mut st| st.execute([]))
        {
            let err = StoreError::from(e);
            let _ = conn.execute_batch("ROLLBACK");
            job.fail(err.clone());
            let mut rest: Vec<_> = iter.collect();
            refuse_rest(&mut rest, &err);
            return Err(err);
        }
        let (ok, finish) = job.run(conn);
        finishers.push(finish);
        // Cached statements: parsing these per job showed up on the hot path.
        let end = if ok {
            conn.prepare_cached("RELEASE job")
                .and_then(|mut st| st.execute([]))
        } else {
            conn.prepare_cached("ROLLBACK TO job")
                .and_then(|mut st| st.execute([]))
                .and_then(|_| {
                    conn.prepare_cached("RELEASE job")
                        .and_then(|mut st| st.execute([]))
                })
        };
        if let Err(e) = end {
            let err = StoreError::from(e);
            let _ = conn.execute_batch("ROLLBACK");
            let mut rest: Vec<_> = iter.collect();
            refuse_rest(&mut rest, &err);
            return Err(err);
        }
    }
    drop(iter);
    *batch = jobs;
    if let Err(e) = before_commit(conn) {
        let _ = conn.execute_batch("ROLLBACK");
        return Err(e);
    }
    if let Err(e) = conn.execute_batch("COMMIT") {
        let _ = conn.execute_batch("ROLLBACK");
        return Err(e.into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer() -> Writer {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (k TEXT PRIMARY KEY)")
            .unwrap();
        Writer::start(conn, Hooks::default()).unwrap()
    }

    #[tokio::test]
    async fn a_failing_job_rolls_back_only_itself() {
        let w = writer();
        let ok = w.write(|c| Ok(c.execute("INSERT INTO t VALUES ('a')", [])?));
        let bad = w.write(|c| {
            c.execute("INSERT INTO t VALUES ('b')", [])?;
            Err::<(), _>(StoreError::Conflict("no".into()))
        });
        let ok2 = w.write(|c| Ok(c.execute("INSERT INTO t VALUES ('c')", [])?));
        let (a, b, c) = tokio::join!(ok, bad, ok2);
        assert!(a.is_ok() && c.is_ok());
        assert!(matches!(b, Err(StoreError::Conflict(_))));
        let keys = w
            .write(|c| {
                let mut st = c.prepare("SELECT k FROM t ORDER BY k")?;
                let rows = st.query_map([], |r| r.get::<_, String>(0))?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
            .unwrap();
        assert_eq!(keys, vec!["a", "c"]);
    }

    #[tokio::test]
    async fn many_concurrent_writes_are_all_committed() {
        let w = writer();
        let mut handles = Vec::new();
        for i in 0..2000 {
            let w = w.clone();
            handles.push(tokio::spawn(async move {
                w.write(move |c| Ok(c.execute("INSERT INTO t VALUES (?1)", [i.to_string()])?))
                    .await
            }));
        }
        for h in handles {
            h.await.unwrap().unwrap();
        }
        let n: i64 = w
            .write(|c| Ok(c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(n, 2000);
    }
}

//! The single writer and its group commit (both backends).
//!
//! Every write in Tidings is a closure sent to one dedicated thread that owns the only
//! write connection (per node, on PostgreSQL). The thread takes whatever has queued (up to [`MAX_BATCH`] jobs), runs
//! each inside its own SAVEPOINT within one transaction, commits once, and only then
//! answers the callers. So:
//! - throughput comes from batching: one commit (and, in WAL with `synchronous=NORMAL`, no
//!   fsync) for many writes; the batch grows by itself while a commit is in progress;
//! - a failing job rolls back only its own savepoint: a failed create leaves nothing behind
//!   and does not fail its neighbours;
//! - except a *lean* job ([`Writer::write_lean`]), one that refuses only before it writes:
//!   it runs without a savepoint, because SQLite copies every existing page a savepoint's
//!   work touches into its sub-journal, and for a publish (an event, its deliveries, their
//!   indexes) that copying was a fifth of the writer's time. Should a lean job fail after
//!   writing all the same, the whole batch rolls back and fails (nothing half-done is
//!   committed); on PostgreSQL every job has its savepoint;
//! - nobody hears "done" before the commit that made it durable.
//!
//! The queue is a bounded tokio channel, so a flood of writers waits instead of growing
//! memory without bound. A connection that is lost (PostgreSQL restarting) is reopened
//! for the next batch; while it cannot be, batches fail at once with `Unavailable`.
//!
//! With a stall limit ([`Writer::with_stall_limit`], PostgreSQL's `statement_timeout`), a
//! caller stops waiting with `Unavailable` once the batch in progress has gone longer than
//! the limit without finishing a job (the database is not answering: a hung connection, a
//! cut network), however long the queue ahead of it was; a writer that keeps making
//! progress, even through a long batch, is waited for. The work
//! may still commit later, when the database answers again.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::conn::{Conn, Dialect};
use super::pool::Opener;
use crate::{StoreError, StoreResult};

/// Most jobs folded into one transaction (jobs sent together with [`Writer::write_all`]
/// join a batch whole, so one may exceed it by their number).
pub const MAX_BATCH: usize = 512;
/// Jobs that may wait for the writer before senders are made to wait.
const QUEUE_DEPTH: usize = 4096;

/// A queued write: run inside the batch, or refused when the batch cannot start.
trait Job: Send {
    /// Runs the work; returns whether it succeeded and how to answer once the batch ends.
    fn run(self: Box<Self>, conn: Conn) -> (bool, Finisher);
    /// Answers the caller without running (the batch failed before reaching this job).
    fn fail(self: Box<Self>, err: StoreError);
    /// Whether the job needs its own savepoint (it may fail after writing).
    fn savepoint(&self) -> bool;
    /// When the job was queued.
    fn queued(&self) -> Instant;
}

/// Called after the commit with the commit's error, if any.
type Finisher = Box<dyn FnOnce(Option<StoreError>) + Send>;

/// What one send puts on the queue: a job, or jobs that must share a batch (a publish
/// call's events), each still run and answered on its own.
enum Queued {
    One(Box<dyn Job>),
    Many(Vec<Box<dyn Job>>),
}

impl Queued {
    fn append_to(self, batch: &mut Vec<Box<dyn Job>>) {
        match self {
            Queued::One(job) => batch.push(job),
            Queued::Many(jobs) => batch.extend(jobs),
        }
    }
}

struct WriteJob<F, T> {
    work: F,
    done: oneshot::Sender<StoreResult<T>>,
    savepoint: bool,
    queued: Instant,
}

impl<F, T> Job for WriteJob<F, T>
where
    T: Send + 'static,
    F: FnOnce(&Conn) -> StoreResult<T> + Send + 'static,
{
    fn run(self: Box<Self>, conn: Conn) -> (bool, Finisher) {
        let WriteJob { work, done, .. } = *self;
        let result = work(&conn);
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

    fn savepoint(&self) -> bool {
        self.savepoint
    }

    fn queued(&self) -> Instant {
        self.queued
    }
}

/// A participant in every batch's life, implemented next to the state it keeps (the
/// fan-out index, the insight counter, the work notice, the app cache). Called on the
/// writer thread, in the order the listeners were given; every method defaults to
/// nothing.
pub trait CommitListener: Send + Sync {
    /// Inside the transaction, before the batch's jobs (refreshing what other nodes may
    /// have changed). An error fails the batch.
    fn before_batch(&self, _c: &Conn) -> StoreResult<()> {
        Ok(())
    }
    /// Inside the transaction, after the batch's jobs and before the commit (writes that
    /// summarize the batch, such as insight counters). An error fails the batch.
    fn before_commit(&self, _c: &Conn) -> StoreResult<()> {
        Ok(())
    }
    /// The batch committed; runs before any of its callers is answered.
    fn committed(&self) {}
    /// The batch failed to commit, or the connection was lost (drop what may have seen
    /// uncommitted state).
    fn rolled_back(&self) {}
}

/// The listeners of a writer, in call order.
pub type Listeners = Vec<std::sync::Arc<dyn CommitListener>>;

/// Handle to the writer thread; cheap to clone. The thread ends when the last handle is
/// dropped and the queue has drained.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Queued>,
    /// When the batch in progress started or last finished a job (ms since the epoch);
    /// 0 while idle.
    busy_since: Arc<AtomicI64>,
    /// Past this, a batch in progress counts as stalled (see the module's docs).
    stall_after: Option<Duration>,
}

impl Writer {
    /// Starts the writer thread on `conn` (reopened through `opener` when lost) with its
    /// [`CommitListener`]s.
    pub fn start<O: Opener>(
        opener: O,
        conn: O::Owned,
        listeners: Listeners,
    ) -> std::io::Result<Writer> {
        let (tx, rx) = mpsc::channel::<Queued>(QUEUE_DEPTH);
        let busy_since = Arc::new(AtomicI64::new(0));
        let busy = busy_since.clone();
        std::thread::Builder::new()
            .name("tidings-store-writer".into())
            .spawn(move || run(opener, Some(conn), rx, listeners, busy))?;
        Ok(Writer {
            tx,
            busy_since,
            stall_after: None,
        })
    }

    /// Callers stop waiting once a batch has been in progress longer than `limit`.
    pub fn with_stall_limit(mut self, limit: Duration) -> Writer {
        self.stall_after = Some(limit);
        self
    }

    /// Whether the batch in progress has gone past the stall limit without progress.
    fn stalled(&self, limit: Duration) -> bool {
        let since = self.busy_since.load(Ordering::Relaxed);
        since != 0 && now_ms() - since > limit.as_millis() as i64
    }

    /// Waits for `fut` (a send and its answer), or until the writer stalls.
    async fn within<R>(
        &self,
        fut: impl std::future::Future<Output = R>,
        on_stall: impl FnOnce(StoreError) -> R,
    ) -> R {
        let Some(limit) = self.stall_after else {
            return fut.await;
        };
        let tick = (limit / 5).max(Duration::from_millis(20));
        tokio::pin!(fut);
        loop {
            match tokio::time::timeout(tick, &mut fut).await {
                Ok(r) => return r,
                Err(_) if self.stalled(limit) => {
                    metrics::counter!("tidings_store_stalled_total").increment(1);
                    return on_stall(StoreError::Unavailable(format!(
                        "the database did not answer within {} ms",
                        limit.as_millis()
                    )));
                }
                Err(_) => {}
            }
        }
    }

    /// Runs `f` in the next group commit and returns its result once committed.
    pub async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Conn) -> StoreResult<T> + Send + 'static,
    {
        self.queue(f, true).await
    }

    /// [`Writer::write`] for work that, when it fails, fails before writing anything: it
    /// runs without a savepoint of its own (see the module's documentation).
    pub async fn write_lean<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Conn) -> StoreResult<T> + Send + 'static,
    {
        self.queue(f, false).await
    }

    /// Runs every work of `works` in the same group commit, in order, each as
    /// [`Writer::write`] (or [`Writer::write_lean`] when its flag says lean) would: each
    /// gets its own result, and one failing does not fail the others. One send and one
    /// batch for all of them, so a call that writes many things (a publish call's events)
    /// waits for one commit, not for as many batches as its writes happened to be split
    /// over.
    pub async fn write_all<T, F>(&self, works: Vec<(F, bool)>) -> Vec<StoreResult<T>>
    where
        T: Send + 'static,
        F: FnOnce(&Conn) -> StoreResult<T> + Send + 'static,
    {
        if works.is_empty() {
            return Vec::new();
        }
        let queued = Instant::now();
        let mut jobs: Vec<Box<dyn Job>> = Vec::with_capacity(works.len());
        let mut answers = Vec::with_capacity(works.len());
        for (work, lean) in works {
            let (done, done_rx) = oneshot::channel::<StoreResult<T>>();
            jobs.push(Box::new(WriteJob {
                work,
                done,
                savepoint: !lean,
                queued,
            }));
            answers.push(done_rx);
        }
        let n = answers.len();
        let all = async move {
            let sent = self.tx.send(Queued::Many(jobs)).await.is_ok();
            let mut results = Vec::with_capacity(answers.len());
            for answer in answers {
                results.push(if sent {
                    answer
                        .await
                        .map_err(|_| stopped_before_commit())
                        .and_then(|r| r)
                } else {
                    Err(stopped())
                });
            }
            results
        };
        self.within(all, |e| (0..n).map(|_| Err(e.clone())).collect())
            .await
    }

    async fn queue<T, F>(&self, f: F, savepoint: bool) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Conn) -> StoreResult<T> + Send + 'static,
    {
        let (done, done_rx) = oneshot::channel::<StoreResult<T>>();
        let one = async move {
            self.tx
                .send(Queued::One(Box::new(WriteJob {
                    work: f,
                    done,
                    savepoint,
                    queued: Instant::now(),
                })))
                .await
                .map_err(|_| stopped())?;
            done_rx.await.map_err(|_| stopped_before_commit())?
        };
        self.within(one, Err).await
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the writer has stopped".into())
}

fn stopped_before_commit() -> StoreError {
    StoreError::Unavailable("the writer stopped before committing".into())
}

fn run<O: Opener>(
    opener: O,
    mut conn: Option<O::Owned>,
    mut rx: mpsc::Receiver<Queued>,
    listeners: Listeners,
    busy_since: Arc<AtomicI64>,
) {
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_BATCH);
    let mut finishers: Vec<Finisher> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        busy_since.store(now_ms(), Ordering::Relaxed);
        first.append_to(&mut batch);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(queued) => queued.append_to(&mut batch),
                Err(_) => break,
            }
        }
        if conn.as_ref().is_some_and(|c| !O::usable(c)) {
            conn = None;
            listeners.iter().for_each(|h| h.rolled_back());
        }
        if conn.is_none() {
            match opener.open() {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    tracing::error!(error = %e, "the writer cannot reach the database");
                    for job in batch.drain(..) {
                        job.fail(e.clone());
                    }
                    busy_since.store(0, Ordering::Relaxed);
                    continue;
                }
            }
        }
        let Some(owned) = conn.as_ref() else { continue };
        opener.between_batches(owned);
        let started = Instant::now();
        if let Some(oldest) = batch.first() {
            metrics::histogram!("tidings_store_write_wait_seconds")
                .record(started.duration_since(oldest.queued()).as_secs_f64());
        }
        metrics::histogram!("tidings_store_batch_jobs").record(batch.len() as f64);
        let outcome = commit_batch(
            O::conn(owned),
            &mut batch,
            &mut finishers,
            &listeners,
            &busy_since,
        );
        metrics::histogram!("tidings_store_batch_seconds").record(started.elapsed().as_secs_f64());
        match &outcome {
            Ok(()) => listeners.iter().for_each(|h| h.committed()),
            Err(e) => {
                tracing::error!(error = %e, "a write batch failed to commit");
                listeners.iter().for_each(|h| h.rolled_back());
            }
        }
        for finish in finishers.drain(..) {
            finish(outcome.clone().err());
        }
        busy_since.store(0, Ordering::Relaxed);
    }
    tracing::debug!("store writer stopped");
}

/// Runs every job of the batch in one transaction, each in its own savepoint. On a
/// transaction-level failure the remaining jobs are refused with the error and the
/// finished ones hear it through their finishers.
/// Transaction control: cached statements on SQLite (parsing these per job showed up on
/// the hot path), the simple protocol on PostgreSQL.
fn control(conn: Conn, sql: &str) -> StoreResult<()> {
    match conn.dialect() {
        Dialect::Sqlite => conn.execute(sql, &[]).map(drop),
        Dialect::Postgres => conn.batch(sql),
    }
}

fn commit_batch(
    conn: Conn,
    batch: &mut Vec<Box<dyn Job>>,
    finishers: &mut Vec<Finisher>,
    listeners: &Listeners,
    progress: &AtomicI64,
) -> StoreResult<()> {
    let progressed = || progress.store(now_ms(), Ordering::Relaxed);
    let refuse_rest = |batch: &mut Vec<Box<dyn Job>>, err: &StoreError| {
        for job in batch.drain(..) {
            job.fail(err.clone());
        }
    };
    let begin = match conn.dialect() {
        Dialect::Sqlite => "BEGIN IMMEDIATE",
        Dialect::Postgres => "BEGIN",
    };
    if let Err(err) = conn.batch(begin) {
        refuse_rest(batch, &err);
        return Err(err);
    }
    if let Err(err) = listeners.iter().try_for_each(|h| h.before_batch(&conn)) {
        let _ = conn.batch("ROLLBACK");
        refuse_rest(batch, &err);
        return Err(err);
    }
    let mut jobs = std::mem::take(batch);
    let mut iter = jobs.drain(..);
    while let Some(job) = iter.next() {
        // Lean on SQLite, where rows changed tell whether the job wrote before failing.
        let lean_from = (!job.savepoint()).then(|| conn.total_changes()).flatten();
        if let Some(before) = lean_from {
            let (ok, finish) = job.run(conn);
            progressed();
            finishers.push(finish);
            if !ok && conn.total_changes() != Some(before) {
                let err = StoreError::Internal(
                    "a write failed after changing rows without a savepoint; its batch was rolled back".into(),
                );
                tracing::error!(error = %err, "a lean write job broke its promise");
                let _ = conn.batch("ROLLBACK");
                let mut rest: Vec<_> = iter.collect();
                refuse_rest(&mut rest, &err);
                return Err(err);
            }
            continue;
        }
        if let Err(err) = control(conn, "SAVEPOINT job") {
            let _ = conn.batch("ROLLBACK");
            job.fail(err.clone());
            let mut rest: Vec<_> = iter.collect();
            refuse_rest(&mut rest, &err);
            return Err(err);
        }
        let (ok, finish) = job.run(conn);
        progressed();
        finishers.push(finish);
        let end = if ok {
            control(conn, "RELEASE job")
        } else {
            control(conn, "ROLLBACK TO job").and_then(|_| control(conn, "RELEASE job"))
        };
        if let Err(err) = end {
            let _ = conn.batch("ROLLBACK");
            let mut rest: Vec<_> = iter.collect();
            refuse_rest(&mut rest, &err);
            return Err(err);
        }
    }
    drop(iter);
    *batch = jobs;
    progressed();
    if let Err(e) = listeners.iter().try_for_each(|h| h.before_commit(&conn)) {
        let _ = conn.batch("ROLLBACK");
        return Err(e);
    }
    progressed();
    if let Err(e) = conn.batch("COMMIT") {
        let _ = conn.batch("ROLLBACK");
        return Err(e);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An in-memory database cannot be reopened: the writer keeps its first connection.
    struct InMemory;

    impl Opener for InMemory {
        type Owned = rusqlite::Connection;
        fn open(&self) -> StoreResult<rusqlite::Connection> {
            Err(StoreError::Unavailable("in-memory".into()))
        }
        fn conn(c: &rusqlite::Connection) -> Conn<'_> {
            Conn::Sqlite(c)
        }
        fn usable(_: &rusqlite::Connection) -> bool {
            true
        }
    }

    fn writer() -> Writer {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (k TEXT PRIMARY KEY)")
            .unwrap();
        Writer::start(InMemory, conn, Vec::new()).unwrap()
    }

    #[tokio::test]
    async fn a_caller_stops_waiting_when_the_batch_in_progress_stalls() {
        let w = writer().with_stall_limit(Duration::from_millis(100));
        // The database "hangs" for 1.5 s inside a batch.
        let hung = w.write(|_| {
            std::thread::sleep(Duration::from_millis(1500));
            Ok(())
        });
        let queued = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let started = Instant::now();
            let r = w
                .write(|c| c.execute("INSERT INTO t VALUES ('x')", &[]))
                .await;
            (r, started.elapsed())
        };
        let (first, (second, waited)) = tokio::join!(hung, queued);
        assert!(
            matches!(first, Err(StoreError::Unavailable(_))),
            "{first:?}"
        );
        assert!(
            matches!(second, Err(StoreError::Unavailable(_))),
            "{second:?}"
        );
        assert!(
            waited < Duration::from_millis(1000),
            "gave up after {waited:?}"
        );
    }

    #[tokio::test]
    async fn a_writer_that_keeps_committing_is_waited_for() {
        let w = writer().with_stall_limit(Duration::from_millis(100));
        // Twenty batches of 20 ms each: longer than the limit in all, none stalled.
        let mut last = Ok(0);
        for i in 0..20 {
            last = w
                .write(move |c| {
                    std::thread::sleep(Duration::from_millis(20));
                    c.execute("INSERT INTO t VALUES (?1)", crate::params![format!("k{i}")])
                })
                .await;
            assert!(last.is_ok(), "{last:?}");
        }
        assert_eq!(last.unwrap(), 1);
    }

    #[tokio::test]
    async fn a_failing_job_rolls_back_only_itself() {
        let w = writer();
        let ok = w.write(|c| c.execute("INSERT INTO t VALUES ('a')", &[]));
        let bad = w.write(|c| {
            c.execute("INSERT INTO t VALUES ('b')", &[])?;
            Err::<(), _>(StoreError::Conflict("no".into()))
        });
        let ok2 = w.write(|c| c.execute("INSERT INTO t VALUES ('c')", &[]));
        let (a, b, c) = tokio::join!(ok, bad, ok2);
        assert!(a.is_ok() && c.is_ok());
        assert!(matches!(b, Err(StoreError::Conflict(_))));
        let keys = w
            .write(|c| c.query("SELECT k FROM t ORDER BY k", &[], |r| r.get::<String>(0)))
            .await
            .unwrap();
        assert_eq!(keys, vec!["a", "c"]);
    }

    #[tokio::test]
    async fn a_lean_job_that_fails_before_writing_fails_alone() {
        let w = writer();
        let ok = w.write_lean(|c| c.execute("INSERT INTO t VALUES ('a')", &[]));
        let refused = w.write_lean(|c| {
            c.query_one("SELECT COUNT(*) FROM t", &[], |r| r.get::<i64>(0))?;
            Err::<(), _>(StoreError::Conflict("no".into()))
        });
        let ok2 = w.write(|c| c.execute("INSERT INTO t VALUES ('c')", &[]));
        let (a, b, c) = tokio::join!(ok, refused, ok2);
        assert!(a.is_ok() && c.is_ok());
        assert!(matches!(b, Err(StoreError::Conflict(_))));
    }

    #[tokio::test]
    async fn a_lean_job_that_fails_after_writing_rolls_back_its_whole_batch() {
        let w = writer();
        // Hold the writer inside a batch of its own; the three jobs below queue meanwhile
        // and so share the next batch.
        let (started, running) = oneshot::channel::<()>();
        let (hold, held) = std::sync::mpsc::channel::<()>();
        let w1 = w.clone();
        let gate = tokio::spawn(async move {
            w1.write(move |_| {
                let _ = started.send(());
                let _ = held.recv();
                Ok(())
            })
            .await
        });
        running.await.unwrap();
        let first = w.write(|c| c.execute("INSERT INTO t VALUES ('a')", &[]));
        let broken = w.write_lean(|c| {
            c.execute("INSERT INTO t VALUES ('b')", &[])?;
            Err::<(), _>(StoreError::Conflict("after a write".into()))
        });
        let last = w.write(|c| c.execute("INSERT INTO t VALUES ('c')", &[]));
        let all = futures::future::join3(first, broken, last);
        futures::pin_mut!(all);
        // One poll queues all three (the queue has room), in this order.
        assert!(futures::poll!(&mut all).is_pending());
        hold.send(()).unwrap();
        gate.await.unwrap().unwrap();
        let (a, b, c) = all.await;
        assert!(a.is_err() && b.is_err() && c.is_err(), "{a:?} {b:?} {c:?}");
        let keys = w
            .write(|c| c.query("SELECT k FROM t ORDER BY k", &[], |r| r.get::<String>(0)))
            .await
            .unwrap();
        assert!(keys.is_empty(), "nothing half-done is committed: {keys:?}");
    }

    #[tokio::test]
    async fn writes_sent_together_run_in_order_and_fail_one_by_one() {
        let w = writer();
        type Work = Box<dyn FnOnce(&Conn) -> StoreResult<u64> + Send>;
        let insert = |k: &'static str| -> Work {
            Box::new(move |c: &Conn| {
                c.execute("INSERT INTO t VALUES (?1)", crate::params![k])?;
                c.total_changes()
                    .ok_or_else(|| StoreError::Internal("no count".into()))
            })
        };
        let refuse: Work = Box::new(|c: &Conn| {
            c.execute("INSERT INTO t VALUES ('refused')", &[])?;
            Err(StoreError::Conflict("no".into()))
        });
        let results = w
            .write_all(vec![
                (insert("a"), true),
                (refuse, false),
                (insert("b"), true),
            ])
            .await;
        assert!(
            matches!(results[1], Err(StoreError::Conflict(_))),
            "{results:?}"
        );
        let (a, b) = (results[0].as_ref().unwrap(), results[2].as_ref().unwrap());
        assert!(a < b, "run in the order given");
        let keys = w
            .write(|c| c.query("SELECT k FROM t ORDER BY k", &[], |r| r.get::<String>(0)))
            .await
            .unwrap();
        assert_eq!(
            keys,
            vec!["a", "b"],
            "the refused write left nothing behind"
        );
    }

    #[tokio::test]
    async fn many_concurrent_writes_are_all_committed() {
        let w = writer();
        let mut handles = Vec::new();
        for i in 0..2000 {
            let w = w.clone();
            handles.push(tokio::spawn(async move {
                w.write(move |c| {
                    c.execute("INSERT INTO t VALUES (?1)", crate::params![i.to_string()])
                })
                .await
            }));
        }
        for h in handles {
            h.await.unwrap().unwrap();
        }
        let n: i64 = w
            .write(|c| c.query_one("SELECT COUNT(*) FROM t", &[], |r| r.get(0)))
            .await
            .unwrap();
        assert_eq!(n, 2000);
    }
}

//! Connections of either backend: how one is opened ([`Opener`]) and the pool of read
//! connections every non-writing store call borrows one from.
//!
//! A read runs on tokio's blocking pool (both drivers block); a semaphore bounds how many
//! run at once, and idle connections are kept for reuse. A connection found broken (the
//! database restarted) is dropped and a new one opened on the next read.
//!
//! With a time limit ([`ReadPool::with_limit`], PostgreSQL's `statement_timeout`), a read
//! that waits longer than it for a connection, or for its answer, fails with
//! `Unavailable`: the database is not answering (a hung connection, a cut network). The
//! connection it was using is not reused.

use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

use super::conn::Conn;
use crate::{StoreError, StoreResult};

/// Opens connections of one backend.
pub trait Opener: Send + Sync + 'static {
    /// An open connection, owned by whoever uses it.
    type Owned: Send + 'static;
    fn open(&self) -> StoreResult<Self::Owned>;
    fn conn(c: &Self::Owned) -> Conn<'_>;
    /// False once the connection is known to be broken.
    fn usable(c: &Self::Owned) -> bool;
    /// Upkeep the writer runs on its connection between two batches, outside any
    /// transaction (SQLite starts its WAL over here).
    fn between_batches(&self, _c: &Self::Owned) {}
}

/// Read connections. A `std::sync::Mutex` because it is held only to push or pop a
/// connection, never across an `.await`; the semaphore bounds how many are in use.
pub struct ReadPool<O: Opener> {
    opener: O,
    idle: Mutex<Vec<O::Owned>>,
    permits: Semaphore,
    limit: Option<std::time::Duration>,
}

impl<O: Opener> ReadPool<O> {
    pub fn new(opener: O, size: usize) -> Arc<ReadPool<O>> {
        Arc::new(ReadPool {
            opener,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(size.max(1)),
            limit: None,
        })
    }

    /// [`ReadPool::new`] whose reads give up after `limit` (see the module's docs).
    pub fn with_limit(opener: O, size: usize, limit: std::time::Duration) -> Arc<ReadPool<O>> {
        Arc::new(ReadPool {
            opener,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(size.max(1)),
            limit: Some(limit),
        })
    }

    /// Refuses further reads (`Unavailable`) and closes the idle connections, on a plain
    /// thread as [`Drop`] does. Reads already running finish.
    pub fn close(&self) {
        self.permits.close();
        let idle = match self.idle.lock() {
            Ok(mut v) => std::mem::take(&mut *v),
            Err(p) => std::mem::take(&mut *p.into_inner()),
        };
        if !idle.is_empty() {
            let _ = std::thread::Builder::new()
                .name("tidings-pool-close".into())
                .spawn(move || drop(idle));
        }
    }

    /// Runs `f` on a read connection on the blocking pool.
    pub async fn read<T, F>(self: &Arc<Self>, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Conn) -> StoreResult<T> + Send + 'static,
    {
        self.run(self.limit, f).await
    }

    /// [`ReadPool::read`] without the time limit, for maintenance that may take longer
    /// than a statement (PostgreSQL's `VACUUM` after pruning); `f` lifts the connection's
    /// own `statement_timeout` itself and puts it back.
    pub async fn maintain<T, F>(self: &Arc<Self>, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Conn) -> StoreResult<T> + Send + 'static,
    {
        self.run(None, f).await
    }

    async fn run<T, F>(self: &Arc<Self>, limit: Option<std::time::Duration>, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Conn) -> StoreResult<T> + Send + 'static,
    {
        let late = |what: &str| {
            metrics::counter!("tidings_store_stalled_total").increment(1);
            StoreError::Unavailable(format!(
                "the database did not answer within {} ms ({what})",
                limit.unwrap_or_default().as_millis()
            ))
        };
        let acquire = self.permits.acquire();
        let acquired = match limit {
            None => acquire.await,
            Some(limit) => tokio::time::timeout(limit, acquire)
                .await
                .map_err(|_| late("no connection free"))?,
        };
        let _permit = acquired.map_err(|_| StoreError::Unavailable("read pool closed".into()))?;
        let pool = self.clone();
        let task = tokio::task::spawn_blocking(move || {
            let idle = pool
                .idle
                .lock()
                .ok()
                .and_then(|mut v| v.pop())
                .filter(O::usable);
            let owned = match idle {
                Some(c) => c,
                None => pool.opener.open()?,
            };
            let result = f(&O::conn(&owned));
            if O::usable(&owned) {
                if let Ok(mut idle) = pool.idle.lock() {
                    idle.push(owned);
                }
            }
            result
        });
        let joined = match limit {
            None => task.await,
            Some(limit) => tokio::time::timeout(limit, task)
                .await
                .map_err(|_| late("a read"))?,
        };
        joined.map_err(|e| StoreError::Internal(format!("read task failed: {e}")))?
    }
}

impl<O: Opener> Drop for ReadPool<O> {
    /// Idle connections are closed on a plain thread: the PostgreSQL driver blocks while
    /// closing, which it must not do on an async runtime's thread.
    fn drop(&mut self) {
        let idle = match self.idle.get_mut() {
            Ok(v) => std::mem::take(v),
            Err(p) => std::mem::take(p.into_inner()),
        };
        if !idle.is_empty() {
            let _ = std::thread::Builder::new()
                .name("tidings-pool-close".into())
                .spawn(move || drop(idle));
        }
    }
}

//! The embedded SQLite backend: one file in the data directory, WAL mode, one writer thread
//! with group commit ([`writer`]) and a small pool of read connections.
//!
//! `synchronous=NORMAL` in WAL mode means a commit survives a process crash (SIGKILL) but
//! is not fsynced one by one; durability against power loss is per WAL checkpoint. That is
//! the trade the architecture asks for: batching, not per-event fsync.

mod apps;
mod cache;
mod directory;
mod dispatch;
mod events;
mod insights;
pub mod migrations;
mod publish;
mod rows;
mod store_impl;
pub mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags};
use tokio::sync::Semaphore;

use crate::{StoreError, StoreResult};
use writer::Writer;

/// Read connections kept open; reads beyond that wait for one.
const READERS: usize = 4;

/// The SQLite store. Cheap to clone; all clones share the writer and the read pool.
#[derive(Clone)]
pub struct SqliteStore {
    writer: Writer,
    /// The fan-out index, used and invalidated only inside writer jobs.
    index: cache::Index,
    /// Insight counts of the batch in progress, flushed just before it commits.
    counter: insights::Counter,
    /// The `event_context` signing key (read once at open).
    context_key: Arc<Vec<u8>>,
    readers: Arc<ReadPool>,
    path: PathBuf,
}

/// Read connections. A `std::sync::Mutex` because it is held only to push or pop a
/// connection, never across an `.await`; the semaphore bounds how many are in use.
struct ReadPool {
    idle: Mutex<Vec<Connection>>,
    permits: Semaphore,
    path: PathBuf,
}

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;
         PRAGMA temp_store=MEMORY; PRAGMA cache_size=-16000;",
    )
}

impl SqliteStore {
    /// Opens (creating if needed) `tidings.db` in `data_dir` and migrates it.
    pub fn open(data_dir: &Path) -> StoreResult<SqliteStore> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            StoreError::Unavailable(format!("cannot create {}: {e}", data_dir.display()))
        })?;
        let path = data_dir.join("tidings.db");
        let mut conn = Connection::open(&path)
            .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
        configure(&conn)?;
        migrations::migrate(&mut conn)?;
        let context_key = events::context_key(&conn)?;
        let index = cache::Index::default();
        let counter = insights::Counter::default();
        let hooks = writer::Hooks {
            before_commit: {
                let counter = counter.clone();
                Box::new(move |c| counter.flush(c))
            },
            on_rollback: {
                let (index, counter) = (index.clone(), counter.clone());
                Box::new(move || {
                    index.clear();
                    counter.clear();
                })
            },
        };
        let writer = Writer::start(conn, hooks)
            .map_err(|e| StoreError::Internal(format!("cannot start the writer: {e}")))?;
        Ok(SqliteStore {
            writer,
            index,
            counter,
            context_key: Arc::new(context_key),
            readers: Arc::new(ReadPool {
                idle: Mutex::new(Vec::new()),
                permits: Semaphore::new(READERS),
                path: path.clone(),
            }),
            path,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` in the next group commit.
    pub(crate) async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        self.writer.write(f).await
    }

    /// Runs `f` on a read connection on the blocking pool.
    pub(crate) async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let pool = self.readers.clone();
        let _permit = self
            .readers
            .permits
            .acquire()
            .await
            .map_err(|_| StoreError::Unavailable("read pool closed".into()))?;
        tokio::task::spawn_blocking(move || {
            let conn = match pool.idle.lock().map(|mut v| v.pop()) {
                Ok(Some(c)) => c,
                _ => {
                    let c = Connection::open_with_flags(
                        &pool.path,
                        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                    )?;
                    c.busy_timeout(std::time::Duration::from_secs(5))?;
                    c
                }
            };
            let result = f(&conn);
            if let Ok(mut idle) = pool.idle.lock() {
                idle.push(conn);
            }
            result
        })
        .await
        .map_err(|e| StoreError::Internal(format!("read task failed: {e}")))?
    }
}

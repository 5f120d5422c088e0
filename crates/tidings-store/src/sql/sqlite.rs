//! The embedded SQLite backend: one file in the data directory, WAL mode, the writer
//! thread with group commit and a small pool of read-only connections.
//!
//! `synchronous=NORMAL` in WAL mode means a commit survives a process crash (SIGKILL) but
//! is not fsynced one by one; durability against power loss is per WAL checkpoint. That is
//! the trade the architecture asks for: batching, not per-event fsync.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rusqlite::{Connection, OpenFlags};

use super::conn::{sqlite_error, Conn};
use super::pool::{self, ReadPool};
use super::{migrations, owner_only, wal, Readers, SqlStore};
use crate::{StoreError, StoreResult};

/// Read connections kept open; reads beyond that wait for one.
const READERS: usize = 4;
/// Prepared statements kept per connection.
const STATEMENT_CACHE: usize = 256;
/// The writer's settings. WAL checkpoints and restarts are [`wal`]'s work, off the commit
/// path; the writer's autocheckpoint is only a backstop.
fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(wal::BUSY_TIMEOUT)?;
    conn.execute_batch(&format!(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;
         PRAGMA temp_store=MEMORY; PRAGMA cache_size=-16000; PRAGMA wal_autocheckpoint={};",
        wal::BACKSTOP_FRAMES
    ))
}

/// Opens connections to one database file: read-only ones for the pool, or the writer's.
pub struct Opener {
    path: PathBuf,
    read_only: bool,
    /// The writer's: set by the checkpointer when the writer should start the WAL over.
    restart: Option<Arc<AtomicBool>>,
}

impl pool::Opener for Opener {
    type Owned = Connection;

    fn open(&self) -> StoreResult<Connection> {
        let c = if self.read_only {
            let c = Connection::open_with_flags(
                &self.path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(sqlite_error)?;
            c.busy_timeout(wal::BUSY_TIMEOUT).map_err(sqlite_error)?;
            c
        } else {
            let c = Connection::open(&self.path).map_err(|e| {
                StoreError::Unavailable(format!("cannot open {}: {e}", self.path.display()))
            })?;
            configure(&c).map_err(sqlite_error)?;
            c
        };
        // Every statement the store runs stays prepared: rusqlite's default cache holds 16,
        // fewer than the writer alone uses, and a miss re-parses the SQL.
        c.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(c)
    }

    fn conn(c: &Connection) -> Conn<'_> {
        Conn::Sqlite(c)
    }

    fn usable(_: &Connection) -> bool {
        true
    }

    fn between_batches(&self, c: &Connection) {
        if let Some(restart) = &self.restart {
            if restart.swap(false, Ordering::Relaxed) {
                wal::restart(c);
            }
        }
    }
}

/// Opens (creating if needed) `tidings.db` in `data_dir` and migrates it. The directory
/// and the database files are kept owner-only (they hold every app's signing secret).
pub fn open(data_dir: &Path) -> StoreResult<SqlStore> {
    owner_only::private_dir(data_dir)?;
    let path = data_dir.join("tidings.db");
    owner_only::create_private_file(&path)?;
    for suffix in &owner_only::SQLITE_SUFFIXES[1..] {
        let mut companion = path.clone().into_os_string();
        companion.push(suffix);
        owner_only::private_file(Path::new(&companion))?;
    }
    let restart = Arc::new(AtomicBool::new(false));
    let writer = Opener {
        path: path.clone(),
        read_only: false,
        restart: Some(restart.clone()),
    };
    let conn = pool::Opener::open(&writer)?;
    migrations::sqlite::migrate(&conn)?;
    let readers = ReadPool::new(
        Opener {
            path: path.clone(),
            read_only: true,
            restart: None,
        },
        READERS,
    );
    let mut store = SqlStore::assemble(
        writer,
        conn,
        Readers::Sqlite(readers),
        format!("SQLite {}", path.display()),
        0,
        None,
    )?;
    store._alive = Some(wal::spawn_checkpointer(&path, restart)?);
    Ok(store)
}

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

/// Turns on SQLite's query planner stability guarantee, so a cached statement keeps its
/// plan whatever values are bound to it. Without it, SQLite marks a statement to be
/// re-planned when a bound value could change its plan (weighing an equality on a bound
/// value is enough), and rusqlite clears the bindings of every statement it puts back in
/// its cache, which re-plans every statement so marked: each run was a full parse and
/// plan. The fan-out index's cold reads (a team's installations, an app and team's rate
/// window) and an install were among them: in `tenants`' first second, re-preparing them
/// took a fifth of the writer's time. No query of the store depends on a bound value for
/// its plan: its partial indexes are matched by literals.
fn stable_plans(c: &Connection) -> rusqlite::Result<()> {
    c.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )
    .map(drop)
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
        stable_plans(&c).map_err(sqlite_error)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::StatementStatus;

    /// Runs a grouped range query through rusqlite's statement cache, with new values each
    /// time; returns how often SQLite re-prepared the statement.
    fn reprepares(c: &Connection) -> i32 {
        c.execute_batch(
            "CREATE TABLE IF NOT EXISTS t (a TEXT, b TEXT, n INTEGER);
             CREATE INDEX IF NOT EXISTS t_ab ON t(a, b, n);",
        )
        .unwrap();
        // The shape of the rate window's read (`cache::FanoutIndex::rate`).
        const SQL: &str = "SELECT n / 60, count(*) FROM t WHERE a = ?1 AND b = ?2 AND n > ?3
                           GROUP BY n / 60";
        for i in 0..5 {
            let mut s = c.prepare_cached(SQL).unwrap();
            let rows = s
                .query_map(rusqlite::params!["x", format!("b{i}"), i], |_| Ok(()))
                .unwrap();
            assert_eq!(rows.count(), 0);
        }
        c.prepare_cached(SQL)
            .unwrap()
            .get_status(StatementStatus::RePrepare)
    }

    #[test]
    fn a_cached_statement_is_not_planned_again_for_new_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        // What the store's connections avoid: SQLite plans such a statement again after
        // rusqlite clears its bindings.
        let plain = Connection::open(&path).unwrap();
        assert!(
            reprepares(&plain) > 0,
            "SQLite re-plans without the guarantee"
        );
        drop(plain);
        let opener = Opener {
            path,
            read_only: false,
            restart: None,
        };
        let c = pool::Opener::open(&opener).unwrap();
        assert_eq!(reprepares(&c), 0);
    }
}

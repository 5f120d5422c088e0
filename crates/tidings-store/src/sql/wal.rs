//! SQLite's WAL upkeep: the checkpointer thread, and the WAL restarts the writer runs
//! between batches.
//!
//! SQLite starts a WAL over only when a write begins with every frame copied into the
//! database file and no reader still in the WAL. With batches back to back that never
//! happens after a checkpoint from another thread (the writer has always appended more by
//! then), so the WAL used to grow to the writer's autocheckpoint limit, and from there on
//! the commits themselves checkpointed, with two fsyncs each, on the serial path: 14 % of
//! the writer's time in `tenants`. Now:
//! - the checkpointer copies committed frames every [`CHECKPOINT_EVERY`] (PASSIVE: it
//!   blocks nobody) and syncs the database file after each pass;
//! - once the WAL holds [`RESTART_AT`] frames, it copies again back to back until a pass
//!   is quick ([`CAUGHT_UP`]), so that little is left, and asks the writer to restart;
//! - the writer, between two batches ([`restart`]), copies that little and restarts the
//!   WAL, waiting briefly for readers: a stall of a few ms about every second at full
//!   load (`tidings_store_wal_restart_seconds`), instead of a checkpoint in commits.
//!
//! The writer's own autocheckpoint stays as a backstop at a higher mark, should the
//! checkpointer stop.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::conn::sqlite_error;
use crate::{StoreError, StoreResult};

/// How often the checkpointer copies the WAL into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);
/// WAL frames (4 KB pages) past which the WAL is started over (64 MB).
const RESTART_AT: i64 = 16_384;
/// The writer's autocheckpoint (inside a commit), in frames: only a backstop (256 MB).
pub const BACKSTOP_FRAMES: i64 = 65_536;
/// Most back-to-back passes the checkpointer makes to catch up before a restart.
const CATCH_UP_PASSES: usize = 8;
/// A pass this quick left little for the writer to copy.
const CAUGHT_UP: Duration = Duration::from_millis(3);
/// Times, 100 µs apart, a restart asks readers to leave the WAL (about 20 ms) before it
/// gives up until the next one. SQLite's busy handler sleeps 1, 2, 5, 10… ms instead.
const RESTART_TRIES: usize = 200;
/// The writer's busy timeout, restored after a restart.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Starts the checkpointer: a thread with its own connection (see the module's docs). It
/// sets `restart` when the writer should start the WAL over, and stops once the returned
/// handle and its clones are dropped.
pub fn spawn_checkpointer(path: &Path, restart: Arc<AtomicBool>) -> StoreResult<Arc<()>> {
    let conn = Connection::open(path).map_err(sqlite_error)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sqlite_error)?;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
    let alive = Arc::new(());
    let watch = Arc::downgrade(&alive);
    std::thread::Builder::new()
        .name("tidings-checkpoint".into())
        .spawn(move || {
            while watch.strong_count() > 0 {
                std::thread::sleep(CHECKPOINT_EVERY);
                match checkpoint(&conn, &file) {
                    Ok(true) => restart.store(true, Ordering::Relaxed),
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "WAL checkpoint failed; the next one retries")
                    }
                }
            }
        })
        .map_err(|e| StoreError::Unavailable(format!("cannot start the checkpointer: {e}")))?;
    Ok(alive)
}

/// One round of the checkpointer; true when the WAL should now be restarted.
fn checkpoint(conn: &Connection, file: &std::fs::File) -> StoreResult<bool> {
    if pass(conn, file)? < RESTART_AT {
        return Ok(false);
    }
    for _ in 0..CATCH_UP_PASSES {
        let started = Instant::now();
        pass(conn, file)?;
        if started.elapsed() < CAUGHT_UP {
            break;
        }
    }
    Ok(true)
}

/// A PASSIVE checkpoint, then an fsync of the database file; returns the frames in the
/// WAL. SQLite syncs the database file only after a pass that copied the whole WAL,
/// which never happens while the writer appends, so the pages the passes copied used to
/// wait in the page cache for the restart's own sync: 25–40 ms on the writer's path for
/// a restart with 50 frames left to copy. Synced here, off that path, the restart's sync
/// has only its last few frames to write.
fn pass(conn: &Connection, file: &std::fs::File) -> StoreResult<i64> {
    let (frames, copied): (i64, i64) = conn
        .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get(1)?, r.get(2)?))
        })
        .map_err(sqlite_error)?;
    if copied > 0 {
        file.sync_data()
            .map_err(|e| StoreError::Unavailable(format!("cannot sync the database file: {e}")))?;
    }
    Ok(frames)
}

/// Starts the WAL over from the writer's connection, between two batches: copies what the
/// checkpointer has not, waits up to [`RESTART_TRIES`] polls for readers to leave the
/// WAL, and resets it so the next batch writes from its start. A restart that gives up
/// has still copied everything; the checkpointer asks again.
pub fn restart(conn: &Connection) {
    let started = Instant::now();
    match try_restart(conn) {
        Ok(true) => {}
        Ok(false) => tracing::debug!("WAL restart gave up waiting for a reader; retried later"),
        Err(e) => tracing::warn!(error = %e, "WAL restart failed; retried later"),
    }
    if let Err(e) = conn.busy_timeout(BUSY_TIMEOUT) {
        tracing::warn!(error = %e, "cannot restore the writer's busy timeout");
    }
    metrics::histogram!("tidings_store_wal_restart_seconds")
        .record(started.elapsed().as_secs_f64());
}

fn try_restart(conn: &Connection) -> rusqlite::Result<bool> {
    // Without a busy handler RESTART answers at once, with busy = 1 while a reader is in
    // the WAL; asking again copies nothing new (nothing is written meanwhile).
    conn.busy_timeout(Duration::ZERO)?;
    for _ in 0..RESTART_TRIES {
        let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| r.get(0))?;
        if busy == 0 {
            return Ok(true);
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(dir: &Path) -> Connection {
        let c = Connection::open(dir.join("t.db")).expect("open");
        c.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0; CREATE TABLE t (v TEXT);",
        )
        .expect("setup");
        c.busy_timeout(BUSY_TIMEOUT).expect("timeout");
        c
    }

    fn write(c: &Connection, n: usize) {
        for i in 0..n {
            c.execute("INSERT INTO t VALUES (?1)", [format!("{i:0>500}")])
                .expect("insert");
        }
    }

    /// A checkpointer's pass: the frames in the WAL.
    fn frames(c: &Connection, dir: &Path) -> i64 {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join("t.db"))
            .expect("file");
        pass(c, &file).expect("checkpoint")
    }

    fn busy_timeout_ms(c: &Connection) -> i64 {
        c.query_row("PRAGMA busy_timeout", [], |r| r.get(0))
            .expect("pragma")
    }

    #[test]
    fn a_restart_lets_the_next_write_start_the_wal_over() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = db(dir.path());
        // No checkpoint before the restart: one that copied everything would let SQLite
        // start the WAL over by itself.
        write(&c, 300);
        restart(&c);
        write(&c, 1);
        assert!(frames(&c, dir.path()) <= 2, "the WAL started over");
        assert_eq!(busy_timeout_ms(&c), 5000);
        let n: i64 = c
            .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .expect("count");
        assert_eq!(n, 301);
    }

    #[test]
    fn a_reader_in_the_wal_makes_a_restart_give_up_without_harm() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = db(dir.path());
        write(&c, 100);
        let reader = Connection::open(dir.path().join("t.db")).expect("open");
        reader.execute_batch("BEGIN").expect("begin");
        let _: i64 = reader
            .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .expect("read");
        write(&c, 100);
        let started = Instant::now();
        restart(&c);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "it gave up quickly"
        );
        assert_eq!(busy_timeout_ms(&c), 5000);
        write(&c, 1);
        assert!(frames(&c, dir.path()) > 100, "the WAL went on");
        reader.execute_batch("COMMIT").expect("end");
        restart(&c);
        write(&c, 1);
        assert!(frames(&c, dir.path()) <= 2, "the next restart worked");
    }
}

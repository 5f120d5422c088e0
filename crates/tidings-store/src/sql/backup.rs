//! Backups of the SQLite store, and restoring one (`tidings backup`, `tidings restore`).
//!
//! A backup opens the data directory's database read-only, next to a running server,
//! and copies it with `VACUUM INTO`: one read transaction, so the copy is the database
//! as of the moment that transaction began (WAL mode lets the server go on writing
//! meanwhile), holding every event whose publish was acknowledged before the backup
//! started. SQLite's online backup API was the other candidate; it restarts whenever
//! another connection writes, which under steady publishing means it never ends. The
//! price of the long read: the writer's WAL restarts give up while it lasts (see
//! [`super::wal`]), so the WAL grows until the backup ends.
//!
//! Both directions write a temporary file beside the target (mode 0600), check it
//! (`PRAGMA quick_check`, a Tidings schema this binary knows), sync it and rename it into
//! place: a reader of the target sees the old file or the whole new one, and a failure
//! leaves nothing behind. Restore refuses a database a server has open, and keeps the
//! database it replaces (`--force`) beside it as `tidings.db.before-restore-<time>`.
//!
//! Errors are one line for the operator (`String`), not [`crate::StoreError`]: these run in
//! the command line, not behind the API.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::migrations;

/// The database file in a data directory.
pub const DB_FILE: &str = "tidings.db";

/// What a backup or a restored database holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbInfo {
    /// The schema version (`schema_migrations`).
    pub schema_version: i64,
    pub events: i64,
    pub pending_deliveries: i64,
    /// The file's size.
    pub bytes: u64,
}

/// A finished restore.
#[derive(Debug, Clone)]
pub struct Restored {
    pub info: DbInfo,
    /// The database file now in place.
    pub path: PathBuf,
    /// Where the database it replaced was kept, if there was one.
    pub replaced: Option<PathBuf>,
}

/// Copies `<data_dir>/tidings.db` to `to`, consistent even while a server writes to it.
/// `to` must not exist unless `force`.
pub fn backup(data_dir: &Path, to: &Path, force: bool) -> Result<DbInfo, String> {
    let source = data_dir.join(DB_FILE);
    if !source.is_file() {
        return Err(format!(
            "no Tidings database at {} (is the data directory right?)",
            source.display()
        ));
    }
    check_target(to, force)?;
    let src = Connection::open_with_flags(&source, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| format!("cannot open {}: {e}", source.display()))?;
    src.busy_timeout(super::wal::BUSY_TIMEOUT)
        .map_err(|e| format!("cannot open {}: {e}", source.display()))?;
    schema_version(&src, &source)?;
    let tmp = Partial::create(to)?;
    copy_into(&src, &source, &tmp.path)?;
    drop(src);
    let info = finish_copy(&tmp.path, to)?;
    tmp.commit(to)?;
    Ok(info)
}

/// Checks `file` is a Tidings database this binary can serve (a SQLite file, intact,
/// with a schema version no newer than this binary's) and says what it holds.
pub fn inspect(file: &Path) -> Result<DbInfo, String> {
    if !file.is_file() {
        return Err(format!("{} is not a file", file.display()));
    }
    let c = Connection::open_with_flags(file, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| format!("cannot open {}: {e}", file.display()))?;
    quick_check(&c, file)?;
    let info = info(&c, file)?;
    ensure_known(&info, file)?;
    Ok(info)
}

/// Restores the backup `from` as `<data_dir>/tidings.db`. An existing database is
/// replaced only with `force`, and never while a server has it open.
pub fn restore(from: &Path, data_dir: &Path, force: bool) -> Result<Restored, String> {
    let backup_info = inspect(from)?;
    create_data_dir(data_dir)?;
    let target = data_dir.join(DB_FILE);
    let existing = target.exists();
    if existing {
        ensure_not_open(&target)?;
        if !force {
            return Err(format!(
                "{} already holds a database; pass --force to replace it (it is kept beside it as {}.before-restore-<time>)",
                data_dir.display(),
                DB_FILE
            ));
        }
    }
    let tmp = Partial::create(&target)?;
    let src = Connection::open_with_flags(from, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| format!("cannot open {}: {e}", from.display()))?;
    copy_into(&src, from, &tmp.path)?;
    drop(src);
    let info = finish_copy(&tmp.path, &target)?;
    debug_assert_eq!(info.events, backup_info.events);
    give_to_owner_of(&tmp.path, data_dir);
    let replaced = if existing {
        // The old WAL went when the probe closed the database; a stray one must not
        // be replayed onto the restored file.
        for suffix in ["-wal", "-shm"] {
            let side = PathBuf::from(format!("{}{suffix}", target.display()));
            if side.exists() {
                std::fs::remove_file(&side)
                    .map_err(|e| format!("cannot remove {}: {e}", side.display()))?;
            }
        }
        let kept = PathBuf::from(format!(
            "{}.before-restore-{}",
            target.display(),
            super::now()
        ));
        std::fs::hard_link(&target, &kept).map_err(|e| {
            format!(
                "cannot keep the old database as {}: {e}; nothing was changed",
                kept.display()
            )
        })?;
        Some(kept)
    } else {
        None
    };
    tmp.commit(&target)?;
    Ok(Restored {
        info,
        path: target,
        replaced,
    })
}

/// `to` may be written: not a directory, not there unless `force`, its directory there.
fn check_target(to: &Path, force: bool) -> Result<(), String> {
    if to.is_dir() {
        return Err(format!("{} is a directory; name a file", to.display()));
    }
    if to.exists() && !force {
        return Err(format!(
            "{} exists; pass --force to replace it",
            to.display()
        ));
    }
    let dir = parent(to);
    if !dir.is_dir() {
        return Err(format!(
            "cannot write {}: the directory {} does not exist",
            to.display(),
            dir.display()
        ));
    }
    Ok(())
}

fn parent(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A temporary file beside a target, removed unless renamed onto it.
struct Partial {
    path: PathBuf,
    done: bool,
}

impl Partial {
    /// An empty file, mode 0600 from its first byte on (`VACUUM INTO` fills an empty
    /// file; made by SQLite it would be world-readable until chmod).
    fn create(target: &Path) -> Result<Partial, String> {
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| DB_FILE.to_string());
        let path = parent(target).join(format!(".{name}.partial-{}", std::process::id()));
        let _ = std::fs::remove_file(&path); // a leftover of a crashed run with our pid
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        opts.open(&path)
            .map_err(|e| format!("cannot write {}: {e}", target.display()))?;
        Ok(Partial { path, done: false })
    }

    /// Renames the file onto `target` and makes the rename durable.
    fn commit(mut self, target: &Path) -> Result<(), String> {
        std::fs::rename(&self.path, target)
            .map_err(|e| format!("cannot write {}: {e}", target.display()))?;
        self.done = true;
        // The rename is durable once the directory is synced.
        if let Ok(d) = File::open(parent(target)) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

impl Drop for Partial {
    /// Removes the file unless committed, and always the journal SQLite may have left
    /// beside it (a copy that failed half-way, the disk full, leaves `-journal`).
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.path);
        }
        for suffix in ["-journal", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.path.display()));
        }
    }
}

/// `VACUUM INTO` the (empty) file `into`: one read transaction over the source.
fn copy_into(src: &Connection, source: &Path, into: &Path) -> Result<(), String> {
    let into_str = into
        .to_str()
        .ok_or_else(|| format!("{} is not a UTF-8 path", into.display()))?;
    src.execute("VACUUM INTO ?1", [into_str])
        .map(|_| ())
        .map_err(|e| format!("cannot copy {}: {e}", source.display()))
}

/// Checks the copy, leaves it a single self-contained file (rollback journal, not WAL:
/// a server opening it switches it back), syncs it, and says what it holds.
fn finish_copy(copy: &Path, target: &Path) -> Result<DbInfo, String> {
    let c = Connection::open(copy).map_err(|e| format!("cannot open the copy: {e}"))?;
    quick_check(&c, target)?;
    let mode: String = c
        .query_row("PRAGMA journal_mode=DELETE", [], |r| r.get(0))
        .map_err(|e| format!("cannot finish {}: {e}", target.display()))?;
    if !mode.eq_ignore_ascii_case("delete") {
        return Err(format!(
            "cannot finish {}: journal mode stayed {mode}",
            target.display()
        ));
    }
    let mut info = info(&c, target)?;
    drop(c);
    let f = File::open(copy).map_err(|e| format!("cannot sync {}: {e}", target.display()))?;
    f.sync_all()
        .map_err(|e| format!("cannot sync {}: {e}", target.display()))?;
    info.bytes = f.metadata().map(|m| m.len()).unwrap_or(0);
    Ok(info)
}

fn quick_check(c: &Connection, file: &Path) -> Result<(), String> {
    let not_sqlite = |e: rusqlite::Error| match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase) => {
            format!("{} is not a SQLite database", file.display())
        }
        _ => format!("cannot read {}: {e}", file.display()),
    };
    let verdict: String = c
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(not_sqlite)?;
    if verdict != "ok" {
        return Err(format!("{} is damaged: {verdict}", file.display()));
    }
    Ok(())
}

/// The Tidings schema version of `c`; an error when it is no Tidings database.
fn schema_version(c: &Connection, file: &Path) -> Result<i64, String> {
    let tables: i64 = c
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'
               AND name IN ('schema_migrations', 'events', 'deliveries', 'settings')",
            [],
            |r| r.get(0),
        )
        .map_err(|e| match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::NotADatabase) => {
                format!("{} is not a SQLite database", file.display())
            }
            _ => format!("cannot read {}: {e}", file.display()),
        })?;
    if tables < 4 {
        return Err(format!(
            "{} is not a Tidings database (it lacks Tidings's tables)",
            file.display()
        ));
    }
    let version: i64 = c
        .query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            [],
            |r| r.get(0),
        )
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    Ok(version)
}

/// A database this binary can serve: its schema is no newer than this binary's. (A
/// backup may copy a newer one: the copy is as good as the original.)
fn ensure_known(info: &DbInfo, file: &Path) -> Result<(), String> {
    let known = migrations::latest(migrations::sqlite::MIGRATIONS);
    if info.schema_version > known {
        return Err(format!(
            "{} has schema version {}, newer than this tidings knows ({known}): restore it with the Tidings release that made it, or a newer one",
            file.display(),
            info.schema_version
        ));
    }
    Ok(())
}

fn info(c: &Connection, file: &Path) -> Result<DbInfo, String> {
    let schema_version = schema_version(c, file)?;
    let count = |sql: &str| -> Result<i64, String> {
        c.query_row(sql, [], |r| r.get(0))
            .map_err(|e| format!("cannot read {}: {e}", file.display()))
    };
    Ok(DbInfo {
        schema_version,
        events: count("SELECT COUNT(*) FROM events")?,
        pending_deliveries: count("SELECT COUNT(*) FROM deliveries WHERE status = 'pending'")?,
        bytes: std::fs::metadata(file).map(|m| m.len()).unwrap_or(0),
    })
}

/// Fails when another process has the database open. A connection in exclusive locking
/// mode needs the file's exclusive lock to read, and every connection of a running
/// server holds a shared one from its first read on; with no wait allowed, SQLite
/// answers "busy" at once. Closing the probe checkpoints the WAL into the file.
fn ensure_not_open(db: &Path) -> Result<(), String> {
    let c = Connection::open(db).map_err(|e| format!("cannot open {}: {e}", db.display()))?;
    c.busy_timeout(Duration::ZERO)
        .map_err(|e| format!("cannot open {}: {e}", db.display()))?;
    let probe = c.execute_batch("PRAGMA locking_mode=EXCLUSIVE; BEGIN EXCLUSIVE; COMMIT;");
    match probe {
        Ok(()) => Ok(()),
        Err(e)
            if matches!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            ) =>
        {
            Err(format!(
                "{} is open in a running server; stop it before restoring",
                db.display()
            ))
        }
        Err(e) => Err(format!("cannot open {}: {e}", db.display())),
    }
}

/// A data directory made by restore is private to its owner, as `serve` makes it.
fn create_data_dir(dir: &Path) -> Result<(), String> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))
}

/// Root restoring into a service's data directory: the file goes to the directory's
/// owner, or the service could not open it.
fn give_to_owner_of(file: &Path, dir: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let (Ok(d), Ok(f)) = (std::fs::metadata(dir), std::fs::metadata(file)) else {
            return;
        };
        if (d.uid(), d.gid()) != (f.uid(), f.gid()) {
            if let Err(e) = std::os::unix::fs::chown(file, Some(d.uid()), Some(d.gid())) {
                tracing::warn!(error = %e, file = %file.display(), "cannot give the restored database to the data directory's owner");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A data directory with a migrated store holding one event and its pending delivery.
    fn data_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let c = Connection::open(dir.path().join(DB_FILE)).unwrap();
        c.execute_batch("PRAGMA journal_mode=WAL").unwrap();
        migrations::sqlite::migrate(&c).unwrap();
        c.execute_batch(migrations::upgrade_fixture::V1_ROWS)
            .unwrap();
        c.execute_batch(
            "INSERT INTO deliveries (seq, id, event_id, app_id, team_id, event_type, status, auth, attempts, next_attempt_at, created_at, updated_at)
             VALUES (3, 'D3', 'Ev3', 'A1', 'T1', 'reaction_added', 'pending', '{}', 0, 0, 0, 0)",
        )
        .unwrap();
        dir
    }

    #[cfg(unix)]
    fn mode(p: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_backup_restores_into_a_new_data_dir_with_everything() {
        let src = data_dir();
        let out = tempfile::tempdir().unwrap();
        let file = out.path().join("b.db");
        let info = backup(src.path(), &file, false).unwrap();
        assert_eq!((info.events, info.pending_deliveries), (4, 1));
        assert_eq!(
            info.schema_version,
            migrations::latest(migrations::sqlite::MIGRATIONS)
        );
        #[cfg(unix)]
        assert_eq!(mode(&file), 0o600);
        let leftovers: Vec<_> = std::fs::read_dir(out.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("b.db")]);
        let new = out.path().join("new-data");
        let r = restore(&file, &new, false).unwrap();
        assert_eq!(r.info.events, 4);
        assert!(r.replaced.is_none());
        #[cfg(unix)]
        {
            assert_eq!(mode(&r.path), 0o600);
            assert_eq!(mode(&new), 0o700);
        }
        let c = Connection::open(&r.path).unwrap();
        let pending: String = c
            .query_row(
                "SELECT id FROM deliveries WHERE status = 'pending'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(pending, "D3");
    }

    #[test]
    fn an_existing_backup_file_is_replaced_only_with_force() {
        let src = data_dir();
        let out = tempfile::tempdir().unwrap();
        let file = out.path().join("b.db");
        std::fs::write(&file, "precious").unwrap();
        let e = backup(src.path(), &file, false).unwrap_err();
        assert!(e.contains("--force"), "{e}");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "precious");
        backup(src.path(), &file, true).unwrap();
        assert_eq!(inspect(&file).unwrap().events, 4);
    }

    #[test]
    fn a_target_that_cannot_be_written_is_named_and_nothing_is_left() {
        let src = data_dir();
        let e = backup(src.path(), Path::new("/nonexistent-dir/b.db"), false).unwrap_err();
        assert!(
            e.contains("/nonexistent-dir") && e.contains("does not exist"),
            "{e}"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let out = tempfile::tempdir().unwrap();
            let ro = out.path().join("ro");
            std::fs::create_dir(&ro).unwrap();
            std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o500)).unwrap();
            // Root writes anywhere; the check means something only for other users.
            if std::fs::write(ro.join("probe"), "x").is_err() {
                let e = backup(src.path(), &ro.join("b.db"), false).unwrap_err();
                assert!(
                    e.contains("cannot write") && e.contains("ermission denied"),
                    "{e}"
                );
                assert_eq!(std::fs::read_dir(&ro).unwrap().count(), 0);
            }
        }
        let e = backup(Path::new("/nonexistent-data"), Path::new("b.db"), false).unwrap_err();
        assert!(e.contains("no Tidings database"), "{e}");
    }

    #[test]
    fn restore_refuses_what_is_not_a_tidings_database_of_a_known_version() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.db");
        std::fs::write(&junk, vec![7u8; 8192]).unwrap();
        let e = restore(&junk, &dir.path().join("d"), false).unwrap_err();
        assert!(e.contains("is not a SQLite database"), "{e}");
        let other = dir.path().join("other.db");
        Connection::open(&other)
            .unwrap()
            .execute_batch("CREATE TABLE t (x)")
            .unwrap();
        let e = restore(&other, &dir.path().join("d"), false).unwrap_err();
        assert!(e.contains("is not a Tidings database"), "{e}");
        let src = data_dir();
        let newer = dir.path().join("newer.db");
        backup(src.path(), &newer, false).unwrap();
        Connection::open(&newer)
            .unwrap()
            .execute_batch(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'future', 0)",
            )
            .unwrap();
        let e = restore(&newer, &dir.path().join("d"), false).unwrap_err();
        assert!(
            e.contains("schema version 999, newer than this tidings knows"),
            "{e}"
        );
        assert!(!dir.path().join("d").exists(), "nothing was made");
    }

    #[test]
    fn restore_keeps_the_database_it_replaces_and_never_one_in_use() {
        let src = data_dir();
        let out = tempfile::tempdir().unwrap();
        let file = out.path().join("b.db");
        backup(src.path(), &file, false).unwrap();
        let target = tempfile::tempdir().unwrap();
        restore(&file, target.path(), false).unwrap();
        let e = restore(&file, target.path(), false).unwrap_err();
        assert!(e.contains("--force"), "{e}");
        // A server's connection: open and read once, as the store does.
        let live = Connection::open(target.path().join(DB_FILE)).unwrap();
        live.execute_batch("PRAGMA journal_mode=WAL").unwrap();
        let _: i64 = live
            .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
            .unwrap();
        let e = restore(&file, target.path(), true).unwrap_err();
        assert!(e.contains("open in a running server"), "{e}");
        drop(live);
        let r = restore(&file, target.path(), true).unwrap();
        let kept = r.replaced.expect("the old database is kept");
        assert_eq!(inspect(&kept).unwrap().events, 4);
        assert_eq!(inspect(&r.path).unwrap().events, 4);
    }
}

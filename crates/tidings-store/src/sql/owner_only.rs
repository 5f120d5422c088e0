//! Owner-only permissions for the data directory and the files in it that hold secrets
//! (the SQLite database with every app's signing secret, its `-wal` and `-shm`, the
//! generated admin token): the directory is made 0700 and the files 0600, and ones found
//! looser on start (made by an older Tidings, or copied with a default umask) are
//! tightened, with a log line saying so.
//!
//! SQLite creates `-wal` and `-shm` with the database file's own permissions, so creating
//! the database file 0600 before SQLite first opens it keeps all three private.

use std::path::Path;

use crate::{StoreError, StoreResult};

/// The database's companions SQLite creates beside it.
pub const SQLITE_SUFFIXES: [&str; 3] = ["", "-wal", "-shm"];

/// Creates `dir` (and its parents) 0700 if needed; an existing one is made 0700.
pub fn private_dir(dir: &Path) -> StoreResult<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(|e| StoreError::Unavailable(format!("cannot create {}: {e}", dir.display())))?;
    tighten(dir, 0o700)
}

/// Makes an existing file 0600 (nothing to do when it does not exist).
pub fn private_file(path: &Path) -> StoreResult<()> {
    if path.exists() {
        tighten(path, 0o600)?;
    }
    Ok(())
}

/// Creates `path` empty with mode 0600 unless it exists (then tightens it).
pub fn create_private_file(path: &Path) -> StoreResult<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        let created = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path);
        match created {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(StoreError::Unavailable(format!(
                    "cannot create {}: {e}",
                    path.display()
                )))
            }
        }
    }
    private_file(path)
}

#[cfg(unix)]
fn tighten(path: &Path, mode: u32) -> StoreResult<()> {
    use std::os::unix::fs::PermissionsExt;
    let err = |e: std::io::Error| {
        StoreError::Unavailable(format!(
            "cannot set the permissions of {}: {e}",
            path.display()
        ))
    };
    let current = std::fs::metadata(path).map_err(err)?.permissions().mode() & 0o777;
    if current & !mode != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(err)?;
        tracing::warn!(
            path = %path.display(),
            was = %format!("{current:04o}"),
            now = %format!("{mode:04o}"),
            "tightened permissions: it holds secrets and was readable by others"
        );
    }
    Ok(())
}

#[cfg(not(unix))]
fn tighten(_: &Path, _: u32) -> StoreResult<()> {
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn new_dirs_and_files_are_owner_only_and_loose_ones_are_tightened() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        let db = dir.join("tidings.db");
        create_private_file(&db).unwrap();
        assert_eq!(mode(&db), 0o600);

        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        private_dir(&dir).unwrap();
        create_private_file(&db).unwrap();
        assert_eq!((mode(&dir), mode(&db)), (0o700, 0o600));

        // Stricter than asked stays as it is; a missing file is not created.
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o400)).unwrap();
        private_file(&db).unwrap();
        assert_eq!(mode(&db), 0o400);
        private_file(&dir.join("absent")).unwrap();
        assert!(!dir.join("absent").exists());
    }
}

//! Files only the server's own user may read: the database, its WAL and shared-memory
//! files, blobs, the generated secret key and the logs hold password hashes, sealed
//! credentials and personal data. Files are created mode `0600`, directories `0700`,
//! whatever the process umask (which can only widen nothing: it only removes bits).
//!
//! Existing files the server owns are tightened to `0600` when it opens them (an install
//! from before this rule); existing directories are left as the operator made them.

use std::{
    fs::{DirBuilder, File, OpenOptions, Permissions},
    io,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

/// The mode of every file the server creates.
pub const FILE_MODE: u32 = 0o600;
/// The mode of every directory the server creates.
pub const DIR_MODE: u32 = 0o700;

/// Creates `dir` and any missing parents with mode `0700`; an existing directory is kept
/// as it is.
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)
}

/// Narrows an existing file to `0600` if group or others have any access to it.
pub fn tighten(path: &Path) -> io::Result<()> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {
            std::fs::set_permissions(path, Permissions::from_mode(FILE_MODE))
        }
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Makes sure `path` exists as a `0600` file, creating it empty if needed (say, a SQLite
/// database before SQLite opens it: SQLite gives the `-wal` and `-shm` files it creates
/// beside a database the database file's own mode).
pub fn ensure_file(path: &Path) -> io::Result<()> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(path)?;
    tighten(path)
}

/// Opens `path` for appending, creating it `0600` (and tightening an existing one).
pub fn open_append(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(FILE_MODE)
        .open(path)?;
    tighten(path)?;
    Ok(file)
}

/// Before SQLite opens the database `db`: creates it `0600` if missing and narrows it and
/// any `-wal`, `-shm` or `-journal` file beside it to `0600`. SQLite creates those files
/// with the database file's mode, so they stay private from then on.
pub fn prepare_sqlite(db: &Path) -> io::Result<()> {
    ensure_file(db)?;
    for companion in sqlite_companions(db) {
        tighten(&companion)?;
    }
    Ok(())
}

/// The files SQLite keeps beside the database `db`: `-wal`, `-shm`, `-journal`.
pub fn sqlite_companions(db: &Path) -> Vec<PathBuf> {
    ["-wal", "-shm", "-journal"]
        .iter()
        .map(|suffix| {
            let mut name = db.as_os_str().to_owned();
            name.push(suffix);
            PathBuf::from(name)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail loudly by design

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn creates_private_files_and_directories_and_tightens_old_files() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        create_dir_all(&dir).unwrap();
        assert_eq!((mode(&root.path().join("a")), mode(&dir)), (0o700, 0o700));

        let log = dir.join("backend.log");
        drop(open_append(&log).unwrap());
        assert_eq!(mode(&log), 0o600);

        let old = dir.join("old.sqlite3");
        std::fs::write(&old, b"x").unwrap();
        std::fs::set_permissions(&old, Permissions::from_mode(0o644)).unwrap();
        ensure_file(&old).unwrap();
        assert_eq!(mode(&old), 0o600);
        assert_eq!(std::fs::read(&old).unwrap(), b"x", "kept its content");
        assert_eq!(
            sqlite_companions(&old)[0],
            dir.join("old.sqlite3-wal"),
            "companions sit beside the database"
        );
    }
}

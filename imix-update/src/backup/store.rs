//! The backups directory: `<id>.tar.gz` archives, each with a small `<id>.json` index
//! entry beside it (the manifest's summary and the archive's size), so that listing never
//! reads archives. Archives and index entries are written under a temporary name, fsynced
//! and renamed into place, and the directory is fsynced: a crash leaves either the whole
//! backup or nothing but a temporary file, removed at the next open.

use std::{
    collections::BTreeMap,
    fs::File,
    io::Write,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::{BackupError, BackupKind, Manifest, Result, EXTENSION};

/// Prefix of files being written; anything with it is removed at open.
const TEMP_PREFIX: &str = ".incoming-";

/// One backup in the list: what its manifest says, its size, and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupInfo {
    /// The backup's id.
    pub id: String,
    /// The version of imix that made it.
    pub app_version: String,
    /// When it was made.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// Why it was made.
    pub kind: BackupKind,
    /// The store it was taken from.
    pub backend: String,
    /// The archive's size in bytes.
    pub size: u64,
    /// The schema version it was taken at (migration steps).
    pub schema: Vec<String>,
    /// Records per kind.
    pub counts: BTreeMap<String, u64>,
    /// Whether it was uploaded rather than made here (retention leaves uploads alone).
    pub uploaded: bool,
}

/// The archives of one directory (`$IMIX_DATA_DIR/backups`).
#[derive(Debug, Clone)]
pub struct BackupStore {
    dir: PathBuf,
}

/// A backup id as this store hands them out: a UUID. Anything else names no backup (and
/// so can never name a path outside the directory).
fn checked_id(id: &str) -> Result<&str> {
    match uuid::Uuid::parse_str(id) {
        Ok(u) if u.hyphenated().to_string() == id => Ok(id),
        _ => Err(BackupError::NotFound(id.to_owned())),
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(BackupError::io("sync the backups directory"))
}

impl BackupStore {
    /// Opens (creating, mode 0700) the directory and removes files a crash left half
    /// written.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        imix_core::store::private_files::create_dir_all(&dir)
            .map_err(BackupError::io("create the backups directory"))?;
        let entries = std::fs::read_dir(&dir).map_err(BackupError::io("read the backups"))?;
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                if let Err(e) = std::fs::remove_file(entry.path()) {
                    tracing::warn!(path = %entry.path().display(), error = %e,
                        "cannot remove a half-written backup file");
                }
            }
        }
        Ok(Self { dir })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn index_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// The archive of backup `id` ([`BackupError::NotFound`] if there is none).
    pub fn archive_path(&self, id: &str) -> Result<PathBuf> {
        let id = checked_id(id)?;
        let path = self.dir.join(format!("{id}.{EXTENSION}"));
        if path.is_file() && self.index_path(id).is_file() {
            Ok(path)
        } else {
            Err(BackupError::NotFound(id.to_owned()))
        }
    }

    /// A new temporary file in the directory, for an archive being written or uploaded;
    /// removed when dropped unless [`BackupStore::commit`]ted.
    pub fn temp_file(&self) -> Result<tempfile::NamedTempFile> {
        tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .tempfile_in(&self.dir)
            .map_err(BackupError::io("create a file in the backups directory"))
    }

    /// Moves the written (and fsynced) archive `temp`, whose manifest is `manifest`, into
    /// the list under the manifest's id. [`BackupError::Exists`] when that id is listed.
    pub fn commit(
        &self,
        temp: tempfile::NamedTempFile,
        manifest: &Manifest,
        uploaded: bool,
    ) -> Result<BackupInfo> {
        let id = checked_id(&manifest.id)
            .map_err(|_| BackupError::Corrupt(format!("{:?} is not a backup id", manifest.id)))?
            .to_owned();
        temp.as_file()
            .sync_all()
            .map_err(BackupError::io("write the backup"))?;
        let size = temp
            .as_file()
            .metadata()
            .map_err(BackupError::io("write the backup"))?
            .len();
        let info = BackupInfo {
            id: id.clone(),
            app_version: manifest.app_version.clone(),
            created_at: manifest.created_at,
            kind: manifest.kind,
            backend: manifest.backend.clone(),
            size,
            schema: manifest.schema.clone(),
            counts: manifest.counts.clone(),
            uploaded,
        };
        let archive = self.dir.join(format!("{id}.{EXTENSION}"));
        temp.persist_noclobber(&archive).map_err(|e| {
            if e.error.kind() == std::io::ErrorKind::AlreadyExists {
                BackupError::Exists(id.clone())
            } else {
                BackupError::io("store the backup")(e.error)
            }
        })?;
        // The index entry makes the backup part of the list: written last, atomically.
        let written = (|| {
            let mut index = self.temp_file()?;
            serde_json::to_writer_pretty(&mut index, &info)
                .map_err(|e| BackupError::io("write the backup index")(e.into()))?;
            index
                .as_file_mut()
                .flush()
                .and_then(|()| index.as_file().sync_all())
                .map_err(BackupError::io("write the backup index"))?;
            index
                .persist(self.index_path(&id))
                .map_err(|e| BackupError::io("write the backup index")(e.error))?;
            sync_dir(&self.dir)
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&archive);
            return Err(e);
        }
        Ok(info)
    }

    /// Every backup, newest first. An index entry whose archive is gone, or that cannot be
    /// read, is skipped with a warning.
    pub fn list(&self) -> Result<Vec<BackupInfo>> {
        let mut out = Vec::new();
        let entries = std::fs::read_dir(&self.dir).map_err(BackupError::io("read the backups"))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(id) = name.strip_suffix(".json") else {
                continue;
            };
            if name.starts_with(TEMP_PREFIX) || checked_id(id).is_err() {
                continue;
            }
            match self.get(id) {
                Ok(info) => out.push(info),
                Err(e) => tracing::warn!(backup = id, error = %e, "skipping a backup"),
            }
        }
        out.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        Ok(out)
    }

    /// The backup `id`.
    pub fn get(&self, id: &str) -> Result<BackupInfo> {
        self.archive_path(id)?;
        let text = std::fs::read(self.index_path(id)).map_err(BackupError::io("read a backup"))?;
        serde_json::from_slice(&text)
            .map_err(|e| BackupError::Corrupt(format!("the index entry of {id} is damaged ({e})")))
    }

    /// Deletes backup `id` (index entry first, so a crash never lists a missing archive).
    pub fn delete(&self, id: &str) -> Result<()> {
        let archive = self.archive_path(id)?;
        std::fs::remove_file(self.index_path(id)).map_err(BackupError::io("delete a backup"))?;
        std::fs::remove_file(&archive).map_err(BackupError::io("delete a backup"))?;
        sync_dir(&self.dir)
    }

    /// Retention: deletes the oldest backups of `kind` made here beyond the newest `keep`
    /// (uploaded ones are left alone); returns the ids deleted.
    pub fn prune(&self, kind: BackupKind, keep: usize) -> Result<Vec<String>> {
        let mut deleted = Vec::new();
        let of_kind: Vec<BackupInfo> = self
            .list()?
            .into_iter()
            .filter(|b| b.kind == kind && !b.uploaded)
            .collect();
        for old in of_kind.into_iter().skip(keep) {
            self.delete(&old.id)?;
            deleted.push(old.id);
        }
        Ok(deleted)
    }
}

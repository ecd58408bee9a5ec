//! Backups: one archive per backup (tar + gzip) holding the data exported through the
//! transfer registry, the blobs, the running executable and a manifest with the SHA-256 of
//! every file; a [`BackupStore`] of such archives in a directory, with retention; and
//! [`Backups`], the service that creates them as jobs, verifies them, and restores them into
//! a store of either backend.
//!
//! # Archive layout (format version 1)
//!
//! ```text
//! records/000001.jsonl …    the records, one {"kind","record"} per line, ≤ 4 MiB a file,
//!                            in the registry's import order (blob records excluded)
//! blob-index/000001.jsonl …  the metadata (key, content type, size, sha256, created_at)
//!                            of the blobs whose bytes follow it
//! blobs/<key> …              each blob's bytes
//! bin/<executable name>      the executable that made the backup (optional)
//! manifest.json              last: format, versions, schema, kind, backend, counts, and
//!                            size + SHA-256 of every file above
//! ```
//!
//! The manifest comes last because it is written once every file is hashed: a backup is
//! written in one pass, with at most one chunk or one blob in memory. The at-rest
//! encryption key is never in an archive: credentials stay encrypted as stored, so a
//! restore needs the same key (see `docs/backups.md`).

mod archive;
pub mod schedule;
mod service;
mod store;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use archive::{
    extract_executable, read_manifest_summary, verify, write_backup, Progress, WriteOptions,
};
pub use service::{
    drop_restore_at_start, restore_at_start, BackgroundWorkers, BackupJob, Backups, BackupsConfig,
    JobStatus, PendingRestore, RestoreOutcome, RestoreSummary,
};
pub use store::{BackupInfo, BackupStore};

/// The `format` every imix backup manifest carries.
pub const FORMAT: &str = "imix-backup";
/// The archive format version this code writes; it reads this one and older.
pub const FORMAT_VERSION: u32 = 1;
/// The archive file name extension.
pub const EXTENSION: &str = "tar.gz";

/// Why a backup was made. Retention keeps the last N of each kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackupKind {
    /// "Create Backup" by an administrator (API or CLI).
    Manual,
    /// Taken automatically before an update is installed.
    PreUpdate,
    /// Taken by the daily schedule.
    Scheduled,
    /// Taken automatically before a restore replaces the data.
    PreRestore,
}

impl BackupKind {
    /// `manual`, `pre-update`, `scheduled` or `pre-restore`.
    pub fn as_str(&self) -> &'static str {
        match self {
            BackupKind::Manual => "manual",
            BackupKind::PreUpdate => "pre-update",
            BackupKind::Scheduled => "scheduled",
            BackupKind::PreRestore => "pre-restore",
        }
    }
}

/// Size and SHA-256 of one file of an archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    /// Bytes.
    pub size: u64,
    /// Hex SHA-256.
    pub sha256: String,
}

/// What an archive holds: `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`FORMAT`]: anything else is not an imix backup.
    pub format: String,
    /// The archive format version ([`FORMAT_VERSION`] when written by this code).
    pub format_version: u32,
    /// The backup's id (a UUIDv7: sorts by creation time).
    pub id: String,
    /// The version of imix that wrote it.
    pub app_version: String,
    /// The schema version of the store it was taken from: every migration step applied, as
    /// `capability/name`, sorted.
    pub schema: Vec<String>,
    /// When it was made.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// Why it was made.
    pub kind: BackupKind,
    /// The store it was taken from: `sqlite` or `mongodb`.
    pub backend: String,
    /// Records per kind (`tenant`, `user`, …; `blob` counts the blobs).
    pub counts: BTreeMap<String, u64>,
    /// Every file of the archive but the manifest, by path.
    pub files: BTreeMap<String, FileDigest>,
    /// The path of the executable in the archive, when it holds one.
    pub executable: Option<String>,
    /// The target triple the executable was built for (`x86_64-unknown-linux-gnu`, …);
    /// absent in archives written before it was recorded (a restore then finds out by
    /// running the executable once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

impl Manifest {
    /// How many records in all (blobs included).
    pub fn total_records(&self) -> u64 {
        self.counts.values().sum()
    }
}

/// What went wrong with a backup or restore.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The store failed (or refused a record).
    #[error(transparent)]
    Store(#[from] imix_core::Error),
    /// Not an imix backup at all (not a gzip'd tar, or no imix manifest).
    #[error("the file is not an imix backup: {0}")]
    Foreign(String),
    /// An imix backup whose contents do not match its manifest (or cannot be read).
    #[error("the backup is damaged: {0}")]
    Corrupt(String),
    /// A backup this version cannot restore (newer format or schema).
    #[error("the backup cannot be restored by this version: {0}")]
    Unsupported(String),
    /// No backup with this id.
    #[error("backup {0} not found")]
    NotFound(String),
    /// A backup with this id is already in the list.
    #[error("backup {0} is already in the list")]
    Exists(String),
    /// Another backup, upload or restore is running.
    #[error("another backup or restore is running; try again when it has finished")]
    Busy,
    /// Reading or writing a file failed.
    #[error("{action}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The cause.
        source: std::io::Error,
    },
}

impl BackupError {
    /// Wraps an I/O error with what was being done.
    pub(crate) fn io(action: &'static str) -> impl FnOnce(std::io::Error) -> BackupError {
        move |source| BackupError::Io { action, source }
    }
}

/// The result type of this module.
pub type Result<T, E = BackupError> = std::result::Result<T, E>;

//! The embedded adapter: SQLite (rusqlite, bundled) in WAL mode with `synchronous=FULL`,
//! so an acknowledged write survives a crash of the process or the machine. Reads run on a
//! small pool of read connections beside the one writer, which commits concurrently
//! submitted writes together ([`engine`]). Blobs are files under `<data dir>/blobs`,
//! written to a temporary file, fsynced and renamed into place, outside any database lock,
//! before their metadata row is committed.
//!
//! Records are stored as JSON documents beside the columns that are queried or constrained
//! (id, version, tenant), so adding a field to a record needs no migration. Capabilities
//! keep their own tables in the same database through the [`Backend`](super::Backend)
//! handle and [`support`].
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> imix_core::Result<()> {
//! use imix_core::model::{SettingsDoc, SettingsScope};
//! let dir = tempfile::tempdir().unwrap();
//! let store = imix_core::store::sqlite::open(dir.path()).await?;
//! store.admin.migrate().await?;
//! let doc = SettingsDoc::new(SettingsScope::Platform, "smtp", serde_json::json!({"host": "mx"}));
//! store.settings.insert(&doc).await?;
//! let read = store.settings.get(SettingsScope::Platform, "smtp").await?;
//! assert_eq!(read.map(|d| d.value), Some(serde_json::json!({"host": "mx"})));
//! # Ok(()) }
//! ```

use std::{
    io::Write,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use bytes::Bytes;
use rusqlite::{params, Connection, OptionalExtension};

pub use engine::SqliteDb;
#[allow(clippy::wildcard_imports)]
use support::*;
pub use support::{Migration, UniqueKey};

use super::{
    check_blob, sha256_hex, validate_blob_key, Blob, BlobMeta, BlobStore, Page, PageRequest, Scope,
    SettingsRepository, Store, StoreAdmin,
};
use crate::{
    model::{SettingsDoc, SettingsScope},
    Error, Result,
};

mod audit;
mod blobs;
mod counters;
pub mod engine;
mod settings;
pub mod support;

/// The database file's name inside the data directory.
pub const DATABASE_FILE: &str = "imix.sqlite3";

/// The shared primitives' tables (settings, blobs, audit log, counters), as capability
/// `core`.
const CORE_MIGRATIONS: &[Migration] = &[
    Migration {
        name: "0001_settings_blobs",
        sql: "CREATE TABLE IF NOT EXISTS settings (
            scope TEXT NOT NULL,
            key TEXT NOT NULL,
            version INTEGER NOT NULL,
            doc TEXT NOT NULL,
            PRIMARY KEY (scope, key)
         );
         CREATE TABLE IF NOT EXISTS blobs (
            key TEXT PRIMARY KEY,
            content_type TEXT NOT NULL,
            size INTEGER NOT NULL,
            sha256 TEXT NOT NULL,
            created_at TEXT NOT NULL
         );",
        unique: &[
            UniqueKey {
                table: "settings",
                columns: &["scope", "key"],
                field: "key",
            },
            UniqueKey {
                table: "blobs",
                columns: &["key"],
                field: "key",
            },
        ],
    },
    Migration {
        name: "0002_audit_log",
        sql: "CREATE TABLE IF NOT EXISTS audit_log (
            id TEXT PRIMARY KEY,
            tenant_id TEXT,
            doc TEXT NOT NULL
         );
         CREATE INDEX IF NOT EXISTS audit_log_by_tenant ON audit_log (tenant_id, id);",
        unique: &[],
    },
    Migration {
        name: "0003_counters",
        sql: "CREATE TABLE IF NOT EXISTS counters (
            key TEXT PRIMARY KEY,
            value INTEGER NOT NULL,
            expires_at TEXT
         );
         CREATE INDEX IF NOT EXISTS counters_by_expiry ON counters (expires_at)
            WHERE expires_at IS NOT NULL;",
        unique: &[],
    },
];

/// The unique constraints of the core tables.
const CORE_UNIQUE: &[UniqueKey] = CORE_MIGRATIONS[0].unique;

/// The SQLite adapter. Implements every storage port.
pub struct SqliteStore {
    db: SqliteDb,
    blob_dir: PathBuf,
}

/// Opens (creating if needed) the store in `data_dir`: `imix.sqlite3` and `blobs/`.
/// Call [`StoreAdmin::migrate`] before use.
pub async fn open(data_dir: &Path) -> Result<Store> {
    let adapter = SqliteStore::open(data_dir).await?;
    let backend = super::Backend::Sqlite(adapter.db.clone());
    Ok(Store::from_adapter(Arc::new(adapter), backend))
}

impl SqliteStore {
    /// Opens the adapter itself, for callers that want the concrete type.
    pub async fn open(data_dir: &Path) -> Result<Self> {
        let data_dir = data_dir.to_path_buf();
        tokio::task::spawn_blocking(move || {
            let blob_dir = data_dir.join("blobs");
            super::private_files::create_dir_all(&blob_dir)
                .map_err(|e| Error::backend("create the data directory", e))?;
            super::private_files::prepare_sqlite(&data_dir.join(DATABASE_FILE))
                .map_err(|e| Error::backend("create the SQLite database file", e))?;
            let db =
                SqliteDb::open_blocking(&data_dir.join(DATABASE_FILE), engine::DEFAULT_READERS)?;
            Ok(Self { db, blob_dir })
        })
        .await
        .map_err(|e| Error::backend("open the SQLite database", e))?
    }

    /// Runs the read `f` on a read connection (see [`engine::SqliteDb::read`]).
    async fn read<T, F>(&self, action: &'static str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.db.read(action, f).await
    }

    /// Runs the write `f` in the writer's next batch (see [`engine::SqliteDb::write`]).
    async fn write<T, F>(&self, action: &'static str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.db.write(action, f).await
    }

    /// The engine beneath this adapter.
    pub fn database(&self) -> &SqliteDb {
        &self.db
    }

    /// Where the bytes of `key` with content `sha256` live. Each content of a key gets a
    /// file of its own, so a replacement never overwrites the file a committed row points
    /// to; hashing the key keeps any key a safe, flat file name.
    fn blob_path(blob_dir: &Path, key: &str, sha256: &str) -> PathBuf {
        blob_dir.join(format!("{}-{sha256}", sha256_hex(key.as_bytes())))
    }

    /// Where blobs written before content-named files lived (one file per key).
    fn legacy_blob_path(blob_dir: &Path, key: &str) -> PathBuf {
        blob_dir.join(sha256_hex(key.as_bytes()))
    }
}

#[async_trait]
impl StoreAdmin for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn migrate(&self) -> Result<u32> {
        let applied = self.db.migrate("core", CORE_MIGRATIONS).await?;
        Ok(u32::try_from(applied).unwrap_or(u32::MAX))
    }

    async fn ping(&self) -> Result<Duration> {
        let started = Instant::now();
        self.read("ping the database", |c| {
            c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))
                .map_err(db_err("ping the database"))
        })
        .await?;
        Ok(started.elapsed())
    }

    async fn is_empty(&self) -> Result<bool> {
        self.read("check whether the store is empty", |c| {
            c.query_row(
                "SELECT NOT EXISTS(SELECT 1 FROM settings) AND NOT EXISTS(SELECT 1 FROM blobs)
                    AND NOT EXISTS(SELECT 1 FROM audit_log)",
                [],
                |r| r.get(0),
            )
            .map_err(db_err("check whether the store is empty"))
        })
        .await
    }
}

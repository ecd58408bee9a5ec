//! The embedded adapter: SQLite (rusqlite, bundled) in WAL mode with `synchronous=FULL`,
//! so an acknowledged write survives a crash of the process or the machine. Reads run on a
//! small pool of read connections beside the one writer, which commits concurrently
//! submitted writes together ([`engine`]). Blobs are files under `<data dir>/blobs`,
//! written to a temporary file, fsynced and renamed into place, outside any database lock,
//! before their metadata row is committed.
//!
//! Entities are stored as JSON documents beside the columns that are queried or constrained
//! (id, version, tenant, normalized email), so adding a field to an entity needs no
//! migration.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> imix_core::Result<()> {
//! let dir = tempfile::tempdir().unwrap();
//! let store = imix_core::store::sqlite::open(dir.path()).await?;
//! store.admin.migrate().await?;
//! let tenant = imix_core::model::Tenant::new("Acme");
//! store.tenants.insert(&tenant).await?;
//! assert_eq!(store.tenants.get(tenant.id).await?.name, "Acme");
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
use rusqlite::{params, Connection, ErrorCode, OptionalExtension};
use serde::{de::DeserializeOwned, Serialize};

pub use engine::SqliteDb;

use super::{
    check_blob, sha256_hex, validate_blob_key, Blob, BlobMeta, BlobStore, Page, PageRequest, Scope,
    SettingsRepository, Store, StoreAdmin, TenantRepository, UserRepository,
};
use crate::{
    id::{TenantId, UserId},
    model::{normalize_email, SettingsDoc, SettingsScope, Tenant, User},
    Error, Result,
};

mod audit;
mod auth_tokens;
mod blobs;
mod counters;
pub mod engine;
mod outbox;
mod settings;
mod templates;
mod tenants;
mod users;
mod whatsapp_accounts;

/// The database file's name inside the data directory.
pub const DATABASE_FILE: &str = "imix.sqlite3";

/// Versioned schema migrations, applied in order, each exactly once.
const MIGRATIONS: &[(u32, &str)] = &[
    (
        1,
        "CREATE TABLE tenants (
        id TEXT PRIMARY KEY,
        version INTEGER NOT NULL,
        doc TEXT NOT NULL
     );
     CREATE TABLE users (
        id TEXT PRIMARY KEY,
        tenant_id TEXT,
        email_lower TEXT NOT NULL UNIQUE,
        version INTEGER NOT NULL,
        doc TEXT NOT NULL
     );
     CREATE INDEX users_by_tenant ON users (tenant_id, id);
     CREATE TABLE settings (
        scope TEXT NOT NULL,
        key TEXT NOT NULL,
        version INTEGER NOT NULL,
        doc TEXT NOT NULL,
        PRIMARY KEY (scope, key)
     );
     CREATE TABLE blobs (
        key TEXT PRIMARY KEY,
        content_type TEXT NOT NULL,
        size INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        created_at TEXT NOT NULL
     );",
    ),
    (
        2,
        "CREATE TABLE audit_log (
        id TEXT PRIMARY KEY,
        tenant_id TEXT,
        doc TEXT NOT NULL
     );
     CREATE INDEX audit_log_by_tenant ON audit_log (tenant_id, id);
     CREATE TABLE auth_tokens (
        token_hash TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        tenant_id TEXT,
        purpose TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        used_at TEXT
     );
     CREATE INDEX auth_tokens_by_user ON auth_tokens (user_id, purpose);",
    ),
    (
        3,
        "CREATE TABLE mail_outbox (
        id TEXT PRIMARY KEY,
        tenant_id TEXT,
        due_ms INTEGER,
        version INTEGER NOT NULL,
        doc TEXT NOT NULL
     );
     CREATE INDEX mail_outbox_due ON mail_outbox (due_ms) WHERE due_ms IS NOT NULL;
     CREATE INDEX mail_outbox_by_tenant ON mail_outbox (tenant_id, id);",
    ),
    (
        4,
        "CREATE TABLE counters (
        key TEXT PRIMARY KEY,
        value INTEGER NOT NULL,
        expires_at TEXT
     );
     CREATE INDEX counters_by_expiry ON counters (expires_at) WHERE expires_at IS NOT NULL;",
    ),
    (
        5,
        "CREATE TABLE whatsapp_accounts (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        phone_number_id TEXT NOT NULL UNIQUE,
        version INTEGER NOT NULL,
        doc TEXT NOT NULL
     );
     CREATE INDEX whatsapp_accounts_by_tenant ON whatsapp_accounts (tenant_id, id);
     CREATE TABLE message_templates (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        account_id TEXT NOT NULL,
        name TEXT NOT NULL,
        language TEXT NOT NULL,
        status TEXT NOT NULL,
        version INTEGER NOT NULL,
        doc TEXT NOT NULL,
        UNIQUE (account_id, name, language)
     );
     CREATE INDEX message_templates_by_tenant ON message_templates (tenant_id, id);",
    ),
];

/// The SQLite adapter. Implements every storage port.
pub struct SqliteStore {
    db: SqliteDb,
    blob_dir: PathBuf,
}

/// Opens (creating if needed) the store in `data_dir`: `imix.sqlite3` and `blobs/`.
/// Call [`StoreAdmin::migrate`] before use.
pub async fn open(data_dir: &Path) -> Result<Store> {
    Ok(Store::from_adapter(Arc::new(
        SqliteStore::open(data_dir).await?,
    )))
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

/// Runs one statement through the connection's statement cache: the same few statements
/// run over and over, and preparing them is a large share of a small write's cost.
fn exec(c: &Connection, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<usize> {
    c.prepare_cached(sql)?.execute(params)
}

fn db_err(action: &'static str) -> impl Fn(rusqlite::Error) -> Error {
    move |e| Error::backend(action, e)
}

/// Maps a unique-constraint failure to [`Error::Duplicate`], naming the field by the column
/// SQLite reports.
fn unique_err(entity: &'static str, action: &'static str) -> impl Fn(rusqlite::Error) -> Error {
    move |e| match &e {
        rusqlite::Error::SqliteFailure(f, msg) if f.code == ErrorCode::ConstraintViolation => {
            let msg = msg.as_deref().unwrap_or_default();
            let field = if msg.contains("email_lower") {
                "email"
            } else if msg.contains("phone_number_id") {
                "phone_number_id"
            } else if msg.contains("message_templates.name") {
                "name"
            } else if msg.contains(".key") {
                "key"
            } else {
                "id"
            };
            Error::Duplicate { entity, field }
        }
        _ => Error::backend(action, e),
    }
}

fn to_json<T: Serialize>(value: &T, entity: &'static str) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::Corrupt {
        entity,
        source: e.into(),
    })
}

fn from_json<T: DeserializeOwned>(text: &str, entity: &'static str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| Error::Corrupt {
        entity,
        source: e.into(),
    })
}

fn scope_param(scope: Scope) -> Option<String> {
    match scope {
        Scope::Platform => None,
        Scope::Tenant(t) => Some(t.to_string()),
    }
}

/// After an optimistic update of a tenant-owned row changed nothing: tells a stale version
/// ([`Error::VersionConflict`]) from a row that is missing or outside `scope`
/// ([`Error::NotFound`]). `table` is one of this adapter's own table names.
fn missing_or_stale(
    c: &Connection,
    table: &'static str,
    entity: &'static str,
    id: String,
    scope: Option<String>,
    expected: i64,
) -> Error {
    let sql = format!(
        "SELECT EXISTS(SELECT 1 FROM {table} WHERE id = ?1 AND (?2 IS NULL OR tenant_id = ?2))"
    );
    match c.query_row(&sql, params![id, scope], |r| r.get::<_, bool>(0)) {
        Ok(true) => Error::VersionConflict {
            entity,
            id,
            expected: expected.max(0) as u64,
        },
        Ok(false) => Error::NotFound { entity, id },
        Err(e) => Error::backend("update a record", e),
    }
}

fn version_param(version: u64) -> Result<i64> {
    i64::try_from(version).map_err(|_| Error::invalid("version", "is out of range"))
}

#[async_trait]
impl StoreAdmin for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn migrate(&self) -> Result<u32> {
        self.write("migrate the schema", |c| {
            c.execute_batch(
                "CREATE TABLE IF NOT EXISTS schema_migrations (
                    version INTEGER PRIMARY KEY,
                    applied_at TEXT NOT NULL
                 )",
            )
            .map_err(db_err("migrate the schema"))?;
            // Each version is recorded on its own, so migrations that land out of order
            // (say 4 before 3) are still each applied exactly once.
            let applied: std::collections::HashSet<u32> = {
                let mut stmt = c
                    .prepare("SELECT version FROM schema_migrations")
                    .map_err(db_err("migrate the schema"))?;
                let rows = stmt
                    .query_map([], |r| r.get::<_, u32>(0))
                    .map_err(db_err("migrate the schema"))?;
                rows.collect::<rusqlite::Result<_>>()
                    .map_err(db_err("migrate the schema"))?
            };
            let mut pending: Vec<&(u32, &str)> = MIGRATIONS
                .iter()
                .filter(|(v, _)| !applied.contains(v))
                .collect();
            pending.sort_by_key(|(v, _)| *v);
            for (version, sql) in pending {
                c.execute_batch(sql).map_err(db_err("migrate the schema"))?;
                exec(
                    c,
                    "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
                    params![version, crate::now().to_rfc3339()],
                )
                .map_err(db_err("migrate the schema"))?;
            }
            let newest = MIGRATIONS.iter().map(|(v, _)| *v).max().unwrap_or(0);
            Ok(applied.into_iter().max().unwrap_or(0).max(newest))
        })
        .await
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
                "SELECT NOT EXISTS(SELECT 1 FROM tenants) AND NOT EXISTS(SELECT 1 FROM users)
                    AND NOT EXISTS(SELECT 1 FROM settings) AND NOT EXISTS(SELECT 1 FROM blobs)
                    AND NOT EXISTS(SELECT 1 FROM audit_log)
                    AND NOT EXISTS(SELECT 1 FROM whatsapp_accounts)
                    AND NOT EXISTS(SELECT 1 FROM message_templates)",
                [],
                |r| r.get(0),
            )
            .map_err(db_err("check whether the store is empty"))
        })
        .await
    }
}

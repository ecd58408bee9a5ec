//! The embedded adapter: SQLite (rusqlite, bundled) in WAL mode with `synchronous=FULL`,
//! so an acknowledged write survives a crash of the process or the machine; blobs are files
//! under `<data dir>/blobs`, written to a temporary file, fsynced and renamed into place
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
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_trait::async_trait;
use bytes::Bytes;
use rusqlite::{params, Connection, ErrorCode, OptionalExtension};
use serde::{de::DeserializeOwned, Serialize};

use super::{
    check_blob, sha256_hex, validate_blob_key, Blob, BlobMeta, BlobStore, Page, PageRequest, Scope,
    SettingsRepository, Store, StoreAdmin, TenantRepository, UserRepository,
};
use crate::{
    id::{TenantId, UserId},
    model::{normalize_email, SettingsDoc, SettingsScope, Tenant, User},
    Error, Result,
};

/// The database file's name inside the data directory.
pub const DATABASE_FILE: &str = "imix.sqlite3";

/// Versioned schema migrations, applied in order, each exactly once.
const MIGRATIONS: &[(u32, &str)] = &[(
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
)];

/// The SQLite adapter. Implements every storage port.
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
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
            std::fs::create_dir_all(&blob_dir)
                .map_err(|e| Error::backend("create the data directory", e))?;
            let conn = Connection::open(data_dir.join(DATABASE_FILE))
                .map_err(|e| Error::backend("open the SQLite database", e))?;
            conn.execute_batch(
                "PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = FULL;
                 PRAGMA foreign_keys = ON;
                 PRAGMA busy_timeout = 5000;",
            )
            .map_err(|e| Error::backend("configure the SQLite database", e))?;
            Ok(Self {
                conn: Arc::new(Mutex::new(conn)),
                blob_dir,
            })
        })
        .await
        .map_err(|e| Error::backend("open the SQLite database", e))?
    }

    /// Runs `f` with the connection on the blocking pool: SQLite calls block.
    async fn call<T, F>(&self, action: &'static str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| Error::backend(action, "the connection lock was poisoned"))?;
            f(&mut guard)
        })
        .await
        .map_err(|e| Error::backend(action, e))?
    }

    fn blob_path(blob_dir: &Path, key: &str) -> PathBuf {
        // Hashing the key keeps any key a safe, flat file name.
        blob_dir.join(sha256_hex(key.as_bytes()))
    }
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

fn version_param(version: u64) -> Result<i64> {
    i64::try_from(version).map_err(|_| Error::invalid("version", "is out of range"))
}

#[async_trait]
impl TenantRepository for SqliteStore {
    async fn insert(&self, tenant: &Tenant) -> Result<()> {
        let doc = to_json(tenant, "tenant")?;
        let (id, version) = (tenant.id.to_string(), version_param(tenant.version)?);
        self.call("insert a tenant", move |c| {
            c.execute(
                "INSERT INTO tenants (id, version, doc) VALUES (?1, ?2, ?3)",
                params![id, version, doc],
            )
            .map_err(unique_err("tenant", "insert a tenant"))?;
            Ok(())
        })
        .await
    }

    async fn get(&self, id: TenantId) -> Result<Tenant> {
        self.call("read a tenant", move |c| {
            let doc: Option<String> = c
                .query_row(
                    "SELECT doc FROM tenants WHERE id = ?1",
                    [id.to_string()],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err("read a tenant"))?;
            match doc {
                Some(doc) => from_json(&doc, "tenant"),
                None => Err(Error::NotFound {
                    entity: "tenant",
                    id: id.to_string(),
                }),
            }
        })
        .await
    }

    async fn update(&self, tenant: &Tenant) -> Result<Tenant> {
        let mut next = tenant.clone();
        next.version += 1;
        let doc = to_json(&next, "tenant")?;
        let (expected, new_version) =
            (version_param(tenant.version)?, version_param(next.version)?);
        let id = tenant.id.to_string();
        self.call("update a tenant", move |c| {
            let changed = c
                .execute(
                    "UPDATE tenants SET version = ?1, doc = ?2 WHERE id = ?3 AND version = ?4",
                    params![new_version, doc, id, expected],
                )
                .map_err(db_err("update a tenant"))?;
            if changed == 1 {
                return Ok(next);
            }
            let exists: bool = c
                .query_row(
                    "SELECT EXISTS(SELECT 1 FROM tenants WHERE id = ?1)",
                    [&id],
                    |r| r.get(0),
                )
                .map_err(db_err("update a tenant"))?;
            Err(if exists {
                Error::VersionConflict {
                    entity: "tenant",
                    id,
                    expected: expected as u64,
                }
            } else {
                Error::NotFound {
                    entity: "tenant",
                    id,
                }
            })
        })
        .await
    }

    async fn list(&self, scope: Scope, page: PageRequest) -> Result<Page<Tenant>> {
        let limit = page.effective_limit()?;
        let cursor = page.validated_cursor()?;
        let only = scope_param(scope);
        self.call("list tenants", move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT doc FROM tenants
                     WHERE (?1 IS NULL OR id > ?1) AND (?2 IS NULL OR id = ?2)
                     ORDER BY id LIMIT ?3",
                )
                .map_err(db_err("list tenants"))?;
            let rows = stmt
                .query_map(params![cursor, only, limit + 1], |r| r.get::<_, String>(0))
                .map_err(db_err("list tenants"))?;
            let mut items = Vec::new();
            for row in rows {
                items.push(from_json::<Tenant>(
                    &row.map_err(db_err("list tenants"))?,
                    "tenant",
                )?);
            }
            Ok(Page::from_overfetch(items, limit, |t| t.id.to_string()))
        })
        .await
    }
}

#[async_trait]
impl UserRepository for SqliteStore {
    async fn insert(&self, user: &User) -> Result<()> {
        let doc = to_json(user, "user")?;
        let id = user.id.to_string();
        let tenant = user.tenant_id.map(|t| t.to_string());
        let email = user.normalized_email();
        let version = version_param(user.version)?;
        self.call("insert a user", move |c| {
            c.execute(
                "INSERT INTO users (id, tenant_id, email_lower, version, doc)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, tenant, email, version, doc],
            )
            .map_err(unique_err("user", "insert a user"))?;
            Ok(())
        })
        .await
    }

    async fn get(&self, scope: Scope, id: UserId) -> Result<User> {
        let only = scope_param(scope);
        self.call("read a user", move |c| {
            let doc: Option<String> = c
                .query_row(
                    "SELECT doc FROM users WHERE id = ?1 AND (?2 IS NULL OR tenant_id = ?2)",
                    params![id.to_string(), only],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err("read a user"))?;
            match doc {
                Some(doc) => from_json(&doc, "user"),
                None => Err(Error::NotFound {
                    entity: "user",
                    id: id.to_string(),
                }),
            }
        })
        .await
    }

    async fn find_by_email(&self, email: &str) -> Result<Option<User>> {
        let email = normalize_email(email);
        self.call("find a user by email", move |c| {
            let doc: Option<String> = c
                .query_row(
                    "SELECT doc FROM users WHERE email_lower = ?1",
                    [email],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err("find a user by email"))?;
            doc.map(|d| from_json(&d, "user")).transpose()
        })
        .await
    }

    async fn update(&self, scope: Scope, user: &User) -> Result<User> {
        super::check_owner_stays_in_scope(scope, user.tenant_id)?;
        let mut next = user.clone();
        next.version += 1;
        let doc = to_json(&next, "user")?;
        let id = user.id.to_string();
        let tenant = user.tenant_id.map(|t| t.to_string());
        let email = user.normalized_email();
        let (expected, new_version) = (version_param(user.version)?, version_param(next.version)?);
        let only = scope_param(scope);
        self.call("update a user", move |c| {
            let changed = c
                .execute(
                    "UPDATE users SET version = ?1, doc = ?2, tenant_id = ?3, email_lower = ?4
                     WHERE id = ?5 AND version = ?6 AND (?7 IS NULL OR tenant_id = ?7)",
                    params![new_version, doc, tenant, email, id, expected, only],
                )
                .map_err(unique_err("user", "update a user"))?;
            if changed == 1 {
                return Ok(next);
            }
            let exists: bool = c
                .query_row(
                    "SELECT EXISTS(SELECT 1 FROM users WHERE id = ?1 AND (?2 IS NULL OR tenant_id = ?2))",
                    params![id, only],
                    |r| r.get(0),
                )
                .map_err(db_err("update a user"))?;
            Err(if exists {
                Error::VersionConflict {
                    entity: "user",
                    id,
                    expected: expected as u64,
                }
            } else {
                Error::NotFound { entity: "user", id }
            })
        })
        .await
    }

    async fn list(&self, scope: Scope, page: PageRequest) -> Result<Page<User>> {
        let limit = page.effective_limit()?;
        let cursor = page.validated_cursor()?;
        let only = scope_param(scope);
        self.call("list users", move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT doc FROM users
                     WHERE (?1 IS NULL OR id > ?1) AND (?2 IS NULL OR tenant_id = ?2)
                     ORDER BY id LIMIT ?3",
                )
                .map_err(db_err("list users"))?;
            let rows = stmt
                .query_map(params![cursor, only, limit + 1], |r| r.get::<_, String>(0))
                .map_err(db_err("list users"))?;
            let mut items = Vec::new();
            for row in rows {
                items.push(from_json::<User>(
                    &row.map_err(db_err("list users"))?,
                    "user",
                )?);
            }
            Ok(Page::from_overfetch(items, limit, |u| u.id.to_string()))
        })
        .await
    }
}

#[async_trait]
impl SettingsRepository for SqliteStore {
    async fn get(&self, scope: SettingsScope, key: &str) -> Result<Option<SettingsDoc>> {
        let key = key.to_owned();
        self.call("read settings", move |c| {
            let doc: Option<String> = c
                .query_row(
                    "SELECT doc FROM settings WHERE scope = ?1 AND key = ?2",
                    params![scope.to_string(), key],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err("read settings"))?;
            doc.map(|d| from_json(&d, "settings")).transpose()
        })
        .await
    }

    async fn insert(&self, doc: &SettingsDoc) -> Result<()> {
        let json = to_json(doc, "settings")?;
        let (scope, key, version) = (
            doc.scope.to_string(),
            doc.key.clone(),
            version_param(doc.version)?,
        );
        self.call("insert settings", move |c| {
            c.execute(
                "INSERT INTO settings (scope, key, version, doc) VALUES (?1, ?2, ?3, ?4)",
                params![scope, key, version, json],
            )
            .map_err(unique_err("settings", "insert settings"))?;
            Ok(())
        })
        .await
    }

    async fn update(&self, doc: &SettingsDoc) -> Result<SettingsDoc> {
        let mut next = doc.clone();
        next.version += 1;
        let json = to_json(&next, "settings")?;
        let (scope, key) = (doc.scope.to_string(), doc.key.clone());
        let (expected, new_version) = (version_param(doc.version)?, version_param(next.version)?);
        self.call("update settings", move |c| {
            let changed = c
                .execute(
                    "UPDATE settings SET version = ?1, doc = ?2
                     WHERE scope = ?3 AND key = ?4 AND version = ?5",
                    params![new_version, json, scope, key, expected],
                )
                .map_err(db_err("update settings"))?;
            if changed == 1 {
                return Ok(next);
            }
            let exists: bool = c
                .query_row(
                    "SELECT EXISTS(SELECT 1 FROM settings WHERE scope = ?1 AND key = ?2)",
                    params![scope, key],
                    |r| r.get(0),
                )
                .map_err(db_err("update settings"))?;
            let id = format!("{scope}/{key}");
            Err(if exists {
                Error::VersionConflict {
                    entity: "settings",
                    id,
                    expected: expected as u64,
                }
            } else {
                Error::NotFound {
                    entity: "settings",
                    id,
                }
            })
        })
        .await
    }

    async fn list_all(&self) -> Result<Vec<SettingsDoc>> {
        self.call("list settings", move |c| {
            let mut stmt = c
                .prepare_cached("SELECT doc FROM settings ORDER BY scope, key")
                .map_err(db_err("list settings"))?;
            let rows = stmt
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(db_err("list settings"))?;
            let mut docs = Vec::new();
            for row in rows {
                docs.push(from_json(
                    &row.map_err(db_err("list settings"))?,
                    "settings",
                )?);
            }
            Ok(docs)
        })
        .await
    }
}

fn write_file_durably(dir: &Path, path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(data)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    // The rename is durable only once the directory entry is.
    std::fs::File::open(dir)?.sync_all()
}

fn meta_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, String, i64, String, String)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

fn meta_from_tuple(t: (String, String, i64, String, String)) -> Result<BlobMeta> {
    let created_at = chrono::DateTime::parse_from_rfc3339(&t.4)
        .map_err(|e| Error::Corrupt {
            entity: "blob",
            source: e.into(),
        })?
        .with_timezone(&chrono::Utc);
    Ok(BlobMeta {
        key: t.0,
        content_type: t.1,
        size: t.2.max(0) as u64,
        sha256: t.3,
        created_at,
    })
}

#[async_trait]
impl BlobStore for SqliteStore {
    async fn restore(&self, meta: &BlobMeta, data: Bytes) -> Result<()> {
        check_blob(meta, &data)?;
        let blob_dir = self.blob_dir.clone();
        let row = meta.clone();
        self.call("store a blob", move |c| {
            let path = Self::blob_path(&blob_dir, &row.key);
            write_file_durably(&blob_dir, &path, &data).map_err(|e| Error::backend("store a blob", e))?;
            c.execute(
                "INSERT INTO blobs (key, content_type, size, sha256, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (key) DO UPDATE SET content_type = excluded.content_type,
                    size = excluded.size, sha256 = excluded.sha256, created_at = excluded.created_at",
                params![row.key, row.content_type, row.size as i64, row.sha256, row.created_at.to_rfc3339()],
            )
            .map_err(db_err("store a blob"))?;
            Ok(())
        })
        .await
    }

    async fn get(&self, key: &str) -> Result<Blob> {
        validate_blob_key(key)?;
        let key = key.to_owned();
        let blob_dir = self.blob_dir.clone();
        self.call("read a blob", move |c| {
            let row = c
                .query_row(
                    "SELECT key, content_type, size, sha256, created_at FROM blobs WHERE key = ?1",
                    [&key],
                    meta_from_row,
                )
                .optional()
                .map_err(db_err("read a blob"))?
                .ok_or_else(|| Error::NotFound {
                    entity: "blob",
                    id: key.clone(),
                })?;
            let meta = meta_from_tuple(row)?;
            let data = std::fs::read(Self::blob_path(&blob_dir, &key))
                .map_err(|e| Error::backend("read a blob", e))?;
            if sha256_hex(&data) != meta.sha256 {
                return Err(Error::Corrupt {
                    entity: "blob",
                    source: format!("blob {key} does not match its recorded SHA-256").into(),
                });
            }
            Ok(Blob {
                meta,
                data: Bytes::from(data),
            })
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        validate_blob_key(key)?;
        let key = key.to_owned();
        let blob_dir = self.blob_dir.clone();
        self.call("delete a blob", move |c| {
            let deleted = c
                .execute("DELETE FROM blobs WHERE key = ?1", [&key])
                .map_err(db_err("delete a blob"))?;
            if deleted == 0 {
                return Err(Error::NotFound {
                    entity: "blob",
                    id: key,
                });
            }
            match std::fs::remove_file(Self::blob_path(&blob_dir, &key)) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(Error::backend("delete a blob", e)),
            }
        })
        .await
    }

    async fn list(&self, prefix: &str, after: Option<String>, limit: u32) -> Result<Vec<BlobMeta>> {
        let prefix = prefix.to_owned();
        self.call("list blobs", move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT key, content_type, size, sha256, created_at FROM blobs
                     WHERE substr(key, 1, length(?1)) = ?1 AND (?2 IS NULL OR key > ?2)
                     ORDER BY key LIMIT ?3",
                )
                .map_err(db_err("list blobs"))?;
            let rows = stmt
                .query_map(params![prefix, after, limit], meta_from_row)
                .map_err(db_err("list blobs"))?;
            let mut metas = Vec::new();
            for row in rows {
                metas.push(meta_from_tuple(row.map_err(db_err("list blobs"))?)?);
            }
            Ok(metas)
        })
        .await
    }
}

#[async_trait]
impl StoreAdmin for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn migrate(&self) -> Result<u32> {
        self.call("migrate the schema", |c| {
            let tx = c.transaction().map_err(db_err("migrate the schema"))?;
            tx.execute_batch(
                "CREATE TABLE IF NOT EXISTS schema_migrations (
                    version INTEGER PRIMARY KEY,
                    applied_at TEXT NOT NULL
                 )",
            )
            .map_err(db_err("migrate the schema"))?;
            let applied: u32 = tx
                .query_row(
                    "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                    [],
                    |r| r.get(0),
                )
                .map_err(db_err("migrate the schema"))?;
            for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > applied) {
                tx.execute_batch(sql)
                    .map_err(db_err("migrate the schema"))?;
                tx.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
                    params![version, crate::now().to_rfc3339()],
                )
                .map_err(db_err("migrate the schema"))?;
            }
            tx.commit().map_err(db_err("migrate the schema"))?;
            Ok(MIGRATIONS.last().map_or(0, |(v, _)| *v).max(applied))
        })
        .await
    }

    async fn ping(&self) -> Result<Duration> {
        let started = Instant::now();
        self.call("ping the database", |c| {
            c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))
                .map_err(db_err("ping the database"))
        })
        .await?;
        Ok(started.elapsed())
    }

    async fn is_empty(&self) -> Result<bool> {
        self.call("check whether the store is empty", |c| {
            c.query_row(
                "SELECT NOT EXISTS(SELECT 1 FROM tenants) AND NOT EXISTS(SELECT 1 FROM users)
                    AND NOT EXISTS(SELECT 1 FROM settings) AND NOT EXISTS(SELECT 1 FROM blobs)",
                [],
                |r| r.get(0),
            )
            .map_err(db_err("check whether the store is empty"))
        })
        .await
    }
}

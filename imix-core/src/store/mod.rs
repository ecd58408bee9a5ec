//! The shared storage every capability builds on.
//!
//! - The [`Backend`] handle: one embedded SQLite database ([`sqlite::SqliteDb`]) or one
//!   MongoDB database, opened once and shared. Each capability crate (`imix-tenancy`,
//!   `imix-whatsapp`, `imix-notify`) keeps its own records, ports and adapters, opens its
//!   repositories on the backend and applies its own named migrations to it
//!   ([`sqlite::Migration`], [`mongo::MongoMigration`]).
//! - The shared primitives' ports, used by every capability: [`SettingsRepository`]
//!   (keyed, versioned settings documents), [`BlobStore`] (files), [`AuditLogRepository`]
//!   and [`CounterRepository`] (usage counters), plus [`StoreAdmin`] (core migrations,
//!   ping). A [`Store`] bundles one implementation of each with the backend.
//! - [`Scope`] and paging ([`PageRequest`], [`Page`]): tenant isolation in the data layer.
//! - [`transfer`]: the registry every capability registers its records with, for export
//!   and import between any two backends.
//!
//! Adapters, each behind a cargo feature:
//! - `sqlite` (default): [`sqlite::open`] — one SQLite file in WAL mode, blobs as files
//!   beside it. Embedded, nothing to install.
//! - `mongodb`: [`mongo::open`] — a MongoDB database, blobs in GridFS. Works on a
//!   standalone `mongod`: only single-document atomic operations and unique indexes.
//!
//! Both pass the same conformance suite (`imix-core/tests/conformance.rs`); each capability
//! exports its own (its `testkit` feature).

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::{
    id::TenantId,
    model::{AuditEntry, SettingsDoc, SettingsScope},
    Error, Result, Timestamp,
};

#[cfg(feature = "mongodb")]
pub mod mongo;
pub mod private_files;
pub mod reset;
#[cfg(feature = "sqlite")]
pub mod sqlite;
pub mod transfer;

/// The largest page a list call returns.
pub const MAX_PAGE_SIZE: u32 = 500;
/// The page size when the caller does not say.
pub const DEFAULT_PAGE_SIZE: u32 = 50;

/// Which records a query may see.
///
/// Tenant isolation is enforced here, in the data layer: a repository given
/// `Scope::Tenant(a)` never returns, updates or reveals the existence of a record of
/// another tenant: such records are reported as [`Error::NotFound`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The platform operator's view: every tenant's records and platform records.
    Platform,
    /// One tenant's records only.
    Tenant(TenantId),
}

impl Scope {
    /// Whether a record owned by `owner` (`None` = a platform record) is visible.
    pub fn allows(&self, owner: Option<TenantId>) -> bool {
        match self {
            Scope::Platform => true,
            Scope::Tenant(t) => owner == Some(*t),
        }
    }
}

/// A request for one page of a list, ordered by id (creation time).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageRequest {
    /// Opaque cursor from a previous [`Page::next_cursor`]; `None` for the first page.
    pub cursor: Option<String>,
    /// How many items at most; `None` = [`DEFAULT_PAGE_SIZE`].
    pub limit: Option<u32>,
}

impl PageRequest {
    /// The first page of `limit` items.
    pub fn first(limit: u32) -> Self {
        Self {
            cursor: None,
            limit: Some(limit),
        }
    }

    /// The effective limit, validated: 1 to [`MAX_PAGE_SIZE`].
    pub fn effective_limit(&self) -> Result<u32> {
        match self.limit {
            None => Ok(DEFAULT_PAGE_SIZE),
            Some(n) if (1..=MAX_PAGE_SIZE).contains(&n) => Ok(n),
            Some(n) => Err(Error::invalid(
                "limit",
                format!("must be between 1 and {MAX_PAGE_SIZE}, got {n}"),
            )),
        }
    }

    /// The cursor, validated: it must be an id as the stores hand them out.
    pub fn validated_cursor(&self) -> Result<Option<String>> {
        match &self.cursor {
            None => Ok(None),
            Some(c) if uuid::Uuid::parse_str(c).is_ok() => Ok(Some(c.clone())),
            Some(_) => Err(Error::invalid("cursor", "is not a cursor this API issued")),
        }
    }
}

/// One page of results.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The items, oldest first.
    pub items: Vec<T>,
    /// Cursor for the next page; `None` when this is the last one.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from `limit + 1` fetched rows: the extra row only signals that more
    /// exist. `id_of` yields the cursor of the last returned item.
    pub fn from_overfetch(mut rows: Vec<T>, limit: u32, id_of: impl Fn(&T) -> String) -> Self {
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next_cursor = if more { rows.last().map(id_of) } else { None };
        Self {
            items: rows,
            next_cursor,
        }
    }
}

/// Keyed, versioned settings documents.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait SettingsRepository: Send + Sync {
    /// The document `key` of `scope`, if one was ever written.
    async fn get(&self, scope: SettingsScope, key: &str) -> Result<Option<SettingsDoc>>;
    /// Stores a new document as given; [`Error::Duplicate`] (field `key`) if the scope
    /// already has one under this key.
    async fn insert(&self, doc: &SettingsDoc) -> Result<()>;
    /// Replaces the document if its stored version equals `doc.version`; returns the
    /// stored document, whose version is one higher.
    async fn update(&self, doc: &SettingsDoc) -> Result<SettingsDoc>;
    /// Every settings document, for export, ordered by scope then key.
    async fn list_all(&self) -> Result<Vec<SettingsDoc>>;
}

/// The audit log. Append-only.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait AuditLogRepository: Send + Sync {
    /// Appends an entry.
    async fn append(&self, entry: &AuditEntry) -> Result<()>;
    /// Entries visible in `scope` (a tenant sees entries about itself), **newest first**.
    async fn list(&self, scope: Scope, page: PageRequest) -> Result<Page<AuditEntry>>;
}

/// Metadata of a stored blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobMeta {
    /// The key it is stored under.
    pub key: String,
    /// Its MIME type.
    pub content_type: String,
    /// Its size in bytes.
    pub size: u64,
    /// Hex SHA-256 of its bytes.
    pub sha256: String,
    /// When it was written.
    pub created_at: Timestamp,
}

/// A blob's metadata and bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    /// Metadata.
    pub meta: BlobMeta,
    /// The bytes.
    pub data: Bytes,
}

/// Files: logos, documents, media, backups. Keys are paths such as
/// `tenants/<id>/logo`: 1–512 characters of `A-Z a-z 0-9 / . _ -`, no `..` segment.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait BlobStore: Send + Sync {
    /// Stores `data` under `key`, replacing what was there.
    async fn put(&self, key: &str, content_type: &str, data: Bytes) -> Result<BlobMeta> {
        let meta = BlobMeta {
            key: key.to_owned(),
            content_type: content_type.to_owned(),
            size: data.len() as u64,
            sha256: sha256_hex(&data),
            created_at: crate::now(),
        };
        self.restore(&meta, data).await?;
        Ok(meta)
    }
    /// Stores `data` under `meta.key` with exactly this metadata (a restore keeps the
    /// original creation time). `meta.size` and `meta.sha256` must match `data`
    /// ([`Error::Invalid`] otherwise, and nothing is written).
    async fn restore(&self, meta: &BlobMeta, data: Bytes) -> Result<()>;
    /// The blob under `key`.
    async fn get(&self, key: &str) -> Result<Blob>;
    /// Deletes the blob under `key`; [`Error::NotFound`] if there was none.
    async fn delete(&self, key: &str) -> Result<()>;
    /// Blobs whose key starts with `prefix`, ordered by key; the cursor is the last key.
    async fn list(&self, prefix: &str, after: Option<String>, limit: u32) -> Result<Vec<BlobMeta>>;
    /// Stored bytes that no blob's metadata points to (a write that died between storing
    /// its bytes and committing its metadata), written before `written_before` — a margin
    /// that leaves writes in flight alone. Each is named as the backend stores it (a file
    /// name, a GridFS file id). Nothing reads or serves them; they only take space. The
    /// default finds none, for backends whose writes cannot leave any.
    async fn stray_files(&self, written_before: Timestamp) -> Result<Vec<String>> {
        let _ = written_before;
        Ok(Vec::new())
    }
}

/// What [`CounterRepository::try_add`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CounterOutcome {
    /// The units were added; `value` is the counter after the add.
    Added {
        /// The counter's value after the add.
        value: u64,
    },
    /// The add would have gone over the limit: nothing changed. `value` is the counter's
    /// current value.
    Rejected {
        /// The counter's current (unchanged) value.
        value: u64,
    },
}

impl CounterOutcome {
    /// Whether the units were added.
    pub fn is_added(&self) -> bool {
        matches!(self, CounterOutcome::Added { .. })
    }

    /// The counter's value after the call (changed or not).
    pub fn value(&self) -> u64 {
        match self {
            CounterOutcome::Added { value } | CounterOutcome::Rejected { value } => *value,
        }
    }
}

/// Named counters with an optional limit and expiry: the durable, replica-shared backing
/// of usage limits (daily message and media counters, counts of agents, templates,
/// contacts and contact groups).
///
/// Keys are free-form strings such as `tenant:<id>:messages:2026-11-26` or
/// `tenant:<id>:agents`; a key never written reads as 0. A counter whose `expires_at` has
/// passed (by the adapter's clock) counts as 0 and starts again from 0 on the next add.
/// Every operation is atomic on its own, also between server replicas sharing one
/// database: concurrent [`CounterRepository::try_add`] calls never take a counter over its
/// limit. Counters are operational state: not part of export/import.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait CounterRepository: Send + Sync {
    /// Adds `units` to the counter `key` if the result stays within `limit` (`None` =
    /// unlimited), setting the counter's expiry to `expires_at` (`None` = never);
    /// otherwise changes nothing and reports the current value.
    async fn try_add(
        &self,
        key: &str,
        units: u64,
        limit: Option<u64>,
        expires_at: Option<Timestamp>,
    ) -> Result<CounterOutcome>;
    /// Takes up to `units` off the counter `key`, never below 0; returns the new value.
    /// A missing or expired counter stays at 0.
    async fn subtract(&self, key: &str, units: u64) -> Result<u64>;
    /// The counter's value: 0 when it was never written or has expired.
    async fn get(&self, key: &str) -> Result<u64>;
    /// Sets the counter to `value` with expiry `expires_at`, whatever it was: for
    /// reconciling a count with the records it counts (say, after a restore).
    async fn set(&self, key: &str, value: u64, expires_at: Option<Timestamp>) -> Result<()>;
}

/// The backend as a whole.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait StoreAdmin: Send + Sync {
    /// `"sqlite"` or `"mongodb"`.
    fn backend(&self) -> &'static str;
    /// Creates or upgrades the shared primitives' schema (capability `core`: tables,
    /// collections, indexes); returns how many migrations were applied now (0 when the
    /// schema was current). Idempotent. Capabilities migrate their own records.
    async fn migrate(&self) -> Result<u32>;
    /// A round trip to the backend; returns how long it took.
    async fn ping(&self) -> Result<Duration>;
    /// Whether the shared primitives hold nothing: no settings document, blob or audit
    /// entry (counters are operational state). A capability's records are checked by
    /// [`transfer::Transfer::is_empty`].
    async fn is_empty(&self) -> Result<bool>;
}

/// Waits between attempts of an optimistic update that the client did not version (a
/// logo, a document, a patch without `If-Match`): such a write is retried on
/// [`Error::VersionConflict`] instead of failing, a bounded number of times, with a small,
/// randomly jittered and growing pause so that parallel writers spread out.
///
/// ```
/// # async fn demo() {
/// let mut backoff = imix_core::store::ConflictBackoff::new();
/// while backoff.next_attempt().await {
///     // read, change, write; `break` on success or on any error but a version conflict
/// #   break;
/// }
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ConflictBackoff {
    attempt: u32,
}

impl Default for ConflictBackoff {
    fn default() -> Self {
        Self::new()
    }
}

impl ConflictBackoff {
    /// How many attempts a write gets before the conflict is reported.
    pub const MAX_ATTEMPTS: u32 = 30;
    /// The longest pause between two attempts.
    pub const MAX_PAUSE: Duration = Duration::from_millis(50);

    /// A fresh backoff: the first [`ConflictBackoff::next_attempt`] does not wait.
    pub fn new() -> Self {
        Self { attempt: 0 }
    }

    /// Whether another attempt may be made; waits before every attempt but the first
    /// (uniformly random up to 1 ms, doubling to at most [`ConflictBackoff::MAX_PAUSE`]).
    pub async fn next_attempt(&mut self) -> bool {
        use rand::Rng;
        if self.attempt >= Self::MAX_ATTEMPTS {
            return false;
        }
        if self.attempt > 0 {
            let ceiling_us =
                (1_000u64 << (self.attempt - 1).min(10)).min(Self::MAX_PAUSE.as_micros() as u64);
            let pause = rand::thread_rng().gen_range(ceiling_us / 4..=ceiling_us);
            tokio::time::sleep(Duration::from_micros(pause)).await;
        }
        self.attempt += 1;
        true
    }

    /// How many attempts were started.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

/// Validates a blob key (see [`BlobStore`]).
pub fn validate_blob_key(key: &str) -> Result<()> {
    let ok_chars = key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-'));
    if key.is_empty() || key.len() > 512 || !ok_chars {
        return Err(Error::invalid(
            "key",
            "must be 1-512 characters of A-Z a-z 0-9 / . _ -",
        ));
    }
    if key
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err(Error::invalid(
            "key",
            "must not contain empty, `.` or `..` segments",
        ));
    }
    Ok(())
}

/// The database a store was opened on, opened once and shared: every capability opens its
/// own repositories on it and applies its own migrations to it (see `docs/architecture.md`).
/// Cheap to clone.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Backend {
    /// The embedded SQLite database.
    #[cfg(feature = "sqlite")]
    Sqlite(sqlite::SqliteDb),
    /// A MongoDB database.
    #[cfg(feature = "mongodb")]
    Mongo(mongodb::Database),
    /// Ports implemented by other means: an integrator's own adapters, or mocks. A
    /// capability asked to open its repositories on it refuses with [`Error::Invalid`].
    Custom,
}

impl Backend {
    /// `"sqlite"`, `"mongodb"` or `"custom"`.
    pub fn name(&self) -> &'static str {
        match self {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(_) => "sqlite",
            #[cfg(feature = "mongodb")]
            Backend::Mongo(_) => "mongodb",
            Backend::Custom => "custom",
        }
    }

    /// The error for a capability that has no adapter for this backend (its cargo feature
    /// is off, or the backend is [`Backend::Custom`]).
    pub fn unsupported(&self, capability: &'static str) -> Error {
        Error::invalid(
            "backend",
            format!(
                "{capability} has no adapter for the {} backend (enable its cargo feature)",
                self.name()
            ),
        )
    }
}

/// One of each shared port, backed by one backend, and the backend itself for capabilities
/// to open theirs on. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    /// The database every capability's adapters share.
    pub backend: Backend,
    /// Settings documents.
    pub settings: Arc<dyn SettingsRepository>,
    /// Files.
    pub blobs: Arc<dyn BlobStore>,
    /// The audit log.
    pub audit: Arc<dyn AuditLogRepository>,
    /// Usage counters (quotas and count limits).
    pub counters: Arc<dyn CounterRepository>,
    /// Schema, ping, emptiness.
    pub admin: Arc<dyn StoreAdmin>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.admin.backend())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Bundles one adapter that implements every port, opened on `backend`.
    pub fn from_adapter<A>(adapter: Arc<A>, backend: Backend) -> Self
    where
        A: SettingsRepository
            + BlobStore
            + AuditLogRepository
            + CounterRepository
            + StoreAdmin
            + 'static,
    {
        Self {
            backend,
            settings: adapter.clone(),
            blobs: adapter.clone(),
            audit: adapter.clone(),
            counters: adapter.clone(),
            admin: adapter,
        }
    }
}

/// Checks a blob's key, and that its metadata describes `data`.
#[cfg(any(feature = "sqlite", feature = "mongodb"))]
pub(crate) fn check_blob(meta: &BlobMeta, data: &[u8]) -> Result<()> {
    validate_blob_key(&meta.key)?;
    if meta.size != data.len() as u64 || meta.sha256 != sha256_hex(data) {
        return Err(Error::invalid(
            "data",
            format!(
                "blob {} does not match its recorded size and SHA-256",
                meta.key
            ),
        ));
    }
    Ok(())
}

/// Hex SHA-256 of `data`, as recorded in [`BlobMeta::sha256`].
pub(crate) fn sha256_hex(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(data))
}

/// A tenant-scoped write may not move a record out of its tenant: for adapters.
#[cfg(any(feature = "sqlite", feature = "mongodb"))]
pub fn check_owner_stays_in_scope(scope: Scope, owner: Option<TenantId>) -> Result<()> {
    if scope.allows(owner) {
        Ok(())
    } else {
        Err(Error::invalid(
            "tenant_id",
            "cannot be changed to another tenant from a tenant-scoped request",
        ))
    }
}

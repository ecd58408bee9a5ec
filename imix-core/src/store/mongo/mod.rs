//! The scale-out adapter: MongoDB through the official 3.x driver, blobs in GridFS.
//!
//! It needs nothing beyond a standalone `mongod`: no multi-document transactions. Every
//! write is a single-document atomic operation (conditional replace on `version` for
//! optimistic concurrency) and uniqueness comes from unique indexes (the normalized email
//! of users), so several server replicas can share one database safely.
//!
//! Documents are the entities' own serde shapes with `_id` set to the entity id.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::{AsyncReadExt, AsyncWriteExt, TryStreamExt};
use mongodb::{
    bson::{self, doc, Bson, Document},
    error::{ErrorKind, WriteFailure},
    gridfs::GridFsBucket,
    options::{ClientOptions, GridFsBucketOptions, IndexOptions},
    Client, Collection, Database, IndexModel,
};
use serde::{de::DeserializeOwned, Serialize};

use super::{
    check_blob, check_owner_stays_in_scope, sha256_hex, validate_blob_key, Blob, BlobMeta,
    BlobStore, Page, PageRequest, Scope, SettingsRepository, Store, StoreAdmin, TenantRepository,
    UserRepository,
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
mod outbox;
mod settings;
mod templates;
mod tenants;
mod users;
mod whatsapp_accounts;

const TENANTS: &str = "tenants";
const USERS: &str = "users";
const SETTINGS: &str = "settings";
const MIGRATIONS: &str = "_migrations";
const BLOB_BUCKET: &str = "blobs";
const BLOB_META: &str = "blob_meta";
const AUDIT_LOG: &str = "audit_log";
const AUTH_TOKENS: &str = "auth_tokens";
/// The schema version this adapter brings a database to.
const SCHEMA_VERSION: u32 = 5;

/// The MongoDB adapter. Implements every storage port.
#[derive(Clone)]
pub struct MongoStore {
    db: Database,
    bucket: GridFsBucket,
}

/// Connects to `uri` and uses database `db_name`. Fails fast (5 s server selection) with a
/// clear error when the URI is malformed or no server answers.
pub async fn open(uri: &str, db_name: &str) -> Result<Store> {
    Ok(Store::from_adapter(std::sync::Arc::new(
        MongoStore::open(uri, db_name).await?,
    )))
}

impl MongoStore {
    /// Opens the adapter itself, for callers that want the concrete type.
    pub async fn open(uri: &str, db_name: &str) -> Result<Self> {
        if db_name.is_empty() || db_name.contains(['/', '\\', '.', ' ', '"', '$']) {
            return Err(Error::invalid(
                "DB_NAME",
                "is not a valid MongoDB database name",
            ));
        }
        let mut options = ClientOptions::parse(uri)
            .await
            .map_err(|e| Error::invalid("MONGODB_URI", e.to_string()))?;
        options.server_selection_timeout = Some(Duration::from_secs(5));
        options.connect_timeout = Some(Duration::from_secs(5));
        options.app_name = Some("imix".to_owned());
        let client = Client::with_options(options)
            .map_err(|e| Error::invalid("MONGODB_URI", e.to_string()))?;
        let db = client.database(db_name);
        let bucket = db.gridfs_bucket(
            GridFsBucketOptions::builder()
                .bucket_name(BLOB_BUCKET.to_owned())
                .build(),
        );
        Ok(Self { db, bucket })
    }

    fn tenants(&self) -> Collection<Document> {
        self.db.collection(TENANTS)
    }

    fn users(&self) -> Collection<Document> {
        self.db.collection(USERS)
    }

    fn settings(&self) -> Collection<Document> {
        self.db.collection(SETTINGS)
    }
}

/// Index creation shorthand for migrations.
pub(crate) async fn create_index(
    coll: &Collection<Document>,
    keys: Document,
    name: &str,
    unique: bool,
) -> Result<()> {
    coll.create_index(
        IndexModel::builder()
            .keys(keys)
            .options(
                IndexOptions::builder()
                    .name(name.to_owned())
                    .unique(unique)
                    .build(),
            )
            .build(),
    )
    .await
    .map_err(backend_err("migrate the schema"))?;
    Ok(())
}

impl MongoStore {
    /// Applies one schema version. Version numbers are shared with the SQLite adapter's
    /// `MIGRATIONS` so both backends are at the same version for the same features.
    async fn apply_migration(&self, version: u32) -> Result<()> {
        match version {
            1 => {
                create_index(
                    &self.users(),
                    doc! { "email_lower": 1 },
                    "email_unique",
                    true,
                )
                .await?;
                create_index(
                    &self.users(),
                    doc! { "tenant_id": 1, "_id": 1 },
                    "by_tenant",
                    false,
                )
                .await?;
                create_index(
                    &self.settings(),
                    doc! { "scope": 1, "key": 1 },
                    "by_scope_key",
                    false,
                )
                .await
            }
            2 => {
                let audit = self.db.collection::<Document>(AUDIT_LOG);
                create_index(
                    &audit,
                    doc! { "tenant_id": 1, "_id": -1 },
                    "by_tenant",
                    false,
                )
                .await?;
                let tokens = self.db.collection::<Document>(AUTH_TOKENS);
                create_index(
                    &tokens,
                    doc! { "user_id": 1, "purpose": 1 },
                    "by_user",
                    false,
                )
                .await
            }
            3 => {
                let outbox = self.db.collection::<Document>(outbox::MAIL_OUTBOX);
                create_index(&outbox, doc! { "due_ms": 1, "_id": 1 }, "by_due", false).await?;
                create_index(
                    &outbox,
                    doc! { "tenant_id": 1, "_id": -1 },
                    "by_tenant",
                    false,
                )
                .await
            }
            4 => {
                // Counters expire logically (the adapter checks `expires_at`); the TTL
                // index only removes them eventually.
                self.db
                    .collection::<Document>(counters::COUNTERS)
                    .create_index(
                        IndexModel::builder()
                            .keys(doc! { "expires_at": 1 })
                            .options(
                                IndexOptions::builder()
                                    .name("expiry_ttl".to_owned())
                                    .expire_after(Duration::ZERO)
                                    .build(),
                            )
                            .build(),
                    )
                    .await
                    .map_err(backend_err("migrate the schema"))?;
                Ok(())
            }
            5 => {
                let accounts = self
                    .db
                    .collection::<Document>(whatsapp_accounts::WHATSAPP_ACCOUNTS);
                create_index(
                    &accounts,
                    doc! { "phone_number_id": 1 },
                    "phone_number_id_unique",
                    true,
                )
                .await?;
                create_index(
                    &accounts,
                    doc! { "tenant_id": 1, "_id": 1 },
                    "by_tenant",
                    false,
                )
                .await?;
                let templates = self.db.collection::<Document>(templates::MESSAGE_TEMPLATES);
                create_index(
                    &templates,
                    doc! { "account_id": 1, "name": 1, "language": 1 },
                    "account_name_language_unique",
                    true,
                )
                .await?;
                create_index(
                    &templates,
                    doc! { "tenant_id": 1, "_id": 1 },
                    "by_tenant",
                    false,
                )
                .await
            }
            _ => Ok(()),
        }
    }
}

fn backend_err(action: &'static str) -> impl Fn(mongodb::error::Error) -> Error {
    move |e| Error::backend(action, e)
}

fn is_duplicate_key(e: &mongodb::error::Error) -> bool {
    match e.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == 11000,
        ErrorKind::Command(c) => c.code == 11000,
        ErrorKind::InsertMany(m) => m
            .write_errors
            .as_ref()
            .is_some_and(|errs| errs.iter().any(|w| w.code == 11000)),
        _ => e.to_string().contains("E11000"),
    }
}

/// Maps a duplicate-key error to [`Error::Duplicate`], naming the field by the index.
fn unique_err(
    entity: &'static str,
    action: &'static str,
) -> impl Fn(mongodb::error::Error) -> Error {
    move |e| {
        if is_duplicate_key(&e) {
            let text = e.to_string();
            let field = if text.contains("email_lower") {
                "email"
            } else if text.contains("phone_number_id") {
                "phone_number_id"
            } else if text.contains("account_name_language") || text.contains("language") {
                "name"
            } else {
                "id"
            };
            Error::Duplicate { entity, field }
        } else {
            Error::backend(action, e)
        }
    }
}

fn to_doc<T: Serialize>(value: &T, id: &str, entity: &'static str) -> Result<Document> {
    let mut doc = bson::to_document(value).map_err(|e| Error::Corrupt {
        entity,
        source: e.into(),
    })?;
    doc.insert("_id", id);
    Ok(doc)
}

fn from_doc<T: DeserializeOwned>(mut doc: Document, entity: &'static str) -> Result<T> {
    doc.remove("_id");
    doc.remove("email_lower");
    bson::from_document(doc).map_err(|e| Error::Corrupt {
        entity,
        source: e.into(),
    })
}

fn version_bson(version: u64) -> Result<i64> {
    i64::try_from(version).map_err(|_| Error::invalid("version", "is out of range"))
}

fn scope_filter(filter: &mut Document, scope: Scope) {
    if let Scope::Tenant(t) = scope {
        filter.insert("tenant_id", t.to_string());
    }
}

fn page_filter(page: &PageRequest) -> Result<Document> {
    Ok(match page.validated_cursor()? {
        Some(cursor) => doc! { "_id": { "$gt": cursor } },
        None => Document::new(),
    })
}

impl MongoStore {
    async fn list_docs<T: DeserializeOwned>(
        &self,
        coll: Collection<Document>,
        mut filter: Document,
        page: PageRequest,
        entity: &'static str,
        id_of: impl Fn(&T) -> String,
    ) -> Result<Page<T>> {
        let limit = page.effective_limit()?;
        filter.extend(page_filter(&page)?);
        let docs: Vec<Document> = coll
            .find(filter)
            .sort(doc! { "_id": 1 })
            .limit(i64::from(limit) + 1)
            .await
            .map_err(backend_err("list records"))?
            .try_collect()
            .await
            .map_err(backend_err("list records"))?;
        let items = docs
            .into_iter()
            .map(|d| from_doc(d, entity))
            .collect::<Result<Vec<T>>>()?;
        Ok(Page::from_overfetch(items, limit, id_of))
    }

    /// Replaces the tenant-owned record `id` with `replacement` if it is visible in `scope`
    /// and its stored version is `expected`; otherwise tells a stale version from a missing
    /// (or out-of-scope) record. Unique-index violations become [`Error::Duplicate`].
    #[allow(clippy::too_many_arguments)]
    async fn replace_scoped(
        &self,
        coll: Collection<Document>,
        scope: Scope,
        id: String,
        expected: u64,
        replacement: Document,
        entity: &'static str,
        action: &'static str,
    ) -> Result<()> {
        let mut filter = doc! { "_id": &id, "version": version_bson(expected)? };
        scope_filter(&mut filter, scope);
        let result = coll
            .replace_one(filter, replacement)
            .await
            .map_err(unique_err(entity, action))?;
        if result.matched_count == 1 {
            return Ok(());
        }
        let mut scope_only = Document::new();
        scope_filter(&mut scope_only, scope);
        Err(self
            .missing_or_stale(coll, scope_only, entity, id, expected)
            .await)
    }

    /// After a conditional replace matched nothing: was the record missing or stale?
    async fn missing_or_stale(
        &self,
        coll: Collection<Document>,
        mut filter: Document,
        entity: &'static str,
        id: String,
        expected: u64,
    ) -> Error {
        filter.insert("_id", id.clone());
        match coll.count_documents(filter).await {
            Ok(0) => Error::NotFound { entity, id },
            Ok(_) => Error::VersionConflict {
                entity,
                id,
                expected,
            },
            Err(e) => Error::backend("update a record", e),
        }
    }
}

#[async_trait]
impl StoreAdmin for MongoStore {
    fn backend(&self) -> &'static str {
        "mongodb"
    }

    async fn migrate(&self) -> Result<u32> {
        let migrations: Collection<Document> = self.db.collection(MIGRATIONS);
        // Each version is recorded on its own, so migrations that land out of order are
        // still each applied exactly once.
        let applied: std::collections::HashSet<i64> = migrations
            .find(doc! {})
            .await
            .map_err(backend_err("migrate the schema"))?
            .try_collect::<Vec<Document>>()
            .await
            .map_err(backend_err("migrate the schema"))?
            .iter()
            .filter_map(|d| {
                d.get_i64("_id")
                    .ok()
                    .or_else(|| d.get_i32("_id").ok().map(i64::from))
            })
            .collect();
        for version in (1..=SCHEMA_VERSION).filter(|v| !applied.contains(&i64::from(*v))) {
            self.apply_migration(version).await?;
            // Two replicas migrating at once both get here; index creation is idempotent
            // and the second record insert is a no-op.
            if let Err(e) = migrations
                .insert_one(doc! { "_id": i64::from(version), "applied_at": bson::DateTime::now() })
                .await
            {
                if !is_duplicate_key(&e) {
                    return Err(Error::backend("migrate the schema", e));
                }
            }
        }
        let newest_applied = applied.into_iter().max().unwrap_or(0);
        Ok(SCHEMA_VERSION.max(u32::try_from(newest_applied).unwrap_or(u32::MAX)))
    }

    async fn ping(&self) -> Result<Duration> {
        let started = Instant::now();
        self.db
            .run_command(doc! { "ping": 1 })
            .await
            .map_err(backend_err("ping the database"))?;
        Ok(started.elapsed())
    }

    async fn is_empty(&self) -> Result<bool> {
        for name in [
            TENANTS,
            USERS,
            SETTINGS,
            BLOB_META,
            AUDIT_LOG,
            whatsapp_accounts::WHATSAPP_ACCOUNTS,
            templates::MESSAGE_TEMPLATES,
        ] {
            let found = self
                .db
                .collection::<Document>(name)
                .find_one(doc! {})
                .await
                .map_err(backend_err("check whether the store is empty"))?;
            if found.is_some() {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

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

const TENANTS: &str = "tenants";
const USERS: &str = "users";
const SETTINGS: &str = "settings";
const MIGRATIONS: &str = "_migrations";
const BLOB_BUCKET: &str = "blobs";
/// The schema version this adapter brings a database to.
const SCHEMA_VERSION: u32 = 1;

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
            let field = if e.to_string().contains("email_lower") {
                "email"
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
impl TenantRepository for MongoStore {
    async fn insert(&self, tenant: &Tenant) -> Result<()> {
        let doc = to_doc(tenant, &tenant.id.to_string(), "tenant")?;
        self.tenants()
            .insert_one(doc)
            .await
            .map_err(unique_err("tenant", "insert a tenant"))?;
        Ok(())
    }

    async fn get(&self, id: TenantId) -> Result<Tenant> {
        let found = self
            .tenants()
            .find_one(doc! { "_id": id.to_string() })
            .await
            .map_err(backend_err("read a tenant"))?;
        match found {
            Some(d) => from_doc(d, "tenant"),
            None => Err(Error::NotFound {
                entity: "tenant",
                id: id.to_string(),
            }),
        }
    }

    async fn update(&self, tenant: &Tenant) -> Result<Tenant> {
        let mut next = tenant.clone();
        next.version += 1;
        let id = tenant.id.to_string();
        let replacement = to_doc(&next, &id, "tenant")?;
        let result = self
            .tenants()
            .replace_one(
                doc! { "_id": &id, "version": version_bson(tenant.version)? },
                replacement,
            )
            .await
            .map_err(backend_err("update a tenant"))?;
        if result.matched_count == 1 {
            return Ok(next);
        }
        Err(self
            .missing_or_stale(
                self.tenants(),
                Document::new(),
                "tenant",
                id,
                tenant.version,
            )
            .await)
    }

    async fn list(&self, scope: Scope, page: PageRequest) -> Result<Page<Tenant>> {
        let mut filter = Document::new();
        if let Scope::Tenant(t) = scope {
            filter.insert("_id", doc! { "$eq": t.to_string() });
        }
        // Merge the cursor condition on `_id` with the scope condition on `_id`.
        let limit = page.effective_limit()?;
        if let Some(cursor) = page.validated_cursor()? {
            let id_cond = filter.get_document_mut("_id").ok();
            match id_cond {
                Some(cond) => {
                    cond.insert("$gt", cursor);
                }
                None => {
                    filter.insert("_id", doc! { "$gt": cursor });
                }
            }
        }
        let page = PageRequest {
            cursor: None,
            limit: Some(limit),
        };
        self.list_docs(self.tenants(), filter, page, "tenant", |t: &Tenant| {
            t.id.to_string()
        })
        .await
    }
}

#[async_trait]
impl UserRepository for MongoStore {
    async fn insert(&self, user: &User) -> Result<()> {
        let mut doc = to_doc(user, &user.id.to_string(), "user")?;
        doc.insert("email_lower", user.normalized_email());
        self.users()
            .insert_one(doc)
            .await
            .map_err(unique_err("user", "insert a user"))?;
        Ok(())
    }

    async fn get(&self, scope: Scope, id: UserId) -> Result<User> {
        let mut filter = doc! { "_id": id.to_string() };
        scope_filter(&mut filter, scope);
        let found = self
            .users()
            .find_one(filter)
            .await
            .map_err(backend_err("read a user"))?;
        match found {
            Some(d) => from_doc(d, "user"),
            None => Err(Error::NotFound {
                entity: "user",
                id: id.to_string(),
            }),
        }
    }

    async fn find_by_email(&self, email: &str) -> Result<Option<User>> {
        self.users()
            .find_one(doc! { "email_lower": normalize_email(email) })
            .await
            .map_err(backend_err("find a user by email"))?
            .map(|d| from_doc(d, "user"))
            .transpose()
    }

    async fn update(&self, scope: Scope, user: &User) -> Result<User> {
        check_owner_stays_in_scope(scope, user.tenant_id)?;
        let mut next = user.clone();
        next.version += 1;
        let id = user.id.to_string();
        let mut replacement = to_doc(&next, &id, "user")?;
        replacement.insert("email_lower", user.normalized_email());
        let mut filter = doc! { "_id": &id, "version": version_bson(user.version)? };
        scope_filter(&mut filter, scope);
        let result = self
            .users()
            .replace_one(filter, replacement)
            .await
            .map_err(unique_err("user", "update a user"))?;
        if result.matched_count == 1 {
            return Ok(next);
        }
        let mut scope_only = Document::new();
        scope_filter(&mut scope_only, scope);
        Err(self
            .missing_or_stale(self.users(), scope_only, "user", id, user.version)
            .await)
    }

    async fn list(&self, scope: Scope, page: PageRequest) -> Result<Page<User>> {
        let mut filter = Document::new();
        scope_filter(&mut filter, scope);
        self.list_docs(self.users(), filter, page, "user", |u: &User| {
            u.id.to_string()
        })
        .await
    }
}

fn settings_id(scope: SettingsScope, key: &str) -> String {
    format!("{scope}/{key}")
}

#[async_trait]
impl SettingsRepository for MongoStore {
    async fn get(&self, scope: SettingsScope, key: &str) -> Result<Option<SettingsDoc>> {
        self.settings()
            .find_one(doc! { "_id": settings_id(scope, key) })
            .await
            .map_err(backend_err("read settings"))?
            .map(|d| from_doc(d, "settings"))
            .transpose()
    }

    async fn insert(&self, doc: &SettingsDoc) -> Result<()> {
        let d = to_doc(doc, &settings_id(doc.scope, &doc.key), "settings")?;
        self.settings().insert_one(d).await.map_err(|e| {
            if is_duplicate_key(&e) {
                Error::Duplicate {
                    entity: "settings",
                    field: "key",
                }
            } else {
                Error::backend("insert settings", e)
            }
        })?;
        Ok(())
    }

    async fn update(&self, doc: &SettingsDoc) -> Result<SettingsDoc> {
        let mut next = doc.clone();
        next.version += 1;
        let id = settings_id(doc.scope, &doc.key);
        let replacement = to_doc(&next, &id, "settings")?;
        let result = self
            .settings()
            .replace_one(
                doc! { "_id": &id, "version": version_bson(doc.version)? },
                replacement,
            )
            .await
            .map_err(backend_err("update settings"))?;
        if result.matched_count == 1 {
            return Ok(next);
        }
        Err(self
            .missing_or_stale(
                self.settings(),
                Document::new(),
                "settings",
                id,
                doc.version,
            )
            .await)
    }

    async fn list_all(&self) -> Result<Vec<SettingsDoc>> {
        let docs: Vec<Document> = self
            .settings()
            .find(Document::new())
            .sort(doc! { "scope": 1, "key": 1 })
            .await
            .map_err(backend_err("list settings"))?
            .try_collect()
            .await
            .map_err(backend_err("list settings"))?;
        docs.into_iter().map(|d| from_doc(d, "settings")).collect()
    }
}

/// Blob metadata lives in its own collection, keyed by blob key, pointing at the GridFS
/// file that holds the bytes: listing is then an exact, ordered, paginated query, and a
/// replaced blob's old file is found and removed without scanning revisions.
const BLOB_META: &str = "blob_meta";

fn blob_meta_doc(meta: &BlobMeta, file_id: &Bson) -> Result<Document> {
    Ok(doc! {
        "_id": &meta.key,
        "file_id": file_id.clone(),
        "content_type": &meta.content_type,
        "size": i64::try_from(meta.size).map_err(|_| Error::invalid("data", "is too large"))?,
        "sha256": &meta.sha256,
        "created_at": meta.created_at.to_rfc3339(),
    })
}

fn meta_from_doc(d: &Document) -> Result<BlobMeta> {
    let corrupt = |what: &str| Error::Corrupt {
        entity: "blob",
        source: format!("blob metadata is missing {what}").into(),
    };
    let created_at = d.get_str("created_at").map_err(|_| corrupt("created_at"))?;
    Ok(BlobMeta {
        key: d.get_str("_id").map_err(|_| corrupt("its key"))?.to_owned(),
        content_type: d
            .get_str("content_type")
            .map_err(|_| corrupt("content_type"))?
            .to_owned(),
        size: d.get_i64("size").map_err(|_| corrupt("size"))?.max(0) as u64,
        sha256: d
            .get_str("sha256")
            .map_err(|_| corrupt("sha256"))?
            .to_owned(),
        created_at: chrono::DateTime::parse_from_rfc3339(created_at)
            .map_err(|_| corrupt("a valid created_at"))?
            .with_timezone(&chrono::Utc),
    })
}

impl MongoStore {
    fn blob_meta(&self) -> Collection<Document> {
        self.db.collection(BLOB_META)
    }
}

#[async_trait]
impl BlobStore for MongoStore {
    async fn restore(&self, meta: &BlobMeta, data: Bytes) -> Result<()> {
        check_blob(meta, &data)?;
        let key = meta.key.as_str();
        let mut upload = self
            .bucket
            .open_upload_stream(key)
            .await
            .map_err(backend_err("store a blob"))?;
        upload
            .write_all(&data)
            .await
            .map_err(|e| Error::backend("store a blob", e))?;
        upload
            .close()
            .await
            .map_err(|e| Error::backend("store a blob", e))?;
        let file_id = upload.id().clone();
        // The metadata swap is the commit point: readers see the old file or the new one.
        let previous = self
            .blob_meta()
            .find_one_and_replace(doc! { "_id": key }, blob_meta_doc(meta, &file_id)?)
            .upsert(true)
            .await
            .map_err(backend_err("store a blob"))?;
        if let Some(old_id) = previous.and_then(|d| d.get("file_id").cloned()) {
            if old_id != file_id {
                self.bucket
                    .delete(old_id)
                    .await
                    .map_err(backend_err("store a blob"))?;
            }
        }
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Blob> {
        validate_blob_key(key)?;
        let not_found = || Error::NotFound {
            entity: "blob",
            id: key.to_owned(),
        };
        let d = self
            .blob_meta()
            .find_one(doc! { "_id": key })
            .await
            .map_err(backend_err("read a blob"))?
            .ok_or_else(not_found)?;
        let meta = meta_from_doc(&d)?;
        let file_id = d.get("file_id").cloned().ok_or_else(not_found)?;
        let mut download = self
            .bucket
            .open_download_stream(file_id)
            .await
            .map_err(backend_err("read a blob"))?;
        let mut data = Vec::with_capacity(usize::try_from(meta.size).unwrap_or(0));
        download
            .read_to_end(&mut data)
            .await
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
    }

    async fn delete(&self, key: &str) -> Result<()> {
        validate_blob_key(key)?;
        let removed = self
            .blob_meta()
            .find_one_and_delete(doc! { "_id": key })
            .await
            .map_err(backend_err("delete a blob"))?
            .ok_or_else(|| Error::NotFound {
                entity: "blob",
                id: key.to_owned(),
            })?;
        if let Some(file_id) = removed.get("file_id").cloned() {
            self.bucket
                .delete(file_id)
                .await
                .map_err(backend_err("delete a blob"))?;
        }
        Ok(())
    }

    async fn list(&self, prefix: &str, after: Option<String>, limit: u32) -> Result<Vec<BlobMeta>> {
        let lower = match after {
            Some(after) if after.as_str() >= prefix => doc! { "$gt": after },
            _ => doc! { "$gte": prefix },
        };
        let docs: Vec<Document> = self
            .blob_meta()
            .find(doc! { "_id": lower })
            .sort(doc! { "_id": 1 })
            .limit(i64::from(limit))
            .await
            .map_err(backend_err("list blobs"))?
            .try_collect()
            .await
            .map_err(backend_err("list blobs"))?;
        docs.iter()
            .map(meta_from_doc)
            .take_while(|m| m.as_ref().map_or(true, |m| m.key.starts_with(prefix)))
            .collect()
    }
}

#[async_trait]
impl StoreAdmin for MongoStore {
    fn backend(&self) -> &'static str {
        "mongodb"
    }

    async fn migrate(&self) -> Result<u32> {
        let migrations: Collection<Document> = self.db.collection(MIGRATIONS);
        let applied = migrations
            .find_one(doc! {})
            .sort(doc! { "_id": -1 })
            .await
            .map_err(backend_err("migrate the schema"))?
            .and_then(|d| {
                d.get_i64("_id")
                    .ok()
                    .or_else(|| d.get_i32("_id").ok().map(i64::from))
            })
            .unwrap_or(0);
        if applied < 1 {
            self.users()
                .create_index(
                    IndexModel::builder()
                        .keys(doc! { "email_lower": 1 })
                        .options(
                            IndexOptions::builder()
                                .unique(true)
                                .name("email_unique".to_owned())
                                .build(),
                        )
                        .build(),
                )
                .await
                .map_err(backend_err("migrate the schema"))?;
            self.users()
                .create_index(
                    IndexModel::builder()
                        .keys(doc! { "tenant_id": 1, "_id": 1 })
                        .options(IndexOptions::builder().name("by_tenant".to_owned()).build())
                        .build(),
                )
                .await
                .map_err(backend_err("migrate the schema"))?;
            self.settings()
                .create_index(
                    IndexModel::builder()
                        .keys(doc! { "scope": 1, "key": 1 })
                        .build(),
                )
                .await
                .map_err(backend_err("migrate the schema"))?;
            // Two replicas migrating at once both get here; the second insert is a no-op.
            if let Err(e) = migrations
                .insert_one(doc! { "_id": 1_i64, "applied_at": bson::DateTime::now() })
                .await
            {
                if !is_duplicate_key(&e) {
                    return Err(Error::backend("migrate the schema", e));
                }
            }
        }
        Ok(SCHEMA_VERSION.max(u32::try_from(applied).unwrap_or(u32::MAX)))
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
        for name in [TENANTS, USERS, SETTINGS, BLOB_META] {
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

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
    gridfs::GridFsBucket,
    options::{ClientOptions, GridFsBucketOptions},
    Client, Collection, Database,
};
use serde::de::DeserializeOwned;

use support::{backend_err, is_duplicate_key, scope_filter, to_doc, version_bson};
pub use support::{IndexSpec, MongoMigration};

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
mod settings;
pub mod support;

const SETTINGS: &str = "settings";
const BLOB_BUCKET: &str = "blobs";
const BLOB_META: &str = "blob_meta";
const AUDIT_LOG: &str = "audit_log";

/// The MongoDB adapter. Implements every storage port.
#[derive(Clone)]
pub struct MongoStore {
    db: Database,
    bucket: GridFsBucket,
}

/// Connects to `uri` and uses database `db_name`. Fails fast (5 s server selection) with a
/// clear error when the URI is malformed or no server answers.
pub async fn open(uri: &str, db_name: &str) -> Result<Store> {
    let adapter = MongoStore::open(uri, db_name).await?;
    let backend = super::Backend::Mongo(adapter.db.clone());
    Ok(Store::from_adapter(std::sync::Arc::new(adapter), backend))
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

    fn settings(&self) -> Collection<Document> {
        self.db.collection(SETTINGS)
    }
}

/// Indexes of the shared primitives' collections, as capability `core`.
const CORE_MIGRATIONS: &[MongoMigration] = &[
    MongoMigration {
        name: "0001_settings",
        indexes: &[IndexSpec {
            collection: SETTINGS,
            name: "by_scope_key",
            keys: &[("scope", 1), ("key", 1)],
            unique_field: None,
            expire_at_field: false,
        }],
    },
    MongoMigration {
        name: "0002_audit_log",
        indexes: &[IndexSpec {
            collection: AUDIT_LOG,
            name: "by_tenant",
            keys: &[("tenant_id", 1), ("_id", -1)],
            unique_field: None,
            expire_at_field: false,
        }],
    },
    MongoMigration {
        name: "0003_counters",
        // Counters expire logically (the adapter checks `expires_at`); the TTL index only
        // removes them eventually.
        indexes: &[IndexSpec {
            collection: counters::COUNTERS,
            name: "expiry_ttl",
            keys: &[("expires_at", 1)],
            unique_field: None,
            expire_at_field: true,
        }],
    },
];

fn unique_err(
    entity: &'static str,
    action: &'static str,
) -> impl Fn(mongodb::error::Error) -> Error {
    support::unique_err(&[], entity, action)
}

fn from_doc<T: DeserializeOwned>(doc: Document, entity: &'static str) -> Result<T> {
    support::from_doc(doc, entity, &[])
}

impl MongoStore {
    async fn missing_or_stale(
        &self,
        coll: Collection<Document>,
        filter: Document,
        entity: &'static str,
        id: String,
        expected: u64,
    ) -> Error {
        support::missing_or_stale(coll, filter, entity, id, expected).await
    }
}

#[async_trait]
impl StoreAdmin for MongoStore {
    fn backend(&self) -> &'static str {
        "mongodb"
    }

    async fn migrate(&self) -> Result<u32> {
        let applied = support::migrate(&self.db, "core", CORE_MIGRATIONS).await?;
        Ok(u32::try_from(applied).unwrap_or(u32::MAX))
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
        for name in [SETTINGS, BLOB_META, AUDIT_LOG] {
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

//! Where the media ids of files we uploaded to Meta are cached
//! ([`crate::outbound::media_upload::UploadedMedia`], one per account and content hash): the
//! port, its SQLite and MongoDB adapters and their migrations (capability
//! [`super::CAPABILITY`], migration `0011_outbound_media`).
//!
//! The cache is operational state tied to blobs and to Meta's copy of them (which expires
//! after 30 days), neither of which backups carry: it is not exported. A restored server
//! uploads again on its first send of each file.

use std::sync::Arc;

use async_trait::async_trait;
use imix_core::{id::WhatsAppAccountId, store::Backend, Result};

use crate::outbound::media_upload::UploadedMedia;

#[cfg(feature = "mongodb")]
pub mod mongo;
#[cfg(feature = "sqlite")]
pub mod sqlite;

/// Uploaded media ids, keyed by the account and the file's SHA-256.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait UploadedMediaRepository: Send + Sync {
    /// The media id cached for `sha256` (hex) on `account`, expired or not.
    async fn get(&self, account: WhatsAppAccountId, sha256: &str) -> Result<Option<UploadedMedia>>;
    /// Stores `media`, replacing the entry of the same account and hash.
    async fn put(&self, media: &UploadedMedia) -> Result<()>;
}

/// Opens the uploaded media cache on `backend`; a backend without an adapter is refused.
pub fn open(backend: &Backend) -> Result<Arc<dyn UploadedMediaRepository>> {
    match backend {
        #[cfg(feature = "sqlite")]
        Backend::Sqlite(db) => Ok(Arc::new(sqlite::SqliteUploadedMedia::new(db.clone()))),
        #[cfg(feature = "mongodb")]
        Backend::Mongo(db) => Ok(Arc::new(mongo::MongoUploadedMedia::new(db.clone()))),
        other => Err(other.unsupported(super::CAPABILITY)),
    }
}

/// Creates or upgrades the cache's table or indexes on `backend`. Idempotent.
pub async fn migrate(backend: &Backend) -> Result<()> {
    match backend {
        #[cfg(feature = "sqlite")]
        Backend::Sqlite(db) => db
            .migrate(super::CAPABILITY, sqlite::MIGRATIONS)
            .await
            .map(drop),
        #[cfg(feature = "mongodb")]
        Backend::Mongo(db) => {
            imix_core::store::mongo::support::migrate(db, super::CAPABILITY, mongo::MIGRATIONS)
                .await
                .map(drop)
        }
        other => Err(other.unsupported(super::CAPABILITY)),
    }
}

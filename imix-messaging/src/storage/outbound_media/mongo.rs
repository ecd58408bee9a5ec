//! Uploaded media ids on MongoDB: collection `outbound_media_ids`, `_id`
//! `<account id>:<sha256>`, the entry's own serde shape. A put is one upserting replace.

use async_trait::async_trait;
use imix_core::{
    id::WhatsAppAccountId,
    store::mongo::{
        support::{backend_err, from_doc, to_doc},
        MongoMigration,
    },
    Result,
};
use mongodb::{
    bson::{doc, Document},
    Collection, Database,
};

use super::UploadedMediaRepository;
use crate::outbound::media_upload::UploadedMedia;

/// The cache's collection.
pub const OUTBOUND_MEDIA_IDS: &str = "outbound_media_ids";

const ENTRY: &str = "uploaded media";

/// The cache's schema step, recorded under capability [`crate::storage::CAPABILITY`]: `_id`
/// is the whole key, so no other index is needed.
pub const MIGRATIONS: &[MongoMigration] = &[MongoMigration {
    name: "0011_outbound_media",
    indexes: &[],
}];

/// Uploaded media ids on one MongoDB [`Database`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct MongoUploadedMedia {
    db: Database,
}

impl MongoUploadedMedia {
    /// The cache on `db` (migrated with [`MIGRATIONS`], see [`super::migrate`]).
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    fn entries(&self) -> Collection<Document> {
        self.db.collection(OUTBOUND_MEDIA_IDS)
    }
}

fn key(account: WhatsAppAccountId, sha256: &str) -> String {
    format!("{account}:{sha256}")
}

#[async_trait]
impl UploadedMediaRepository for MongoUploadedMedia {
    async fn get(&self, account: WhatsAppAccountId, sha256: &str) -> Result<Option<UploadedMedia>> {
        self.entries()
            .find_one(doc! { "_id": key(account, sha256) })
            .await
            .map_err(backend_err("read an uploaded media id"))?
            .map(|d| from_doc(d, ENTRY, &[]))
            .transpose()
    }

    async fn put(&self, media: &UploadedMedia) -> Result<()> {
        let id = key(media.account_id, &media.sha256);
        let d = to_doc(media, &id, ENTRY)?;
        self.entries()
            .replace_one(doc! { "_id": &id }, d)
            .upsert(true)
            .await
            .map_err(backend_err("store an uploaded media id"))?;
        Ok(())
    }
}

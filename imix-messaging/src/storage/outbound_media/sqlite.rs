//! Uploaded media ids on the embedded SQLite database: table `outbound_media_ids`, primary
//! key (`account_id`, `sha256`), the entry as a JSON document. A put replaces the row.

use async_trait::async_trait;
use imix_core::{
    id::WhatsAppAccountId,
    store::sqlite::{
        support::{db_err, exec, from_json, to_json},
        Migration, SqliteDb,
    },
    Result,
};
use rusqlite::{params, OptionalExtension};

use super::UploadedMediaRepository;
use crate::outbound::media_upload::UploadedMedia;

/// The cache's schema step, recorded under capability [`crate::storage::CAPABILITY`].
pub const MIGRATIONS: &[Migration] = &[Migration {
    name: "0011_outbound_media",
    sql: "CREATE TABLE IF NOT EXISTS outbound_media_ids (
        account_id TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        tenant_id TEXT NOT NULL,
        doc TEXT NOT NULL,
        PRIMARY KEY (account_id, sha256)
     );",
    unique: &[],
}];

const ENTRY: &str = "uploaded media";

/// Uploaded media ids on one [`SqliteDb`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SqliteUploadedMedia {
    db: SqliteDb,
}

impl SqliteUploadedMedia {
    /// The cache on `db` (migrated with [`MIGRATIONS`], see [`super::migrate`]).
    pub fn new(db: SqliteDb) -> Self {
        Self { db }
    }
}

#[async_trait]
impl UploadedMediaRepository for SqliteUploadedMedia {
    async fn get(&self, account: WhatsAppAccountId, sha256: &str) -> Result<Option<UploadedMedia>> {
        const ACTION: &str = "read an uploaded media id";
        let sha256 = sha256.to_owned();
        self.db
            .read(ACTION, move |c| {
                let doc: Option<String> = c
                    .prepare_cached(
                        "SELECT doc FROM outbound_media_ids WHERE account_id = ?1 AND sha256 = ?2",
                    )
                    .and_then(|mut s| {
                        s.query_row(params![account.to_string(), sha256], |r| r.get(0))
                            .optional()
                    })
                    .map_err(db_err(ACTION))?;
                doc.map(|d| from_json(&d, ENTRY)).transpose()
            })
            .await
    }

    async fn put(&self, media: &UploadedMedia) -> Result<()> {
        const ACTION: &str = "store an uploaded media id";
        let doc = to_json(media, ENTRY)?;
        let (account, sha256, tenant) = (
            media.account_id.to_string(),
            media.sha256.clone(),
            media.tenant_id.to_string(),
        );
        self.db
            .write(ACTION, move |c| {
                exec(
                    c,
                    "INSERT INTO outbound_media_ids (account_id, sha256, tenant_id, doc)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (account_id, sha256) DO UPDATE SET tenant_id = ?3, doc = ?4",
                    params![account, sha256, tenant, doc],
                )
                .map_err(db_err(ACTION))?;
                Ok(())
            })
            .await
    }
}

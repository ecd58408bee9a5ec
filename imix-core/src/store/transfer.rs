//! Export and import of all data, as a stream of [`Record`]s.
//!
//! Built only on the storage ports, so it works between any two backends: a backup taken on
//! SQLite restores into MongoDB and back. Records come out tenants first, then users,
//! WhatsApp accounts, templates, settings, audit entries and blobs, so an import never sees
//! a user or an account before its tenant, nor a template before its account.
//!
//! ```no_run
//! # async fn demo(from: imix_core::store::Store, to: imix_core::store::Store) -> imix_core::Result<()> {
//! use imix_core::store::transfer::{export, import};
//! let copied = import(&to, export(&from)).await?;
//! println!("copied {} records", copied.total());
//! # Ok(()) }
//! ```

use base64::{engine::general_purpose::STANDARD, Engine};
use futures::{stream::BoxStream, Stream, StreamExt};
use serde::{Deserialize, Serialize};

use super::{BlobMeta, PageRequest, Scope, Store, TemplateFilter, MAX_PAGE_SIZE};
use crate::{
    model::{AuditEntry, MessageTemplate, SettingsDoc, Tenant, User, WhatsAppAccount},
    Error, Result,
};

/// One exported record. Serializes as JSON with a `kind` tag, one record per line in
/// backup files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    /// A tenant.
    Tenant(Tenant),
    /// A user, password hash included (a restore must let people sign in again).
    User(User),
    /// A WhatsApp account (its access token and app secret stay encrypted as stored).
    WhatsappAccount(WhatsAppAccount),
    /// A message template.
    Template(MessageTemplate),
    /// A settings document (its credentials stay encrypted as stored).
    Settings(SettingsDoc),
    /// An audit-log entry.
    Audit(AuditEntry),
    /// A blob with its bytes, base64-encoded in JSON.
    Blob {
        /// Metadata.
        meta: BlobMeta,
        /// Base64 of the bytes.
        data_base64: String,
    },
}

/// How many records of each kind an import wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportCounts {
    /// Tenants.
    pub tenants: u64,
    /// Users.
    pub users: u64,
    /// Settings documents.
    pub settings: u64,
    /// Blobs.
    pub blobs: u64,
    /// Audit-log entries.
    pub audit: u64,
    /// WhatsApp accounts.
    pub whatsapp_accounts: u64,
    /// Message templates.
    pub templates: u64,
}

impl ImportCounts {
    /// All records.
    pub fn total(&self) -> u64 {
        self.tenants
            + self.users
            + self.settings
            + self.blobs
            + self.audit
            + self.whatsapp_accounts
            + self.templates
    }
}

enum Stage {
    Tenants(Option<String>),
    Users(Option<String>),
    WhatsappAccounts(Option<String>),
    Templates(Option<String>),
    Settings,
    Audit(Option<String>),
    Blobs(Option<String>),
    Done,
}

/// Every record of `store`, page by page (memory use is bounded by one page plus one blob).
pub fn export(store: &Store) -> BoxStream<'static, Result<Record>> {
    let store = store.clone();
    futures::stream::unfold((store, Stage::Tenants(None)), |(store, stage)| async move {
        let (batch, next) = match next_batch(&store, stage).await {
            Ok(pair) => pair,
            Err(e) => return Some((vec![Err(e)], (store, Stage::Done))),
        };
        match (batch.is_empty(), &next) {
            (true, Stage::Done) => None,
            _ => Some((batch.into_iter().map(Ok).collect::<Vec<_>>(), (store, next))),
        }
    })
    .flat_map(futures::stream::iter)
    .boxed()
}

async fn next_batch(store: &Store, stage: Stage) -> Result<(Vec<Record>, Stage)> {
    let page = |cursor| PageRequest {
        cursor,
        limit: Some(MAX_PAGE_SIZE),
    };
    Ok(match stage {
        Stage::Tenants(cursor) => {
            let p = store.tenants.list(Scope::Platform, page(cursor)).await?;
            let next = match p.next_cursor {
                Some(c) => Stage::Tenants(Some(c)),
                None => Stage::Users(None),
            };
            (p.items.into_iter().map(Record::Tenant).collect(), next)
        }
        Stage::Users(cursor) => {
            let p = store.users.list(Scope::Platform, page(cursor)).await?;
            let next = match p.next_cursor {
                Some(c) => Stage::Users(Some(c)),
                None => Stage::WhatsappAccounts(None),
            };
            (p.items.into_iter().map(Record::User).collect(), next)
        }
        Stage::WhatsappAccounts(cursor) => {
            let p = store
                .whatsapp_accounts
                .list(Scope::Platform, page(cursor))
                .await?;
            let next = match p.next_cursor {
                Some(c) => Stage::WhatsappAccounts(Some(c)),
                None => Stage::Templates(None),
            };
            (
                p.items.into_iter().map(Record::WhatsappAccount).collect(),
                next,
            )
        }
        Stage::Templates(cursor) => {
            let p = store
                .templates
                .list(Scope::Platform, TemplateFilter::default(), page(cursor))
                .await?;
            let next = match p.next_cursor {
                Some(c) => Stage::Templates(Some(c)),
                None => Stage::Settings,
            };
            (p.items.into_iter().map(Record::Template).collect(), next)
        }
        Stage::Settings => {
            let docs = store.settings.list_all().await?;
            (
                docs.into_iter().map(Record::Settings).collect(),
                Stage::Audit(None),
            )
        }
        Stage::Audit(cursor) => {
            let p = store.audit.list(Scope::Platform, page(cursor)).await?;
            let next = match p.next_cursor {
                Some(c) => Stage::Audit(Some(c)),
                None => Stage::Blobs(None),
            };
            (p.items.into_iter().map(Record::Audit).collect(), next)
        }
        Stage::Blobs(after) => {
            // Blobs can be large: a small page keeps memory bounded.
            const BLOB_PAGE: u32 = 16;
            let metas = store.blobs.list("", after, BLOB_PAGE).await?;
            let next = if metas.len() == BLOB_PAGE as usize {
                Stage::Blobs(metas.last().map(|m| m.key.clone()))
            } else {
                Stage::Done
            };
            let mut records = Vec::with_capacity(metas.len());
            for meta in metas {
                let blob = store.blobs.get(&meta.key).await?;
                records.push(Record::Blob {
                    meta: blob.meta,
                    data_base64: STANDARD.encode(&blob.data),
                });
            }
            (records, next)
        }
        Stage::Done => (Vec::new(), Stage::Done),
    })
}

/// Writes every record of `records` into `store`, which must be empty (a restore never
/// merges into live data). Records keep their ids and versions.
pub async fn import<S>(store: &Store, records: S) -> Result<ImportCounts>
where
    S: Stream<Item = Result<Record>> + Send,
{
    if !store.admin.is_empty().await? {
        return Err(Error::invalid(
            "store",
            "import needs an empty store; this one already holds data",
        ));
    }
    let mut counts = ImportCounts::default();
    let mut records = std::pin::pin!(records);
    while let Some(record) = records.next().await {
        match record? {
            Record::Tenant(t) => {
                store.tenants.insert(&t).await?;
                counts.tenants += 1;
            }
            Record::User(u) => {
                store.users.insert(&u).await?;
                counts.users += 1;
            }
            Record::WhatsappAccount(a) => {
                store.whatsapp_accounts.insert(&a).await?;
                counts.whatsapp_accounts += 1;
            }
            Record::Template(t) => {
                store.templates.insert(&t).await?;
                counts.templates += 1;
            }
            Record::Settings(doc) => {
                store.settings.insert(&doc).await?;
                counts.settings += 1;
            }
            Record::Audit(entry) => {
                store.audit.append(&entry).await?;
                counts.audit += 1;
            }
            Record::Blob { meta, data_base64 } => {
                let data = STANDARD
                    .decode(data_base64)
                    .map_err(|_| Error::invalid("data_base64", "is not valid base64"))?;
                store.blobs.restore(&meta, data.into()).await?;
                counts.blobs += 1;
            }
        }
    }
    Ok(counts)
}

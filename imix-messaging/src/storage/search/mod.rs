//! The search index: each message's and contact's normalized tokens
//! ([`crate::search::index_tokens`]) with its tenant, so [`crate::search::SearchService`]
//! finds records by text. Port [`SearchIndex`] (queries), adapters in [`sqlite`] (an FTS5
//! table) and [`mongo`] (a token collection: the MongoDB-wire servers imix supports have
//! no text indexes), recorded under the capability [`super::CAPABILITY`] as migration
//! `0005_search`.
//!
//! The index is written by the messaging adapters themselves, in the write that stores the
//! record, so no path that stores a message or contact (ingest, the contacts API, CSV
//! import, a backup's import) can forget it:
//!
//! - SQLite: in the same write closure, i.e. the same `IMMEDIATE` transaction: the record
//!   and its entries are committed together or not at all.
//! - MongoDB (no transactions): the entries are written *before* the record is inserted or
//!   replaced, stale ones removed only after. A crash in between leaves extra entries
//!   (pointing at a record that does not exist or no longer says that), never missing
//!   ones; the service checks every hit against the record, so extra entries are never
//!   shown.
//!
//! The index is derived data: it is not part of backups, and the migration's backfill
//! (re)builds it from the stored records; an import fills it as it inserts records.

use std::sync::Arc;

use async_trait::async_trait;
use imix_core::{id::TenantId, store::Backend, Result, Timestamp};

use crate::{
    records::{Contact, Message},
    search::{contact_text, index_tokens, message_text, Terms},
};

#[cfg(feature = "mongodb")]
pub mod mongo;
#[cfg(feature = "sqlite")]
pub mod sqlite;

/// The migration's name under [`super::CAPABILITY`].
pub const MIGRATION: &str = "0005_search";

/// What a search entry indexes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SearchKind {
    /// A message.
    Message,
    /// A contact.
    Contact,
}

impl SearchKind {
    /// Its stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Message => "message",
            Self::Contact => "contact",
        }
    }
}

/// One record that matched a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchHit {
    /// The message's or contact's id.
    pub record_id: String,
    /// A message's conversation.
    pub conversation_id: Option<String>,
    /// The time results are ordered by: a message's Meta timestamp, a contact's last change.
    pub at: Timestamp,
}

/// What the index keeps of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchEntry {
    /// The record's tenant.
    pub tenant_id: TenantId,
    /// Message or contact.
    pub kind: SearchKind,
    /// The record's id.
    pub record_id: String,
    /// A message's conversation.
    pub conversation_id: Option<String>,
    /// Unix milliseconds results are ordered by.
    pub at_ms: i64,
    /// Its distinct normalized tokens.
    pub tokens: Vec<String>,
}

impl SearchEntry {
    /// The entry of `message`.
    pub fn of_message(message: &Message) -> Self {
        Self {
            tenant_id: message.tenant_id,
            kind: SearchKind::Message,
            record_id: message.id.to_string(),
            conversation_id: Some(message.conversation_id.to_string()),
            at_ms: message.timestamp.timestamp_millis(),
            tokens: index_tokens(&message_text(message)),
        }
    }

    /// The entry of `contact`.
    pub fn of_contact(contact: &Contact) -> Self {
        Self {
            tenant_id: contact.tenant_id,
            kind: SearchKind::Contact,
            record_id: contact.id.to_string(),
            conversation_id: None,
            at_ms: contact.updated_at.timestamp_millis(),
            tokens: index_tokens(&contact_text(contact)),
        }
    }
}

/// Queries of the search index (its writes are part of the record adapters' writes).
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait SearchIndex: Send + Sync {
    /// The tenant's records of `kind` whose tokens include every exact term and one token
    /// beginning with the prefix term, newest first, at most `max`. Entries are candidates:
    /// the caller checks them against the records.
    async fn search(
        &self,
        tenant: TenantId,
        kind: SearchKind,
        terms: &Terms,
        max: usize,
    ) -> Result<Vec<SearchHit>>;

    /// Rebuilds the whole index from the stored messages and contacts; returns how many
    /// records were indexed.
    async fn rebuild(&self) -> Result<u64>;
}

/// The index on `backend`.
pub fn open(backend: &Backend) -> Result<Arc<dyn SearchIndex>> {
    match backend {
        #[cfg(feature = "sqlite")]
        Backend::Sqlite(db) => Ok(Arc::new(sqlite::SqliteSearch::new(db.clone()))),
        #[cfg(feature = "mongodb")]
        Backend::Mongo(db) => Ok(Arc::new(mongo::MongoSearch::new(db.clone()))),
        other => Err(other.unsupported(super::CAPABILITY)),
    }
}

/// Creates the index's table or collection indexes on `backend` and, the first time, fills
/// it from the records already stored (a backfill interrupted by a crash runs again at the
/// next start: it is recorded done only once complete). Idempotent.
pub async fn migrate(backend: &Backend) -> Result<()> {
    match backend {
        #[cfg(feature = "sqlite")]
        Backend::Sqlite(db) => {
            db.migrate(super::CAPABILITY, sqlite::MIGRATIONS).await?;
            sqlite::SqliteSearch::new(db.clone()).backfill().await
        }
        #[cfg(feature = "mongodb")]
        Backend::Mongo(db) => {
            imix_core::store::mongo::support::migrate(db, super::CAPABILITY, mongo::MIGRATIONS)
                .await?;
            mongo::MongoSearch::new(db.clone()).backfill().await
        }
        other => Err(other.unsupported(super::CAPABILITY)),
    }
}

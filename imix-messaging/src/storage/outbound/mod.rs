//! Where outbound messages wait and are tracked ([`OutboundRecord`]): the port, its SQLite
//! and MongoDB adapters and their migrations (capability [`super::CAPABILITY`], migration
//! `0010_outbound`).
//!
//! `dedupe` is unique: it carries the tenant's `Idempotency-Key` (or the message's own id),
//! so a retried request can never queue a second message, whichever replica answers it.
//! Claims are one atomic step per message (as for webhook deliveries), so two replicas never
//! hold one message. Backups carry them (kind `outbound_message`, [`record_sets`]): a
//! restore keeps queued messages waiting, `GET …/messages/{id}` answering, and each
//! idempotency key (with its request fingerprint) refusing a second send.

use std::sync::Arc;

use async_trait::async_trait;
use imix_core::{
    id::TenantId,
    store::{
        transfer::{paged, RecordSet},
        Backend, Page, PageRequest, Scope,
    },
    Result, Timestamp,
};

use crate::{
    outbound::{OutboundRecord, OutboundStatus},
    records::MessageId,
};

#[cfg(feature = "mongodb")]
pub mod mongo;
#[cfg(feature = "sqlite")]
pub mod sqlite;

/// Outbound messages, keyed by their message id.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait OutboundRepository: Send + Sync {
    /// Stores a new record; another with the same `dedupe` is
    /// [`imix_core::Error::Duplicate`] with field `idempotency_key`.
    async fn insert(&self, record: &OutboundRecord) -> Result<()>;
    /// The record `id`, if visible in `scope`.
    async fn get(&self, scope: Scope, id: MessageId) -> Result<OutboundRecord>;
    /// The tenant's record queued with idempotency key `key`, if any.
    async fn find_by_idempotency_key(
        &self,
        tenant: TenantId,
        key: &str,
    ) -> Result<Option<OutboundRecord>>;
    /// Atomically claims up to `limit` `queued` records due at `now` (no lease, or a lease
    /// that ran out), oldest due first: sets `lease_until`, raises `version`, returns them.
    async fn claim_due(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
    ) -> Result<Vec<OutboundRecord>>;
    /// Up to `limit` records `sending` whose lease ran out before `now` (their worker
    /// stopped mid-request).
    async fn stale_sending(&self, now: Timestamp, limit: usize) -> Result<Vec<OutboundRecord>>;
    /// Replaces the record if its stored version equals `record.version`; returns the
    /// stored one (version raised). Otherwise [`imix_core::Error::VersionConflict`].
    async fn update(&self, record: &OutboundRecord) -> Result<OutboundRecord>;
    /// Records visible in `scope`, by id (queue order), only those in `status` when given.
    async fn list(
        &self,
        scope: Scope,
        status: Option<OutboundStatus>,
        page: PageRequest,
    ) -> Result<Page<OutboundRecord>>;
}

/// Opens the outbound records on `backend`; a backend without an adapter is refused.
pub fn open(backend: &Backend) -> Result<Arc<dyn OutboundRepository>> {
    match backend {
        #[cfg(feature = "sqlite")]
        Backend::Sqlite(db) => Ok(Arc::new(sqlite::SqliteOutbound::new(db.clone()))),
        #[cfg(feature = "mongodb")]
        Backend::Mongo(db) => Ok(Arc::new(mongo::MongoOutbound::new(db.clone()))),
        other => Err(other.unsupported(super::CAPABILITY)),
    }
}

/// Outbound messages for backups (kind `outbound_message`), as stored: status, `dedupe`,
/// idempotency key and request fingerprint, attempts and lease. Imported after the
/// conversations and messages they refer to.
pub fn record_sets(records: &Arc<dyn OutboundRepository>) -> Vec<Arc<dyn RecordSet>> {
    let (out, out_in) = (records.clone(), records.clone());
    vec![paged(
        "outbound_message",
        move |page| {
            let repo = out.clone();
            async move { repo.list(Scope::Platform, None, page).await }
        },
        move |record: OutboundRecord| {
            let repo = out_in.clone();
            async move { repo.insert(&record).await }
        },
    )]
}

/// Creates or upgrades the outbound table or indexes on `backend`. Idempotent.
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

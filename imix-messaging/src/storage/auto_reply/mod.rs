//! Where auto-reply jobs are kept ([`crate::auto_reply::AutoReplyJob`], one per inbound
//! text message of an account with auto-reply on): the port, its SQLite and MongoDB
//! adapters and their migrations (capability [`super::CAPABILITY`], migration
//! `0012_auto_reply`).
//!
//! Jobs are operational state: they are not exported. Claims are safe with several
//! replicas: a claim picks and leases one due job in one atomic step, as for media jobs.

use std::sync::Arc;

use async_trait::async_trait;
use imix_core::{
    store::{Backend, Scope},
    Result, Timestamp,
};

use crate::{auto_reply::AutoReplyJob, records::MessageId};

#[cfg(feature = "mongodb")]
pub mod mongo;
#[cfg(feature = "sqlite")]
pub mod sqlite;

/// Auto-reply jobs, keyed by their inbound message.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait AutoReplyJobRepository: Send + Sync {
    /// Stores a new job; a second one for the same message is
    /// [`imix_core::Error::Duplicate`] with field `message_id`.
    async fn insert(&self, job: &AutoReplyJob) -> Result<()>;
    /// The job of message `id`, if visible in `scope`.
    async fn get(&self, scope: Scope, id: MessageId) -> Result<AutoReplyJob>;
    /// Atomically claims the oldest job due at `now` (`due_at <= now` and no lease, or a
    /// lease that ran out): raises `attempts` and `version`, sets `lease_until`, returns it.
    async fn claim_due(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Result<Option<AutoReplyJob>>;
    /// Replaces the job if its stored version equals `job.version`; returns the stored one
    /// (version raised). A worker whose lease was taken over gets
    /// [`imix_core::Error::VersionConflict`].
    async fn update(&self, job: &AutoReplyJob) -> Result<AutoReplyJob>;
}

/// Opens the auto-reply jobs on `backend`; a backend without an adapter is refused.
pub fn open(backend: &Backend) -> Result<Arc<dyn AutoReplyJobRepository>> {
    match backend {
        #[cfg(feature = "sqlite")]
        Backend::Sqlite(db) => Ok(Arc::new(sqlite::SqliteAutoReplyJobs::new(db.clone()))),
        #[cfg(feature = "mongodb")]
        Backend::Mongo(db) => Ok(Arc::new(mongo::MongoAutoReplyJobs::new(db.clone()))),
        other => Err(other.unsupported(super::CAPABILITY)),
    }
}

/// Creates or upgrades the auto-reply jobs' table or indexes on `backend`. Idempotent.
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

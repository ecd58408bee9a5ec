//! Where inbound media jobs are kept ([`crate::media::MediaJob`], one per message with
//! media): the port, its SQLite and MongoDB adapters and their migrations (capability
//! [`super::CAPABILITY`], migration `0002_media`). A job is also the message's media
//! status (pending, available with its blob, failed with the reason), so it is read by the
//! API as well as claimed by the worker.
//!
//! Jobs are operational state tied to blobs, which backups do not carry: they are not
//! exported. Claims are safe with several replicas: a claim picks and leases one due job
//! in one atomic step, as for webhook deliveries.

use std::sync::Arc;

use async_trait::async_trait;
use imix_core::{
    store::{Backend, Scope},
    Result, Timestamp,
};

use crate::{media::MediaJob, records::MessageId};

#[cfg(feature = "mongodb")]
pub mod mongo;
#[cfg(feature = "sqlite")]
pub mod sqlite;

/// Inbound media jobs, keyed by their message.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait MediaJobRepository: Send + Sync {
    /// Stores a new job; a second one for the same message is
    /// [`imix_core::Error::Duplicate`] with field `message_id`.
    async fn insert(&self, job: &MediaJob) -> Result<()>;
    /// The job of message `id`, if visible in `scope`.
    async fn get(&self, scope: Scope, id: MessageId) -> Result<MediaJob>;
    /// Atomically claims the oldest job due at `now` (`due_at <= now` and no lease, or a
    /// lease that ran out): raises `attempts` and `version`, sets `lease_until`, returns it.
    async fn claim_due(&self, now: Timestamp, lease_until: Timestamp) -> Result<Option<MediaJob>>;
    /// Replaces the job if its stored version equals `job.version`; returns the stored one
    /// (version raised). A worker whose lease was taken over gets
    /// [`imix_core::Error::VersionConflict`].
    async fn update(&self, job: &MediaJob) -> Result<MediaJob>;
}

/// Opens the media jobs on `backend`; a backend without an adapter is refused.
pub fn open(backend: &Backend) -> Result<Arc<dyn MediaJobRepository>> {
    match backend {
        #[cfg(feature = "sqlite")]
        Backend::Sqlite(db) => Ok(Arc::new(sqlite::SqliteMediaJobs::new(db.clone()))),
        #[cfg(feature = "mongodb")]
        Backend::Mongo(db) => Ok(Arc::new(mongo::MongoMediaJobs::new(db.clone()))),
        other => Err(other.unsupported(super::CAPABILITY)),
    }
}

/// Creates or upgrades the media jobs' table or indexes on `backend`. Idempotent.
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

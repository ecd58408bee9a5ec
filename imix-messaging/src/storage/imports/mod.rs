//! Where contact import jobs are kept ([`crate::contacts::imports::ContactImport`]): the
//! port, its SQLite and MongoDB adapters and their migrations (capability
//! [`super::CAPABILITY`], migration `0004_imports`). A job is both the import's progress
//! and report (read by the API) and the worker's unit of work (claimed with a lease, as
//! webhook deliveries and media jobs are, so several replicas share the work and none
//! imports a file another holds).
//!
//! Jobs are operational state tied to a blob (the uploaded file), which backups do not
//! carry: they are not exported.

use std::sync::Arc;

use async_trait::async_trait;
use imix_core::{
    store::{Backend, Page, PageRequest, Scope},
    Result, Timestamp,
};

use crate::contacts::imports::{ContactImport, ContactImportId};

#[cfg(feature = "mongodb")]
pub mod mongo;
#[cfg(feature = "sqlite")]
pub mod sqlite;

/// Contact import jobs.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait ContactImportRepository: Send + Sync {
    /// Stores a new job.
    async fn insert(&self, job: &ContactImport) -> Result<()>;
    /// The job `id`, if visible in `scope` (another tenant's is
    /// [`imix_core::Error::NotFound`]).
    async fn get(&self, scope: Scope, id: ContactImportId) -> Result<ContactImport>;
    /// Jobs visible in `scope`, newest first; the cursor is the last id of a page.
    async fn list(&self, scope: Scope, page: PageRequest) -> Result<Page<ContactImport>>;
    /// Atomically claims the oldest job due at `now` (`due_at <= now` and no lease, or a
    /// lease that ran out): raises `attempts` and `version`, sets `lease_until`, returns it.
    async fn claim_due(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Result<Option<ContactImport>>;
    /// Replaces the job if its stored version equals `job.version`; returns the stored one
    /// (version raised). A worker whose lease was taken over gets
    /// [`imix_core::Error::VersionConflict`].
    async fn update(&self, job: &ContactImport) -> Result<ContactImport>;
}

/// Opens the import jobs on `backend`; a backend without an adapter is refused.
pub fn open(backend: &Backend) -> Result<Arc<dyn ContactImportRepository>> {
    match backend {
        #[cfg(feature = "sqlite")]
        Backend::Sqlite(db) => Ok(Arc::new(sqlite::SqliteContactImports::new(db.clone()))),
        #[cfg(feature = "mongodb")]
        Backend::Mongo(db) => Ok(Arc::new(mongo::MongoContactImports::new(db.clone()))),
        other => Err(other.unsupported(super::CAPABILITY)),
    }
}

/// Creates or upgrades the import jobs' table or indexes on `backend`. Idempotent.
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

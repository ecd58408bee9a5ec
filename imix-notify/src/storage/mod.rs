//! Where the notify capability keeps its records: the [`MailOutboxRepository`] port, its
//! adapters on the shared [`Backend`] (`sqlite` and `mongodb` features) and the capability's
//! migrations.
//!
//! The outbox is operational state, not business data: it is **not** part of backups
//! (export/import), so this capability contributes no record sets; a restored backup starts
//! with an empty outbox.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> imix_core::Result<()> {
//! # let dir = tempfile::tempdir().unwrap();
//! use imix_core::store::{sqlite::SqliteDb, Backend, PageRequest, Scope};
//!
//! let db = SqliteDb::open_blocking(&dir.path().join("imix.sqlite3"), 2)?;
//! let backend = Backend::Sqlite(db);
//! imix_notify::storage::migrate(&backend).await?;
//! let outbox = imix_notify::storage::open(&backend)?;
//! assert!(outbox.list(Scope::Platform, PageRequest::default()).await?.items.is_empty());
//! # Ok(()) }
//! ```

use std::sync::Arc;

use async_trait::async_trait;
use imix_core::{
    store::{Backend, Page, PageRequest, Scope},
    Result, Timestamp,
};

use crate::outbox_record::{OutboxEmail, OutboxId};

#[cfg(feature = "mongodb")]
pub mod mongo;
#[cfg(feature = "sqlite")]
pub mod sqlite;

/// The capability name the migrations are recorded under.
pub const CAPABILITY: &str = "notify";

/// The mail outbox (see [`OutboxEmail`]). Not part of export/import: it is operational
/// state, not business data.
///
/// Claims are safe with several server replicas: [`MailOutboxRepository::claim_due`] picks
/// and leases one due email in a single atomic step, so two workers never hold the same
/// email at once; a worker that dies leaves a lease that simply expires.
///
/// An integrator's own adapter can be checked with the conformance suite in `testkit`
/// (feature `testkit`).
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait MailOutboxRepository: Send + Sync {
    /// Stores a new email as given. An id already stored is
    /// [`Error::Duplicate`](imix_core::Error::Duplicate).
    async fn insert(&self, email: &OutboxEmail) -> Result<()>;
    /// The email with `id`, if visible in `scope`; else
    /// [`Error::NotFound`](imix_core::Error::NotFound).
    async fn get(&self, scope: Scope, id: OutboxId) -> Result<OutboxEmail>;
    /// Atomically claims the email that has been due longest ([`OutboxEmail::due_at`] at or
    /// before `now`): applies [`OutboxEmail::apply_claim`] with `lease_until` and returns the
    /// claimed record; `None` when nothing is due.
    async fn claim_due(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Result<Option<OutboxEmail>>;
    /// Replaces the email if its stored version equals `email.version`; returns the stored
    /// email, whose version is one higher. A worker whose lease was taken over gets
    /// [`Error::VersionConflict`](imix_core::Error::VersionConflict); an unknown email is
    /// [`Error::NotFound`](imix_core::Error::NotFound).
    async fn update(&self, email: &OutboxEmail) -> Result<OutboxEmail>;
    /// The earliest instant at which some email becomes due, if any is pending or sending.
    async fn next_due_at(&self) -> Result<Option<Timestamp>>;
    /// Emails visible in `scope`, **newest first**; the cursor is the last id returned.
    async fn list(&self, scope: Scope, page: PageRequest) -> Result<Page<OutboxEmail>>;
}

/// Creates or upgrades the outbox's tables (SQLite) or indexes (MongoDB) on `backend`,
/// recorded under capability [`CAPABILITY`]. Idempotent, and safe to run from several
/// replicas at once. A backend without an adapter here (its feature off, or
/// [`Backend::Custom`]) is refused with [`Error::Invalid`](imix_core::Error::Invalid).
pub async fn migrate(backend: &Backend) -> Result<()> {
    match backend {
        #[cfg(feature = "sqlite")]
        Backend::Sqlite(db) => db.migrate(CAPABILITY, sqlite::MIGRATIONS).await.map(drop),
        #[cfg(feature = "mongodb")]
        Backend::Mongo(db) => {
            imix_core::store::mongo::support::migrate(db, CAPABILITY, mongo::MIGRATIONS)
                .await
                .map(drop)
        }
        other => Err(other.unsupported(CAPABILITY)),
    }
}

/// Opens the outbox repository on `backend` (run [`migrate`] first). A backend without an
/// adapter here (its feature off, or [`Backend::Custom`]) is refused with
/// [`Error::Invalid`](imix_core::Error::Invalid): with a custom backend, build your own
/// [`MailOutboxRepository`].
pub fn open(backend: &Backend) -> Result<Arc<dyn MailOutboxRepository>> {
    match backend {
        #[cfg(feature = "sqlite")]
        Backend::Sqlite(db) => Ok(Arc::new(sqlite::SqliteOutbox::new(db.clone()))),
        #[cfg(feature = "mongodb")]
        Backend::Mongo(db) => Ok(Arc::new(mongo::MongoOutbox::new(db.clone()))),
        other => Err(other.unsupported(CAPABILITY)),
    }
}

//! Where the WhatsApp capability keeps its records: the ports [`WhatsAppAccountRepository`]
//! and [`TemplateRepository`], their adapters on the shared [`Backend`] (`sqlite` and
//! `mongodb` features), the capability's migrations, and its records for backups.
//!
//! ```no_run
//! # async fn demo(store: &imix_core::store::Store) -> imix_core::Result<()> {
//! imix_whatsapp::storage::migrate(&store.backend).await?;
//! let storage = imix_whatsapp::storage::WhatsAppStorage::open(&store.backend)?;
//! let mut transfer = imix_core::store::transfer::Transfer::new(store);
//! for set in storage.record_sets() {
//!     transfer.register(set);
//! }
//! # Ok(()) }
//! ```
//!
//! Both adapters pass the same conformance suite (feature `testkit`, module `testkit`).

use std::sync::Arc;

use async_trait::async_trait;
use imix_core::{
    id::{TemplateId, WhatsAppAccountId},
    store::{
        transfer::{paged, RecordSet},
        Backend, Page, PageRequest, Scope,
    },
    Result,
};

use crate::records::{MessageTemplate, WhatsAppAccount};

#[cfg(feature = "mongodb")]
pub mod mongo;
#[cfg(feature = "sqlite")]
pub mod sqlite;

/// The capability name its migrations are recorded under.
pub const CAPABILITY: &str = "whatsapp";

/// The record kind of accounts in backups.
pub const ACCOUNT_KIND: &str = "whatsapp_account";
/// The record kind of templates in backups.
pub const TEMPLATE_KIND: &str = "template";

/// WhatsApp Business accounts. A phone number id belongs to at most one account on the
/// whole platform.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait WhatsAppAccountRepository: Send + Sync {
    /// Stores a new account. A phone number id already used by any account is
    /// [`imix_core::Error::Duplicate`] with field `phone_number_id`.
    async fn insert(&self, account: &WhatsAppAccount) -> Result<()>;
    /// The account with `id`, if visible in `scope`.
    async fn get(&self, scope: Scope, id: WhatsAppAccountId) -> Result<WhatsAppAccount>;
    /// The account of this phone number id, platform-wide: for webhook deliveries.
    async fn find_by_phone_number_id(
        &self,
        phone_number_id: &str,
    ) -> Result<Option<WhatsAppAccount>>;
    /// Replaces the account if visible in `scope` and its stored version equals
    /// `account.version`; returns the stored account with the version raised by one.
    async fn update(&self, scope: Scope, account: &WhatsAppAccount) -> Result<WhatsAppAccount>;
    /// Deletes the account if visible in `scope`; otherwise [`imix_core::Error::NotFound`].
    async fn delete(&self, scope: Scope, id: WhatsAppAccountId) -> Result<()>;
    /// Accounts visible in `scope`, oldest first.
    async fn list(&self, scope: Scope, page: PageRequest) -> Result<Page<WhatsAppAccount>>;
}

/// Which templates [`TemplateRepository::list`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TemplateFilter {
    /// Only this account's templates.
    pub account_id: Option<WhatsAppAccountId>,
    /// Only templates with this status (exact, e.g. `APPROVED`).
    pub status: Option<String>,
}

/// Message templates. `(account_id, name, language)` is unique.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait TemplateRepository: Send + Sync {
    /// Stores a new template; a second one with the same account, name and language is
    /// [`imix_core::Error::Duplicate`] with field `name`.
    async fn insert(&self, template: &MessageTemplate) -> Result<()>;
    /// The template with `id`, if visible in `scope`.
    async fn get(&self, scope: Scope, id: TemplateId) -> Result<MessageTemplate>;
    /// Replaces the template if visible in `scope` and its stored version equals
    /// `template.version`; returns the stored template with the version raised by one.
    async fn update(&self, scope: Scope, template: &MessageTemplate) -> Result<MessageTemplate>;
    /// Deletes the template if visible in `scope`; otherwise [`imix_core::Error::NotFound`].
    async fn delete(&self, scope: Scope, id: TemplateId) -> Result<()>;
    /// Templates visible in `scope` that match `filter`, oldest first.
    async fn list(
        &self,
        scope: Scope,
        filter: TemplateFilter,
        page: PageRequest,
    ) -> Result<Page<MessageTemplate>>;
}

/// The WhatsApp repositories, opened on one backend (or any implementation of the ports).
/// Cheap to clone.
#[derive(Clone)]
pub struct WhatsAppStorage {
    /// WhatsApp Business accounts.
    pub accounts: Arc<dyn WhatsAppAccountRepository>,
    /// Message templates.
    pub templates: Arc<dyn TemplateRepository>,
}

impl std::fmt::Debug for WhatsAppStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhatsAppStorage").finish_non_exhaustive()
    }
}

impl WhatsAppStorage {
    /// Opens the repositories on `backend`; a backend without an adapter here (its cargo
    /// feature off, or [`Backend::Custom`]) is refused with [`imix_core::Error::Invalid`].
    /// Does not migrate: see [`migrate`].
    pub fn open(backend: &Backend) -> Result<Self> {
        match backend {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(db) => {
                let adapter = Arc::new(sqlite::SqliteWhatsApp::new(db.clone()));
                Ok(Self {
                    accounts: adapter.clone(),
                    templates: adapter,
                })
            }
            #[cfg(feature = "mongodb")]
            Backend::Mongo(db) => {
                let adapter = Arc::new(mongo::MongoWhatsApp::new(db.clone()));
                Ok(Self {
                    accounts: adapter.clone(),
                    templates: adapter,
                })
            }
            other => Err(other.unsupported(CAPABILITY)),
        }
    }

    /// Accounts then templates, for backups (see [`record_sets`]).
    pub fn record_sets(&self) -> Vec<Arc<dyn RecordSet>> {
        record_sets(self.accounts.clone(), self.templates.clone())
    }
}

/// Opens the two repositories on `backend` (see [`WhatsAppStorage::open`]).
pub fn open(
    backend: &Backend,
) -> Result<(
    Arc<dyn WhatsAppAccountRepository>,
    Arc<dyn TemplateRepository>,
)> {
    let storage = WhatsAppStorage::open(backend)?;
    Ok((storage.accounts, storage.templates))
}

/// Creates or upgrades the capability's tables (SQLite) or indexes (MongoDB) on `backend`.
/// Idempotent, and safe to run from several replicas at once.
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

/// The capability's records for export and import, in import order: accounts (kind
/// [`ACCOUNT_KIND`], `"whatsapp_account"`) before their templates (kind [`TEMPLATE_KIND`],
/// `"template"`), the kinds the backup format has always used. Accounts keep their access
/// token and app secret sealed as stored.
pub fn record_sets(
    accounts: Arc<dyn WhatsAppAccountRepository>,
    templates: Arc<dyn TemplateRepository>,
) -> Vec<Arc<dyn RecordSet>> {
    let accounts_in = accounts.clone();
    let templates_in = templates.clone();
    vec![
        paged(
            ACCOUNT_KIND,
            move |page| {
                let accounts = accounts.clone();
                async move { accounts.list(Scope::Platform, page).await }
            },
            move |account: WhatsAppAccount| {
                let accounts = accounts_in.clone();
                async move { accounts.insert(&account).await }
            },
        ),
        paged(
            TEMPLATE_KIND,
            move |page| {
                let templates = templates.clone();
                async move {
                    templates
                        .list(Scope::Platform, TemplateFilter::default(), page)
                        .await
                }
            },
            move |template: MessageTemplate| {
                let templates = templates_in.clone();
                async move { templates.insert(&template).await }
            },
        ),
    ]
}

/// A tenant-scoped write may not move a record out of its tenant.
#[cfg(any(feature = "sqlite", feature = "mongodb"))]
fn check_owner_stays_in_scope(scope: Scope, owner: imix_core::id::TenantId) -> Result<()> {
    imix_core::store::check_owner_stays_in_scope(scope, Some(owner))
}

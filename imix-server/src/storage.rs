//! The composition of every capability's storage on one backend: the shared primitives
//! (`imix-core`), tenancy's records, WhatsApp's and the mail outbox. Opened once at start,
//! migrated capability by capability, and the one place that registers every capability's
//! records for export and import.

use std::sync::Arc;

use imix_core::{
    directory::TenantDirectory,
    store::{transfer::Transfer, Store},
};
use imix_messaging::storage::MessagingStorage;
use imix_notify::storage::MailOutboxRepository;
use imix_subscriptions::storage::SubscriptionStorage;
use imix_tenancy::storage::TenancyStorage;
use imix_whatsapp::storage::WhatsAppStorage;

use crate::{config::Config, ServerError};

/// Every capability's repositories, on one backend. Cheap to clone.
#[derive(Clone)]
pub struct Storage {
    /// The shared primitives and the backend handle.
    pub store: Store,
    /// Tenants, users, auth tokens.
    pub tenancy: TenancyStorage,
    /// WhatsApp accounts and templates.
    pub whatsapp: WhatsAppStorage,
    /// The mail outbox.
    pub outbox: Arc<dyn MailOutboxRepository>,
    /// Webhook deliveries, contacts, conversations, messages.
    pub messaging: MessagingStorage,
    /// Webhook endpoints (event subscriptions) and their deliveries.
    pub subscriptions: SubscriptionStorage,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("backend", &self.store.backend.name())
            .finish_non_exhaustive()
    }
}

impl Storage {
    /// Opens the store `config` names (MongoDB when `MONGODB_URI` is set, else the embedded
    /// database in `IMIX_DATA_DIR`) and every capability's repositories on it. Does not
    /// migrate: see [`Storage::migrate`].
    pub async fn open(config: &Config) -> Result<Self, ServerError> {
        Self::on(crate::state::open_store(config).await?)
    }

    /// Every capability's repositories on `store`'s backend.
    pub fn on(store: Store) -> Result<Self, ServerError> {
        Ok(Self {
            tenancy: TenancyStorage::open(&store.backend)?,
            whatsapp: WhatsAppStorage::open(&store.backend)?,
            outbox: imix_notify::storage::open(&store.backend)?,
            messaging: MessagingStorage::open(&store.backend)?,
            subscriptions: SubscriptionStorage::open(&store.backend)?,
            store,
        })
    }

    /// Applies every capability's pending migrations: the shared primitives first, then
    /// tenancy, notify, WhatsApp and messaging. Idempotent; safe with several replicas starting at once.
    pub async fn migrate(&self) -> Result<(), ServerError> {
        self.store.admin.migrate().await?;
        imix_tenancy::storage::migrate(&self.store.backend).await?;
        imix_notify::storage::migrate(&self.store.backend).await?;
        imix_whatsapp::storage::migrate(&self.store.backend).await?;
        imix_messaging::storage::migrate(&self.store.backend).await?;
        imix_subscriptions::storage::migrate(&self.store.backend).await?;
        Ok(())
    }

    /// The tenants as other capabilities read them.
    pub fn tenants(&self) -> Arc<dyn TenantDirectory> {
        self.tenancy.directory()
    }

    /// The registry of every record a backup holds, in import order: tenants and users,
    /// WhatsApp accounts and templates, contacts, conversations and messages, webhook
    /// endpoints, then the shared settings, audit log and blobs. Operational state (auth
    /// tokens, the mail outbox, counters, webhook deliveries in and out, held statuses) is
    /// not exported.
    pub fn transfer(&self) -> Transfer {
        let mut transfer = Transfer::new(&self.store);
        for set in self
            .tenancy
            .record_sets()
            .into_iter()
            .chain(self.whatsapp.record_sets())
            .chain(self.messaging.record_sets())
            .chain(self.subscriptions.record_sets())
        {
            transfer.register(set);
        }
        transfer
    }
}

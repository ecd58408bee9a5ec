//! Counting the contacts that inbound messages create: a [`ContactRepository`] that
//! counts every contact it stores against Max Contacts without checking the limit (an
//! inbound message is never refused for a limit), and tells [`LimitAlerts`] the new count
//! so the tenant's admins are warned as it nears and passes the limit. The webhook
//! processor is given storage whose contacts go through it ([`counting_inbound`]); the
//! contact service stores through the plain repository, having reserved its slot itself.

use std::sync::Arc;

use async_trait::async_trait;
use imix_core::{
    id::TenantId,
    store::{Page, PageRequest, Scope},
    Result,
};

use super::{ContactCounter, Counted, LimitAlerts};
use crate::{
    records::{Contact, ContactId},
    storage::{ContactRepository, MessagingStorage},
};

/// `storage` with contacts counted as they are stored, for the webhook processor; each
/// new count is told to `alerts`.
pub fn counting_inbound(
    storage: &MessagingStorage,
    counter: Arc<dyn ContactCounter>,
    alerts: Arc<dyn LimitAlerts>,
) -> MessagingStorage {
    let mut counted = storage.clone();
    counted.contacts = Arc::new(CountingContacts {
        inner: storage.contacts.clone(),
        counter,
        alerts,
    });
    counted
}

/// A [`ContactRepository`] counting each contact it stores.
struct CountingContacts {
    inner: Arc<dyn ContactRepository>,
    counter: Arc<dyn ContactCounter>,
    alerts: Arc<dyn LimitAlerts>,
}

#[async_trait]
impl ContactRepository for CountingContacts {
    async fn insert(&self, contact: &Contact) -> Result<()> {
        self.inner.insert(contact).await?;
        match self
            .counter
            .count(contact.tenant_id, Counted::Contacts)
            .await
        {
            Ok(count) => self.alerts.contacts_counted(contact.tenant_id, count).await,
            // The contact is stored and must stay; a reconcile sets the count right.
            Err(e) => {
                tracing::warn!(target: "imix_messaging", tenant = %contact.tenant_id, error = %e, "could not count an inbound contact")
            }
        }
        Ok(())
    }

    async fn get(&self, scope: Scope, id: ContactId) -> Result<Contact> {
        self.inner.get(scope, id).await
    }

    async fn find_by_wa_id(&self, tenant: TenantId, wa_id: &str) -> Result<Option<Contact>> {
        self.inner.find_by_wa_id(tenant, wa_id).await
    }

    async fn update(&self, scope: Scope, contact: &Contact) -> Result<Contact> {
        self.inner.update(scope, contact).await
    }

    async fn list(&self, scope: Scope, page: PageRequest) -> Result<Page<Contact>> {
        self.inner.list(scope, page).await
    }
}

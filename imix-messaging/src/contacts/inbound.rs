//! Counting the contacts that inbound messages create: a [`ContactRepository`] that
//! counts every contact it stores against Max Contacts without checking the limit (an
//! inbound message is never refused for a limit). The webhook processor is given
//! storage whose contacts go through it ([`counting_inbound`]); the contact service
//! stores through the plain repository, having reserved its slot itself.

use std::sync::Arc;

use async_trait::async_trait;
use imix_core::{
    id::TenantId,
    store::{Page, PageRequest, Scope},
    Result,
};

use super::{ContactCounter, Counted};
use crate::{
    records::{Contact, ContactId},
    storage::{ContactRepository, MessagingStorage},
};

/// `storage` with contacts counted as they are stored, for the webhook processor.
pub fn counting_inbound(
    storage: &MessagingStorage,
    counter: Arc<dyn ContactCounter>,
) -> MessagingStorage {
    let mut counted = storage.clone();
    counted.contacts = Arc::new(CountingContacts {
        inner: storage.contacts.clone(),
        counter,
    });
    counted
}

/// A [`ContactRepository`] counting each contact it stores.
struct CountingContacts {
    inner: Arc<dyn ContactRepository>,
    counter: Arc<dyn ContactCounter>,
}

#[async_trait]
impl ContactRepository for CountingContacts {
    async fn insert(&self, contact: &Contact) -> Result<()> {
        self.inner.insert(contact).await?;
        if let Err(e) = self
            .counter
            .count(contact.tenant_id, Counted::Contacts)
            .await
        {
            // The contact is stored and must stay; a reconcile sets the count right.
            tracing::warn!(target: "imix_messaging", tenant = %contact.tenant_id, error = %e, "could not count an inbound contact");
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

//! The shared inbox as users read it: conversations, their messages, contacts. Every
//! operation takes the caller's [`AccessContext`] and checks the permission and the tenant
//! itself; another tenant's records are "not found".

use imix_core::{
    access::{AccessContext, Permission},
    id::TenantId,
    store::{Page, PageRequest},
};

use crate::{
    error::Result,
    records::{Contact, ContactId, Conversation, ConversationId, Message},
    storage::{ConversationFilter, MessagingStorage},
};

/// Reads of the shared inbox.
#[derive(Debug, Clone)]
pub struct InboxService {
    storage: MessagingStorage,
}

impl InboxService {
    /// The inbox over `storage`.
    pub fn new(storage: MessagingStorage) -> Self {
        Self { storage }
    }

    /// The tenant's conversations matching `filter`, oldest first.
    pub async fn conversations(
        &self,
        ctx: &AccessContext,
        tenant: TenantId,
        filter: ConversationFilter,
        page: PageRequest,
    ) -> Result<Page<Conversation>> {
        let scope = ctx.authorize(Permission::ConversationsRead, tenant)?;
        Ok(self.storage.conversations.list(scope, filter, page).await?)
    }

    /// One conversation of the tenant.
    pub async fn conversation(
        &self,
        ctx: &AccessContext,
        tenant: TenantId,
        id: ConversationId,
    ) -> Result<Conversation> {
        let scope = ctx.authorize(Permission::ConversationsRead, tenant)?;
        Ok(self.storage.conversations.get(scope, id).await?)
    }

    /// The messages of one of the tenant's conversations, in arrival order.
    pub async fn messages(
        &self,
        ctx: &AccessContext,
        tenant: TenantId,
        conversation: ConversationId,
        page: PageRequest,
    ) -> Result<Page<Message>> {
        let scope = ctx.authorize(Permission::ConversationsRead, tenant)?;
        // Not found for another tenant's conversation, rather than an empty page.
        self.storage.conversations.get(scope, conversation).await?;
        Ok(self
            .storage
            .messages
            .list_for_conversation(scope, conversation, page)
            .await?)
    }

    /// The tenant's contacts, oldest first.
    pub async fn contacts(
        &self,
        ctx: &AccessContext,
        tenant: TenantId,
        page: PageRequest,
    ) -> Result<Page<Contact>> {
        let scope = ctx.authorize(Permission::ContactsRead, tenant)?;
        Ok(self.storage.contacts.list(scope, page).await?)
    }

    /// One contact of the tenant.
    pub async fn contact(
        &self,
        ctx: &AccessContext,
        tenant: TenantId,
        id: ContactId,
    ) -> Result<Contact> {
        let scope = ctx.authorize(Permission::ContactsRead, tenant)?;
        Ok(self.storage.contacts.get(scope, id).await?)
    }
}

//! The shared inbox as users read it: conversations, their messages, contacts. Every
//! operation takes the caller's [`AccessContext`] and checks the permission and the tenant
//! itself; another tenant's records are "not found".

use std::sync::Arc;

use async_trait::async_trait;
use imix_core::{
    access::{AccessContext, Permission},
    id::{TenantId, UserId},
    store::{ConflictBackoff, Page, PageRequest, Scope},
    Error as CoreError,
};

use crate::{
    assign::{InboxSettings, RoundRobin},
    error::{MessagingError, Result},
    events::{EventSink, NewEvent, NoEvents},
    records::{Contact, ContactId, Conversation, ConversationId, ConversationStatus, Message},
    storage::{AssigneeFilter, ConversationFilter, MessagingStorage},
};

/// Who may be assigned conversations: the tenant's active users, as tenancy knows them.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait Assignees: Send + Sync {
    /// Whether `user` is an active user of `tenant` who may answer conversations.
    async fn can_be_assigned(&self, tenant: TenantId, user: UserId) -> Result<bool>;

    /// The tenant's active users with the Agent role who may answer conversations: whom
    /// round-robin assigns to ([`crate::assign`]). None by default.
    async fn agents(&self, tenant: TenantId) -> Result<Vec<UserId>> {
        let _ = tenant;
        Ok(Vec::new())
    }
}

/// A change to a conversation; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConversationPatch {
    /// The new status (needs `conversations.reply`).
    pub status: Option<ConversationStatus>,
    /// The new assignee, `Some(None)` to unassign (needs `conversations.assign`).
    pub assignee: Option<Option<UserId>>,
    /// Mark every message read by the team (unread count to 0; needs
    /// `conversations.reply`).
    pub mark_read: bool,
    /// The version the caller read (`If-Match`); `None` to apply to the latest.
    pub expected_version: Option<u64>,
}

/// Whether the caller sees `c`: with `conversations.read_all` every conversation of the
/// tenant, otherwise those assigned to them and unassigned ones.
fn visible(ctx: &AccessContext, c: &Conversation) -> bool {
    ctx.has(Permission::ConversationsReadAll) || c.assignee.is_none_or(|a| a == ctx.user_id())
}

/// The shared inbox.
#[derive(Clone)]
pub struct InboxService {
    storage: MessagingStorage,
    assignees: Arc<dyn Assignees>,
    events: Arc<dyn EventSink>,
    round_robin: Option<RoundRobin>,
}

impl std::fmt::Debug for InboxService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboxService").finish_non_exhaustive()
    }
}

impl InboxService {
    /// The inbox over `storage`; assignees are checked with `assignees`.
    pub fn new(storage: MessagingStorage, assignees: Arc<dyn Assignees>) -> Self {
        Self {
            storage,
            assignees,
            events: Arc::new(NoEvents),
            round_robin: None,
        }
    }

    /// The same inbox, reporting the changes users make (status, assignee, unread) to
    /// `events` (live events).
    pub fn with_events(mut self, events: Arc<dyn EventSink>) -> Self {
        self.events = events;
        self
    }

    /// The same inbox, keeping tenants' inbox settings (automatic assignment) with
    /// `round_robin`.
    pub fn with_round_robin(mut self, round_robin: RoundRobin) -> Self {
        self.round_robin = Some(round_robin);
        self
    }

    fn round_robin(&self) -> Result<&RoundRobin> {
        self.round_robin.as_ref().ok_or_else(|| {
            MessagingError::Store(CoreError::NotFound {
                entity: "settings",
                id: crate::assign::INBOX_SETTINGS_KEY.to_owned(),
            })
        })
    }

    /// The tenant's inbox settings (`conversations.read`: every inbox user may know how
    /// conversations are routed).
    pub async fn inbox_settings(
        &self,
        ctx: &AccessContext,
        tenant: TenantId,
    ) -> Result<InboxSettings> {
        ctx.authorize(Permission::ConversationsRead, tenant)?;
        self.round_robin()?.settings(tenant).await
    }

    /// Changes the tenant's inbox settings. Needs `conversations.assign` (the permission of
    /// those who route conversations by hand: admins, managers, supervisors).
    pub async fn update_inbox_settings(
        &self,
        ctx: &AccessContext,
        tenant: TenantId,
        settings: InboxSettings,
    ) -> Result<InboxSettings> {
        ctx.authorize(Permission::ConversationsAssign, tenant)?;
        self.round_robin()?.set_settings(tenant, settings).await
    }

    /// The conversation `id` if the caller may see it; "not found" otherwise.
    async fn visible_conversation(
        &self,
        ctx: &AccessContext,
        scope: Scope,
        id: ConversationId,
    ) -> Result<Conversation> {
        let c = self.storage.conversations.get(scope, id).await?;
        if visible(ctx, &c) {
            Ok(c)
        } else {
            Err(CoreError::NotFound {
                entity: "conversation",
                id: id.to_string(),
            }
            .into())
        }
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
        let mut filter = filter;
        if !ctx.has(Permission::ConversationsReadAll) {
            // An agent's own view, narrowed further by what they asked for.
            let me = ctx.user_id();
            filter.assignee = match filter.assignee {
                None | Some(AssigneeFilter::UserOrUnassigned(_)) => {
                    Some(AssigneeFilter::UserOrUnassigned(me))
                }
                Some(AssigneeFilter::Unassigned) => Some(AssigneeFilter::Unassigned),
                Some(AssigneeFilter::User(u)) if u == me => Some(AssigneeFilter::User(me)),
                // Someone else's: nothing an agent may see.
                Some(AssigneeFilter::User(_)) => {
                    return Ok(Page {
                        items: Vec::new(),
                        next_cursor: None,
                    })
                }
            };
        }
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
        self.visible_conversation(ctx, scope, id).await
    }

    /// Changes a conversation's status, assignee or unread count. The assignee must be an
    /// active user of the tenant (422 naming `assignee` otherwise). A stale
    /// `expected_version` is a version conflict.
    pub async fn update_conversation(
        &self,
        ctx: &AccessContext,
        tenant: TenantId,
        id: ConversationId,
        patch: ConversationPatch,
    ) -> Result<Conversation> {
        let scope = ctx.authorize(Permission::ConversationsRead, tenant)?;
        if patch.status.is_some() || patch.mark_read {
            ctx.authorize(Permission::ConversationsReply, tenant)?;
        }
        if let Some(assignee) = patch.assignee {
            ctx.authorize(Permission::ConversationsAssign, tenant)?;
            if let Some(user) = assignee {
                if !self.assignees.can_be_assigned(tenant, user).await? {
                    return Err(CoreError::invalid(
                        "assignee",
                        "is not an active user of this tenant",
                    )
                    .into());
                }
            }
        }
        let mut backoff = ConflictBackoff::new();
        while backoff.next_attempt().await {
            let mut c = self.visible_conversation(ctx, scope, id).await?;
            let before = c.assignee;
            if let Some(expected) = patch.expected_version {
                if expected != c.version {
                    return Err(CoreError::VersionConflict {
                        entity: "conversation",
                        id: id.to_string(),
                        expected,
                    }
                    .into());
                }
            }
            if let Some(status) = patch.status {
                c.status = status;
            }
            if let Some(assignee) = patch.assignee {
                c.assignee = assignee;
                // Someone took the conversation a customer asked a human for.
                if assignee.is_some() {
                    c.handoff_requested_at = None;
                }
            }
            if patch.mark_read {
                c.unread = 0;
            }
            c.updated_at = imix_core::now();
            match self.storage.conversations.update(scope, &c).await {
                Ok(stored) => {
                    let event = if stored.assignee != before {
                        NewEvent::conversation_assigned(&stored, before, false)
                    } else {
                        NewEvent::conversation(&stored, false)
                    };
                    self.events.publish(event).await;
                    return Ok(stored);
                }
                // Ingest changed it meanwhile: apply the patch to the new version, unless
                // the caller pinned the version they saw.
                Err(CoreError::VersionConflict { .. }) if patch.expected_version.is_none() => {
                    continue
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(MessagingError::Store(CoreError::VersionConflict {
            entity: "conversation",
            id: id.to_string(),
            expected: 0,
        }))
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
        // Not found for another tenant's (or another agent's) conversation, rather than an
        // empty page.
        self.visible_conversation(ctx, scope, conversation).await?;
        Ok(self
            .storage
            .messages
            .list_for_conversation(scope, conversation, page)
            .await?)
    }

    /// The tenant's contacts, oldest first. Every user with `contacts.read` reads every
    /// contact of their tenant, agents included (they start conversations with contacts
    /// that have none yet); the assignee rule narrows conversations, not contacts.
    pub async fn contacts(
        &self,
        ctx: &AccessContext,
        tenant: TenantId,
        page: PageRequest,
    ) -> Result<Page<Contact>> {
        let scope = ctx.authorize(Permission::ContactsRead, tenant)?;
        Ok(self.storage.contacts.list(scope, page).await?)
    }

    /// One contact of the tenant (`contacts.read`; any contact of the tenant, as
    /// [`InboxService::contacts`]).
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

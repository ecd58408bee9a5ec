//! Where messaging keeps its records: the ports, their adapters on the shared
//! [`Backend`] (features `sqlite`, `mongodb`), the capability's migrations and its records
//! for backups.
//!
//! Every tenant-owned record is read and written within a [`Scope`]: a record of another
//! tenant is reported as [`imix_core::Error::NotFound`].

use std::sync::Arc;

use async_trait::async_trait;
use imix_core::{
    id::{UserId, WhatsAppAccountId},
    store::{
        transfer::{paged, RecordSet},
        Backend, Page, PageRequest, Scope,
    },
    Result, Timestamp,
};

use crate::records::{
    Contact, ContactId, Conversation, ConversationId, ConversationStatus, Delivery, DeliveryId,
    HeldStatus, Message, MessageId,
};

pub mod annotations;
pub mod auto_reply;
pub mod events;
pub mod groups;
pub mod imports;
pub mod media;
#[cfg(feature = "mongodb")]
pub mod mongo;
pub mod outbound;
pub mod outbound_media;
pub mod search;
#[cfg(feature = "sqlite")]
pub mod sqlite;

/// The capability name its migrations are recorded under.
pub const CAPABILITY: &str = "messaging";

/// Webhook deliveries as received. Claims are safe with several replicas: a claim picks
/// and leases one due delivery in one atomic step.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait DeliveryRepository: Send + Sync {
    /// Stores a new delivery. Returns once it is durable.
    async fn insert(&self, delivery: &Delivery) -> Result<()>;
    /// The delivery `id`.
    async fn get(&self, id: DeliveryId) -> Result<Delivery>;
    /// Atomically claims the oldest delivery due at `now` (`due_at <= now` and no lease, or
    /// a lease that ran out): raises `attempts`, sets `lease_until`, and returns it.
    async fn claim_due(&self, now: Timestamp, lease_until: Timestamp) -> Result<Option<Delivery>>;
    /// Claims up to `limit` due deliveries, oldest first, as [`Self::claim_due`] does for
    /// one. The default claims one at a time; an adapter may claim them in one step.
    async fn claim_due_batch(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
    ) -> Result<Vec<Delivery>> {
        let mut claimed = Vec::new();
        while claimed.len() < limit {
            match self.claim_due(now, lease_until).await? {
                Some(delivery) => claimed.push(delivery),
                None => break,
            }
        }
        Ok(claimed)
    }
    /// Replaces the delivery if its stored version equals `delivery.version`; returns the
    /// stored one (version raised). A worker whose lease was taken over gets
    /// [`imix_core::Error::VersionConflict`].
    async fn update(&self, delivery: &Delivery) -> Result<Delivery>;
    /// How many deliveries are not processed yet.
    async fn count_unprocessed(&self) -> Result<u64>;
}

/// Contacts. `(tenant_id, wa_id)` is unique.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait ContactRepository: Send + Sync {
    /// Stores a new contact; another with the same tenant and `wa_id` is
    /// [`imix_core::Error::Duplicate`] with field `wa_id`.
    async fn insert(&self, contact: &Contact) -> Result<()>;
    /// The contact `id`, if visible in `scope`.
    async fn get(&self, scope: Scope, id: ContactId) -> Result<Contact>;
    /// The tenant's contact with this `wa_id` (`scope` must be a tenant scope, or the
    /// platform scope with the tenant given by `tenant`).
    async fn find_by_wa_id(
        &self,
        tenant: imix_core::id::TenantId,
        wa_id: &str,
    ) -> Result<Option<Contact>>;
    /// Replaces the contact if visible in `scope` and at version `contact.version`.
    async fn update(&self, scope: Scope, contact: &Contact) -> Result<Contact>;
    /// Contacts visible in `scope`, oldest first.
    async fn list(&self, scope: Scope, page: PageRequest) -> Result<Page<Contact>>;
}

/// Whose conversations [`ConversationFilter::assignee`] selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssigneeFilter {
    /// Only unassigned ones.
    Unassigned,
    /// Only those assigned to this user.
    User(UserId),
    /// Those assigned to this user and unassigned ones (what an agent may see).
    UserOrUnassigned(UserId),
}

/// Which conversations [`ConversationRepository::list`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConversationFilter {
    /// Only this status.
    pub status: Option<ConversationStatus>,
    /// Only this number's.
    pub account_id: Option<WhatsAppAccountId>,
    /// Only these assignees'.
    pub assignee: Option<AssigneeFilter>,
    /// Only those with unread messages.
    pub unread_only: bool,
    /// Only those carrying this label.
    pub label: Option<crate::annotations::LabelId>,
    /// Only those whose contact has this tag (exactly).
    pub tag: Option<String>,
    /// Only those whose customer asked for a human (auto-reply's hand-off flag,
    /// `handoff_requested_at`).
    pub handoff_only: bool,
}

/// Conversations. `(account_id, contact_id)` is unique.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait ConversationRepository: Send + Sync {
    /// Stores a new conversation; a second one for the same account and contact is
    /// [`imix_core::Error::Duplicate`] with field `contact_id`.
    async fn insert(&self, conversation: &Conversation) -> Result<()>;
    /// The conversation `id`, if visible in `scope`.
    async fn get(&self, scope: Scope, id: ConversationId) -> Result<Conversation>;
    /// The conversation of `contact` on `account`, platform-wide.
    async fn find(
        &self,
        account: WhatsAppAccountId,
        contact: ContactId,
    ) -> Result<Option<Conversation>>;
    /// Replaces the conversation if visible in `scope` and at version
    /// `conversation.version`.
    async fn update(&self, scope: Scope, conversation: &Conversation) -> Result<Conversation>;
    /// Conversations visible in `scope` matching `filter`, oldest first.
    async fn list(
        &self,
        scope: Scope,
        filter: ConversationFilter,
        page: PageRequest,
    ) -> Result<Page<Conversation>>;
}

/// Messages. `(phone_number_id, wamid)` is unique, so a redelivered message is stored once.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait MessageRepository: Send + Sync {
    /// Stores a new message; another with the same phone number id and `wamid` is
    /// [`imix_core::Error::Duplicate`] with field `wamid`.
    async fn insert(&self, message: &Message) -> Result<()>;
    /// The message `id`, if visible in `scope`.
    async fn get(&self, scope: Scope, id: MessageId) -> Result<Message>;
    /// The message with this Meta id on this number, platform-wide.
    async fn find_by_wamid(&self, phone_number_id: &str, wamid: &str) -> Result<Option<Message>>;
    /// Replaces the message if visible in `scope` and at version `message.version`.
    async fn update(&self, scope: Scope, message: &Message) -> Result<Message>;
    /// Messages visible in `scope`, ordered by id (arrival order): for export.
    async fn list(&self, scope: Scope, page: PageRequest) -> Result<Page<Message>>;
    /// The messages of a conversation visible in `scope`, ordered by id (arrival order);
    /// the service orders them by Meta's timestamp.
    async fn list_for_conversation(
        &self,
        scope: Scope,
        conversation: ConversationId,
        page: PageRequest,
    ) -> Result<Page<Message>>;
}

/// Statuses held until their message is known.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait HeldStatusRepository: Send + Sync {
    /// Holds a status.
    async fn insert(&self, held: &HeldStatus) -> Result<()>;
    /// Removes and returns every status held for this message, oldest first.
    async fn take(&self, phone_number_id: &str, wamid: &str) -> Result<Vec<HeldStatus>>;
}

/// The messaging repositories, opened on one backend.
#[derive(Clone)]
pub struct MessagingStorage {
    /// Webhook deliveries.
    pub deliveries: Arc<dyn DeliveryRepository>,
    /// Contacts.
    pub contacts: Arc<dyn ContactRepository>,
    /// Conversations.
    pub conversations: Arc<dyn ConversationRepository>,
    /// Messages.
    pub messages: Arc<dyn MessageRepository>,
    /// Statuses waiting for their message.
    pub held_statuses: Arc<dyn HeldStatusRepository>,
    /// Contact deletes and look-ups by phone ([`groups`]).
    pub contact_book: Arc<dyn groups::ContactBookRepository>,
    /// Contact groups and memberships ([`groups`]).
    pub groups: Arc<dyn groups::GroupRepository>,
    /// The search index's queries ([`search`]; written by the record adapters).
    pub search: Arc<dyn search::SearchIndex>,
    /// Notes, labels and canned responses ([`annotations`]).
    pub annotations: annotations::AnnotationStorage,
    /// Outbound messages ([`outbound`]; here for backups).
    pub outbound: Arc<dyn outbound::OutboundRepository>,
}

impl std::fmt::Debug for MessagingStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessagingStorage").finish_non_exhaustive()
    }
}

impl MessagingStorage {
    /// Opens the repositories on `backend`; a backend without an adapter (its feature off,
    /// or [`Backend::Custom`]) is refused.
    pub fn open(backend: &Backend) -> Result<Self> {
        match backend {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(db) => {
                let a = Arc::new(sqlite::SqliteMessaging::new(db.clone()));
                let (contact_book, groups) = groups::open(backend)?;
                Ok(Self {
                    outbound: outbound::open(backend)?,
                    contact_book,
                    groups,
                    search: search::open(backend)?,
                    annotations: annotations::AnnotationStorage::open(backend)?,
                    deliveries: a.clone(),
                    contacts: a.clone(),
                    conversations: a.clone(),
                    messages: a.clone(),
                    held_statuses: a,
                })
            }
            #[cfg(feature = "mongodb")]
            Backend::Mongo(db) => {
                let a = Arc::new(mongo::MongoMessaging::new(db.clone()));
                let (contact_book, groups) = groups::open(backend)?;
                Ok(Self {
                    outbound: outbound::open(backend)?,
                    contact_book,
                    groups,
                    search: search::open(backend)?,
                    annotations: annotations::AnnotationStorage::open(backend)?,
                    deliveries: a.clone(),
                    contacts: a.clone(),
                    conversations: a.clone(),
                    messages: a.clone(),
                    held_statuses: a,
                })
            }
            other => Err(other.unsupported(CAPABILITY)),
        }
    }

    /// Contacts, conversations, messages, groups, annotations and outbound messages for
    /// backups, in import order. Deliveries and held statuses are operational state and
    /// not exported.
    pub fn record_sets(&self) -> Vec<Arc<dyn RecordSet>> {
        let (contacts, contacts_in) = (self.contacts.clone(), self.contacts.clone());
        let (conversations, conversations_in) =
            (self.conversations.clone(), self.conversations.clone());
        let (messages, messages_in) = (self.messages.clone(), self.messages.clone());
        let mut sets = vec![
            paged(
                "contact",
                move |page| {
                    let repo = contacts.clone();
                    async move { repo.list(Scope::Platform, page).await }
                },
                move |contact: Contact| {
                    let repo = contacts_in.clone();
                    async move { repo.insert(&contact).await }
                },
            ),
            paged(
                "conversation",
                move |page| {
                    let repo = conversations.clone();
                    async move {
                        repo.list(Scope::Platform, ConversationFilter::default(), page)
                            .await
                    }
                },
                move |conversation: Conversation| {
                    let repo = conversations_in.clone();
                    async move { repo.insert(&conversation).await }
                },
            ),
            paged(
                "message",
                move |page| {
                    let repo = messages.clone();
                    async move { repo.list(Scope::Platform, page).await }
                },
                move |message: Message| {
                    let repo = messages_in.clone();
                    async move { repo.insert(&message).await }
                },
            ),
        ];
        // Contact groups and memberships, after the contacts they refer to.
        sets.extend(groups::record_sets(&self.groups));
        // Labels, notes and canned responses, after the conversations they refer to.
        sets.extend(self.annotations.record_sets());
        // Outbound messages (with their idempotency keys), after their conversations.
        sets.extend(outbound::record_sets(&self.outbound));
        sets
    }
}

/// Creates or upgrades messaging's tables or indexes on `backend`. Idempotent.
pub async fn migrate(backend: &Backend) -> Result<()> {
    migrate_inbox(backend).await?;
    events::migrate(backend).await?;
    media::migrate(backend).await?;
    auto_reply::migrate(backend).await?;
    imports::migrate(backend).await?;
    groups::migrate(backend).await?;
    outbound::migrate(backend).await?;
    outbound_media::migrate(backend).await?;
    // After the inbox's tables: the first run fills the index from them.
    search::migrate(backend).await?;
    annotations::migrate(backend).await
}

/// The inbox's own steps (`0001_inbox`).
async fn migrate_inbox(backend: &Backend) -> Result<()> {
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

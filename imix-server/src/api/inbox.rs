//! The shared inbox, read side: conversations (one contact on one of the tenant's numbers),
//! their messages as received from Meta, and the contact views (contact operations are in
//! [`super::contacts`]).

use chrono::{DateTime, Utc};
use imix_core::id::{TenantId, UserId, WhatsAppAccountId};
use imix_messaging::{
    storage::{AssigneeFilter, ConversationFilter},
    Contact, Conversation, ConversationId, ConversationPatch, ConversationStatus, DeliveryState,
    Direction, Message,
};
use poem_openapi::{
    param::{Path, Query},
    payload::Json,
    types::MaybeUndefined,
    Enum, Object, OpenApi,
};

use super::{dto::page, parse_id, ApiTags};
use crate::{auth::Auth, error::ApiError, state::AppState};

/// Inbox operations.
pub struct InboxApi {
    state: AppState,
}

impl InboxApi {
    /// The inbox API over `state`.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

/// Where a conversation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum ConversationStatusDto {
    /// Needs an answer.
    Open,
    /// Waiting for something.
    Pending,
    /// Done; a new inbound message reopens it.
    Resolved,
}

impl From<ConversationStatus> for ConversationStatusDto {
    fn from(s: ConversationStatus) -> Self {
        match s {
            ConversationStatus::Open => Self::Open,
            ConversationStatus::Pending => Self::Pending,
            ConversationStatus::Resolved => Self::Resolved,
        }
    }
}

impl From<ConversationStatusDto> for ConversationStatus {
    fn from(s: ConversationStatusDto) -> Self {
        match s {
            ConversationStatusDto::Open => Self::Open,
            ConversationStatusDto::Pending => Self::Pending,
            ConversationStatusDto::Resolved => Self::Resolved,
        }
    }
}

/// A conversation.
#[derive(Debug, Clone, Object)]
pub struct ConversationView {
    /// Id.
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// The tenant's WhatsApp account (number).
    pub account_id: String,
    /// The customer.
    pub contact_id: String,
    /// Open, pending or resolved.
    pub status: ConversationStatusDto,
    /// The assigned agent, if any.
    pub assignee: Option<String>,
    /// Inbound messages not read yet.
    pub unread: u32,
    /// Meta's time of the newest message.
    pub last_message_at: Option<DateTime<Utc>>,
    /// Meta's time of the customer's newest message.
    pub last_inbound_at: Option<DateTime<Utc>>,
    /// When the 24-hour customer-service window closes (free-form replies allowed until
    /// then; templates only after).
    pub window_expires_at: Option<DateTime<Utc>>,
    /// Preview of the newest message.
    pub preview: Option<String>,
    /// The ids of the tenant's labels set on it (`PUT .../labels`), in the order set.
    pub labels: Vec<String>,
    /// When the customer asked for a human while auto-reply was on: the assistant stays
    /// quiet and the conversation waits for the team, until it is assigned or a user sends
    /// a message in it (`null` otherwise).
    pub handoff_requested_at: Option<DateTime<Utc>>,
    /// Version.
    pub version: u64,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<Conversation> for ConversationView {
    fn from(c: Conversation) -> Self {
        Self {
            window_expires_at: c.window_expires_at(),
            id: c.id.to_string(),
            tenant_id: c.tenant_id.to_string(),
            account_id: c.account_id.to_string(),
            contact_id: c.contact_id.to_string(),
            status: c.status.into(),
            assignee: c.assignee.map(|u| u.to_string()),
            unread: c.unread,
            last_message_at: c.last_message_at,
            last_inbound_at: c.last_inbound_at,
            preview: c.preview,
            labels: c.labels.iter().map(ToString::to_string).collect(),
            handoff_requested_at: c.handoff_requested_at,
            version: c.version,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

/// `PATCH /api/v1/tenants/{tenant_id}/conversations/{conversation_id}`: absent fields stay.
#[derive(Debug, Object)]
pub struct UpdateConversation {
    /// The new status (needs `conversations.reply`).
    pub status: Option<ConversationStatusDto>,
    /// The user to assign, or `null` to unassign (needs `conversations.assign`); an
    /// active user of the tenant who may reply.
    pub assignee: MaybeUndefined<String>,
    /// `true`: the team has read every message (unread count to 0).
    pub mark_read: Option<bool>,
    /// The version you read; a stale one is 409 `version_conflict`. Absent: apply to the
    /// latest.
    pub version: Option<u64>,
}

/// One page of conversations.
#[derive(Debug, Clone, Object)]
pub struct ConversationList {
    /// The conversations, oldest first.
    pub items: Vec<ConversationView>,
    /// Cursor of the next page, `null` on the last.
    pub next_cursor: Option<String>,
}

/// A message's delivery state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum DeliveryStateDto {
    /// Stored, not yet handed to Meta.
    Queued,
    /// Accepted by Meta.
    Accepted,
    /// Sent to the device.
    Sent,
    /// Delivered to the device.
    Delivered,
    /// Read.
    Read,
    /// Received from the customer.
    Received,
    /// Failed; Meta's errors are in `statuses`.
    Failed,
}

impl From<DeliveryState> for DeliveryStateDto {
    fn from(s: DeliveryState) -> Self {
        match s {
            DeliveryState::Queued => Self::Queued,
            DeliveryState::Accepted => Self::Accepted,
            DeliveryState::Sent => Self::Sent,
            DeliveryState::Delivered => Self::Delivered,
            DeliveryState::Read => Self::Read,
            DeliveryState::Received => Self::Received,
            DeliveryState::Failed => Self::Failed,
        }
    }
}

/// A status Meta reported.
#[derive(Debug, Clone, Object)]
pub struct StatusView {
    /// The state it reports.
    pub state: DeliveryStateDto,
    /// Meta's time of it.
    pub at: DateTime<Utc>,
    /// Meta's errors, for `failed`.
    pub errors: Option<serde_json::Value>,
}

/// A message.
#[derive(Debug, Clone, Object)]
pub struct MessageView {
    /// Id.
    pub id: String,
    /// The conversation.
    pub conversation_id: String,
    /// Meta's message id.
    pub wamid: String,
    /// `inbound` or `outbound`.
    pub direction: String,
    /// Meta's type: `text`, `image`, `location`, `reaction`, …
    pub kind: String,
    /// The message as Meta sent it.
    pub content: serde_json::Value,
    /// Meta's timestamp.
    pub timestamp: DateTime<Utc>,
    /// The furthest state reached.
    pub state: DeliveryStateDto,
    /// Every status received.
    pub statuses: Vec<StatusView>,
    /// Whether the assistant sent it by itself (auto-reply), not a user.
    pub auto_reply: bool,
}

impl From<Message> for MessageView {
    fn from(m: Message) -> Self {
        Self {
            id: m.id.to_string(),
            conversation_id: m.conversation_id.to_string(),
            wamid: m.wamid,
            direction: match m.direction {
                Direction::Inbound => "inbound".into(),
                Direction::Outbound => "outbound".into(),
            },
            kind: m.kind,
            content: m.content,
            timestamp: m.timestamp,
            state: m.state.into(),
            auto_reply: m.auto_reply,
            statuses: m
                .statuses
                .into_iter()
                .map(|s| StatusView {
                    state: s.state.into(),
                    at: s.at,
                    errors: s.errors,
                })
                .collect(),
        }
    }
}

/// One page of messages.
#[derive(Debug, Clone, Object)]
pub struct MessageList {
    /// The messages, in arrival order.
    pub items: Vec<MessageView>,
    /// Cursor of the next page, `null` on the last.
    pub next_cursor: Option<String>,
}

/// A contact.
#[derive(Debug, Clone, Object)]
pub struct ContactView {
    /// Id.
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// WhatsApp id as Meta reports it.
    pub wa_id: String,
    /// Phone number (E.164), when known.
    pub phone: Option<String>,
    /// Name given by the tenant.
    pub name: Option<String>,
    /// WhatsApp profile name.
    pub profile_name: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Whether the contact opted out of marketing.
    pub opted_out: bool,
    /// When the opt-out (or back in) was recorded.
    pub opt_out_at: Option<DateTime<Utc>>,
    /// What recorded it: `message`, `api` or `import`.
    pub opt_out_source: Option<String>,
    /// Language code.
    pub language: Option<String>,
    /// Custom attributes by key, each typed.
    pub attributes: std::collections::BTreeMap<String, super::contacts::AttributeDto>,
    /// Notes.
    pub notes: Option<String>,
    /// Blocked by the tenant: the send API refuses messages to it (`contact_blocked`).
    pub blocked: bool,
    /// Version.
    pub version: u64,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<Contact> for ContactView {
    fn from(c: Contact) -> Self {
        Self {
            id: c.id.to_string(),
            tenant_id: c.tenant_id.to_string(),
            wa_id: c.wa_id,
            phone: c.phone,
            name: c.name,
            profile_name: c.profile_name,
            tags: c.tags,
            opted_out: c.opt_out.as_ref().is_some_and(|o| o.opted_out),
            opt_out_at: c.opt_out.as_ref().map(|o| o.at),
            opt_out_source: c.opt_out.map(|o| o.source),
            language: c.language,
            attributes: c
                .attributes
                .into_iter()
                .map(|(k, v)| (k, v.into()))
                .collect(),
            notes: c.notes,
            blocked: c.blocked,
            version: c.version,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

/// One page of contacts.
#[derive(Debug, Clone, Object)]
pub struct ContactList {
    /// The contacts, oldest first.
    pub items: Vec<ContactView>,
    /// Cursor of the next page, `null` on the last.
    pub next_cursor: Option<String>,
}

/// How new conversations get an assignee.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum AutoAssignDto {
    /// They stay unassigned until someone assigns them (the default).
    Off,
    /// A new conversation (and a resolved, unassigned one an inbound message reopens) goes
    /// to the next of the tenant's active agents, in turn, by user id.
    RoundRobin,
}

impl From<imix_messaging::assign::AutoAssign> for AutoAssignDto {
    fn from(a: imix_messaging::assign::AutoAssign) -> Self {
        match a {
            imix_messaging::assign::AutoAssign::Off => Self::Off,
            imix_messaging::assign::AutoAssign::RoundRobin => Self::RoundRobin,
        }
    }
}

impl From<AutoAssignDto> for imix_messaging::assign::AutoAssign {
    fn from(a: AutoAssignDto) -> Self {
        match a {
            AutoAssignDto::Off => Self::Off,
            AutoAssignDto::RoundRobin => Self::RoundRobin,
        }
    }
}

/// A tenant's inbox settings.
#[derive(Debug, Clone, Object)]
pub struct InboxSettingsView {
    /// Automatic assignment: `off` (default) or `round_robin`.
    pub auto_assign: AutoAssignDto,
}

impl From<imix_messaging::assign::InboxSettings> for InboxSettingsView {
    fn from(s: imix_messaging::assign::InboxSettings) -> Self {
        Self {
            auto_assign: s.auto_assign.into(),
        }
    }
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Inbox")]
impl InboxApi {
    /// The tenant's inbox settings (`conversations.read`).
    #[oai(
        path = "/tenants/:tenant_id/settings/inbox",
        method = "get",
        operation_id = "get_inbox_settings"
    )]
    async fn inbox_settings(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
    ) -> Result<Json<InboxSettingsView>, ApiError> {
        let tenant = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        let settings = self
            .state
            .inbox
            .inbox_settings(auth.0.access(), tenant)
            .await?;
        Ok(Json(settings.into()))
    }

    /// Changes the tenant's inbox settings (`conversations.assign`: admins, managers,
    /// supervisors). `auto_assign: round_robin` hands each new conversation to the next
    /// active agent in turn; `off` leaves them unassigned. 422 naming `auto_assign` for
    /// any other value.
    #[oai(
        path = "/tenants/:tenant_id/settings/inbox",
        method = "put",
        operation_id = "update_inbox_settings"
    )]
    async fn update_inbox_settings(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        body: Json<InboxSettingsView>,
    ) -> Result<Json<InboxSettingsView>, ApiError> {
        let tenant = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        // The platform operator names any id: only an existing tenant gets settings.
        let ctx = auth.0.access();
        ctx.authorize(imix_core::access::Permission::ConversationsAssign, tenant)?;
        self.state.storage.tenants().profile(tenant).await?;
        let settings = imix_messaging::assign::InboxSettings {
            auto_assign: body.0.auto_assign.into(),
        };
        let stored = self
            .state
            .inbox
            .update_inbox_settings(ctx, tenant, settings)
            .await?;
        Ok(Json(stored.into()))
    }

    /// The tenant's conversations, oldest first; `status` and `account_id` narrow the list.
    #[oai(
        path = "/tenants/:tenant_id/conversations",
        method = "get",
        operation_id = "list_conversations"
    )]
    #[allow(clippy::too_many_arguments)] // one parameter per documented query filter
    async fn conversations(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        status: Query<Option<ConversationStatusDto>>,
        account_id: Query<Option<String>>,
        /// `me`, `none` (unassigned) or a user id.
        assignee: Query<Option<String>>,
        /// `true`: only conversations with unread messages.
        unread: Query<Option<bool>>,
        /// A label id: only conversations carrying that label.
        label: Query<Option<String>>,
        /// Only conversations whose contact has this tag (exactly).
        tag: Query<Option<String>>,
        /// `true`: only conversations whose customer asked for a human while auto-reply was
        /// on (`handoff_requested_at` set).
        handoff: Query<Option<bool>>,
        cursor: Query<Option<String>>,
        limit: Query<Option<u32>>,
    ) -> Result<Json<ConversationList>, ApiError> {
        let tenant = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        let account_id = match account_id.0 {
            Some(raw) => Some(raw.parse::<WhatsAppAccountId>().map_err(|_| {
                ApiError::invalid_field("account_id", "is not a WhatsApp account id")
            })?),
            None => None,
        };
        let assignee = match assignee.0.as_deref().map(str::trim) {
            None | Some("") => None,
            Some("none") => Some(AssigneeFilter::Unassigned),
            Some("me") => Some(AssigneeFilter::User(auth.0.access().user_id())),
            Some(raw) => Some(AssigneeFilter::User(raw.parse::<UserId>().map_err(
                |_| ApiError::invalid_field("assignee", "must be `me`, `none` or a user id"),
            )?)),
        };
        let label = match label.0.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(raw) => Some(
                raw.parse::<imix_messaging::annotations::LabelId>()
                    .map_err(|_| ApiError::invalid_field("label", "is not a label id"))?,
            ),
        };
        let tag = tag.0.filter(|t| !t.is_empty());
        let filter = ConversationFilter {
            status: status.0.map(Into::into),
            account_id,
            assignee,
            unread_only: unread.0.unwrap_or(false),
            label,
            tag,
            handoff_only: handoff.0.unwrap_or(false),
        };
        let p = self
            .state
            .inbox
            .conversations(auth.0.access(), tenant, filter, page(cursor.0, limit.0))
            .await?;
        Ok(Json(ConversationList {
            items: p.items.into_iter().map(Into::into).collect(),
            next_cursor: p.next_cursor,
        }))
    }

    /// One conversation.
    #[oai(
        path = "/tenants/:tenant_id/conversations/:conversation_id",
        method = "get",
        operation_id = "get_conversation"
    )]
    async fn conversation(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        conversation_id: Path<String>,
    ) -> Result<Json<ConversationView>, ApiError> {
        let tenant = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        let id = parse_id::<ConversationId>(&conversation_id.0, "conversation")?;
        let c = self
            .state
            .inbox
            .conversation(auth.0.access(), tenant, id)
            .await?;
        Ok(Json(c.into()))
    }

    /// Changes a conversation: status, assignee (`null` unassigns), unread count. An agent
    /// changes only conversations they see (their own and unassigned ones).
    #[oai(
        path = "/tenants/:tenant_id/conversations/:conversation_id",
        method = "patch",
        operation_id = "update_conversation"
    )]
    async fn update_conversation(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        conversation_id: Path<String>,
        body: Json<UpdateConversation>,
    ) -> Result<Json<ConversationView>, ApiError> {
        let tenant = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        let id = parse_id::<ConversationId>(&conversation_id.0, "conversation")?;
        let b = body.0;
        let assignee = match b.assignee {
            MaybeUndefined::Undefined => None,
            MaybeUndefined::Null => Some(None),
            MaybeUndefined::Value(raw) => {
                Some(Some(raw.trim().parse::<UserId>().map_err(|_| {
                    ApiError::invalid_field("assignee", "is not a user id")
                })?))
            }
        };
        let patch = ConversationPatch {
            status: b.status.map(Into::into),
            assignee,
            mark_read: b.mark_read.unwrap_or(false),
            expected_version: b.version,
        };
        let c = self
            .state
            .inbox
            .update_conversation(auth.0.access(), tenant, id, patch)
            .await?;
        Ok(Json(c.into()))
    }

    /// The messages of a conversation, in arrival order.
    #[oai(
        path = "/tenants/:tenant_id/conversations/:conversation_id/messages",
        method = "get",
        operation_id = "list_conversation_messages"
    )]
    async fn messages(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        conversation_id: Path<String>,
        cursor: Query<Option<String>>,
        limit: Query<Option<u32>>,
    ) -> Result<Json<MessageList>, ApiError> {
        let tenant = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        let id = parse_id::<ConversationId>(&conversation_id.0, "conversation")?;
        let p = self
            .state
            .inbox
            .messages(auth.0.access(), tenant, id, page(cursor.0, limit.0))
            .await?;
        Ok(Json(MessageList {
            items: p.items.into_iter().map(Into::into).collect(),
            next_cursor: p.next_cursor,
        }))
    }
}

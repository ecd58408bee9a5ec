//! The records messaging keeps: webhook deliveries as received, contacts, conversations,
//! messages, and statuses held until their message appears.

use imix_core::{
    id::{TenantId, UserId, WhatsAppAccountId},
    Timestamp,
};
use serde::{Deserialize, Serialize};

imix_core::define_id!(
    /// Identifies one webhook delivery (one POST from Meta).
    DeliveryId,
    "delivery"
);
imix_core::define_id!(
    /// Identifies a contact of a tenant.
    ContactId,
    "contact"
);
imix_core::define_id!(
    /// Identifies a conversation: one contact on one of the tenant's numbers.
    ConversationId,
    "conversation"
);
imix_core::define_id!(
    /// Identifies a stored message.
    MessageId,
    "message"
);
imix_core::define_id!(
    /// Identifies a status held until its message is known.
    HeldStatusId,
    "held_status"
);

/// One webhook delivery, stored exactly as received before Meta is answered, then processed
/// from the store. Operational state: not part of backups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// Its id (creation-ordered: deliveries are processed oldest first).
    pub id: DeliveryId,
    /// When it was received.
    pub received_at: Timestamp,
    /// The raw body, byte for byte (Meta sends UTF-8 JSON; the signature covers these bytes).
    pub body: String,
    /// The accounts whose app secret verified the signature: only entries of these
    /// accounts' phone numbers are filed under a tenant.
    pub verified_accounts: Vec<WhatsAppAccountId>,
    /// Processing attempts so far.
    pub attempts: u32,
    /// While a worker holds it: until when. A lease that runs out frees it for another.
    pub lease_until: Option<Timestamp>,
    /// When it may be tried (again); `None` once processed.
    pub due_at: Option<Timestamp>,
    /// When processing finished.
    pub processed_at: Option<Timestamp>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// Optimistic-concurrency version.
    pub version: u64,
}

impl Delivery {
    /// A new delivery, due now.
    pub fn new(body: String, verified_accounts: Vec<WhatsAppAccountId>) -> Self {
        let now = imix_core::now();
        Self {
            id: DeliveryId::new(),
            received_at: now,
            body,
            verified_accounts,
            attempts: 0,
            lease_until: None,
            due_at: Some(now),
            processed_at: None,
            last_error: None,
            version: 1,
        }
    }
}

/// Whether a contact accepts marketing messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OptOut {
    /// Opted out (true) or back in (false).
    pub opted_out: bool,
    /// When.
    pub at: Timestamp,
    /// What did it: `"message"` (with its id), `"api"`, `"import"`.
    pub source: String,
    /// The message that did it, when one did.
    pub message_id: Option<MessageId>,
}

/// A customer of a tenant. Unique per tenant by `wa_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    /// Its id.
    pub id: ContactId,
    /// The tenant.
    pub tenant_id: TenantId,
    /// The WhatsApp id Meta reports (digits, no `+`).
    pub wa_id: String,
    /// The phone number in E.164, when known.
    pub phone: Option<String>,
    /// The name the tenant gave it.
    pub name: Option<String>,
    /// The WhatsApp profile name.
    pub profile_name: Option<String>,
    /// Free-form tags.
    pub tags: Vec<String>,
    /// Marketing opt-out, when ever set.
    pub opt_out: Option<OptOut>,
    /// The contact's language (a code such as `fr` or `en_US`), when known.
    #[serde(default)]
    pub language: Option<String>,
    /// Custom attributes the tenant keeps, by key, each typed.
    #[serde(default)]
    pub attributes: std::collections::BTreeMap<String, AttributeValue>,
    /// Free-form notes of the tenant's users.
    #[serde(default)]
    pub notes: Option<String>,
    /// Blocked by the tenant: nothing is sent to it (the send API refuses with
    /// `contact_blocked`); its inbound messages are still stored. Defaults to false so that
    /// contacts stored, exported or backed up before the field existed read as not blocked.
    #[serde(default)]
    pub blocked: bool,
    /// Optimistic-concurrency version.
    pub version: u64,
    /// Created.
    pub created_at: Timestamp,
    /// Last changed.
    pub updated_at: Timestamp,
}

/// The value of a contact's custom attribute, with its type, so that a number stays a
/// number and a date a date through edits, exports and imports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum AttributeValue {
    /// Text.
    Text(String),
    /// A number (integer or decimal, finite).
    Number(serde_json::Number),
    /// True or false.
    Boolean(bool),
    /// A calendar date.
    Date(chrono::NaiveDate),
}

impl Contact {
    /// A new contact of `tenant` with WhatsApp id `wa_id`.
    pub fn new(tenant_id: TenantId, wa_id: impl Into<String>) -> Self {
        let now = imix_core::now();
        Self {
            id: ContactId::new(),
            tenant_id,
            wa_id: wa_id.into(),
            phone: None,
            name: None,
            profile_name: None,
            tags: Vec::new(),
            opt_out: None,
            language: None,
            attributes: Default::default(),
            notes: None,
            blocked: false,
            version: 1,
            created_at: now,
            updated_at: now,
        }
    }
}

/// Where a conversation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConversationStatus {
    /// Needs an answer.
    #[default]
    Open,
    /// Waiting for something.
    Pending,
    /// Done; a new inbound message reopens it.
    Resolved,
}

/// One contact on one of the tenant's numbers. Unique by `(account_id, contact_id)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    /// Its id.
    pub id: ConversationId,
    /// The tenant.
    pub tenant_id: TenantId,
    /// The tenant's number.
    pub account_id: WhatsAppAccountId,
    /// The customer.
    pub contact_id: ContactId,
    /// Open, pending or resolved.
    pub status: ConversationStatus,
    /// The agent it is assigned to.
    pub assignee: Option<UserId>,
    /// Inbound messages not read yet.
    pub unread: u32,
    /// Meta's time of the newest message.
    pub last_message_at: Option<Timestamp>,
    /// Meta's time of the contact's newest inbound message: the customer-service window
    /// runs 24 hours from it.
    pub last_inbound_at: Option<Timestamp>,
    /// A short preview of the newest message.
    pub preview: Option<String>,
    /// The tenant's labels set on it ([`crate::annotations::Label`]), in the order set.
    #[serde(default)]
    pub labels: Vec<crate::annotations::LabelId>,
    /// When the customer asked for a human while auto-reply was on ([`crate::auto_reply`]):
    /// the assistant stays quiet in it, and the team sees it flagged, until a user clears
    /// it by assigning the conversation or sending a message in it.
    #[serde(default)]
    pub handoff_requested_at: Option<Timestamp>,
    /// Optimistic-concurrency version.
    pub version: u64,
    /// Created.
    pub created_at: Timestamp,
    /// Last changed.
    pub updated_at: Timestamp,
}

impl Conversation {
    /// A new open conversation.
    pub fn new(tenant_id: TenantId, account_id: WhatsAppAccountId, contact_id: ContactId) -> Self {
        let now = imix_core::now();
        Self {
            id: ConversationId::new(),
            tenant_id,
            account_id,
            contact_id,
            status: ConversationStatus::Open,
            assignee: None,
            unread: 0,
            last_message_at: None,
            last_inbound_at: None,
            preview: None,
            labels: Vec::new(),
            handoff_requested_at: None,
            version: 1,
            created_at: now,
            updated_at: now,
        }
    }

    /// When the 24-hour customer-service window closes (`None`: never opened).
    pub fn window_expires_at(&self) -> Option<Timestamp> {
        self.last_inbound_at
            .map(|t| t + chrono::Duration::hours(24))
    }
}

/// Inbound (from the customer) or outbound (from the business).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From the customer.
    Inbound,
    /// From the business.
    Outbound,
}

/// A message's delivery state. Ordered: a message only moves forward (`Failed` may come at
/// any point and is final).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Stored, not yet handed to Meta.
    Queued,
    /// Handed to Meta, accepted.
    Accepted,
    /// Sent to the device.
    Sent,
    /// Delivered to the device.
    Delivered,
    /// Read.
    Read,
    /// Received from the customer.
    Received,
    /// Failed (Meta's error kept in the status event).
    Failed,
}

/// One status Meta reported for a message, with Meta's timestamp.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusEvent {
    /// The state it reports.
    pub state: DeliveryState,
    /// Meta's time of it.
    pub at: Timestamp,
    /// Meta's errors, for `failed`.
    pub errors: Option<serde_json::Value>,
    /// Pricing, as Meta sent it.
    pub pricing: Option<serde_json::Value>,
    /// Conversation (billing) information, as Meta sent it.
    pub conversation: Option<serde_json::Value>,
}

/// A message of a conversation. Unique by `(phone_number_id, wamid)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Its id.
    pub id: MessageId,
    /// The tenant.
    pub tenant_id: TenantId,
    /// The tenant's number.
    pub account_id: WhatsAppAccountId,
    /// That number's Meta id.
    pub phone_number_id: String,
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The customer.
    pub contact_id: ContactId,
    /// Meta's message id (`wamid.…`).
    pub wamid: String,
    /// Inbound or outbound.
    pub direction: Direction,
    /// Meta's type: `text`, `image`, `reaction`, `unsupported`, … Serialized as `type`
    /// (Meta's name): a `kind` member would clash with the `kind` every backup record
    /// carries ([`imix_core::store::transfer::Record`]).
    #[serde(rename = "type")]
    pub kind: String,
    /// The message as Meta sent it (its type's object and `context`, `referral`, `errors`).
    pub content: serde_json::Value,
    /// Meta's timestamp of the message.
    pub timestamp: Timestamp,
    /// The furthest state reached.
    pub state: DeliveryState,
    /// Every status received, in arrival order.
    pub statuses: Vec<StatusEvent>,
    /// Optimistic-concurrency version.
    pub version: u64,
    /// When it was stored.
    pub created_at: Timestamp,
    /// Whether the assistant sent it by itself (auto-reply), not a user.
    #[serde(default)]
    pub auto_reply: bool,
}

/// A status for a message not known yet (it raced its message, or the message was sent by
/// another tool), applied when the message appears.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldStatus {
    /// Its id.
    pub id: HeldStatusId,
    /// The number's Meta id.
    pub phone_number_id: String,
    /// The message's Meta id.
    pub wamid: String,
    /// The status.
    pub event: StatusEvent,
    /// When it arrived.
    pub received_at: Timestamp,
}

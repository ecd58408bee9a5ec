//! The send API: checks a message, takes its quota, queues it; reads queued messages back,
//! retries failed ones, marks conversations read at Meta.

use std::sync::Arc;

use imix_core::{
    access::{AccessContext, Permission},
    id::{TenantId, WhatsAppAccountId},
    store::{ConflictBackoff, Page, PageRequest, Scope},
    Error as CoreError,
};
use imix_whatsapp::{client::WhatsAppClient, model::MessageContent};
use serde_json::Value;
use tokio::sync::Notify;

use super::{validate, OutboundRecord, OutboundStatus, QuotaRefusal, SendQuota, SenderAccounts};
use crate::{
    error::MessagingError,
    records::{Contact, ContactId, Conversation, ConversationId, Direction, MessageId},
    storage::{outbound::OutboundRepository, MessagingStorage},
};

/// A send refused before anything was queued: a 422 with its own `code`, naming `field`.
#[derive(Debug, Clone, PartialEq)]
pub struct SendRefusal {
    /// The error code, e.g. `outside_customer_service_window`.
    pub code: &'static str,
    /// The offending field, e.g. `text.body`.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
    /// More, e.g. `window_expires_at` (boxed: refusals travel in `Result`s).
    pub details: Option<Box<Value>>,
}

impl SendRefusal {
    /// A refusal with `code`.
    pub fn new(code: &'static str, field: Option<String>, message: impl Into<String>) -> Self {
        Self {
            code,
            field,
            message: message.into(),
            details: None,
        }
    }

    /// `invalid_field` naming `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new("invalid_field", Some(field.into()), message)
    }

    /// Adds details.
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(Box::new(details));
        self
    }
}

/// Whom a message goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendTarget {
    /// An E.164 phone number (or WhatsApp id) or a contact id, with the account to send
    /// from.
    To(String),
    /// A conversation (its number and contact).
    Conversation(ConversationId),
}

/// A message to queue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSend {
    /// The number to send from (required with [`SendTarget::To`]).
    pub account_id: Option<WhatsAppAccountId>,
    /// Whom to.
    pub target: SendTarget,
    /// Meta's body: `type`, the type's object, optional `context`.
    pub body: Value,
    /// The caller's `Idempotency-Key`.
    pub idempotency_key: Option<String>,
}

/// Why a send API call failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Refused before queueing (422).
    #[error("{}", .0.message)]
    Refused(SendRefusal),
    /// The daily quota refused it, or the tenant is deactivated.
    #[error(transparent)]
    Quota(#[from] QuotaRefusal),
    /// Only failed or unknown messages can be retried (409 `not_retryable`).
    #[error("only failed or unknown messages can be retried; this one is {0}")]
    NotRetryable(&'static str),
    /// Meta refused a call made on the caller's behalf (mark as read).
    #[error("Meta refused the request: {0}")]
    Graph(#[source] imix_whatsapp::Error),
    /// Access, storage.
    #[error(transparent)]
    Messaging(#[from] MessagingError),
}

impl From<CoreError> for SendError {
    fn from(e: CoreError) -> Self {
        Self::Messaging(e.into())
    }
}

impl From<imix_core::access::AccessDenied> for SendError {
    fn from(e: imix_core::access::AccessDenied) -> Self {
        Self::Messaging(e.into())
    }
}

impl From<SendRefusal> for SendError {
    fn from(r: SendRefusal) -> Self {
        Self::Refused(r)
    }
}

/// What `send` answers.
#[derive(Debug, Clone)]
pub struct SendAccepted {
    /// The queued message.
    pub record: OutboundRecord,
    /// `true` when an earlier request with the same idempotency key queued it.
    pub replayed: bool,
}

/// The send API's operations.
#[derive(Clone)]
pub struct OutboundService {
    storage: MessagingStorage,
    records: Arc<dyn OutboundRepository>,
    accounts: Arc<dyn SenderAccounts>,
    quota: Arc<dyn SendQuota>,
    client: Arc<dyn WhatsAppClient>,
    wake: Arc<Notify>,
    /// Stored media a `blob` may name (refused without it).
    media_jobs: Option<Arc<dyn crate::storage::media::MediaJobRepository>>,
    /// The replicas' shared queue, announced every queued message (see `stream_queue`).
    queue: Option<Arc<dyn super::OutboundQueue>>,
}

impl std::fmt::Debug for OutboundService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundService").finish_non_exhaustive()
    }
}

/// Whether the caller sees conversation `c` (as in the inbox: every one with
/// `conversations.read_all`, otherwise their own and unassigned ones).
fn visible(ctx: &AccessContext, c: &Conversation) -> bool {
    ctx.has(Permission::ConversationsReadAll) || c.assignee.is_none_or(|a| a == ctx.user_id())
}

fn not_found(entity: &'static str, id: impl ToString) -> CoreError {
    CoreError::NotFound {
        entity,
        id: id.to_string(),
    }
}

/// An `Idempotency-Key` as accepted: 1 to 255 visible ASCII characters.
fn check_key(key: &str) -> Result<(), SendRefusal> {
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(SendRefusal::invalid(
            "Idempotency-Key",
            "must be 1 to 255 visible ASCII characters",
        ));
    }
    Ok(())
}

/// SHA-256 (hex) of the request as the send API understood it (account, target, Meta's
/// body, as canonical JSON: object keys sorted, no spaces) and the caller's id. Two
/// requests with the same fingerprint would queue the same message for the same caller.
fn fingerprint(ctx: &AccessContext, new: &NewSend) -> String {
    use sha2::{Digest, Sha256};
    let target = match &new.target {
        SendTarget::To(to) => serde_json::json!({ "to": to }),
        SendTarget::Conversation(id) => serde_json::json!({ "conversation_id": id.to_string() }),
    };
    let request = serde_json::json!({
        "account_id": new.account_id.map(|a| a.to_string()),
        "target": target,
        "body": new.body,
    });
    let mut canonical = String::new();
    canonical_json(&request, &mut canonical);
    let mut hash = Sha256::new();
    hash.update(canonical.as_bytes());
    // A separator no JSON text ends with, then whose request it is.
    hash.update(b"\n");
    hash.update(ctx.user_id().to_string().as_bytes());
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `v` as JSON with every object's keys sorted, whatever order serde_json keeps.
fn canonical_json(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                if let Some(x) = map.get(k) {
                    canonical_json(x, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, x) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_json(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The answer to a request whose idempotency key already queued `first`: the first answer
/// when it is the same request from the same caller (`print`), else `idempotency_key_reused`.
fn replay(
    ctx: &AccessContext,
    first: OutboundRecord,
    print: &str,
) -> Result<SendAccepted, SendError> {
    let same = match &first.request_fingerprint {
        Some(stored) => stored == print,
        // Queued before fingerprints were kept: only the same caller may replay it.
        None => first.created_by == Some(ctx.user_id()),
    };
    if !same {
        return Err(SendRefusal::new(
            "idempotency_key_reused",
            Some("Idempotency-Key".into()),
            "was already used for a different request (another body, target or caller); use a new key",
        )
        .into());
    }
    Ok(SendAccepted {
        record: first,
        replayed: true,
    })
}

impl OutboundService {
    /// The send API over `storage` and `records`, checking accounts and templates with
    /// `accounts`, taking quota from `quota`, marking messages read through `client`, and
    /// waking the dispatcher with `wake` when a message is queued.
    pub fn new(
        storage: MessagingStorage,
        records: Arc<dyn OutboundRepository>,
        accounts: Arc<dyn SenderAccounts>,
        quota: Arc<dyn SendQuota>,
        client: Arc<dyn WhatsAppClient>,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            storage,
            records,
            accounts,
            quota,
            client,
            wake,
            media_jobs: None,
            queue: None,
        }
    }

    /// Announces every queued message on `queue` (shared by the replicas' dispatchers)
    /// once it is stored.
    pub fn with_queue(mut self, queue: Arc<dyn super::OutboundQueue>) -> Self {
        self.queue = Some(queue);
        self
    }

    /// Tells the shared queue, if any, that `id` is stored `queued`. A failure is only
    /// logged: the dispatchers' sweep of the store finds the message anyway.
    async fn announce(&self, id: MessageId) {
        if let Some(queue) = &self.queue {
            if let Err(e) = queue.push(id).await {
                tracing::warn!(message = %id, error = %e, "cannot announce a queued message on the shared queue; the store's sweep finds it");
            }
        }
    }

    /// Lets media objects name a file of ours (`blob`: a message whose media is in `jobs`).
    pub fn with_stored_media(
        mut self,
        jobs: Arc<dyn crate::storage::media::MediaJobRepository>,
    ) -> Self {
        self.media_jobs = Some(jobs);
        self
    }

    /// The queue's records (for the dispatcher and tests).
    pub fn records(&self) -> &Arc<dyn OutboundRepository> {
        &self.records
    }

    /// Checks and queues a message (`conversations.reply`). In order: the tenant is
    /// active; the body is Meta's shape within Meta's limits; the conversation (or contact)
    /// exists and the caller sees it; the account is verified and not paused; the contact
    /// is not blocked; the contact has not opted out of marketing (marketing templates); outside the 24-hour window
    /// only templates; a template is approved and its parameters match. Then the quota is
    /// taken and the message stored `queued`. A repeated `Idempotency-Key` (checked after
    /// the body and the caller's sight of the conversation) answers the first message and
    /// queues nothing when the request and the caller are the same, and is refused with
    /// `idempotency_key_reused` otherwise.
    pub async fn send(
        &self,
        ctx: &AccessContext,
        tenant: TenantId,
        new: NewSend,
    ) -> Result<SendAccepted, SendError> {
        self.send_marked(ctx, tenant, new, false).await
    }

    /// [`OutboundService::send`] for an answer the assistant sends by itself (auto-reply):
    /// every check and the quota apply the same; the record and the conversation's copy
    /// are marked `auto_reply`.
    pub async fn send_auto_reply(
        &self,
        ctx: &AccessContext,
        tenant: TenantId,
        new: NewSend,
    ) -> Result<SendAccepted, SendError> {
        self.send_marked(ctx, tenant, new, true).await
    }

    async fn send_marked(
        &self,
        ctx: &AccessContext,
        tenant: TenantId,
        new: NewSend,
        auto_reply: bool,
    ) -> Result<SendAccepted, SendError> {
        let scope = ctx.authorize(Permission::ConversationsReply, tenant)?;
        if let Some(key) = &new.idempotency_key {
            check_key(key)?;
        }
        // The body and the caller's sight of the conversation are checked before any stored
        // answer is given: a key never reveals a message the request could not have sent.
        // A `blob` (a file of ours) is queued as a reference the dispatcher uploads.
        let mut body = new.body.clone();
        let blobs = super::media_upload::blob_references(&mut body)?;
        let mut checked = validate::check(&body)?;
        let (mut conversation, contact, fresh) = self.target(ctx, scope, tenant, &new).await?;
        if let Some(first) = blobs.first() {
            match &self.media_jobs {
                Some(jobs) => {
                    super::media_upload::check_references(jobs.as_ref(), scope, &blobs).await?
                }
                None => {
                    return Err(SendRefusal::invalid(
                        first.field.clone(),
                        "files of ours cannot be sent by this server",
                    )
                    .into())
                }
            }
        }
        let fingerprint = new.idempotency_key.as_ref().map(|_| fingerprint(ctx, &new));
        if let (Some(key), Some(print)) = (&new.idempotency_key, &fingerprint) {
            if let Some(first) = self.records.find_by_idempotency_key(tenant, key).await? {
                return replay(ctx, first, print);
            }
        }
        if !self.quota.tenant_active(tenant).await? {
            return Err(QuotaRefusal::TenantDeactivated.into());
        }
        let state = match self.accounts.state(conversation.account_id).await {
            Ok(s) if s.tenant_id == tenant => s,
            Ok(_) | Err(MessagingError::Store(CoreError::NotFound { .. })) => {
                return Err(SendRefusal::invalid(
                    "account_id",
                    "is not a WhatsApp account of the tenant",
                )
                .into())
            }
            Err(e) => return Err(e.into()),
        };
        if !state.verified {
            return Err(SendRefusal::new(
                "account_not_verified",
                Some("account_id".into()),
                "the WhatsApp account is not verified: verify it (POST .../whatsapp-accounts/{id}/verify) first",
            )
            .into());
        }
        if state.paused {
            return Err(SendRefusal::new(
                "account_paused",
                Some("account_id".into()),
                "sending from this account is paused: Meta refused its access token; update the token and verify the account again",
            )
            .into());
        }
        if contact.blocked {
            // Named by the field the caller used to reach the contact.
            let field = match &new.target {
                SendTarget::Conversation(_) => "conversation_id",
                SendTarget::To(_) => "to",
            };
            return Err(SendRefusal::new(
                "contact_blocked",
                Some(field.into()),
                "the contact is blocked: nothing is sent to it (unblock it with PATCH .../contacts/{id} {\"blocked\": false})",
            )
            .with_details(serde_json::json!({ "contact_id": contact.id.to_string() }))
            .into());
        }
        // Replies may name our message id: Meta needs the wamid.
        if let Some(context) = checked.context.as_mut() {
            if let Ok(id) = context.message_id.parse::<MessageId>() {
                match self.storage.messages.get(scope, id).await {
                    Ok(m) if m.conversation_id == conversation.id => context.message_id = m.wamid,
                    Ok(_) | Err(CoreError::NotFound { .. }) => {
                        return Err(SendRefusal::invalid(
                            "context.message_id",
                            "is not a message of this conversation",
                        )
                        .into())
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        if let MessageContent::Reaction { reaction } = &mut checked.content {
            if let Ok(id) = reaction.message_id.parse::<MessageId>() {
                match self.storage.messages.get(scope, id).await {
                    Ok(m) if m.conversation_id == conversation.id => reaction.message_id = m.wamid,
                    Ok(_) | Err(CoreError::NotFound { .. }) => {
                        return Err(SendRefusal::invalid(
                            "reaction.message_id",
                            "is not a message of this conversation",
                        )
                        .into())
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        let opted_out = contact.opt_out.as_ref().is_some_and(|o| o.opted_out);
        if let MessageContent::Template { template } = &checked.content {
            let found = self
                .accounts
                .template(
                    conversation.account_id,
                    &template.name,
                    &template.language.code,
                )
                .await?;
            let Some(info) = found else {
                return Err(SendRefusal::new(
                    "template_not_found",
                    Some("template.name".into()),
                    format!(
                        "the account has no template {} in {} (sync templates first)",
                        template.name, template.language.code
                    ),
                )
                .into());
            };
            if !info.status.eq_ignore_ascii_case("APPROVED") {
                return Err(SendRefusal::new(
                    "template_not_approved",
                    Some("template.name".into()),
                    format!("the template is {}, not APPROVED", info.status),
                )
                .with_details(serde_json::json!({ "template_status": info.status }))
                .into());
            }
            if opted_out && info.category.eq_ignore_ascii_case("MARKETING") {
                return Err(SendRefusal::new(
                    "contact_opted_out",
                    Some("to".into()),
                    "the contact opted out of marketing messages",
                )
                .with_details(serde_json::json!({
                    "opted_out_at": contact.opt_out.as_ref().map(|o| o.at.to_rfc3339()),
                }))
                .into());
            }
            validate::template_parameters(&checked.content, &info.components)?;
        } else {
            let expires = conversation.window_expires_at();
            if expires.is_none_or(|t| t <= imix_core::now()) {
                return Err(SendRefusal::new(
                    "outside_customer_service_window",
                    Some("type".into()),
                    "the customer has not written in the last 24 hours: only a template can be sent",
                )
                .with_details(serde_json::json!({
                    "window_expires_at": expires.map(|t| t.to_rfc3339()),
                }))
                .into());
            }
        }
        if fresh {
            match self.storage.conversations.insert(&conversation).await {
                Ok(()) => {}
                // Opened meanwhile (an inbound message, another send): that one it is.
                Err(CoreError::Duplicate { .. }) => {
                    conversation = self
                        .storage
                        .conversations
                        .find(conversation.account_id, contact.id)
                        .await?
                        .ok_or_else(|| not_found("conversation", contact.id))?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        let taken = self.quota.take(tenant, checked.media).await?;
        let now = imix_core::now();
        let id = MessageId::new();
        let record = OutboundRecord {
            id,
            tenant_id: tenant,
            account_id: conversation.account_id,
            phone_number_id: state.phone_number_id,
            conversation_id: conversation.id,
            contact_id: contact.id,
            to: contact.wa_id.clone(),
            kind: checked.kind().to_owned(),
            content: checked.body(),
            dedupe: match &new.idempotency_key {
                Some(key) => OutboundRecord::dedupe_of(tenant, key),
                None => format!("id:{id}"),
            },
            idempotency_key: new.idempotency_key.clone(),
            request_fingerprint: fingerprint.clone(),
            created_by: Some(ctx.user_id()),
            status: OutboundStatus::Queued,
            wamid: None,
            sending_at: None,
            sent_at: None,
            delivered_at: None,
            read_at: None,
            failed_at: None,
            unknown_at: None,
            error: None,
            last_error: None,
            attempts: 0,
            due_at: Some(now),
            lease_until: None,
            quota: Some(taken.clone()),
            auto_reply,
            version: 1,
            created_at: now,
            updated_at: now,
        };
        match self.records.insert(&record).await {
            Ok(()) => {
                self.wake.notify_waiters();
                self.announce(record.id).await;
                Ok(SendAccepted {
                    record,
                    replayed: false,
                })
            }
            Err(e) => {
                // Nothing was queued: the unit goes back.
                if let Err(q) = self.quota.give_back(tenant, &taken).await {
                    tracing::error!(error = %q, "cannot give back the quota of a message not queued");
                }
                match (e, &new.idempotency_key) {
                    // The same key raced this request: the first one answers.
                    (CoreError::Duplicate { .. }, Some(key)) => {
                        match self.records.find_by_idempotency_key(tenant, key).await? {
                            Some(first) => {
                                replay(ctx, first, fingerprint.as_deref().unwrap_or_default())
                            }
                            None => Err(not_found("message", key).into()),
                        }
                    }
                    (e, _) => Err(e.into()),
                }
            }
        }
    }

    /// The conversation and contact a message goes to; for a contact without one on that
    /// number, a new conversation (`true`: not stored yet).
    async fn target(
        &self,
        ctx: &AccessContext,
        scope: Scope,
        tenant: TenantId,
        new: &NewSend,
    ) -> Result<(Conversation, Contact, bool), SendError> {
        match &new.target {
            SendTarget::Conversation(id) => {
                let c = match self.storage.conversations.get(scope, *id).await {
                    Ok(c) if visible(ctx, &c) => c,
                    Ok(_) | Err(CoreError::NotFound { .. }) => {
                        return Err(SendRefusal::invalid(
                            "conversation_id",
                            "is not a conversation you can see",
                        )
                        .into())
                    }
                    Err(e) => return Err(e.into()),
                };
                if new.account_id.is_some_and(|a| a != c.account_id) {
                    return Err(SendRefusal::invalid(
                        "account_id",
                        "is not the conversation's account",
                    )
                    .into());
                }
                let contact = self.storage.contacts.get(scope, c.contact_id).await?;
                Ok((c, contact, false))
            }
            SendTarget::To(to) => {
                let Some(account) = new.account_id else {
                    return Err(SendRefusal::invalid("account_id", "is required with `to`").into());
                };
                let to = to.trim();
                let contact = if let Ok(id) = to.parse::<ContactId>() {
                    match self.storage.contacts.get(scope, id).await {
                        Ok(c) => c,
                        Err(CoreError::NotFound { .. }) => {
                            return Err(SendRefusal::invalid(
                                "to",
                                "is not a contact of the tenant",
                            )
                            .into())
                        }
                        Err(e) => return Err(e.into()),
                    }
                } else {
                    let digits = to.strip_prefix('+').unwrap_or(to);
                    if digits.len() < 6
                        || digits.len() > 15
                        || !digits.bytes().all(|b| b.is_ascii_digit())
                    {
                        return Err(SendRefusal::invalid(
                            "to",
                            "must be an E.164 phone number or a contact id",
                        )
                        .into());
                    }
                    match self.storage.contacts.find_by_wa_id(tenant, digits).await? {
                        Some(c) => c,
                        None => {
                            return Err(SendRefusal::new(
                                "unknown_contact",
                                Some("to".into()),
                                "no contact has this number: create the contact first (POST .../contacts)",
                            )
                            .into())
                        }
                    }
                };
                let mut fresh = false;
                let conversation =
                    match self.storage.conversations.find(account, contact.id).await? {
                        Some(c) => c,
                        None => {
                            // Only a number of the tenant gets a conversation.
                            match self.accounts.state(account).await {
                                Ok(s) if s.tenant_id == tenant => {}
                                Ok(_) | Err(MessagingError::Store(CoreError::NotFound { .. })) => {
                                    return Err(SendRefusal::invalid(
                                        "account_id",
                                        "is not a WhatsApp account of the tenant",
                                    )
                                    .into())
                                }
                                Err(e) => return Err(e.into()),
                            }
                            // Stored only once every check passed: a refusal leaves nothing.
                            fresh = true;
                            Conversation::new(tenant, account, contact.id)
                        }
                    };
                if conversation.tenant_id != tenant {
                    return Err(SendRefusal::invalid(
                        "account_id",
                        "is not a WhatsApp account of the tenant",
                    )
                    .into());
                }
                if !visible(ctx, &conversation) {
                    return Err(SendRefusal::invalid(
                        "to",
                        "the conversation with this contact is assigned to someone else",
                    )
                    .into());
                }
                Ok((conversation, contact, fresh))
            }
        }
    }

    /// A message queued through the send API (`conversations.read`; an agent sees those
    /// of the conversations they see).
    pub async fn get(
        &self,
        ctx: &AccessContext,
        tenant: TenantId,
        id: MessageId,
    ) -> Result<OutboundRecord, SendError> {
        let scope = ctx.authorize(Permission::ConversationsRead, tenant)?;
        let record = self.records.get(scope, id).await?;
        self.check_visible(ctx, scope, &record).await?;
        Ok(record)
    }

    async fn check_visible(
        &self,
        ctx: &AccessContext,
        scope: Scope,
        record: &OutboundRecord,
    ) -> Result<(), SendError> {
        if ctx.has(Permission::ConversationsReadAll) {
            return Ok(());
        }
        let c = self
            .storage
            .conversations
            .get(scope, record.conversation_id)
            .await?;
        if visible(ctx, &c) {
            Ok(())
        } else {
            Err(not_found("message", record.id).into())
        }
    }

    /// The tenant's queued messages by id, only those in `status` when given: with
    /// `failed`, the dead-letter view (`conversations.read_all`: it spans every
    /// conversation).
    pub async fn list(
        &self,
        ctx: &AccessContext,
        tenant: TenantId,
        status: Option<OutboundStatus>,
        page: PageRequest,
    ) -> Result<Page<OutboundRecord>, SendError> {
        ctx.authorize(Permission::ConversationsRead, tenant)?;
        let scope = ctx.authorize(Permission::ConversationsReadAll, tenant)?;
        Ok(self.records.list(scope, status, page).await?)
    }

    /// Queues a `failed` or `unknown` message again (`conversations.reply`). A failed
    /// message's quota was given back, so it is taken again; an unknown one kept its unit.
    /// Anything else is [`SendError::NotRetryable`].
    pub async fn retry(
        &self,
        ctx: &AccessContext,
        tenant: TenantId,
        id: MessageId,
    ) -> Result<OutboundRecord, SendError> {
        let scope = ctx.authorize(Permission::ConversationsReply, tenant)?;
        let mut backoff = ConflictBackoff::new();
        while backoff.next_attempt().await {
            let mut r = self.records.get(scope, id).await?;
            self.check_visible(ctx, scope, &r).await?;
            if !matches!(r.status, OutboundStatus::Failed | OutboundStatus::Unknown) {
                return Err(SendError::NotRetryable(r.status.as_str()));
            }
            let retaken = match &r.quota {
                Some(q) if q.returned => {
                    let taken = self.quota.take(tenant, q.media).await?;
                    r.quota = Some(taken.clone());
                    Some(taken)
                }
                _ => None,
            };
            let now = imix_core::now();
            r.status = OutboundStatus::Queued;
            r.due_at = Some(now);
            r.lease_until = None;
            r.error = None;
            r.last_error = None;
            r.failed_at = None;
            r.unknown_at = None;
            r.wamid = None;
            r.sent_at = None;
            r.delivered_at = None;
            r.read_at = None;
            r.attempts = 0;
            r.updated_at = now;
            match self.records.update(&r).await {
                Ok(stored) => {
                    self.wake.notify_waiters();
                    self.announce(stored.id).await;
                    return Ok(stored);
                }
                Err(e) => {
                    if let Some(taken) = retaken {
                        if let Err(q) = self.quota.give_back(tenant, &taken).await {
                            tracing::error!(error = %q, "cannot give back the quota of a retry not queued");
                        }
                    }
                    match e {
                        CoreError::VersionConflict { .. } => continue,
                        e => return Err(e.into()),
                    }
                }
            }
        }
        Err(CoreError::VersionConflict {
            entity: "message",
            id: id.to_string(),
            expected: 0,
        }
        .into())
    }

    /// Marks the customer's messages of a conversation read at Meta (blue ticks): Meta's
    /// read receipt for the newest inbound message covers those before it. Also sets the
    /// conversation's unread count to 0. `conversations.reply`. Answers the wamid marked,
    /// `None` when the conversation has no inbound message.
    pub async fn mark_read(
        &self,
        ctx: &AccessContext,
        tenant: TenantId,
        id: ConversationId,
    ) -> Result<Option<String>, SendError> {
        let scope = ctx.authorize(Permission::ConversationsReply, tenant)?;
        let c = self.storage.conversations.get(scope, id).await?;
        if !visible(ctx, &c) {
            return Err(not_found("conversation", id).into());
        }
        let mut newest: Option<crate::records::Message> = None;
        let mut page = PageRequest::first(imix_core::store::MAX_PAGE_SIZE);
        loop {
            let list = self
                .storage
                .messages
                .list_for_conversation(scope, id, page.clone())
                .await?;
            for m in list.items {
                if m.direction == Direction::Inbound
                    && newest.as_ref().is_none_or(|n| m.timestamp >= n.timestamp)
                {
                    newest = Some(m);
                }
            }
            match list.next_cursor {
                Some(cursor) => page.cursor = Some(cursor),
                None => break,
            }
        }
        let Some(newest) = newest else {
            return Ok(None);
        };
        let sender = self.accounts.sender(c.account_id).await?;
        self.client
            .mark_as_read(&sender.token, &newest.phone_number_id, &newest.wamid)
            .await
            .map_err(SendError::Graph)?;
        let mut backoff = ConflictBackoff::new();
        while backoff.next_attempt().await {
            let mut c = self.storage.conversations.get(scope, id).await?;
            if c.unread == 0 {
                break;
            }
            c.unread = 0;
            c.updated_at = imix_core::now();
            match self.storage.conversations.update(scope, &c).await {
                Ok(_) => break,
                Err(CoreError::VersionConflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Some(newest.wamid))
    }
}

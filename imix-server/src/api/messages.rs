//! The send API: queue an outbound message (202), read it back with its status, list
//! messages by status (the dead-letter view with `status=failed`), retry a failed or unknown
//! one, and mark a conversation read at Meta.

use chrono::{DateTime, Utc};
use imix_core::id::{TenantId, WhatsAppAccountId};
use imix_messaging::{
    outbound::{
        NewSend, OutboundRecord, OutboundStatus, QuotaRefusal, SendError, SendRefusal, SendTarget,
    },
    ConversationId, MessageId,
};
use poem::http::StatusCode;
use poem_openapi::{
    param::{Header, Path, Query},
    payload::Json,
    ApiResponse, Enum, Object, OpenApi,
};
use serde_json::{json, Value};

use super::{dto::page, parse_id, ApiTags};
use crate::{auth::Auth, error::ApiError, state::AppState};

/// Send API operations.
pub struct MessagesApi {
    state: AppState,
}

impl MessagesApi {
    /// The send API over `state`.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

/// An outbound message's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum OutboundStatusDto {
    /// Stored, waiting for the dispatcher.
    Queued,
    /// Being handed to Meta.
    Sending,
    /// Meta accepted it (`wamid` known) or reported it sent.
    Sent,
    /// Delivered to the customer's device.
    Delivered,
    /// Read by the customer.
    Read,
    /// Failed: `error` holds Meta's code, title and details.
    Failed,
    /// The dispatcher stopped while Meta was being called: Meta may or may not have it.
    /// Never sent again automatically (`POST .../retry` to send it again).
    Unknown,
}

impl From<OutboundStatus> for OutboundStatusDto {
    fn from(s: OutboundStatus) -> Self {
        match s {
            OutboundStatus::Queued => Self::Queued,
            OutboundStatus::Sending => Self::Sending,
            OutboundStatus::Sent => Self::Sent,
            OutboundStatus::Delivered => Self::Delivered,
            OutboundStatus::Read => Self::Read,
            OutboundStatus::Failed => Self::Failed,
            OutboundStatus::Unknown => Self::Unknown,
        }
    }
}

impl From<OutboundStatusDto> for OutboundStatus {
    fn from(s: OutboundStatusDto) -> Self {
        match s {
            OutboundStatusDto::Queued => Self::Queued,
            OutboundStatusDto::Sending => Self::Sending,
            OutboundStatusDto::Sent => Self::Sent,
            OutboundStatusDto::Delivered => Self::Delivered,
            OutboundStatusDto::Read => Self::Read,
            OutboundStatusDto::Failed => Self::Failed,
            OutboundStatusDto::Unknown => Self::Unknown,
        }
    }
}

/// Why a message failed: Meta's error.
#[derive(Debug, Clone, Object)]
pub struct SendErrorView {
    /// Meta's code, e.g. `131026` (message undeliverable), `131047` (re-engagement:
    /// send a template), `132000` (template parameters).
    pub code: Option<i64>,
    /// Meta's title.
    pub title: Option<String>,
    /// Meta's message.
    pub message: String,
    /// Meta's details.
    pub details: Option<String>,
}

/// An outbound message and where it stands.
#[derive(Debug, Clone, Object)]
pub struct OutboundMessageView {
    /// Id (also the id of the conversation's message once sent).
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// The number it is sent from.
    pub account_id: String,
    /// The conversation.
    pub conversation_id: String,
    /// The customer.
    pub contact_id: String,
    /// The customer's WhatsApp id.
    pub to: String,
    /// Always `outbound`.
    pub direction: String,
    /// Meta's type: `text`, `image`, `template`, …
    #[oai(rename = "type")]
    pub kind: String,
    /// The message as sent to Meta: `type`, the type's object, `context`.
    pub content: Value,
    /// Where it stands.
    pub status: OutboundStatusDto,
    /// Meta's message id, once Meta accepted it.
    pub wamid: Option<String>,
    /// Meta's error, when it failed.
    pub error: Option<SendErrorView>,
    /// Attempts to hand it to Meta.
    pub attempts: u32,
    /// The last transient error (while it waits for another attempt).
    pub last_error: Option<String>,
    /// When it will be tried next (queued messages).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The `Idempotency-Key` it was queued with (`auto-reply:<inbound message id>` for
    /// an auto-reply).
    pub idempotency_key: Option<String>,
    /// Whether the assistant queued it by itself (auto-reply), not a user.
    pub auto_reply: bool,
    /// When it was queued.
    pub queued_at: DateTime<Utc>,
    /// When it was last marked sending.
    pub sending_at: Option<DateTime<Utc>>,
    /// When Meta accepted it or reported it sent.
    pub sent_at: Option<DateTime<Utc>>,
    /// When Meta reported it delivered.
    pub delivered_at: Option<DateTime<Utc>>,
    /// When Meta reported it read.
    pub read_at: Option<DateTime<Utc>>,
    /// When it failed.
    pub failed_at: Option<DateTime<Utc>>,
    /// When its outcome was found unknown.
    pub unknown_at: Option<DateTime<Utc>>,
    /// Version.
    pub version: u64,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<OutboundRecord> for OutboundMessageView {
    fn from(r: OutboundRecord) -> Self {
        Self {
            id: r.id.to_string(),
            tenant_id: r.tenant_id.to_string(),
            account_id: r.account_id.to_string(),
            conversation_id: r.conversation_id.to_string(),
            contact_id: r.contact_id.to_string(),
            to: r.to,
            direction: "outbound".into(),
            kind: r.kind,
            content: r.content,
            status: r.status.into(),
            wamid: r.wamid,
            error: r.error.map(|e| SendErrorView {
                code: e.code,
                title: e.title,
                message: e.message,
                details: e.details,
            }),
            attempts: r.attempts,
            last_error: r.last_error,
            next_attempt_at: r.due_at.filter(|_| r.status == OutboundStatus::Queued),
            idempotency_key: r.idempotency_key,
            auto_reply: r.auto_reply,
            queued_at: r.created_at,
            sending_at: r.sending_at,
            sent_at: r.sent_at,
            delivered_at: r.delivered_at,
            read_at: r.read_at,
            failed_at: r.failed_at,
            unknown_at: r.unknown_at,
            version: r.version,
            updated_at: r.updated_at,
        }
    }
}

/// `POST /api/v1/tenants/{tenant_id}/messages`: Meta's send-message body plus whom to send
/// to. Give `conversation_id`, or `account_id` with `to` (an E.164 number of a contact, or
/// a contact id). `type` names the message's type and the member holding its object, as in
/// Meta's API: `text: {body, preview_url}`, `image|video|document: {id | link, caption}`,
/// `audio|sticker: {id | link}`, `location`, `contacts`, `interactive` (`button`, `list`,
/// `cta_url`), `template: {name, language: {code}, components}`, `reaction: {message_id,
/// emoji}`; `context: {message_id}` makes it a reply (a wamid, or a message id of ours).
#[derive(Debug, Clone, Object)]
pub struct SendMessageRequest {
    /// The number to send from (required with `to`).
    pub account_id: Option<String>,
    /// An E.164 phone number of one of the tenant's contacts, or a contact id.
    pub to: Option<String>,
    /// A conversation (instead of `account_id` and `to`).
    pub conversation_id: Option<String>,
    /// `text`, `image`, `audio`, `video`, `document`, `sticker`, `location`, `contacts`,
    /// `interactive`, `template` or `reaction`.
    #[oai(rename = "type")]
    pub kind: Option<String>,
    /// Accepted for compatibility with Meta's body; always `whatsapp`.
    pub messaging_product: Option<String>,
    /// Accepted for compatibility with Meta's body; only `individual`.
    pub recipient_type: Option<String>,
    /// `{body, preview_url}`.
    pub text: Option<Value>,
    /// `{id | link, caption}` (JPEG or PNG, up to 5 MB).
    pub image: Option<Value>,
    /// `{id | link}` (AAC, AMR, MP3, M4A, OGG; up to 16 MB).
    pub audio: Option<Value>,
    /// `{id | link, caption}` (MP4, 3GP; up to 16 MB).
    pub video: Option<Value>,
    /// `{id | link, caption, filename}` (up to 100 MB).
    pub document: Option<Value>,
    /// `{id | link}` (WebP, up to 500 KB).
    pub sticker: Option<Value>,
    /// `{latitude, longitude, name, address}`.
    pub location: Option<Value>,
    /// One to five contact cards.
    pub contacts: Option<Value>,
    /// `{type: button | list | cta_url, header, body, footer, action}`.
    pub interactive: Option<Value>,
    /// `{name, language: {code}, components}`.
    pub template: Option<Value>,
    /// `{message_id, emoji}`.
    pub reaction: Option<Value>,
    /// `{message_id}`: the message this one replies to.
    pub context: Option<Value>,
}

/// What `POST .../messages` answers.
#[derive(Debug, Clone, Object)]
pub struct SendAcceptedView {
    /// The message's id.
    pub id: String,
    /// `queued`.
    pub status: OutboundStatusDto,
    /// The conversation it belongs to.
    pub conversation_id: String,
}

/// Answers of send.
#[derive(ApiResponse)]
enum Queued {
    /// Queued (or, for a repeated `Idempotency-Key`, the first request's answer: nothing
    /// queued again).
    #[oai(status = 202)]
    Accepted(Json<SendAcceptedView>),
}

/// Answers of retry.
#[derive(ApiResponse)]
enum Requeued {
    /// Queued again.
    #[oai(status = 202)]
    Accepted(Json<OutboundMessageView>),
}

/// One page of outbound messages.
#[derive(Debug, Clone, Object)]
pub struct OutboundMessageList {
    /// The messages, oldest first.
    pub items: Vec<OutboundMessageView>,
    /// Cursor of the next page, `null` on the last.
    pub next_cursor: Option<String>,
}

/// What marking a conversation read did.
#[derive(Debug, Clone, Object)]
pub struct MarkedRead {
    /// The wamid of the customer's newest message, marked read at Meta (those before it
    /// are covered); `null` when the conversation has no message from the customer.
    pub marked_wamid: Option<String>,
}

/// The send API's refusals and their status (each also in docs/api.md's error table).
const REFUSALS: &[(StatusCode, &str)] = &[
    (StatusCode::UNPROCESSABLE_ENTITY, "invalid_field"),
    (StatusCode::UNPROCESSABLE_ENTITY, "account_not_verified"),
    (StatusCode::UNPROCESSABLE_ENTITY, "account_paused"),
    (StatusCode::UNPROCESSABLE_ENTITY, "contact_blocked"),
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        "outside_customer_service_window",
    ),
    (StatusCode::UNPROCESSABLE_ENTITY, "template_not_found"),
    (StatusCode::UNPROCESSABLE_ENTITY, "template_not_approved"),
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        "template_parameter_mismatch",
    ),
    (StatusCode::UNPROCESSABLE_ENTITY, "contact_opted_out"),
    (StatusCode::UNPROCESSABLE_ENTITY, "unknown_contact"),
    (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused"),
];

fn refusal(r: SendRefusal) -> ApiError {
    let mut details = json!({});
    if let Some(field) = &r.field {
        details = json!({
            "field": field, "reason": r.message,
            "errors": [{ "field": field, "reason": r.message }],
        });
    }
    if let (Some(Value::Object(extra)), Some(obj)) =
        (r.details.map(|d| *d), details.as_object_mut())
    {
        obj.extend(extra);
    }
    let message = match &r.field {
        Some(field) => format!("{field}: {}", r.message),
        None => r.message.clone(),
    };
    let status = REFUSALS
        .iter()
        .find(|(_, code)| *code == r.code)
        .map_or(StatusCode::UNPROCESSABLE_ENTITY, |(status, _)| *status);
    ApiError::new(status, r.code, message).with_details(details)
}

impl From<SendError> for ApiError {
    fn from(e: SendError) -> Self {
        match e {
            SendError::Refused(r) => refusal(r),
            SendError::Quota(QuotaRefusal::TenantDeactivated) => ApiError::new(
                StatusCode::FORBIDDEN,
                "tenant_deactivated",
                "the tenant is deactivated",
            ),
            SendError::Quota(QuotaRefusal::LimitReached {
                limit_name,
                limit,
                used,
                resets_at,
            }) => {
                let wait = (resets_at - imix_core::now()).num_seconds().max(1) as u64;
                ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "limit_reached",
                    format!("the daily limit of {limit} {limit_name} is reached; it resets at {resets_at}"),
                )
                .with_details(json!({
                    "limit_name": limit_name, "limit": limit, "used": used,
                    "resets_at": resets_at.to_rfc3339(),
                }))
                .with_retry_after(wait)
            }
            SendError::Quota(QuotaRefusal::Unavailable(source)) => {
                tracing::error!(error = %source, "quota backend failure");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "quota_unavailable",
                    "usage counters are unavailable; try again shortly",
                )
            }
            SendError::NotRetryable(status) => ApiError::new(
                StatusCode::CONFLICT,
                "not_retryable",
                format!("only failed or unknown messages can be retried; this one is {status}"),
            )
            .with_details(json!({ "status": status })),
            SendError::Graph(g) => {
                let meta = g.graph_error().map(|m| {
                    json!({"code": m.code, "message": m.message, "error_subcode": m.error_subcode})
                });
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "meta_error",
                    format!("Meta refused the request: {g}"),
                )
                .with_details(json!({ "meta": meta }))
            }
            SendError::Messaging(m) => m.into(),
        }
    }
}

impl SendMessageRequest {
    /// Meta's part of the body: `type`, the type's object, `context`.
    fn meta_body(&self) -> Value {
        let mut body = serde_json::Map::new();
        if let Some(kind) = &self.kind {
            body.insert("type".into(), Value::String(kind.clone()));
        }
        let members = [
            ("text", &self.text),
            ("image", &self.image),
            ("audio", &self.audio),
            ("video", &self.video),
            ("document", &self.document),
            ("sticker", &self.sticker),
            ("location", &self.location),
            ("contacts", &self.contacts),
            ("interactive", &self.interactive),
            ("template", &self.template),
            ("reaction", &self.reaction),
            ("context", &self.context),
        ];
        for (name, value) in members {
            if let Some(v) = value {
                body.insert(name.into(), v.clone());
            }
        }
        Value::Object(body)
    }
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Inbox")]
impl MessagesApi {
    /// Queues an outbound message (`conversations.reply`; an agent sends only in
    /// conversations they see). Refusals are 422 with their own code, naming the field,
    /// and queue nothing: `invalid_field`, `account_not_verified`, `account_paused`,
    /// `contact_blocked` (naming `to` or `conversation_id`),
    /// `outside_customer_service_window` (free-form outside the 24-hour window; `details.
    /// window_expires_at`), `template_not_found`, `template_not_approved`,
    /// `template_parameter_mismatch` (naming the component), `contact_opted_out`
    /// (marketing template), `unknown_contact`; 403 `tenant_deactivated`; 429
    /// `limit_reached` (daily messages or media). Then one unit of the daily quota is
    /// taken (media messages also count against media) and the message is stored `queued`:
    /// 202. The same `Idempotency-Key` again answers the first message and queues nothing.
    #[oai(
        path = "/tenants/:tenant_id/messages",
        method = "post",
        operation_id = "send_message"
    )]
    async fn send(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        /// Makes a retried request answer the first one (kept as long as the message, at
        /// least 24 hours; per tenant): 1 to 255 visible ASCII characters.
        #[oai(name = "Idempotency-Key")]
        idempotency_key: Header<Option<String>>,
        body: Json<SendMessageRequest>,
        req: &poem::Request,
    ) -> Result<Queued, ApiError> {
        // Two keys on one request: which one a retry would carry is anyone's guess, so
        // neither is taken (the header parser alone would keep the first silently).
        if req.headers().get_all("idempotency-key").iter().count() > 1 {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "duplicate_header",
                "the header `Idempotency-Key` is given more than once",
            )
            .with_details(json!({ "field": "Idempotency-Key" })));
        }
        // A key that is not text (bytes outside ASCII) reaches us as no key at all: refuse
        // it, or a retry carrying it would send twice.
        if idempotency_key.0.is_none() && req.headers().contains_key("idempotency-key") {
            return Err(ApiError::invalid_field(
                "Idempotency-Key",
                "must be 1 to 255 visible ASCII characters",
            ));
        }
        let tenant = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        // Another tenant's caller learns nothing from the body's checks.
        auth.0
            .access()
            .authorize(imix_core::access::Permission::ConversationsReply, tenant)?;
        let b = body.0;
        if b.messaging_product
            .as_deref()
            .is_some_and(|p| p != "whatsapp")
        {
            return Err(ApiError::invalid_field(
                "messaging_product",
                "must be `whatsapp`",
            ));
        }
        if b.recipient_type
            .as_deref()
            .is_some_and(|r| r != "individual")
        {
            return Err(ApiError::invalid_field(
                "recipient_type",
                "only `individual` is supported",
            ));
        }
        let account_id = match b.account_id.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(raw) => Some(raw.parse::<WhatsAppAccountId>().map_err(|_| {
                ApiError::invalid_field("account_id", "is not a WhatsApp account id")
            })?),
        };
        let target = match (b.conversation_id.as_deref().map(str::trim), b.to.as_deref()) {
            (Some(raw), None) if !raw.is_empty() => {
                SendTarget::Conversation(raw.parse::<ConversationId>().map_err(|_| {
                    ApiError::invalid_field("conversation_id", "is not a conversation id")
                })?)
            }
            (None, Some(to)) => SendTarget::To(to.to_owned()),
            (Some(_), Some(_)) => {
                return Err(ApiError::invalid_field(
                    "to",
                    "give either `to` (with `account_id`) or `conversation_id`, not both",
                ))
            }
            _ => {
                return Err(ApiError::invalid_field(
                    "to",
                    "is required (or `conversation_id`)",
                ))
            }
        };
        let new = NewSend {
            account_id,
            target,
            body: b.meta_body(),
            idempotency_key: idempotency_key.0,
        };
        let accepted = self
            .state
            .outbound
            .send(auth.0.access(), tenant, new)
            .await?;
        // A replay answers what the first request answered.
        Ok(Queued::Accepted(Json(SendAcceptedView {
            id: accepted.record.id.to_string(),
            status: OutboundStatusDto::Queued,
            conversation_id: accepted.record.conversation_id.to_string(),
        })))
    }

    /// The tenant's outbound messages, oldest first (`conversations.read_all`);
    /// `status=failed` is the dead-letter view: every message Meta refused, with Meta's
    /// error, to fix and retry.
    #[oai(
        path = "/tenants/:tenant_id/messages",
        method = "get",
        operation_id = "list_outbound_messages"
    )]
    async fn list(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        status: Query<Option<OutboundStatusDto>>,
        cursor: Query<Option<String>>,
        limit: Query<Option<u32>>,
    ) -> Result<Json<OutboundMessageList>, ApiError> {
        let tenant = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        let p = self
            .state
            .outbound
            .list(
                auth.0.access(),
                tenant,
                status.0.map(Into::into),
                page(cursor.0, limit.0),
            )
            .await?;
        Ok(Json(OutboundMessageList {
            items: p.items.into_iter().map(Into::into).collect(),
            next_cursor: p.next_cursor,
        }))
    }

    /// An outbound message: its status (`queued`, `sending`, `sent`, `delivered`, `read`,
    /// `failed`, `unknown`), Meta's `wamid` once known, the time of each status, and Meta's
    /// error when it failed (`conversations.read`).
    #[oai(
        path = "/tenants/:tenant_id/messages/:message_id",
        method = "get",
        operation_id = "get_outbound_message"
    )]
    async fn get(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        message_id: Path<String>,
    ) -> Result<Json<OutboundMessageView>, ApiError> {
        let tenant = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        let id = parse_id::<MessageId>(&message_id.0, "message")?;
        let r = self.state.outbound.get(auth.0.access(), tenant, id).await?;
        Ok(Json(r.into()))
    }

    /// Queues a `failed` or `unknown` message again (`conversations.reply`); a failed one
    /// takes its quota unit again. 409 `not_retryable` for any other status.
    #[oai(
        path = "/tenants/:tenant_id/messages/:message_id/retry",
        method = "post",
        operation_id = "retry_message"
    )]
    async fn retry(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        message_id: Path<String>,
    ) -> Result<Requeued, ApiError> {
        let tenant = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        let id = parse_id::<MessageId>(&message_id.0, "message")?;
        let r = self
            .state
            .outbound
            .retry(auth.0.access(), tenant, id)
            .await?;
        Ok(Requeued::Accepted(Json(r.into())))
    }

    /// Marks the customer's messages of a conversation read at Meta (blue ticks) and its
    /// unread count 0 (`conversations.reply`). 502 `meta_error` when Meta refuses.
    #[oai(
        path = "/tenants/:tenant_id/conversations/:conversation_id/read",
        method = "post",
        operation_id = "mark_conversation_read"
    )]
    async fn mark_read(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        conversation_id: Path<String>,
    ) -> Result<Json<MarkedRead>, ApiError> {
        let tenant = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        let id = parse_id::<ConversationId>(&conversation_id.0, "conversation")?;
        let marked = self
            .state
            .outbound
            .mark_read(auth.0.access(), tenant, id)
            .await?;
        Ok(Json(MarkedRead {
            marked_wamid: marked,
        }))
    }
}

//! Outbound messages: the send API's validation ([`validate`]), the durable queue they wait
//! in (one [`OutboundRecord`] per message, in the store), the [`Dispatcher`] that hands
//! them to Meta, and the statuses Meta reports afterwards.
//!
//! The guarantees, in the order a message meets them:
//!
//! - A refused request queues nothing and takes no quota; an accepted one takes its quota
//!   unit(s) first, then is stored `queued` in one write (an `Idempotency-Key` is part of
//!   that write: a unique key per tenant, so a retried request finds the first message).
//! - A worker claims a queued message with a lease (several replicas share the queue; a
//!   claim is one atomic step), waits for a token of the number's rate limiter, then marks
//!   it `sending` durably *before* calling Meta.
//! - Meta's answer is stored at once: `sent` with the `wamid` (then the message is also
//!   written to the conversation and statuses Meta sent before the answer are applied), or
//!   back to `queued` with a delay (retryable), or `failed` with Meta's error and the quota
//!   given back (permanent), or the account paused (authentication).
//! - A message found `sending` whose lease ran out (its worker died mid-request: Meta may
//!   or may not have accepted it) becomes `unknown`. It is never sent again by itself;
//!   `retry` sends it again on request.

mod dispatch;
pub mod media_upload;
pub mod rate;
mod service;
pub mod stream_queue;
pub mod validate;

use std::sync::Arc;

use async_trait::async_trait;
use imix_core::{
    id::{TenantId, UserId, WhatsAppAccountId},
    Timestamp,
};
use serde::{Deserialize, Serialize};

use crate::records::{ContactId, ConversationId, MessageId};

pub use dispatch::{
    effective_rate, retry_delay, AccountPaused, DispatchConfig, Dispatcher, RateLimits,
    DEFAULT_RATE, MAX_RATE,
};
pub use rate::{LocalRateGate, RateGate};
pub use service::{NewSend, OutboundService, SendAccepted, SendError, SendRefusal, SendTarget};
pub use stream_queue::{OutboundQueue, QueueEntry, QueueError, StreamConfig};

/// Where an outbound message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboundStatus {
    /// Stored, waiting for the dispatcher.
    Queued,
    /// Being handed to Meta (marked before the call).
    Sending,
    /// Meta accepted it (its `wamid` is known), or reported it sent.
    Sent,
    /// Delivered to the customer's device.
    Delivered,
    /// Read by the customer.
    Read,
    /// Failed; [`OutboundRecord::error`] says why. Final unless retried.
    Failed,
    /// Its worker stopped while Meta was being called: Meta may or may not have it. Never
    /// sent again automatically.
    Unknown,
}

impl OutboundStatus {
    /// The name used in the API and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Sending => "sending",
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Read => "read",
            Self::Failed => "failed",
            Self::Unknown => "unknown",
        }
    }

    /// The status named `s`, if any.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Queued,
            Self::Sending,
            Self::Sent,
            Self::Delivered,
            Self::Read,
            Self::Failed,
            Self::Unknown,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }

    /// How far along Meta's statuses it is (sent < delivered < read); the others rank 0.
    fn rank(self) -> u8 {
        match self {
            Self::Sent => 1,
            Self::Delivered => 2,
            Self::Read => 3,
            _ => 0,
        }
    }
}

/// Meta's error for a failed message (the Graph API's error object, or a status webhook's
/// `errors[0]`), or ours when the message could not be sent at all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendFailure {
    /// Meta's code (e.g. `131026`), when Meta gave one.
    pub code: Option<i64>,
    /// Meta's title or type.
    pub title: Option<String>,
    /// Meta's message.
    pub message: String,
    /// Meta's details (`error_data.details`), when given.
    pub details: Option<String>,
}

/// The quota units a message took, so they can be given back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaTaken {
    /// The UTC day counted.
    pub day: chrono::NaiveDate,
    /// Whether a media unit was taken as well as a message.
    pub media: bool,
    /// Whether they were given back (a failed message).
    pub returned: bool,
}

/// One outbound message and its dispatch state. Unique by `dedupe` (the tenant's
/// idempotency key, or the message's own id when none was given).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboundRecord {
    /// Its id: also the id of the conversation's message once Meta accepted it.
    pub id: MessageId,
    /// The tenant.
    pub tenant_id: TenantId,
    /// The number it is sent from.
    pub account_id: WhatsAppAccountId,
    /// That number's Meta id.
    pub phone_number_id: String,
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The customer.
    pub contact_id: ContactId,
    /// The customer's WhatsApp id (Meta's `to`).
    pub to: String,
    /// Meta's `type`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Meta's body without `to` and `messaging_product`: `type`, the type's object and
    /// `context`.
    pub content: serde_json::Value,
    /// `k:<tenant>:<key>` with an idempotency key, `id:<id>` without: unique.
    pub dedupe: String,
    /// The caller's `Idempotency-Key`.
    pub idempotency_key: Option<String>,
    /// With an idempotency key: SHA-256 (hex) of the canonical request and the caller's
    /// id, so a replay is told apart from another request reusing the key. `None` on
    /// records queued before it was kept.
    #[serde(default)]
    pub request_fingerprint: Option<String>,
    /// Who queued it (`None`: an integration without a user).
    pub created_by: Option<UserId>,
    /// Where it stands.
    pub status: OutboundStatus,
    /// Meta's message id once Meta accepted it.
    pub wamid: Option<String>,
    /// When it was marked `sending` (last attempt).
    pub sending_at: Option<Timestamp>,
    /// When Meta accepted it or reported it sent.
    pub sent_at: Option<Timestamp>,
    /// When Meta reported it delivered.
    pub delivered_at: Option<Timestamp>,
    /// When Meta reported it read.
    pub read_at: Option<Timestamp>,
    /// When it failed.
    pub failed_at: Option<Timestamp>,
    /// When it was found with its outcome unknown.
    pub unknown_at: Option<Timestamp>,
    /// Why it failed.
    pub error: Option<SendFailure>,
    /// The last transient error (kept while it waits for another attempt).
    pub last_error: Option<String>,
    /// Attempts to hand it to Meta.
    pub attempts: u32,
    /// When it may be claimed (only while `queued`).
    pub due_at: Option<Timestamp>,
    /// While a worker holds it: until when.
    pub lease_until: Option<Timestamp>,
    /// The quota it took.
    pub quota: Option<QuotaTaken>,
    /// Whether the assistant queued it by itself (auto-reply), not a user.
    #[serde(default)]
    pub auto_reply: bool,
    /// Optimistic-concurrency version.
    pub version: u64,
    /// When it was queued.
    pub created_at: Timestamp,
    /// Last changed.
    pub updated_at: Timestamp,
}

impl OutboundRecord {
    /// The dedupe value of an idempotency key of `tenant`.
    pub fn dedupe_of(tenant: TenantId, key: &str) -> String {
        format!("k:{tenant}:{key}")
    }

    /// Moves to `status` at `at` when Meta reports it; statuses only move forward
    /// (sent → delivered → read), `failed` is final. Returns whether anything changed.
    pub fn advance(&mut self, status: OutboundStatus, at: Timestamp) -> bool {
        if self.status == OutboundStatus::Failed {
            return false;
        }
        let slot = match status {
            OutboundStatus::Sent => &mut self.sent_at,
            OutboundStatus::Delivered => &mut self.delivered_at,
            OutboundStatus::Read => &mut self.read_at,
            OutboundStatus::Failed => &mut self.failed_at,
            _ => return false,
        };
        let mut changed = false;
        if slot.is_none() {
            *slot = Some(at);
            changed = true;
        }
        if status == OutboundStatus::Failed || status.rank() > self.status.rank() {
            changed |= self.status != status;
            self.status = status;
        }
        changed
    }
}

/// Why the quota refused a send.
#[derive(Debug, thiserror::Error)]
pub enum QuotaRefusal {
    /// The tenant is deactivated: it sends nothing.
    #[error("the tenant is deactivated")]
    TenantDeactivated,
    /// A daily limit is reached.
    #[error("the daily limit of {limit} {limit_name} is reached")]
    LimitReached {
        /// `messages` or `media`.
        limit_name: String,
        /// The limit.
        limit: u64,
        /// Used today.
        used: u64,
        /// When the counter starts again from 0.
        resets_at: Timestamp,
    },
    /// The counters failed.
    #[error("usage counters failed: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The tenant's daily quota, as the send API takes it (the server wires tenancy's).
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait SendQuota: Send + Sync {
    /// Whether `tenant` exists and is active (a deactivated tenant sends nothing).
    async fn tenant_active(&self, tenant: TenantId) -> Result<bool, QuotaRefusal>;
    /// Takes one message unit (and one media unit when `media`) from `tenant`'s counters,
    /// atomically, or refuses and takes nothing.
    async fn take(&self, tenant: TenantId, media: bool) -> Result<QuotaTaken, QuotaRefusal>;
    /// Gives back what [`Self::take`] took.
    async fn give_back(&self, tenant: TenantId, taken: &QuotaTaken) -> Result<(), QuotaRefusal>;
}

/// What the dispatcher needs of a sending number.
#[derive(Debug, Clone)]
pub struct Sender {
    /// The number's Meta id.
    pub phone_number_id: String,
    /// Its access token.
    pub token: imix_whatsapp::client::AccessToken,
    /// Its send rate (messages per second), when set; 80 (Meta's default) otherwise.
    pub max_messages_per_second: Option<u32>,
    /// Sending is paused (Meta refused the token): its messages wait.
    pub paused: bool,
}

/// What the send API needs to know of a number before queueing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderState {
    /// The account's tenant.
    pub tenant_id: TenantId,
    /// The number's Meta id.
    pub phone_number_id: String,
    /// The last verification with Meta succeeded.
    pub verified: bool,
    /// Sending is paused: Meta refused the account's token (error 190); set again by a
    /// successful verification.
    pub paused: bool,
}

/// A template as the send API checks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateInfo {
    /// `APPROVED`, `PENDING`, …
    pub status: String,
    /// `MARKETING`, `UTILITY`, `AUTHENTICATION`.
    pub category: String,
    /// Meta's component definitions (`[{type, format, text, buttons}]`).
    pub components: serde_json::Value,
}

/// The WhatsApp accounts and templates, as outbound messaging reads them (the server wires
/// the stored ones).
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait SenderAccounts: Send + Sync {
    /// The account's state for the send API's checks (platform-wide look-up).
    async fn state(&self, account: WhatsAppAccountId) -> crate::Result<SenderState>;
    /// The account's number and token, for the dispatcher.
    async fn sender(&self, account: WhatsAppAccountId) -> crate::Result<Sender>;
    /// The template `name` in `language` of the account, if stored.
    async fn template(
        &self,
        account: WhatsAppAccountId,
        name: &str,
        language: &str,
    ) -> crate::Result<Option<TemplateInfo>>;
    /// Meta refused the account's token (`error`): flag it so its queue pauses until the
    /// account is verified again, and tell the tenant's admins.
    async fn authentication_failed(
        &self,
        account: WhatsAppAccountId,
        error: &SendFailure,
    ) -> crate::Result<()>;
}

/// Mirrors the statuses ingest records on the conversation's message onto the outbound
/// record (so the send API and the dead-letter view show them).
#[derive(Clone)]
pub struct OutboundStatuses {
    records: Arc<dyn crate::storage::outbound::OutboundRepository>,
    quota: Option<Arc<dyn SendQuota>>,
}

impl std::fmt::Debug for OutboundStatuses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundStatuses").finish_non_exhaustive()
    }
}

impl OutboundStatuses {
    /// Over `records`; a message Meta reports failed gives its quota back to `quota`.
    pub fn new(
        records: Arc<dyn crate::storage::outbound::OutboundRepository>,
        quota: Option<Arc<dyn SendQuota>>,
    ) -> Self {
        Self { records, quota }
    }

    /// Records that Meta reported message `id` of `tenant` in `state` at `at`, with
    /// `errors` (Meta's `errors` array) when failed. A message not sent through the send
    /// API (no outbound record) is ignored.
    pub async fn apply(
        &self,
        tenant: TenantId,
        id: MessageId,
        state: crate::records::DeliveryState,
        at: Timestamp,
        errors: Option<&serde_json::Value>,
    ) -> crate::Result<()> {
        use crate::records::DeliveryState as D;
        let status = match state {
            D::Accepted | D::Sent => OutboundStatus::Sent,
            D::Delivered => OutboundStatus::Delivered,
            D::Read => OutboundStatus::Read,
            D::Failed => OutboundStatus::Failed,
            D::Queued | D::Received => return Ok(()),
        };
        let scope = imix_core::store::Scope::Tenant(tenant);
        let mut backoff = imix_core::store::ConflictBackoff::new();
        while backoff.next_attempt().await {
            let mut r = match self.records.get(scope, id).await {
                Ok(r) => r,
                Err(imix_core::Error::NotFound { .. }) => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            if !r.advance(status, at) {
                return Ok(());
            }
            let mut give_back = None;
            if status == OutboundStatus::Failed {
                r.error = Some(failure_of_status(errors));
                if let Some(q) = r.quota.as_mut().filter(|q| !q.returned) {
                    q.returned = true;
                    give_back = Some(q.clone());
                }
            }
            r.updated_at = imix_core::now();
            match self.records.update(&r).await {
                Ok(_) => {
                    if let (Some(taken), Some(quota)) = (give_back, &self.quota) {
                        if let Err(e) = quota.give_back(tenant, &taken).await {
                            tracing::error!(message = %id, error = %e, "cannot give back the quota of a failed message");
                        }
                    }
                    return Ok(());
                }
                Err(imix_core::Error::VersionConflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

/// Meta's first error of a `failed` status webhook.
fn failure_of_status(errors: Option<&serde_json::Value>) -> SendFailure {
    let first = errors.and_then(|e| e.get(0));
    let text = |k: &str| {
        first
            .and_then(|e| e.get(k))
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    SendFailure {
        code: first.and_then(|e| e.get("code")).and_then(|c| c.as_i64()),
        title: text("title"),
        message: text("message")
            .or_else(|| text("title"))
            .unwrap_or_else(|| "Meta reported the message failed".to_owned()),
        details: first
            .and_then(|e| e.pointer("/error_data/details"))
            .and_then(|v| v.as_str())
            .map(str::to_owned),
    }
}

impl From<&imix_whatsapp::Error> for SendFailure {
    fn from(e: &imix_whatsapp::Error) -> Self {
        match e.graph_error() {
            Some(g) => SendFailure {
                code: Some(g.code),
                title: g
                    .error_user_title
                    .clone()
                    .or_else(|| (!g.kind.is_empty()).then(|| g.kind.clone())),
                message: g.message.clone(),
                details: g.error_data.as_ref().and_then(|d| d.details.clone()),
            },
            None => SendFailure {
                code: None,
                title: None,
                message: e.to_string(),
                details: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> OutboundRecord {
        let now = imix_core::now();
        OutboundRecord {
            auto_reply: false,
            id: MessageId::new(),
            tenant_id: TenantId::new(),
            account_id: WhatsAppAccountId::new(),
            phone_number_id: "1".into(),
            conversation_id: ConversationId::new(),
            contact_id: ContactId::new(),
            to: "15550001".into(),
            kind: "text".into(),
            content: serde_json::json!({}),
            dedupe: "id:x".into(),
            idempotency_key: None,
            request_fingerprint: None,
            created_by: None,
            status: OutboundStatus::Sent,
            wamid: Some("wamid.1".into()),
            sending_at: None,
            sent_at: None,
            delivered_at: None,
            read_at: None,
            failed_at: None,
            unknown_at: None,
            error: None,
            last_error: None,
            attempts: 1,
            due_at: None,
            lease_until: None,
            quota: None,
            version: 1,
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn statuses_only_move_forward_and_failed_is_final() {
        let now = imix_core::now();
        let mut r = record();
        assert!(r.advance(OutboundStatus::Read, now));
        assert_eq!(r.status, OutboundStatus::Read);
        // A late `delivered` records its time but does not move the status back.
        assert!(r.advance(OutboundStatus::Delivered, now));
        assert_eq!(r.status, OutboundStatus::Read);
        assert!(!r.advance(OutboundStatus::Delivered, now));
        assert!(r.advance(OutboundStatus::Failed, now));
        assert_eq!(r.status, OutboundStatus::Failed);
        assert!(!r.advance(OutboundStatus::Read, now));
        assert_eq!(r.status, OutboundStatus::Failed);
    }

    #[test]
    fn status_names_round_trip() {
        for s in [
            "queued",
            "sending",
            "sent",
            "delivered",
            "read",
            "failed",
            "unknown",
        ] {
            assert_eq!(
                OutboundStatus::parse(s).map(OutboundStatus::as_str),
                Some(s)
            );
        }
        assert_eq!(OutboundStatus::parse("accepted"), None);
    }

    #[test]
    fn a_failed_status_keeps_metas_first_error() {
        let errors = serde_json::json!([{"code": 131026, "title": "Message undeliverable",
            "message": "Message undeliverable", "error_data": {"details": "Message Undeliverable."}}]);
        let f = failure_of_status(Some(&errors));
        assert_eq!(f.code, Some(131026));
        assert_eq!(f.title.as_deref(), Some("Message undeliverable"));
        assert_eq!(f.details.as_deref(), Some("Message Undeliverable."));
    }
}

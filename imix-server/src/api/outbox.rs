//! The mail outbox listing: recent emails with their delivery status, for platform admins.
//! Metadata and the redacted text only: bodies (which may carry set-password links) are
//! never returned.

use chrono::{DateTime, Utc};
use imix_notify::outbox::OutboxEntryView;
use imix_notify::OutboxStatus;
use poem_openapi::{param::Query, payload::Json, Enum, Object, OpenApi};

use super::{
    dto::{page, LanguageDto},
    ApiTags,
};
use crate::{auth::Auth, error::ApiError, state::AppState};

/// Mail outbox operations.
pub struct OutboxApi {
    state: AppState,
}

impl OutboxApi {
    /// The outbox API over `state`.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

/// Where an email is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum OutboxStatusDto {
    /// Waiting for its (next) attempt.
    Pending,
    /// Being sent by a worker.
    Sending,
    /// Accepted by the mail server.
    Sent,
    /// Given up (permanent error or retry budget spent); `last_error` says why.
    Failed,
}

impl From<OutboxStatus> for OutboxStatusDto {
    fn from(s: OutboxStatus) -> Self {
        match s {
            OutboxStatus::Pending => OutboxStatusDto::Pending,
            OutboxStatus::Sending => OutboxStatusDto::Sending,
            OutboxStatus::Sent => OutboxStatusDto::Sent,
            OutboxStatus::Failed => OutboxStatusDto::Failed,
        }
    }
}

/// One email of the outbox.
#[derive(Debug, Clone, Object)]
pub struct OutboxEntry {
    /// Id.
    pub id: String,
    /// The tenant it was sent for; null for platform email.
    pub tenant_id: Option<String>,
    /// Recipient address.
    pub to: String,
    /// Subject.
    pub subject: String,
    /// Template: `invitation`, `password_reset`, `usage_warning_80`, `usage_warning_100`, …
    pub template: String,
    /// Language.
    pub language: LanguageDto,
    /// Status.
    pub status: OutboxStatusDto,
    /// Attempts made.
    pub attempts: u32,
    /// The retry budget.
    pub max_attempts: u32,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// The server's reply when it accepted the email.
    pub server_reply: Option<String>,
    /// The next attempt, while pending.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Queued at.
    pub created_at: DateTime<Utc>,
    /// Last changed at.
    pub updated_at: DateTime<Utc>,
    /// Accepted by the server at.
    pub sent_at: Option<DateTime<Utc>>,
    /// The plain-text body with set-password links redacted (`token=[redacted]`).
    pub redacted_body: String,
}

impl From<OutboxEntryView> for OutboxEntry {
    fn from(e: OutboxEntryView) -> Self {
        Self {
            id: e.id.to_string(),
            tenant_id: e.tenant_id.map(|t| t.to_string()),
            to: e.to,
            subject: e.subject,
            template: e.template,
            language: e.language.into(),
            status: e.status.into(),
            attempts: e.attempts,
            max_attempts: e.max_attempts,
            last_error: e.last_error,
            server_reply: e.server_reply,
            next_attempt_at: e.next_attempt_at,
            created_at: e.created_at,
            updated_at: e.updated_at,
            sent_at: e.sent_at,
            redacted_body: e.redacted_body,
        }
    }
}

/// A page of outbox emails, newest first.
#[derive(Debug, Clone, Object)]
pub struct OutboxList {
    /// Emails.
    pub items: Vec<OutboxEntry>,
    /// Pass as `cursor` for the next page; null at the end.
    pub next_cursor: Option<String>,
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::System")]
impl OutboxApi {
    /// Recent emails of every tenant and the platform, newest first, with status, attempts
    /// and last error; set-password links redacted, no bodies. Platform admins.
    #[oai(
        path = "/system/mail-outbox",
        method = "get",
        operation_id = "list_mail_outbox"
    )]
    async fn list(
        &self,
        auth: Auth,
        cursor: Query<Option<String>>,
        limit: Query<Option<u32>>,
    ) -> Result<Json<OutboxList>, ApiError> {
        let p = self
            .state
            .notifier
            .list_outbox(auth.0.access(), None, page(cursor.0, limit.0))
            .await?;
        Ok(Json(OutboxList {
            items: p.items.into_iter().map(OutboxEntry::from).collect(),
            next_cursor: p.next_cursor,
        }))
    }
}

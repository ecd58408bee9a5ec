//! Inbound media of messages: the stored file (with its content type), where fetching it
//! stands, and an operator's retry.

use chrono::{DateTime, Utc};
use imix_core::id::TenantId;
use imix_messaging::{
    media::{MediaJob, MediaLookup, MediaState},
    MessageId,
};
use poem::http::StatusCode;
use poem_openapi::{param::Path, payload::Json, Enum, Object, OpenApi};

use super::{files::FileDownload, parse_id, ApiTags};
use crate::{auth::Auth, error::ApiError, state::AppState};

/// Inbound media operations.
pub struct MediaApi {
    state: AppState,
}

impl MediaApi {
    /// The media API over `state`.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

/// Where a message's media stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum MediaStateDto {
    /// Not fetched yet, or being retried.
    Pending,
    /// Stored: `GET …/media` serves it.
    Available,
    /// Could not be had; `last_error` says why. `POST …/media/retry` tries again.
    Failed,
}

impl From<MediaState> for MediaStateDto {
    fn from(s: MediaState) -> Self {
        match s {
            MediaState::Pending => Self::Pending,
            MediaState::Available => Self::Available,
            MediaState::Failed => Self::Failed,
        }
    }
}

/// The media of an inbound message and how fetching it went.
#[derive(Debug, Clone, Object)]
pub struct MediaStatusView {
    /// The message.
    pub message_id: String,
    /// Meta's media id.
    pub media_id: String,
    /// The message type: `image`, `audio`, `video`, `document` or `sticker`.
    pub kind: String,
    /// Pending, available or failed.
    pub state: MediaStateDto,
    /// Attempts so far (a retry starts again from zero).
    pub attempts: u32,
    /// When the next attempt is due, while pending.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// The stored file's content type, once available.
    pub content_type: Option<String>,
    /// The stored file's size in bytes, once available.
    pub size: Option<u64>,
    /// The stored file's SHA-256 (hex), once available.
    pub sha256: Option<String>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<MediaJob> for MediaStatusView {
    fn from(j: MediaJob) -> Self {
        Self {
            message_id: j.message_id.to_string(),
            media_id: j.media_id,
            kind: j.kind,
            state: j.state.into(),
            attempts: j.attempts,
            next_attempt_at: j.due_at,
            last_error: j.last_error,
            content_type: j.content_type,
            size: j.size,
            sha256: j.sha256,
            updated_at: j.updated_at,
        }
    }
}

/// 404 `media_not_available`, with the state (`none` for a message without media).
fn not_available(job: Option<MediaJob>) -> ApiError {
    let (message, details) = match job {
        None => (
            "this message carries no media".to_owned(),
            serde_json::json!({"state": "none"}),
        ),
        Some(j) => (
            format!(
                "the message's media is not available ({})",
                j.state.as_str()
            ),
            serde_json::json!({
                "state": j.state.as_str(),
                "attempts": j.attempts,
                "last_error": j.last_error,
                "next_attempt_at": j.due_at,
            }),
        ),
    };
    ApiError::new(StatusCode::NOT_FOUND, "media_not_available", message).with_details(details)
}

fn ids(tenant_id: &str, message_id: &str) -> Result<(TenantId, MessageId), ApiError> {
    Ok((
        parse_id::<TenantId>(tenant_id, "tenant")?,
        parse_id::<MessageId>(message_id, "message")?,
    ))
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Inbox")]
impl MediaApi {
    /// The media of an inbound message (image, audio, video, document, sticker), with the
    /// content type it was stored with. 404 `media_not_available` while it is not stored
    /// (`details.state`: `pending`, `failed` or `none`, with `attempts` and `last_error`).
    #[oai(
        path = "/tenants/:tenant_id/messages/:message_id/media",
        method = "get",
        operation_id = "get_message_media"
    )]
    async fn media(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        message_id: Path<String>,
    ) -> Result<FileDownload, ApiError> {
        let (tenant, id) = ids(&tenant_id.0, &message_id.0)?;
        match self.state.media.media(auth.0.access(), tenant, id).await? {
            MediaLookup::Available {
                content_type,
                file_name,
                data,
            } => Ok(FileDownload {
                data,
                content_type,
                file_name,
            }),
            MediaLookup::NotAvailable(job) => Err(not_available(Some(*job))),
            MediaLookup::NoMedia => Err(not_available(None)),
        }
    }

    /// Where fetching an inbound message's media stands. 404 `media_not_available` with
    /// `details.state` `none` for a message without media.
    #[oai(
        path = "/tenants/:tenant_id/messages/:message_id/media/status",
        method = "get",
        operation_id = "get_message_media_status"
    )]
    async fn status(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        message_id: Path<String>,
    ) -> Result<Json<MediaStatusView>, ApiError> {
        let (tenant, id) = ids(&tenant_id.0, &message_id.0)?;
        match self.state.media.status(auth.0.access(), tenant, id).await? {
            Some(job) => Ok(Json(job.into())),
            None => Err(not_available(None)),
        }
    }

    /// Fetches an inbound message's media again now, with a fresh count of attempts
    /// (needs `conversations.reply`); answers the job as it stands after the request.
    #[oai(
        path = "/tenants/:tenant_id/messages/:message_id/media/retry",
        method = "post",
        operation_id = "retry_message_media"
    )]
    async fn retry(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        message_id: Path<String>,
    ) -> Result<Json<MediaStatusView>, ApiError> {
        let (tenant, id) = ids(&tenant_id.0, &message_id.0)?;
        match self.state.media.retry(auth.0.access(), tenant, id).await? {
            Some(job) => Ok(Json(job.into())),
            None => Err(not_available(None)),
        }
    }
}

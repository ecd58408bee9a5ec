//! Inbound media (images, audio, video, documents, stickers) as a durable, retriable job
//! per message: Meta's webhook names a media id, not the bytes, and the URL that id leads
//! to expires within minutes, so each attempt looks the URL up again with the account's
//! token, downloads, checks the SHA-256 Meta sent, and stores the bytes in the blob store
//! under the tenant. Failed attempts are retried with a growing delay; after the last one
//! the job records why it failed, and a user who may reply can start it again.
//!
//! - [`MediaQueue`]: creates a message's job when ingest stores it (idempotent).
//! - [`MediaWorker`]: claims due jobs with a lease (several replicas share the work).
//! - [`MediaService`]: serves the stored media and retries failed jobs, with access checks.

mod service;
mod worker;

use std::sync::Arc;

use imix_core::{
    id::{TenantId, WhatsAppAccountId},
    Error as CoreError, Timestamp,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

use crate::{
    error::Result,
    records::{ConversationId, Direction, Message, MessageId},
    storage::media::MediaJobRepository,
};

pub use service::{MediaLookup, MediaService};
pub use worker::{
    AccountTokens, FetchedMedia, GraphMediaSource, MediaSource, MediaWorker, MediaWorkerConfig,
};

/// The message types whose media is fetched.
pub const MEDIA_TYPES: &[&str] = &["image", "audio", "video", "document", "sticker"];

/// Where a message's media stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaState {
    /// Not fetched yet, or being retried.
    Pending,
    /// Stored; served from the blob store.
    Available,
    /// Could not be had after the last retry (or its bytes did not match Meta's hash).
    Failed,
}

impl MediaState {
    /// The state's name as the API shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Available => "available",
            Self::Failed => "failed",
        }
    }
}

/// The media of one inbound message: what to fetch, and how far it got. Keyed by the
/// message. Operational state: not part of backups (neither are blobs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaJob {
    /// The message (one job per message).
    pub message_id: MessageId,
    /// The tenant.
    pub tenant_id: TenantId,
    /// The number the message came to: its token fetches the media.
    pub account_id: WhatsAppAccountId,
    /// The message's conversation (who may see the media).
    pub conversation_id: ConversationId,
    /// Meta's media id.
    pub media_id: String,
    /// The message type (`image`, `document`, …).
    pub kind: String,
    /// The MIME type the webhook announced.
    pub declared_mime_type: Option<String>,
    /// The SHA-256 the webhook announced (hex or base64, as Meta sent it).
    pub expected_sha256: Option<String>,
    /// A document's file name, when the webhook gave one.
    pub file_name: Option<String>,
    /// Pending, available or failed.
    pub state: MediaState,
    /// Attempts so far (an operator's retry starts again from zero).
    pub attempts: u32,
    /// When it may be tried (again); `None` once available or failed.
    pub due_at: Option<Timestamp>,
    /// While a worker holds it: until when.
    pub lease_until: Option<Timestamp>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// The stored media's content type.
    pub content_type: Option<String>,
    /// The stored media's size in bytes.
    pub size: Option<u64>,
    /// The blob store key of the stored media.
    pub blob_key: Option<String>,
    /// The stored bytes' SHA-256, hex.
    pub sha256: Option<String>,
    /// Created.
    pub created_at: Timestamp,
    /// Last changed.
    pub updated_at: Timestamp,
    /// Optimistic-concurrency version.
    pub version: u64,
}

impl MediaJob {
    /// The job for `message` if it is an inbound message of a media type naming a media
    /// id; `None` otherwise.
    pub fn for_message(message: &Message) -> Option<Self> {
        if message.direction != Direction::Inbound || !MEDIA_TYPES.contains(&message.kind.as_str())
        {
            return None;
        }
        let object = message.content.get(&message.kind)?;
        let field = |name: &str| {
            object
                .get(name)
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        };
        let media_id = field("id").filter(|id| !id.trim().is_empty())?;
        let now = imix_core::now();
        Some(Self {
            message_id: message.id,
            tenant_id: message.tenant_id,
            account_id: message.account_id,
            conversation_id: message.conversation_id,
            media_id,
            kind: message.kind.clone(),
            declared_mime_type: field("mime_type"),
            expected_sha256: field("sha256"),
            file_name: field("filename"),
            state: MediaState::Pending,
            attempts: 0,
            due_at: Some(now),
            lease_until: None,
            last_error: None,
            content_type: None,
            size: None,
            blob_key: None,
            sha256: None,
            created_at: now,
            updated_at: now,
            version: 1,
        })
    }
}

/// The blob store key of a message's media: under a `media/` prefix per tenant (the
/// `tenants/` prefix is reserved for files a tenant record lists, which the doctor checks).
pub fn blob_key(tenant: TenantId, message: MessageId) -> String {
    format!("media/{tenant}/{message}")
}

/// The lower-case hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Whether `data` hashes to `expected`, a SHA-256 as Meta sends it: hex (Graph API media
/// lookups) or base64 (webhooks), either case for hex. An `expected` that is neither is
/// a mismatch (it cannot vouch for anything).
pub fn sha256_matches(expected: &str, data: &[u8]) -> bool {
    use base64::Engine;
    let digest = Sha256::digest(data);
    let expected = expected.trim();
    if expected.len() == 64 {
        if let Ok(bytes) = hex::decode(expected) {
            return bytes.as_slice() == digest.as_slice();
        }
    }
    [
        base64::engine::general_purpose::STANDARD,
        base64::engine::general_purpose::URL_SAFE,
    ]
    .iter()
    .find_map(|engine| engine.decode(expected).ok())
    .or_else(|| {
        base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(expected.trim_end_matches('='))
            .ok()
    })
    .is_some_and(|bytes| bytes.as_slice() == digest.as_slice())
}

/// Creates media jobs for stored messages and wakes the worker. Cheap to clone.
#[derive(Clone)]
pub struct MediaQueue {
    jobs: Arc<dyn MediaJobRepository>,
    wake: Arc<Notify>,
}

impl std::fmt::Debug for MediaQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaQueue").finish_non_exhaustive()
    }
}

impl MediaQueue {
    /// A queue into `jobs`, waking `wake` (give the same one to the [`MediaWorker`]).
    pub fn new(jobs: Arc<dyn MediaJobRepository>, wake: Arc<Notify>) -> Self {
        Self { jobs, wake }
    }

    /// Makes sure `message` has its media job if it carries media; idempotent, so ingest
    /// calls it for a new message and again for a redelivered one (a worker that died
    /// between storing the message and its job leaves the job to the redelivery).
    pub async fn enqueue(&self, message: &Message) -> Result<()> {
        let Some(job) = MediaJob::for_message(message) else {
            return Ok(());
        };
        match self.jobs.insert(&job).await {
            Ok(()) => {
                self.wake.notify_one();
                Ok(())
            }
            Err(CoreError::Duplicate { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_is_accepted_as_hex_or_base64_and_anything_else_is_a_mismatch() {
        let data = b"a picture";
        let hex = sha256_hex(data);
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(data));
        assert!(sha256_matches(&hex, data));
        assert!(sha256_matches(&hex.to_uppercase(), data));
        assert!(sha256_matches(&b64, data));
        assert!(sha256_matches(b64.trim_end_matches('='), data));
        assert!(!sha256_matches(&hex, b"another picture"));
        assert!(!sha256_matches(&b64, b"another picture"));
        assert!(!sha256_matches("", data));
        assert!(!sha256_matches("not a hash", data));
    }

    fn message(kind: &str, content: serde_json::Value) -> Message {
        Message {
            auto_reply: false,
            id: MessageId::new(),
            tenant_id: TenantId::new(),
            account_id: WhatsAppAccountId::new(),
            phone_number_id: "2001".into(),
            conversation_id: ConversationId::new(),
            contact_id: crate::records::ContactId::new(),
            wamid: "wamid.1".into(),
            direction: Direction::Inbound,
            kind: kind.into(),
            content,
            timestamp: imix_core::now(),
            state: crate::records::DeliveryState::Received,
            statuses: Vec::new(),
            version: 1,
            created_at: imix_core::now(),
        }
    }

    #[test]
    fn a_job_is_made_for_inbound_media_types_naming_a_media_id_only() {
        let doc = message(
            "document",
            serde_json::json!({"type": "document", "document": {"id": "m1", "mime_type": "application/pdf", "sha256": "abc", "filename": "q.pdf"}}),
        );
        let job = MediaJob::for_message(&doc).unwrap();
        assert_eq!(job.media_id, "m1");
        assert_eq!(job.declared_mime_type.as_deref(), Some("application/pdf"));
        assert_eq!(job.expected_sha256.as_deref(), Some("abc"));
        assert_eq!(job.file_name.as_deref(), Some("q.pdf"));
        assert_eq!(job.state, MediaState::Pending);
        assert!(job.due_at.is_some());
        for kind in MEDIA_TYPES {
            let m = message(kind, serde_json::json!({*kind: {"id": "m"}}));
            assert!(MediaJob::for_message(&m).is_some(), "{kind}");
        }
        let text = message(
            "text",
            serde_json::json!({"text": {"body": "hi", "id": "x"}}),
        );
        assert!(MediaJob::for_message(&text).is_none());
        let no_id = message("image", serde_json::json!({"image": {"caption": "x"}}));
        assert!(MediaJob::for_message(&no_id).is_none());
        let mut outbound = message("image", serde_json::json!({"image": {"id": "m"}}));
        outbound.direction = Direction::Outbound;
        assert!(MediaJob::for_message(&outbound).is_none());
    }
}

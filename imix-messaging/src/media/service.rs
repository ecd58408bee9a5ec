//! Inbound media as users reach it: the stored file, or where its job stands; and an
//! operator's retry. Every operation takes the caller's [`AccessContext`]: reading needs
//! `conversations.read` on the tenant and a conversation the caller sees; retrying also
//! needs `conversations.reply`. Another tenant's messages are "not found".

use std::sync::Arc;

use bytes::Bytes;
use imix_core::{
    access::{AccessContext, Permission},
    id::TenantId,
    store::{BlobStore, ConflictBackoff, Scope},
    Error as CoreError,
};
use tokio::sync::Notify;

use super::{MediaJob, MediaState};
use crate::{
    error::{MessagingError, Result},
    records::{Message, MessageId},
    storage::{media::MediaJobRepository, MessagingStorage},
};

/// What [`MediaService::media`] found.
#[derive(Debug, Clone)]
pub enum MediaLookup {
    /// The stored file.
    Available {
        /// Its content type.
        content_type: String,
        /// A name to download it under.
        file_name: String,
        /// The bytes.
        data: Bytes,
    },
    /// The message has media that is not stored (yet): its job says how far it got.
    NotAvailable(Box<MediaJob>),
    /// The message carries no media.
    NoMedia,
}

/// Reads and retries inbound media. Cheap to clone.
#[derive(Clone)]
pub struct MediaService {
    storage: MessagingStorage,
    jobs: Arc<dyn MediaJobRepository>,
    blobs: Arc<dyn BlobStore>,
    wake: Arc<Notify>,
}

impl std::fmt::Debug for MediaService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaService").finish_non_exhaustive()
    }
}

/// A download name: the document's own file name if it is plain, else the message id and
/// an extension from the content type.
fn file_name(job: &MediaJob, content_type: &str) -> String {
    if let Some(name) = job.file_name.as_deref().map(str::trim) {
        if !name.is_empty() && name.len() <= 200 && !name.contains(['/', '\\']) {
            return name.to_owned();
        }
    }
    let subtype = content_type
        .split(';')
        .next()
        .and_then(|t| t.split('/').nth(1))
        .map(str::trim)
        .filter(|s| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_alphanumeric()))
        .unwrap_or("bin");
    format!("{}.{subtype}", job.message_id)
}

impl MediaService {
    /// The service over `storage`'s messages and conversations, `jobs` and `blobs`; a
    /// retry wakes `wake` (give the same one to the [`super::MediaWorker`]).
    pub fn new(
        storage: MessagingStorage,
        jobs: Arc<dyn MediaJobRepository>,
        blobs: Arc<dyn BlobStore>,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            storage,
            jobs,
            blobs,
            wake,
        }
    }

    /// The message `id` if the caller may see its conversation; "not found" otherwise.
    async fn visible_message(
        &self,
        ctx: &AccessContext,
        scope: Scope,
        id: MessageId,
    ) -> Result<Message> {
        let message = self.storage.messages.get(scope, id).await?;
        let conversation = self
            .storage
            .conversations
            .get(scope, message.conversation_id)
            .await?;
        let sees = ctx.has(Permission::ConversationsReadAll)
            || conversation.assignee.is_none_or(|a| a == ctx.user_id());
        if sees {
            Ok(message)
        } else {
            Err(CoreError::NotFound {
                entity: "message",
                id: id.to_string(),
            }
            .into())
        }
    }

    async fn job(&self, scope: Scope, id: MessageId) -> Result<Option<MediaJob>> {
        match self.jobs.get(scope, id).await {
            Ok(job) => Ok(Some(job)),
            Err(CoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The media of message `id` of `tenant`.
    pub async fn media(
        &self,
        ctx: &AccessContext,
        tenant: TenantId,
        id: MessageId,
    ) -> Result<MediaLookup> {
        let scope = ctx.authorize(Permission::ConversationsRead, tenant)?;
        self.visible_message(ctx, scope, id).await?;
        let Some(job) = self.job(scope, id).await? else {
            return Ok(MediaLookup::NoMedia);
        };
        let key = match (&job.state, &job.blob_key) {
            (MediaState::Available, Some(key)) => key.clone(),
            _ => return Ok(MediaLookup::NotAvailable(Box::new(job))),
        };
        match self.blobs.get(&key).await {
            Ok(blob) => Ok(MediaLookup::Available {
                file_name: file_name(&job, &blob.meta.content_type),
                content_type: blob.meta.content_type,
                data: blob.data,
            }),
            // Recorded but gone (a restore without its files): shown as failed, so an
            // operator retries it.
            Err(CoreError::NotFound { .. }) => {
                let mut shown = job;
                shown.state = MediaState::Failed;
                shown.last_error = Some("the stored file is missing from the blob store".into());
                Ok(MediaLookup::NotAvailable(Box::new(shown)))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Where the media of message `id` stands (`None`: the message carries none).
    pub async fn status(
        &self,
        ctx: &AccessContext,
        tenant: TenantId,
        id: MessageId,
    ) -> Result<Option<MediaJob>> {
        let scope = ctx.authorize(Permission::ConversationsRead, tenant)?;
        self.visible_message(ctx, scope, id).await?;
        self.job(scope, id).await
    }

    /// Fetches the media of message `id` again, now, with a fresh count of attempts
    /// (needs `conversations.reply`). A job being retried already is only made due now.
    /// `None`: the message carries no media.
    pub async fn retry(
        &self,
        ctx: &AccessContext,
        tenant: TenantId,
        id: MessageId,
    ) -> Result<Option<MediaJob>> {
        let scope = ctx.authorize(Permission::ConversationsRead, tenant)?;
        ctx.authorize(Permission::ConversationsReply, tenant)?;
        self.visible_message(ctx, scope, id).await?;
        let mut backoff = ConflictBackoff::new();
        while backoff.next_attempt().await {
            let Some(mut job) = self.job(scope, id).await? else {
                return Ok(None);
            };
            let now = imix_core::now();
            if job.state == MediaState::Pending && job.lease_until.is_some_and(|l| l > now) {
                // A worker holds it right now: its outcome stands.
                return Ok(Some(job));
            }
            if job.state != MediaState::Pending {
                job.attempts = 0;
            }
            job.state = MediaState::Pending;
            job.due_at = Some(now);
            job.updated_at = now;
            match self.jobs.update(&job).await {
                Ok(stored) => {
                    tracing::info!(target: "imix_whatsapp", message = %id, user = %ctx.user_id(), "inbound media retry requested");
                    self.wake.notify_one();
                    return Ok(Some(stored));
                }
                Err(CoreError::VersionConflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(MessagingError::Store(CoreError::VersionConflict {
            entity: "media job",
            id: id.to_string(),
            expected: 0,
        }))
    }
}

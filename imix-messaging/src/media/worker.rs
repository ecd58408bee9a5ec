//! The media worker: claims the oldest due job with a lease (so several replicas share the
//! work and none fetches a job another holds), fetches the media afresh (URL lookup, then
//! download, both with the account's token), checks its SHA-256, stores it, and records
//! the outcome. Jobs a crash left leased are taken again once their lease runs out.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use bytes::Bytes;
use imix_core::{id::WhatsAppAccountId, store::BlobStore, Error as CoreError};
use imix_whatsapp::client::{AccessToken, WhatsAppClient};
use tokio::sync::Notify;

use super::{blob_key, sha256_hex, sha256_matches, MediaJob, MediaState};
use crate::{error::Result, storage::media::MediaJobRepository};

/// Opens an account's access token for a Graph API call. The server implements it over
/// the stored accounts and their cipher.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait AccountTokens: Send + Sync {
    /// The access token of `account`.
    async fn access_token(&self, account: WhatsAppAccountId) -> Result<AccessToken>;
}

/// A media file as fetched from Meta.
#[derive(Clone)]
pub struct FetchedMedia {
    /// Its MIME type, as the lookup (or else the download) gave it.
    pub content_type: Option<String>,
    /// The SHA-256 the URL lookup announced (hex), when it did.
    pub sha256: Option<String>,
    /// The bytes.
    pub data: Bytes,
}

impl std::fmt::Debug for FetchedMedia {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FetchedMedia")
            .field("content_type", &self.content_type)
            .field("len", &self.data.len())
            .finish()
    }
}

/// The error of one fetch attempt, shown to users as the job's `last_error`.
pub type FetchError = Box<dyn std::error::Error + Send + Sync>;

/// Fetches a media id's bytes for an account.
#[async_trait]
pub trait MediaSource: Send + Sync {
    /// Looks up `media_id`'s download URL and downloads it, both as `account`.
    async fn fetch(
        &self,
        account: WhatsAppAccountId,
        media_id: &str,
    ) -> std::result::Result<FetchedMedia, FetchError>;
}

/// [`MediaSource`] over the Graph API: on every call the URL is looked up again (Meta's
/// URLs expire within minutes), then downloaded with the same token.
#[derive(Clone)]
pub struct GraphMediaSource {
    client: Arc<dyn WhatsAppClient>,
    tokens: Arc<dyn AccountTokens>,
}

impl GraphMediaSource {
    /// Fetches through `client` with the tokens `tokens` opens.
    pub fn new(client: Arc<dyn WhatsAppClient>, tokens: Arc<dyn AccountTokens>) -> Self {
        Self { client, tokens }
    }
}

#[async_trait]
impl MediaSource for GraphMediaSource {
    async fn fetch(
        &self,
        account: WhatsAppAccountId,
        media_id: &str,
    ) -> std::result::Result<FetchedMedia, FetchError> {
        let token = self.tokens.access_token(account).await?;
        let info = self.client.get_media(&token, media_id).await?;
        let content = self.client.download_media(&token, &info.url).await?;
        let content_type = Some(info.mime_type)
            .filter(|m| !m.trim().is_empty())
            .or(content.mime_type);
        Ok(FetchedMedia {
            content_type,
            sha256: Some(info.sha256).filter(|s| !s.trim().is_empty()),
            data: content.data,
        })
    }
}

/// How the media worker paces itself.
#[derive(Debug, Clone)]
pub struct MediaWorkerConfig {
    /// How long a claim holds a job; a worker that dies leaves it to another after this.
    pub lease: Duration,
    /// How often to look for due jobs when not woken.
    pub poll: Duration,
    /// The delay after a first failure, doubled after each one up to `max_backoff`.
    pub first_backoff: Duration,
    /// The longest delay between attempts.
    pub max_backoff: Duration,
    /// Attempts before the job is marked failed.
    pub max_attempts: u32,
}

impl Default for MediaWorkerConfig {
    fn default() -> Self {
        // 10 attempts 2 s, 4 s, … apart: about 17 minutes of retries, well within the
        // time Meta keeps a received media id.
        Self {
            lease: Duration::from_secs(120),
            poll: Duration::from_secs(1),
            first_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(600),
            max_attempts: 10,
        }
    }
}

impl MediaWorkerConfig {
    /// The delay before the attempt after failed attempt number `attempt` (1-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(20);
        self.first_backoff
            .saturating_mul(1u32 << exponent)
            .min(self.max_backoff)
    }
}

fn chrono_of(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// A content type safe to send back as a header: printable ASCII of a sane length, with a
/// `type/subtype`; anything else is served as `application/octet-stream`.
fn safe_content_type(candidates: &[Option<&str>]) -> String {
    candidates
        .iter()
        .flatten()
        .map(|c| c.trim())
        .find(|c| {
            !c.is_empty()
                && c.len() <= 200
                && c.contains('/')
                && c.bytes().all(|b| (0x20..0x7f).contains(&b))
        })
        .unwrap_or("application/octet-stream")
        .to_owned()
}

/// Why an attempt did not store the media.
enum Failure {
    /// Worth another attempt (network, Meta, token, blob store).
    Transient(String),
    /// The bytes are not the ones Meta vouched for: downloading the same media id again
    /// serves the same bytes, so the job fails at once (an operator may still retry it).
    Integrity(String),
}

/// Fetches media jobs until stopped. Cheap to clone.
#[derive(Clone)]
pub struct MediaWorker {
    jobs: Arc<dyn MediaJobRepository>,
    source: Arc<dyn MediaSource>,
    blobs: Arc<dyn BlobStore>,
    wake: Arc<Notify>,
    config: MediaWorkerConfig,
}

impl std::fmt::Debug for MediaWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaWorker")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl MediaWorker {
    /// A worker over `jobs`, fetching from `source` into `blobs`, woken early by `wake`
    /// (shared with the [`super::MediaQueue`] and the [`super::MediaService`]).
    pub fn new(
        jobs: Arc<dyn MediaJobRepository>,
        source: Arc<dyn MediaSource>,
        blobs: Arc<dyn BlobStore>,
        wake: Arc<Notify>,
        config: MediaWorkerConfig,
    ) -> Self {
        Self {
            jobs,
            source,
            blobs,
            wake,
            config,
        }
    }

    /// Claims and handles due jobs until none is due; returns how many it handled.
    pub async fn drain(&self) -> std::result::Result<usize, CoreError> {
        let mut handled = 0;
        loop {
            let now = imix_core::now();
            let lease_until = now + chrono_of(self.config.lease);
            let Some(job) = self.jobs.claim_due(now, lease_until).await? else {
                return Ok(handled);
            };
            self.handle(job).await?;
            handled += 1;
        }
    }

    /// Runs until `stop` completes, fetching media as jobs come due.
    pub async fn run(&self, stop: impl std::future::Future<Output = ()>) {
        let mut stop = std::pin::pin!(stop);
        loop {
            if let Err(e) = self.drain().await {
                tracing::error!(target: "imix_whatsapp", error = %e, "media fetching failed; retrying");
            }
            tokio::select! {
                () = &mut stop => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(self.config.poll) => {}
            }
        }
    }

    /// One attempt: fetch, check, store.
    async fn attempt(&self, job: &MediaJob) -> std::result::Result<MediaJob, Failure> {
        let fetched = self
            .source
            .fetch(job.account_id, &job.media_id)
            .await
            .map_err(|e| Failure::Transient(format!("fetching media {}: {e}", job.media_id)))?;
        // Meta's hash in the webhook vouches for what the customer sent; the lookup's for
        // what the URL serves. Both must hold when given.
        for (origin, expected) in [
            ("the webhook", job.expected_sha256.as_deref()),
            ("the media lookup", fetched.sha256.as_deref()),
        ] {
            if let Some(expected) = expected {
                if !sha256_matches(expected, &fetched.data) {
                    return Err(Failure::Integrity(format!(
                        "the downloaded bytes (SHA-256 {}) do not match the SHA-256 {origin} gave ({expected})",
                        sha256_hex(&fetched.data)
                    )));
                }
            }
        }
        let content_type = safe_content_type(&[
            fetched.content_type.as_deref(),
            job.declared_mime_type.as_deref(),
        ]);
        let key = blob_key(job.tenant_id, job.message_id);
        let meta = self
            .blobs
            .put(&key, &content_type, fetched.data)
            .await
            .map_err(|e| Failure::Transient(format!("storing the media: {e}")))?;
        let mut next = job.clone();
        next.state = MediaState::Available;
        next.content_type = Some(meta.content_type);
        next.size = Some(meta.size);
        next.sha256 = Some(meta.sha256);
        next.blob_key = Some(meta.key);
        next.last_error = None;
        next.due_at = None;
        Ok(next)
    }

    async fn handle(&self, job: MediaJob) -> std::result::Result<(), CoreError> {
        let mut next = match self.attempt(&job).await {
            Ok(next) => {
                tracing::debug!(target: "imix_whatsapp", message = %job.message_id, attempt = job.attempts, "inbound media stored");
                next
            }
            Err(failure) => {
                let mut next = job.clone();
                let (reason, final_) = match failure {
                    Failure::Integrity(reason) => (reason, true),
                    Failure::Transient(reason) => {
                        (reason, job.attempts >= self.config.max_attempts)
                    }
                };
                if final_ {
                    tracing::warn!(target: "imix_whatsapp", message = %job.message_id, attempt = job.attempts, error = %reason, "inbound media could not be had; marked failed");
                    next.state = MediaState::Failed;
                    next.due_at = None;
                } else {
                    let delay = self.config.backoff(job.attempts);
                    tracing::warn!(target: "imix_whatsapp", message = %job.message_id, attempt = job.attempts, error = %reason, retry_in = ?delay, "inbound media not fetched; will retry");
                    next.state = MediaState::Pending;
                    next.due_at = Some(imix_core::now() + chrono_of(delay));
                }
                next.last_error = Some(reason);
                next
            }
        };
        next.lease_until = None;
        next.updated_at = imix_core::now();
        match self.jobs.update(&next).await {
            Ok(_) => Ok(()),
            // The lease ran out and another worker took the job over: it finishes it.
            Err(CoreError::VersionConflict { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_first_delay_up_to_the_cap() {
        let c = MediaWorkerConfig {
            first_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(60),
            ..MediaWorkerConfig::default()
        };
        let delays: Vec<u64> = (1..=7).map(|a| c.backoff(a).as_secs()).collect();
        assert_eq!(delays, [2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(c.backoff(0), Duration::from_secs(2));
        assert_eq!(c.backoff(u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn content_types_that_are_not_plain_type_slash_subtype_fall_back() {
        assert_eq!(safe_content_type(&[Some("image/jpeg"), None]), "image/jpeg");
        assert_eq!(
            safe_content_type(&[Some(""), Some("audio/ogg; codecs=opus")]),
            "audio/ogg; codecs=opus"
        );
        assert_eq!(
            safe_content_type(&[Some("text/html\r\nX-Evil: 1")]),
            "application/octet-stream"
        );
        assert_eq!(
            safe_content_type(&[Some("jpeg"), None]),
            "application/octet-stream"
        );
    }
}

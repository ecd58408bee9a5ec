//! Outbound media from files of ours: a media object of the send API may name, instead of
//! Meta's `id` or a `link`, a `blob` — the id of a message whose media imix stored (what
//! `GET …/messages/{id}/media` serves). The send API checks the file is stored, within
//! Meta's size limit for the type, and of the tenant, and queues the message with the
//! reference (`id: "imix-blob:<message id>"`); the dispatcher uploads the file to Meta
//! (`POST /{phone-number-id}/media`, multipart) and sends by the media id Meta answers.
//!
//! The media id is cached per account and file content (SHA-256) for [`CACHE_FOR`]
//! (29 days; Meta keeps uploaded media 30), so the same file sent again, to anyone, is not
//! uploaded again. An expired entry is replaced by a new upload. An upload that fails is
//! classified like a send (retryable, authentication, permanent); the message is not sent
//! then, so an upload whose outcome is unknown is simply retried.

use std::sync::Arc;

use imix_core::{
    id::{TenantId, WhatsAppAccountId},
    store::{BlobStore, Scope},
    Error as CoreError, Timestamp,
};
use imix_whatsapp::{
    client::WhatsAppClient,
    model::{MediaUpload, OutboundMessage},
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{validate::media_limits, OutboundRecord, SendFailure, SendRefusal, Sender};
use crate::{
    media::MediaState,
    records::MessageId,
    storage::{media::MediaJobRepository, outbound_media::UploadedMediaRepository},
};

/// How a stored reference to a file of ours is written in a queued message's media `id`
/// (Meta's media ids are digits, so they never start with it).
pub const BLOB_ID_PREFIX: &str = "imix-blob:";

/// How long an uploaded media id is used: Meta keeps uploaded media 30 days; a day less
/// leaves a margin for clocks and for messages queued just before the entry expires.
pub const CACHE_FOR: std::time::Duration = std::time::Duration::from_secs(29 * 24 * 3600);

/// The media types a `blob` may stand in.
const MEDIA_KEYS: &[&str] = &["image", "audio", "video", "document", "sticker"];

/// A file of ours uploaded to Meta from one account: its media id, until it expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadedMedia {
    /// The tenant whose file it is.
    pub tenant_id: TenantId,
    /// The account (number) it was uploaded from.
    pub account_id: WhatsAppAccountId,
    /// The file's SHA-256 (hex).
    pub sha256: String,
    /// Meta's media id.
    pub media_id: String,
    /// When it was uploaded.
    pub uploaded_at: Timestamp,
    /// After this it is uploaded again.
    pub expires_at: Timestamp,
}

/// A `blob` reference found in a send request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobReference {
    /// Where it is, e.g. `image.blob` or `template.components[0].parameters[0].image.blob`.
    pub field: String,
    /// The media type it stands in (`image`, …).
    pub kind: String,
    /// The message whose stored media it names.
    pub message: MessageId,
}

/// Replaces every media object's `blob` of `body` by the stored reference (an `id`
/// starting with [`BLOB_ID_PREFIX`]) and answers them. A `blob` beside an `id` or `link`, a
/// `blob` that is not a message id, or an `id` that already looks like a reference is
/// refused naming the field.
pub fn blob_references(body: &mut Value) -> Result<Vec<BlobReference>, SendRefusal> {
    let mut found = Vec::new();
    walk(body, "", None, &mut found)?;
    Ok(found)
}

fn walk(
    v: &mut Value,
    path: &str,
    kind: Option<&str>,
    found: &mut Vec<BlobReference>,
) -> Result<(), SendRefusal> {
    let join = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else if key.starts_with('[') {
            format!("{path}{key}")
        } else {
            format!("{path}.{key}")
        }
    };
    match v {
        Value::Object(map) => {
            if let Some(kind) = kind {
                if map
                    .get("id")
                    .and_then(Value::as_str)
                    .is_some_and(|id| id.starts_with(BLOB_ID_PREFIX))
                {
                    return Err(SendRefusal::invalid(
                        join("id"),
                        "must be a media id of Meta (use `blob` for a file of ours)",
                    ));
                }
                if let Some(blob) = map.remove("blob") {
                    let field = join("blob");
                    if map.contains_key("id") || map.contains_key("link") {
                        return Err(SendRefusal::invalid(
                            field,
                            "takes the place of `id` and `link`: give one of them",
                        ));
                    }
                    let message = blob
                        .as_str()
                        .and_then(|s| s.trim().parse::<MessageId>().ok())
                        .ok_or_else(|| {
                            SendRefusal::invalid(
                                field.clone(),
                                "must be the id of a message whose media is stored",
                            )
                        })?;
                    map.insert(
                        "id".into(),
                        Value::String(format!("{BLOB_ID_PREFIX}{message}")),
                    );
                    found.push(BlobReference {
                        field,
                        kind: kind.to_owned(),
                        message,
                    });
                }
            }
            for (key, child) in map.iter_mut() {
                let child_kind = MEDIA_KEYS.contains(&key.as_str()).then_some(key.as_str());
                walk(child, &join(key), child_kind, found)?;
            }
            Ok(())
        }
        Value::Array(items) => {
            for (i, child) in items.iter_mut().enumerate() {
                walk(child, &join(&format!("[{i}]")), None, found)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Checks each reference of `refs` names stored media of a message visible in `scope`, within
/// Meta's size limit for its type; a refusal names the field.
pub async fn check_references(
    jobs: &dyn MediaJobRepository,
    scope: Scope,
    refs: &[BlobReference],
) -> Result<(), super::SendError> {
    for r in refs {
        let job = match jobs.get(scope, r.message).await {
            Ok(j) => j,
            Err(CoreError::NotFound { .. }) => {
                return Err(SendRefusal::invalid(
                    r.field.clone(),
                    "names no message with media of the tenant",
                )
                .into())
            }
            Err(e) => return Err(e.into()),
        };
        if job.state != MediaState::Available || job.blob_key.is_none() {
            return Err(SendRefusal::invalid(
                r.field.clone(),
                format!(
                    "the message's media is not stored (it is {})",
                    job.state.as_str()
                ),
            )
            .into());
        }
        let mime = job
            .content_type
            .as_deref()
            .or(job.declared_mime_type.as_deref());
        if let Some(mime) = mime.filter(|m| !accepted_mime(&r.kind, m)) {
            return Err(SendRefusal::invalid(
                r.field.clone(),
                format!(
                    "the file is {mime}, which Meta does not take as a {}",
                    r.kind
                ),
            )
            .into());
        }
        let (_, max) = media_limits(&r.kind);
        if job.size.unwrap_or(0) > max {
            return Err(SendRefusal::invalid(
                r.field.clone(),
                format!("a {} may be at most {max} bytes (Meta's limit)", r.kind),
            )
            .into());
        }
    }
    Ok(())
}

/// Whether Meta takes a file of type `mime` as a `kind` message (its documented supported
/// media types); a document may be any file.
fn accepted_mime(kind: &str, mime: &str) -> bool {
    let essence = mime
        .split(';')
        .next()
        .unwrap_or(mime)
        .trim()
        .to_ascii_lowercase();
    match kind {
        "image" => matches!(essence.as_str(), "image/jpeg" | "image/png"),
        "video" => matches!(essence.as_str(), "video/mp4" | "video/3gpp"),
        "audio" => matches!(
            essence.as_str(),
            "audio/aac" | "audio/amr" | "audio/mpeg" | "audio/mp4" | "audio/ogg" | "audio/opus"
        ),
        "sticker" => essence == "image/webp",
        _ => true,
    }
}

/// Why a queued message's file could not be had from Meta's side.
#[derive(Debug)]
pub enum UploadProblem {
    /// Meta refused the upload (or it did not get through): classified like a send.
    Graph(imix_whatsapp::Error),
    /// The file is gone (deleted, or its media failed): the message cannot be sent.
    Unavailable(SendFailure),
    /// The store failed: tried again later.
    Store(CoreError),
}

/// Uploads the files queued messages reference and caches their media ids.
#[derive(Clone)]
pub struct MediaUploads {
    jobs: Arc<dyn MediaJobRepository>,
    blobs: Arc<dyn BlobStore>,
    cache: Arc<dyn UploadedMediaRepository>,
    client: Arc<dyn WhatsAppClient>,
}

impl std::fmt::Debug for MediaUploads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaUploads").finish_non_exhaustive()
    }
}

fn unavailable(message: impl Into<String>) -> UploadProblem {
    UploadProblem::Unavailable(SendFailure {
        code: None,
        title: Some("media unavailable".into()),
        message: message.into(),
        details: None,
    })
}

/// Every media `id` of `v` that is a reference, as mutable slots.
fn reference_slots<'a>(v: &'a mut Value, out: &mut Vec<&'a mut Value>) {
    match v {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if key == "id"
                    && child
                        .as_str()
                        .is_some_and(|s| s.starts_with(BLOB_ID_PREFIX))
                {
                    out.push(child);
                } else {
                    reference_slots(child, out);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|c| reference_slots(c, out)),
        _ => {}
    }
}

impl MediaUploads {
    /// Reads stored media through `jobs` and `blobs`, caches media ids in `cache`, uploads
    /// with `client` (the Graph API's).
    pub fn new(
        jobs: Arc<dyn MediaJobRepository>,
        blobs: Arc<dyn BlobStore>,
        cache: Arc<dyn UploadedMediaRepository>,
        client: Arc<dyn WhatsAppClient>,
    ) -> Self {
        Self {
            jobs,
            blobs,
            cache,
            client,
        }
    }

    /// `message` with each reference to a file of ours replaced by Meta's media id: the
    /// cached one while it lasts, else the file is uploaded from `sender`'s number.
    pub async fn resolve(
        &self,
        record: &OutboundRecord,
        sender: &Sender,
        message: OutboundMessage,
    ) -> Result<OutboundMessage, UploadProblem> {
        let mut body = serde_json::to_value(&message)
            .map_err(|e| unavailable(format!("cannot read the message: {e}")))?;
        let mut slots = Vec::new();
        reference_slots(&mut body, &mut slots);
        if slots.is_empty() {
            return Ok(message);
        }
        for slot in slots {
            let reference = slot.as_str().unwrap_or_default();
            let id = reference
                .strip_prefix(BLOB_ID_PREFIX)
                .and_then(|s| s.parse::<MessageId>().ok())
                .ok_or_else(|| unavailable(format!("`{reference}` is not a stored media")))?;
            let media_id = self.media_id(record, sender, id).await?;
            *slot = Value::String(media_id);
        }
        serde_json::from_value(body)
            .map_err(|e| unavailable(format!("cannot write the message: {e}")))
    }

    async fn media_id(
        &self,
        record: &OutboundRecord,
        sender: &Sender,
        message: MessageId,
    ) -> Result<String, UploadProblem> {
        let scope = Scope::Tenant(record.tenant_id);
        let job = match self.jobs.get(scope, message).await {
            Ok(j) => j,
            Err(CoreError::NotFound { .. }) => {
                return Err(unavailable(format!(
                    "message {message} has no stored media"
                )))
            }
            Err(e) => return Err(UploadProblem::Store(e)),
        };
        let Some(key) = job
            .blob_key
            .clone()
            .filter(|_| job.state == MediaState::Available)
        else {
            return Err(unavailable(format!(
                "the media of message {message} is not stored"
            )));
        };
        let blob = match self.blobs.get(&key).await {
            Ok(b) => b,
            Err(CoreError::NotFound { .. }) => {
                return Err(unavailable(format!(
                    "the media of message {message} was deleted"
                )))
            }
            Err(e) => return Err(UploadProblem::Store(e)),
        };
        let now = imix_core::now();
        let cached = self
            .cache
            .get(record.account_id, &blob.meta.sha256)
            .await
            .map_err(UploadProblem::Store)?;
        if let Some(c) = cached.filter(|c| c.expires_at > now) {
            return Ok(c.media_id);
        }
        let file_name = job.file_name.clone().unwrap_or_else(|| {
            let ext = blob
                .meta
                .content_type
                .split(['/', ';'])
                .nth(1)
                .unwrap_or("bin")
                .trim()
                .to_owned();
            format!("{}.{ext}", job.kind)
        });
        let uploaded = self
            .client
            .upload_media(
                &sender.token,
                &sender.phone_number_id,
                MediaUpload {
                    file_name,
                    mime_type: blob.meta.content_type.clone(),
                    data: blob.data.clone(),
                },
            )
            .await
            .map_err(UploadProblem::Graph)?;
        tracing::info!(target: "imix_whatsapp", message = %record.id, account = %record.account_id, media = %uploaded.id, "uploaded a file of ours to Meta");
        let entry = UploadedMedia {
            tenant_id: record.tenant_id,
            account_id: record.account_id,
            sha256: blob.meta.sha256.clone(),
            media_id: uploaded.id.clone(),
            uploaded_at: now,
            expires_at: now
                + chrono::Duration::from_std(CACHE_FOR).unwrap_or(chrono::Duration::MAX),
        };
        if let Err(e) = self.cache.put(&entry).await {
            // The upload worked: this message goes out; the next one uploads again.
            tracing::warn!(target: "imix_whatsapp", account = %record.account_id, error = %e, "cannot cache an uploaded media id");
        }
        Ok(uploaded.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_become_references_and_are_named() {
        let id = MessageId::new();
        let mut body =
            serde_json::json!({"type": "image", "image": {"blob": id.to_string(), "caption": "x"}});
        let refs = blob_references(&mut body).unwrap();
        assert_eq!(refs.len(), 1);
        assert_eq!(refs[0].field, "image.blob");
        assert_eq!(refs[0].kind, "image");
        assert_eq!(body["image"]["id"], format!("{BLOB_ID_PREFIX}{id}"));
        assert!(body["image"].get("blob").is_none());

        let mut header = serde_json::json!({"type": "template", "template": {"components": [
            {"type": "header", "parameters": [{"type": "document", "document": {"blob": id.to_string()}}]}]}});
        let refs = blob_references(&mut header).unwrap();
        assert_eq!(
            refs[0].field,
            "template.components[0].parameters[0].document.blob"
        );

        let mut both = serde_json::json!({"type": "image", "image": {"blob": id.to_string(), "link": "https://x/y.png"}});
        assert_eq!(
            blob_references(&mut both).unwrap_err().field.as_deref(),
            Some("image.blob")
        );
        let mut forged =
            serde_json::json!({"type": "image", "image": {"id": format!("{BLOB_ID_PREFIX}{id}")}});
        assert_eq!(
            blob_references(&mut forged).unwrap_err().field.as_deref(),
            Some("image.id")
        );
        let mut bad = serde_json::json!({"type": "audio", "audio": {"blob": "nope"}});
        assert!(blob_references(&mut bad).is_err());
    }

    #[test]
    fn files_are_checked_against_metas_types_per_kind() {
        assert!(super::accepted_mime("image", "image/PNG"));
        assert!(super::accepted_mime("audio", "audio/ogg; codecs=opus"));
        assert!(super::accepted_mime("document", "application/x-anything"));
        assert!(!super::accepted_mime("sticker", "image/png"));
        assert!(!super::accepted_mime("audio", "image/png"));
        assert!(!super::accepted_mime("video", "image/jpeg"));
    }
}

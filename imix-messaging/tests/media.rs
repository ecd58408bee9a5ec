//! Inbound media jobs on both built-in backends: one job per message, leased claims, and
//! the worker's retries, integrity check and final failure, with a scripted media source.
//!
//! `mongodb::*` needs `IMIX_TEST_MONGODB_URI` and fails loudly without it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use bytes::Bytes;
use imix_core::{
    id::{TenantId, WhatsAppAccountId},
    store::{Scope, Store},
    Error as CoreError,
};
use imix_messaging::{
    media::{
        sha256_hex, FetchedMedia, MediaJob, MediaSource, MediaState, MediaWorker, MediaWorkerConfig,
    },
    records::{ContactId, ConversationId, DeliveryState, Direction, Message, MessageId},
    storage::{self, media::MediaJobRepository},
};
use tokio::sync::Notify;

struct World {
    store: Store,
    jobs: Arc<dyn MediaJobRepository>,
    _dir: Option<tempfile::TempDir>,
}

async fn sqlite() -> World {
    let dir = tempfile::tempdir().unwrap();
    let store = imix_core::store::sqlite::open(dir.path()).await.unwrap();
    store.admin.migrate().await.unwrap();
    world(store, Some(dir)).await
}

async fn mongodb() -> World {
    let uri = std::env::var("IMIX_TEST_MONGODB_URI")
        .unwrap_or_else(|_| panic!("IMIX_TEST_MONGODB_URI is not set: run scripts/test.sh"));
    let name = format!("imix_test_{}", uuid::Uuid::now_v7().simple());
    let store = imix_core::store::mongo::open(&uri, &name).await.unwrap();
    store.admin.migrate().await.unwrap();
    world(store, None).await
}

async fn world(store: Store, dir: Option<tempfile::TempDir>) -> World {
    // Twice: the second run applies nothing and fails nothing.
    storage::migrate(&store.backend).await.unwrap();
    storage::migrate(&store.backend).await.unwrap();
    let jobs = storage::media::open(&store.backend).unwrap();
    World {
        store,
        jobs,
        _dir: dir,
    }
}

macro_rules! on_both {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() { crate::$case(crate::sqlite().await).await; }
            )*
        }
        mod mongodb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() { crate::$case(crate::mongodb().await).await; }
            )*
        }
    };
}

on_both!(
    a_message_has_one_job_and_a_claim_leases_it,
    a_failed_download_is_retried_and_the_media_stored,
    media_whose_hash_does_not_match_is_failed_at_once_and_not_stored,
    retries_run_out_into_a_failure_with_its_reason,
);

fn image_message(tenant: TenantId, sha256: Option<&str>) -> Message {
    let mut image = serde_json::json!({"id": "media-1", "mime_type": "image/jpeg"});
    if let Some(sha) = sha256 {
        image["sha256"] = serde_json::json!(sha);
    }
    Message {
        auto_reply: false,
        id: MessageId::new(),
        tenant_id: tenant,
        account_id: WhatsAppAccountId::new(),
        phone_number_id: "2001".into(),
        conversation_id: ConversationId::new(),
        contact_id: ContactId::new(),
        wamid: "wamid.M1".into(),
        direction: Direction::Inbound,
        kind: "image".into(),
        content: serde_json::json!({"type": "image", "image": image}),
        timestamp: imix_core::now(),
        state: DeliveryState::Received,
        statuses: Vec::new(),
        version: 1,
        created_at: imix_core::now(),
    }
}

/// Answers each fetch with the next scripted outcome (the last one repeats).
struct Scripted {
    outcomes: Mutex<VecDeque<Result<Bytes, String>>>,
    calls: Mutex<u32>,
}

impl Scripted {
    fn new(outcomes: Vec<Result<&'static [u8], &'static str>>) -> Arc<Self> {
        Arc::new(Self {
            outcomes: Mutex::new(
                outcomes
                    .into_iter()
                    .map(|o| o.map(Bytes::from_static).map_err(str::to_owned))
                    .collect(),
            ),
            calls: Mutex::new(0),
        })
    }

    fn calls(&self) -> u32 {
        *self.calls.lock().unwrap()
    }
}

#[async_trait]
impl MediaSource for Scripted {
    async fn fetch(
        &self,
        _account: WhatsAppAccountId,
        media_id: &str,
    ) -> Result<FetchedMedia, Box<dyn std::error::Error + Send + Sync>> {
        assert_eq!(media_id, "media-1");
        *self.calls.lock().unwrap() += 1;
        let mut outcomes = self.outcomes.lock().unwrap();
        let next = if outcomes.len() > 1 {
            outcomes.pop_front().unwrap()
        } else {
            outcomes.front().cloned().unwrap()
        };
        next.map(|data| FetchedMedia {
            content_type: Some("image/jpeg".into()),
            sha256: None,
            data,
        })
        .map_err(Into::into)
    }
}

fn worker(w: &World, source: Arc<Scripted>, max_attempts: u32) -> MediaWorker {
    MediaWorker::new(
        w.jobs.clone(),
        source,
        w.store.blobs.clone(),
        Arc::new(Notify::new()),
        MediaWorkerConfig {
            // Due again at once: one drain runs every attempt.
            first_backoff: Duration::ZERO,
            max_backoff: Duration::ZERO,
            max_attempts,
            ..MediaWorkerConfig::default()
        },
    )
}

async fn a_message_has_one_job_and_a_claim_leases_it(w: World) {
    let tenant = TenantId::new();
    let job = MediaJob::for_message(&image_message(tenant, None)).unwrap();
    w.jobs.insert(&job).await.unwrap();
    let again = w.jobs.insert(&job).await.unwrap_err();
    assert!(
        matches!(
            again,
            CoreError::Duplicate {
                field: "message_id",
                ..
            }
        ),
        "{again:?}"
    );
    assert_eq!(
        w.jobs
            .get(Scope::Tenant(tenant), job.message_id)
            .await
            .unwrap(),
        job
    );
    let other = w
        .jobs
        .get(Scope::Tenant(TenantId::new()), job.message_id)
        .await
        .unwrap_err();
    assert!(matches!(other, CoreError::NotFound { .. }), "{other:?}");

    let now = imix_core::now();
    let lease = now + chrono::Duration::seconds(60);
    let claimed = w.jobs.claim_due(now, lease).await.unwrap().unwrap();
    assert_eq!((claimed.attempts, claimed.version), (1, 2));
    assert_eq!(claimed.lease_until, Some(lease));
    // Leased: nobody else gets it until the lease runs out.
    assert!(w.jobs.claim_due(now, lease).await.unwrap().is_none());
    let stale = w.jobs.update(&job).await.unwrap_err();
    assert!(
        matches!(stale, CoreError::VersionConflict { .. }),
        "{stale:?}"
    );
    let after_lease = lease + chrono::Duration::seconds(1);
    let taken_over = w
        .jobs
        .claim_due(after_lease, after_lease + chrono::Duration::seconds(60))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(taken_over.attempts, 2);
    // The first holder's write loses to the one that took it over.
    let mut late = claimed.clone();
    late.state = MediaState::Failed;
    assert!(matches!(
        w.jobs.update(&late).await.unwrap_err(),
        CoreError::VersionConflict { .. }
    ));
    let mut done = taken_over;
    done.state = MediaState::Available;
    done.due_at = None;
    done.lease_until = None;
    let stored = w.jobs.update(&done).await.unwrap();
    assert_eq!(stored.version, done.version + 1);
    let far = after_lease + chrono::Duration::days(1);
    assert!(
        w.jobs.claim_due(far, far).await.unwrap().is_none(),
        "done jobs are never claimed"
    );
}

async fn a_failed_download_is_retried_and_the_media_stored(w: World) {
    let tenant = TenantId::new();
    let bytes: &[u8] = b"\xff\xd8\xff jpeg bytes";
    let message = image_message(tenant, Some(&sha256_hex(bytes)));
    let job = MediaJob::for_message(&message).unwrap();
    w.jobs.insert(&job).await.unwrap();
    let source = Scripted::new(vec![Err("HTTP 502"), Ok(bytes)]);
    let handled = worker(&w, source.clone(), 5).drain().await.unwrap();
    assert_eq!((handled, source.calls()), (2, 2));
    let stored = w.jobs.get(Scope::Platform, message.id).await.unwrap();
    assert_eq!(stored.state, MediaState::Available);
    assert_eq!(stored.attempts, 2);
    assert_eq!(stored.content_type.as_deref(), Some("image/jpeg"));
    assert_eq!(stored.size, Some(bytes.len() as u64));
    assert_eq!(stored.last_error, None);
    assert_eq!(stored.due_at, None);
    let key = stored.blob_key.unwrap();
    assert!(key.contains(&tenant.to_string()), "{key}");
    let blob = w.store.blobs.get(&key).await.unwrap();
    assert_eq!(blob.data.as_ref(), bytes);
    assert_eq!(blob.meta.content_type, "image/jpeg");
}

async fn media_whose_hash_does_not_match_is_failed_at_once_and_not_stored(w: World) {
    let tenant = TenantId::new();
    let message = image_message(tenant, Some(&sha256_hex(b"what the customer sent")));
    w.jobs
        .insert(&MediaJob::for_message(&message).unwrap())
        .await
        .unwrap();
    let source = Scripted::new(vec![Ok(b"something else")]);
    worker(&w, source.clone(), 5).drain().await.unwrap();
    assert_eq!(
        source.calls(),
        1,
        "the same media id serves the same bytes: not retried"
    );
    let job = w.jobs.get(Scope::Platform, message.id).await.unwrap();
    assert_eq!(job.state, MediaState::Failed);
    assert!(
        job.last_error.as_deref().unwrap().contains("SHA-256"),
        "{job:?}"
    );
    assert_eq!(job.blob_key, None);
    let key = imix_messaging::media::blob_key(tenant, message.id);
    assert!(matches!(
        w.store.blobs.get(&key).await.unwrap_err(),
        CoreError::NotFound { .. }
    ));
}

async fn retries_run_out_into_a_failure_with_its_reason(w: World) {
    let message = image_message(TenantId::new(), None);
    w.jobs
        .insert(&MediaJob::for_message(&message).unwrap())
        .await
        .unwrap();
    let source = Scripted::new(vec![Err("Graph API answered HTTP 503")]);
    worker(&w, source.clone(), 3).drain().await.unwrap();
    assert_eq!(source.calls(), 3);
    let job = w.jobs.get(Scope::Platform, message.id).await.unwrap();
    assert_eq!(job.state, MediaState::Failed);
    assert_eq!(job.attempts, 3);
    assert_eq!(job.due_at, None);
    assert!(
        job.last_error.as_deref().unwrap().contains("HTTP 503"),
        "{job:?}"
    );
}

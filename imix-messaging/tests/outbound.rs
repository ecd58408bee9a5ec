//! The outbound queue's storage on both built-in backends: an idempotency key is unique per
//! tenant, claims lease each message to one worker (also when raced), a lapsed lease frees a
//! queued message but never a `sending` one (those are found as stale), lists page by status
//! within the tenant, and another tenant's message is not found.
//!
//! `mongodb` needs `IMIX_TEST_MONGODB_URI` and fails loudly without it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::{collections::HashSet, sync::Arc};

use imix_core::{
    id::{TenantId, WhatsAppAccountId},
    store::{Backend, PageRequest, Scope},
    Error,
};
use imix_messaging::{
    outbound::{OutboundRecord, OutboundStatus},
    records::{ContactId, ConversationId, MessageId},
    storage::{self, outbound::OutboundRepository},
};

async fn sqlite() -> (Backend, Box<dyn std::any::Any + Send>) {
    let dir = tempfile::tempdir().unwrap();
    let store = imix_core::store::sqlite::open(dir.path()).await.unwrap();
    store.admin.migrate().await.unwrap();
    (store.backend, Box::new(dir))
}

async fn mongodb() -> (Backend, Box<dyn std::any::Any + Send>) {
    let uri = std::env::var("IMIX_TEST_MONGODB_URI").unwrap_or_else(|_| {
        panic!(
            "IMIX_TEST_MONGODB_URI is not set: this test needs a MongoDB-wire server. Run \
             scripts/test.sh, which starts one, or point the variable at a mongod."
        )
    });
    let name = format!("imix_test_{}", uuid::Uuid::now_v7().simple());
    let store = imix_core::store::mongo::open(&uri, &name).await.unwrap();
    store.admin.migrate().await.unwrap();
    (store.backend, Box::new(()))
}

async fn repo(backend: &Backend) -> Arc<dyn OutboundRepository> {
    storage::migrate(backend).await.unwrap();
    storage::outbound::open(backend).unwrap()
}

fn record(tenant: TenantId, key: Option<&str>) -> OutboundRecord {
    let now = imix_core::now();
    let id = MessageId::new();
    OutboundRecord {
        auto_reply: false,
        id,
        tenant_id: tenant,
        account_id: WhatsAppAccountId::new(),
        phone_number_id: "2001".into(),
        conversation_id: ConversationId::new(),
        contact_id: ContactId::new(),
        to: "15550100".into(),
        kind: "text".into(),
        content: serde_json::json!({"type": "text", "text": {"body": "hi"}}),
        dedupe: match key {
            Some(k) => OutboundRecord::dedupe_of(tenant, k),
            None => format!("id:{id}"),
        },
        idempotency_key: key.map(str::to_owned),
        request_fingerprint: None,
        created_by: None,
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
        quota: None,
        version: 1,
        created_at: now,
        updated_at: now,
    }
}

async fn idempotency_keys_are_unique_per_tenant(backend: Backend) {
    let repo = repo(&backend).await;
    let (a, b) = (TenantId::new(), TenantId::new());
    let first = record(a, Some("order-42"));
    repo.insert(&first).await.unwrap();
    let again = repo.insert(&record(a, Some("order-42"))).await.unwrap_err();
    assert!(
        matches!(
            again,
            Error::Duplicate {
                field: "idempotency_key",
                ..
            }
        ),
        "{again:?}"
    );
    // The same key in another tenant is another message.
    repo.insert(&record(b, Some("order-42"))).await.unwrap();
    // Messages without a key never clash.
    repo.insert(&record(a, None)).await.unwrap();
    repo.insert(&record(a, None)).await.unwrap();
    let found = repo
        .find_by_idempotency_key(a, "order-42")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, first.id);
    assert!(repo
        .find_by_idempotency_key(a, "other")
        .await
        .unwrap()
        .is_none());
    // Another tenant's message is not found in its scope.
    assert!(matches!(
        repo.get(Scope::Tenant(b), first.id).await.unwrap_err(),
        Error::NotFound { .. }
    ));
    assert_eq!(
        repo.get(Scope::Tenant(a), first.id).await.unwrap().id,
        first.id
    );
}

async fn claims_lease_each_message_to_one_worker(backend: Backend) {
    let repo = repo(&backend).await;
    let tenant = TenantId::new();
    let mut ids = HashSet::new();
    for _ in 0..20 {
        let r = record(tenant, None);
        ids.insert(r.id);
        repo.insert(&r).await.unwrap();
    }
    // A message due later is not claimed.
    let mut later = record(tenant, None);
    later.due_at = Some(imix_core::now() + chrono::Duration::hours(1));
    repo.insert(&later).await.unwrap();
    let now = imix_core::now();
    let lease = now + chrono::Duration::seconds(60);
    // Four workers race for the queue: each message goes to exactly one.
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let repo = repo.clone();
        tasks.push(tokio::spawn(async move {
            repo.claim_due(now, lease, 7).await.unwrap()
        }));
    }
    let mut claimed = Vec::new();
    for t in tasks {
        claimed.extend(t.await.unwrap());
    }
    let unique: HashSet<_> = claimed.iter().map(|r| r.id).collect();
    assert_eq!(claimed.len(), 20, "every due message claimed once");
    assert_eq!(unique, ids);
    assert!(claimed
        .iter()
        .all(|r| r.lease_until == Some(lease) && r.version == 2));
    // Leased: nothing more to claim now.
    assert!(repo.claim_due(now, lease, 50).await.unwrap().is_empty());
    // A lapsed lease frees a queued message for another worker.
    let after = lease + chrono::Duration::seconds(1);
    let again = repo
        .claim_due(after, after + chrono::Duration::seconds(60), 1)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    // A message marked sending is never claimed again, even once its lease lapsed: it is
    // found as stale instead.
    let mut sending = again[0].clone();
    sending.status = OutboundStatus::Sending;
    sending.due_at = None;
    let sending = repo.update(&sending).await.unwrap();
    let far = after + chrono::Duration::hours(2);
    let reclaimed = repo.claim_due(far, far, 50).await.unwrap();
    assert!(reclaimed.iter().all(|r| r.id != sending.id));
    assert!(repo.stale_sending(after, 10).await.unwrap().is_empty());
    let stale = repo.stale_sending(far, 10).await.unwrap();
    assert_eq!(
        stale.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![sending.id]
    );
    // A stale version is refused.
    let err = repo.update(&again[0]).await.unwrap_err();
    assert!(matches!(err, Error::VersionConflict { .. }), "{err:?}");
}

async fn lists_page_by_status_within_the_tenant(backend: Backend) {
    let repo = repo(&backend).await;
    let (tenant, other) = (TenantId::new(), TenantId::new());
    let mut failed = Vec::new();
    for i in 0..5 {
        let mut r = record(tenant, None);
        if i % 2 == 0 {
            r.status = OutboundStatus::Failed;
            r.due_at = None;
            failed.push(r.id);
        }
        repo.insert(&r).await.unwrap();
    }
    let mut foreign = record(other, None);
    foreign.status = OutboundStatus::Failed;
    repo.insert(&foreign).await.unwrap();
    let mut seen = Vec::new();
    let mut page = PageRequest::first(2);
    loop {
        let p = repo
            .list(
                Scope::Tenant(tenant),
                Some(OutboundStatus::Failed),
                page.clone(),
            )
            .await
            .unwrap();
        seen.extend(p.items.iter().map(|r| r.id));
        match p.next_cursor {
            Some(c) => page.cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, failed);
    let all = repo
        .list(Scope::Tenant(tenant), None, PageRequest::first(50))
        .await
        .unwrap();
    assert_eq!(all.items.len(), 5);
}

macro_rules! on_both {
    ($($case:ident),* $(,)?) => {
        mod sqlite_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let (backend, _guard) = super::sqlite().await;
                    super::$case(backend).await;
                }
            )*
        }
        mod mongodb_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let (backend, _guard) = super::mongodb().await;
                    super::$case(backend).await;
                }
            )*
        }
    };
}

on_both!(
    idempotency_keys_are_unique_per_tenant,
    claims_lease_each_message_to_one_worker,
    lists_page_by_status_within_the_tenant,
);

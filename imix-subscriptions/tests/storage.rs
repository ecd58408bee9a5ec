//! The storage ports on both backends: deliveries are claimed once (also by claims racing
//! each other), a lease keeps others off until it runs out, a stale worker's write is a
//! version conflict, finished deliveries are never claimed again; endpoints of another
//! tenant are not found, and only active ones are offered for new events.
//! `mongodb` needs `IMIX_TEST_MONGODB_URI`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::{collections::HashSet, sync::Arc};

use imix_core::{
    id::TenantId,
    store::{Backend, PageRequest, Scope},
    Error,
};
use imix_subscriptions::{
    storage::{migrate, SubscriptionStorage},
    DeliveryState, EndpointStatus, WebhookDelivery, WebhookDeliveryId, WebhookEndpoint,
    WebhookEndpointId,
};

async fn sqlite() -> (Backend, Box<dyn std::any::Any + Send>) {
    let dir = tempfile::tempdir().unwrap();
    let store = imix_core::store::sqlite::open(dir.path()).await.unwrap();
    store.admin.migrate().await.unwrap();
    (store.backend, Box::new(dir))
}

async fn mongodb() -> (Backend, Box<dyn std::any::Any + Send>) {
    let uri = std::env::var("IMIX_TEST_MONGODB_URI")
        .unwrap_or_else(|_| panic!("IMIX_TEST_MONGODB_URI is not set"));
    let name = format!("imix_subs_{}", uuid_like());
    let store = imix_core::store::mongo::open(&uri, &name).await.unwrap();
    store.admin.migrate().await.unwrap();
    (store.backend, Box::new(()))
}

fn uuid_like() -> String {
    WebhookEndpointId::new().to_string().replace('-', "")
}

fn endpoint(tenant: TenantId, status: EndpointStatus) -> WebhookEndpoint {
    let now = imix_core::now();
    WebhookEndpoint {
        id: WebhookEndpointId::new(),
        tenant_id: tenant,
        url: "https://hooks.example.com/x".into(),
        events: vec!["message.received".into()],
        description: String::new(),
        status,
        disabled_reason: None,
        secret_enc: "sealed".into(),
        version: 1,
        created_at: now,
        updated_at: now,
    }
}

fn delivery(e: &WebhookEndpoint) -> WebhookDelivery {
    let now = imix_core::now();
    WebhookDelivery {
        id: WebhookDeliveryId::new(),
        tenant_id: e.tenant_id,
        endpoint_id: e.id,
        event_id: "evt_1".into(),
        event_type: "message.received".into(),
        body: "{}".into(),
        state: DeliveryState::Pending,
        attempts: 0,
        due_at: Some(now - chrono::Duration::seconds(1)),
        lease_until: None,
        last_status: None,
        last_error: None,
        last_attempt_at: None,
        replay_of: None,
        version: 1,
        created_at: now,
    }
}

async fn story(backend: Backend) {
    migrate(&backend).await.unwrap();
    migrate(&backend).await.unwrap(); // idempotent
    let s = SubscriptionStorage::open(&backend).unwrap();
    let (a, b) = (TenantId::new(), TenantId::new());

    // Endpoints: scoped, and only active ones offered for events.
    let active = endpoint(a, EndpointStatus::Active);
    let off = endpoint(a, EndpointStatus::Disabled);
    s.endpoints.insert(&active).await.unwrap();
    s.endpoints.insert(&off).await.unwrap();
    assert_eq!(
        s.endpoints.get(Scope::Tenant(a), active.id).await.unwrap(),
        active
    );
    assert!(matches!(
        s.endpoints.get(Scope::Tenant(b), active.id).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        s.endpoints.delete(Scope::Tenant(b), active.id).await,
        Err(Error::NotFound { .. })
    ));
    let offered = s.endpoints.active_for(a).await.unwrap();
    assert_eq!(
        offered.iter().map(|e| e.id).collect::<Vec<_>>(),
        [active.id]
    );
    assert!(s.endpoints.active_for(b).await.unwrap().is_empty());
    let mut on = off.clone();
    on.status = EndpointStatus::Active;
    let on = s.endpoints.update(Scope::Tenant(a), &on).await.unwrap();
    assert_eq!(on.version, 2);
    assert_eq!(s.endpoints.active_for(a).await.unwrap().len(), 2);
    assert!(matches!(
        s.endpoints.update(Scope::Tenant(a), &off).await,
        Err(Error::VersionConflict { .. })
    ));
    assert!(s.endpoints.update(Scope::Tenant(b), &on).await.is_err());
    assert_eq!(
        s.endpoints
            .list(Scope::Tenant(a), PageRequest::first(10))
            .await
            .unwrap()
            .items
            .len(),
        2
    );

    // Deliveries: twenty due, claimed by eight racing workers: each exactly once.
    let mut ids = HashSet::new();
    for _ in 0..20 {
        let d = delivery(&active);
        ids.insert(d.id);
        s.deliveries.insert(&d).await.unwrap();
    }
    let now = imix_core::now();
    let lease = now + chrono::Duration::seconds(60);
    let claimed = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (deliveries, claimed) = (s.deliveries.clone(), claimed.clone());
        tasks.push(tokio::spawn(async move {
            while let Some(d) = deliveries.claim_due(now, lease).await.unwrap() {
                claimed.lock().unwrap().push(d);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let claimed = claimed.lock().unwrap().clone();
    assert_eq!(claimed.len(), 20, "every delivery claimed once");
    assert_eq!(claimed.iter().map(|d| d.id).collect::<HashSet<_>>(), ids);
    assert!(
        s.deliveries.claim_due(now, lease).await.unwrap().is_none(),
        "leased"
    );

    // A lease that ran out is claimed again; the first holder's write then conflicts.
    let first = claimed[0].clone();
    let later = lease + chrono::Duration::seconds(1);
    let mut again = None;
    while let Some(d) = s
        .deliveries
        .claim_due(later, later + chrono::Duration::seconds(60))
        .await
        .unwrap()
    {
        if d.id == first.id {
            again = Some(d);
        }
    }
    let again = again.expect("reclaimed after its lease");
    let mut stale = first.clone();
    stale.state = DeliveryState::Succeeded;
    assert!(matches!(
        s.deliveries.update(&stale).await,
        Err(Error::VersionConflict { .. })
    ));
    // Finished by its holder: never claimed again, and logged for its endpoint only.
    let mut done = again.clone();
    done.state = DeliveryState::Succeeded;
    done.due_at = None;
    done.lease_until = None;
    done.attempts = 1;
    let done = s.deliveries.update(&done).await.unwrap();
    let far = later + chrono::Duration::days(1);
    let mut seen = HashSet::new();
    while let Some(d) = s.deliveries.claim_due(far, far).await.unwrap() {
        seen.insert(d.id);
        let mut finished = d.clone();
        finished.due_at = None;
        finished.lease_until = None;
        s.deliveries.update(&finished).await.unwrap();
    }
    assert!(!seen.contains(&done.id));
    assert_eq!(seen.len(), 19);
    let log = s
        .deliveries
        .list_for_endpoint(Scope::Tenant(a), active.id, PageRequest::first(100))
        .await
        .unwrap();
    assert_eq!(log.items.len(), 20);
    assert!(
        log.items.windows(2).all(|w| w[0].id > w[1].id),
        "newest first"
    );
    assert!(s
        .deliveries
        .list_for_endpoint(Scope::Tenant(b), active.id, PageRequest::first(100))
        .await
        .unwrap()
        .items
        .is_empty());
    assert!(matches!(
        s.deliveries.get(Scope::Tenant(b), done.id).await,
        Err(Error::NotFound { .. })
    ));
    assert_eq!(
        s.deliveries
            .get(Scope::Tenant(a), done.id)
            .await
            .unwrap()
            .state,
        DeliveryState::Succeeded
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_story() {
    let (backend, _keep) = sqlite().await;
    story(backend).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mongodb_story() {
    let (backend, _keep) = mongodb().await;
    story(backend).await;
}

//! Sends count against the daily limits, and a tenant's admins are warned at 80 % and 100 %
//! of the messages-per-day limit, once per day each, even under concurrency.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::sync::Arc;

use imix_core::store::Store;
use imix_notify::RecordingMailer;
use imix_tenancy::{
    emails::PlainAccountEmails, quota::StoreQuotaStore, storage::TenancyStorage,
    throttle::MemoryThrottle, Role, TenancyConfig, TenancyError, TenancyService, Tenant,
    TenantStatus, User, UserStatus,
};
use secrecy::SecretString;

async fn service(store: &Store) -> (TenancyService, RecordingMailer) {
    let mailer = RecordingMailer::default();
    let service = TenancyService::new(
        store.clone(),
        TenancyConfig {
            secret_key: SecretString::from("k".repeat(40)),
            access_token_minutes: 60,
            public_url: "http://localhost:8000".parse().unwrap(),
        },
        Arc::new(PlainAccountEmails::new(Arc::new(mailer.clone()))),
        Arc::new(MemoryThrottle::default()),
        Arc::new(StoreQuotaStore::new(store.counters.clone())),
    )
    .unwrap();
    (service, mailer)
}

async fn tenant_with_admins(store: &Store, limit: u64) -> Tenant {
    let mut t = Tenant::new("Warned");
    t.limits.max_messages_per_day = Some(limit);
    t.limits.max_media_per_day = Some(1);
    tenancy(store).tenants.insert(&t).await.unwrap();
    for (email, role, status) in [
        ("boss@warned.example", Role::Admin, UserStatus::Active),
        ("gone@warned.example", Role::Admin, UserStatus::Deactivated),
        ("agent@warned.example", Role::Agent, UserStatus::Active),
    ] {
        let mut u = User::new(email, role, Some(t.id));
        u.status = status;
        u.default_language = imix_core::Language::Fr;
        tenancy(store).users.insert(&u).await.unwrap();
    }
    t
}

async fn sqlite() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = imix_core::store::sqlite::open(dir.path()).await.unwrap();
    store.admin.migrate().await.unwrap();
    imix_tenancy::storage::migrate(&store.backend)
        .await
        .unwrap();
    (store, dir)
}

fn tenancy(store: &Store) -> TenancyStorage {
    TenancyStorage::open(&store.backend).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_are_warned_at_80_and_100_percent_once() {
    let (store, _dir) = sqlite().await;
    let (svc, mailer) = service(&store).await;
    let t = tenant_with_admins(&store, 10).await;

    for _ in 0..7 {
        svc.consume_for_send(t.id, 1, false).await.unwrap();
    }
    assert!(mailer.sent().is_empty(), "70 % warns nobody");
    svc.consume_for_send(t.id, 1, false).await.unwrap();
    let sent = mailer.sent();
    assert_eq!(sent.len(), 1, "80 % warns the active admin only");
    assert_eq!(sent[0].to.email, "boss@warned.example");
    assert!(sent[0].subject.contains("80 %"), "{}", sent[0].subject);
    assert_eq!(sent[0].language, imix_core::Language::Fr);

    svc.consume_for_send(t.id, 1, false).await.unwrap();
    assert_eq!(mailer.sent().len(), 1);
    let last = svc.consume_for_send(t.id, 1, false).await.unwrap();
    assert_eq!(last.used, 10);
    assert_eq!(mailer.sent().len(), 2);
    assert!(mailer.sent()[1].subject.contains("100 %"));

    let refused = svc.consume_for_send(t.id, 1, false).await.unwrap_err();
    assert!(
        matches!(refused, TenancyError::Quota(ref q) if q.is_limit_reached()),
        "{refused:?}"
    );
    assert_eq!(mailer.sent().len(), 2, "no warning twice in a day");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sends_from_two_replicas_warn_exactly_once_per_threshold() {
    let (store, dir) = sqlite().await;
    // A second "replica": its own store handle on the same database file.
    let store2 = imix_core::store::sqlite::open(dir.path()).await.unwrap();
    let (one, mailer_one) = service(&store).await;
    let (two, mailer_two) = service(&store2).await;
    let t = tenant_with_admins(&store, 10).await;
    let tasks: Vec<_> = (0..30)
        .map(|i| {
            let svc = if i % 2 == 0 { one.clone() } else { two.clone() };
            tokio::spawn(async move { svc.consume_for_send(t.id, 1, false).await.is_ok() })
        })
        .collect();
    let mut ok = 0;
    for task in tasks {
        if task.await.unwrap() {
            ok += 1;
        }
    }
    assert_eq!(ok, 10);
    let warnings = mailer_one.sent().len() + mailer_two.sent().len();
    assert_eq!(warnings, 2, "one warning at 80 %, one at 100 %");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_counts_both_and_a_refusal_takes_nothing() {
    let (store, _dir) = sqlite().await;
    let (svc, _) = service(&store).await;
    let t = tenant_with_admins(&store, 100).await;
    svc.consume_for_send(t.id, 1, true).await.unwrap();
    let err = svc.consume_for_send(t.id, 1, true).await.unwrap_err();
    assert!(matches!(err, TenancyError::Quota(ref q) if q.is_limit_reached()));
    let daily = imix_tenancy::quota::QuotaStore::usage(
        &StoreQuotaStore::new(store.counters.clone()),
        t.id,
        imix_core::now(),
    )
    .await
    .unwrap();
    assert_eq!(
        (daily.messages, daily.media),
        (1, 1),
        "the refused media send gave its message back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deactivated_tenant_sends_nothing() {
    let (store, _dir) = sqlite().await;
    let (svc, _) = service(&store).await;
    let mut t = tenant_with_admins(&store, 100).await;
    t.status = TenantStatus::Deactivated;
    tenancy(&store).tenants.update(&t).await.unwrap();
    assert!(matches!(
        svc.consume_for_send(t.id, 1, false).await,
        Err(TenancyError::TenantDeactivated)
    ));
}

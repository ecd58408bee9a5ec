//! The account and template services on their own: the real SQLite repositories, a mocked
//! `WhatsAppClient`, an in-memory tenant directory and an in-memory template counter.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

use async_trait::async_trait;
use imix_core::{
    access::{AccessContext, AuditSink, Permission, Principal},
    crypto::{Cipher, EncryptionKey},
    directory::{TenantDirectory, TenantProfile, TenantStatus, UsageLimits},
    id::TenantId,
    id::UserId,
    secret::{ExposeSecret, SecretString},
    store::{sqlite::SqliteDb, Backend, Scope},
    Language,
};
use imix_whatsapp::{
    accounts::{AccountService, NewAccount, ServiceResult, WhatsAppRepos},
    model::{CreatedTemplate, Template, TemplateDefinitionComponent, TemplatePage},
    storage::{self, WhatsAppStorage},
    templates::{NewTemplateRequest, TemplateCounter, TemplateService},
    Error, MockWhatsAppClient, ServiceError,
};

/// Counts like `CountLimits` does, in memory.
#[derive(Default)]
struct Counter(AtomicU64);

#[async_trait]
impl TemplateCounter for Counter {
    async fn reserve(&self, _tenant: TenantId, limit: Option<u64>) -> ServiceResult<()> {
        let limit = limit.unwrap_or(u64::MAX);
        self.0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < limit).then_some(n + 1)
            })
            .map(|_| ())
            .map_err(|current| ServiceError::LimitReached { limit, current })
    }

    async fn release(&self, _tenant: TenantId) -> ServiceResult<()> {
        let _ = self
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        Ok(())
    }

    async fn reconcile(&self, _tenant: TenantId, actual: u64) -> ServiceResult<()> {
        self.0.store(actual, Ordering::SeqCst);
        Ok(())
    }
}

/// Tenants by id, in memory.
struct Tenants(HashMap<TenantId, TenantProfile>);

#[async_trait]
impl TenantDirectory for Tenants {
    async fn profile(&self, id: TenantId) -> imix_core::Result<TenantProfile> {
        self.0
            .get(&id)
            .cloned()
            .ok_or_else(|| imix_core::Error::NotFound {
                entity: "tenant",
                id: id.to_string(),
            })
    }
}

/// The audit log is not under test here.
struct NoAudit;

#[async_trait]
impl AuditSink for NoAudit {
    async fn record(
        &self,
        _ctx: &AccessContext,
        _action: &str,
        _target_type: &str,
        _target_id: String,
        _tenant: Option<TenantId>,
    ) {
    }
}

/// A tenant admin of `tenant`: every WhatsApp and template permission.
fn admin(tenant: TenantId) -> AccessContext {
    AccessContext::new(
        Principal::new(UserId::new(), "admin@acme.example"),
        Some(tenant),
        false,
        [
            Permission::WhatsAppAccountsRead,
            Permission::WhatsAppAccountsManage,
            Permission::TemplatesRead,
            Permission::TemplatesManage,
        ]
        .into_iter()
        .collect(),
        None,
    )
}

fn remote(id: &str, name: &str, status: &str) -> Template {
    Template {
        id: id.into(),
        name: name.into(),
        language: "en_US".into(),
        status: status.into(),
        category: "UTILITY".into(),
        components: vec![TemplateDefinitionComponent::text("BODY", "Hi {{1}}")],
    }
}

async fn setup(
    client: MockWhatsAppClient,
) -> (
    tempfile::TempDir,
    WhatsAppStorage,
    AccountService,
    TemplateService,
    Arc<Counter>,
    TenantId,
) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("imix.sqlite3");
    let db = tokio::task::spawn_blocking(move || SqliteDb::open_blocking(&path, 2))
        .await
        .unwrap()
        .unwrap();
    let backend = Backend::Sqlite(db);
    storage::migrate(&backend).await.unwrap();
    let storage = WhatsAppStorage::open(&backend).unwrap();
    let tenant = TenantProfile {
        id: TenantId::new(),
        name: "Acme".into(),
        status: TenantStatus::Active,
        default_language: Language::En,
        limits: UsageLimits {
            max_templates: Some(2),
            ..UsageLimits::default()
        },
    };
    let tenants = Arc::new(Tenants(HashMap::from([(tenant.id, tenant.clone())])));
    let cipher = Cipher::new(EncryptionKey::generate(), Vec::new());
    let counter = Arc::new(Counter::default());
    let client = Arc::new(client);
    let repos = WhatsAppRepos::new(storage.clone(), tenants);
    let audit: Arc<dyn AuditSink> = Arc::new(NoAudit);
    let accounts = AccountService::new(
        repos.clone(),
        client.clone(),
        cipher,
        "https://crm.example.com/",
        counter.clone(),
        audit.clone(),
    );
    let templates = TemplateService::new(repos, client, accounts.clone(), counter.clone(), audit);
    (dir, storage, accounts, templates, counter, tenant.id)
}

fn new_account() -> NewAccount {
    NewAccount {
        waba_id: "1001".into(),
        business_account_id: "1000".into(),
        phone_number_id: "2001".into(),
        app_id: "3001".into(),
        display_phone_number: "+1 555-010-0001".into(),
        business_name: "Acme".into(),
        access_token: SecretString::from("EAAG-token-for-the-mock-1234"),
        app_secret: SecretString::from("app-secret-for-the-mock-abcd"),
        webhook_verify_token: None,
    }
}

#[tokio::test]
async fn secrets_are_sealed_per_account_and_open_for_calls() {
    let (_dir, store, accounts, _, _, tenant) = setup(MockWhatsAppClient::new()).await;
    let a = accounts
        .add(&admin(tenant), tenant, new_account())
        .await
        .unwrap();
    assert_eq!(a.access_token_hint, "****1234");
    assert_eq!(
        accounts.webhook_uri(a.id),
        format!("https://crm.example.com/webhooks/whatsapp/{}", a.id)
    );
    let stored = store
        .accounts
        .get(Scope::Tenant(tenant), a.id)
        .await
        .unwrap();
    assert!(!stored.access_token_enc.contains("EAAG"));
    assert_eq!(
        accounts.access_token(&stored).unwrap().expose(),
        "EAAG-token-for-the-mock-1234"
    );
    assert_eq!(
        accounts.app_secret(&stored).unwrap().expose_secret(),
        "app-secret-for-the-mock-abcd"
    );
    // A token sealed for one account does not open on another.
    let mut other = accounts
        .add(
            &admin(tenant),
            tenant,
            NewAccount {
                phone_number_id: "2002".into(),
                ..new_account()
            },
        )
        .await
        .unwrap();
    other.access_token_enc = stored.access_token_enc.clone();
    assert!(matches!(
        accounts.access_token(&other),
        Err(ServiceError::Crypto(_))
    ));
}

#[tokio::test]
async fn a_failed_submission_gives_its_slot_back() {
    let mut client = MockWhatsAppClient::new();
    client
        .expect_create_template()
        .times(1)
        .returning(|_, _, _| Err(Error::Timeout));
    client.expect_create_template().returning(|_, _, t| {
        Ok(CreatedTemplate {
            id: format!("meta-{}", t.name),
            status: "PENDING".into(),
            category: t.category.clone(),
        })
    });
    let (_dir, _store, accounts, templates, counter, tenant) = setup(client).await;
    let a = accounts
        .add(&admin(tenant), tenant, new_account())
        .await
        .unwrap();
    let req = |name: &str| NewTemplateRequest {
        account_id: a.id.to_string(),
        name: name.into(),
        language: "en_US".into(),
        category: "utility".into(),
        components: vec![serde_json::to_value(TemplateDefinitionComponent::text(
            "BODY", "Hi {{1}}",
        ))
        .unwrap()],
    };
    assert!(matches!(
        templates.create(&admin(tenant), tenant, req("first")).await,
        Err(ServiceError::Graph(Error::Timeout))
    ));
    assert_eq!(counter.0.load(Ordering::SeqCst), 0);
    let t = templates
        .create(&admin(tenant), tenant, req("first"))
        .await
        .unwrap();
    assert_eq!(
        (t.status.as_str(), t.category.as_str()),
        ("PENDING", "UTILITY")
    );
    templates
        .create(&admin(tenant), tenant, req("second"))
        .await
        .unwrap();
    assert!(matches!(
        templates.create(&admin(tenant), tenant, req("third")).await,
        Err(ServiceError::LimitReached {
            limit: 2,
            current: 2
        })
    ));
}

#[tokio::test]
async fn sync_inserts_updates_removes_and_reconciles_the_count() {
    let mut client = MockWhatsAppClient::new();
    client.expect_create_template().returning(|_, _, t| {
        Ok(CreatedTemplate {
            id: format!("meta-{}", t.name),
            status: "PENDING".into(),
            category: t.category.clone(),
        })
    });
    client.expect_list_templates().returning(|_, _, _| {
        Ok(TemplatePage {
            data: vec![
                remote("meta-kept", "kept", "APPROVED"),
                remote("meta-new", "brand_new", "REJECTED"),
            ],
            paging: None,
        })
    });
    let (_dir, _store, accounts, templates, counter, tenant) = setup(client).await;
    let a = accounts
        .add(&admin(tenant), tenant, new_account())
        .await
        .unwrap();
    for name in ["kept", "gone"] {
        templates
            .create(
                &admin(tenant),
                tenant,
                NewTemplateRequest {
                    account_id: a.id.to_string(),
                    name: name.into(),
                    language: "en_US".into(),
                    category: "UTILITY".into(),
                    components: vec![serde_json::to_value(TemplateDefinitionComponent::text(
                        "BODY", "Hi {{1}}",
                    ))
                    .unwrap()],
                },
            )
            .await
            .unwrap();
    }
    let report = templates.sync(&admin(tenant), tenant, None).await.unwrap();
    assert_eq!(
        (report.added, report.updated, report.removed, report.total),
        (1, 1, 1, 2)
    );
    assert_eq!(counter.0.load(Ordering::SeqCst), 2);
    let approved = templates
        .list(
            &admin(tenant),
            tenant,
            None,
            Some("approved"),
            Default::default(),
        )
        .await
        .unwrap();
    assert_eq!(approved.items.len(), 1);
    assert_eq!(approved.items[0].name, "kept");
    assert!(matches!(
        templates
            .list(
                &admin(tenant),
                tenant,
                None,
                Some("nope"),
                Default::default()
            )
            .await,
        Err(ServiceError::Invalid {
            field: "status",
            ..
        })
    ));
}

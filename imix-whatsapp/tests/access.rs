//! The account and template services check the caller themselves: with `mockall` mocks of
//! every port (storage, Graph API client, template counter, audit log), a caller without the
//! permission or naming another tenant is refused before any port is called, and a permitted
//! call reaches the store in the right scope.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::sync::{Arc, Mutex};

use imix_core::{
    access::{AccessContext, AccessDenied, MockAuditSink, Permission, Principal},
    crypto::{Cipher, EncryptionKey},
    directory::{MockTenantDirectory, TenantProfile, TenantStatus, UsageLimits},
    id::{TemplateId, TenantId, UserId, WhatsAppAccountId},
    secret::SecretString,
    store::{Page, PageRequest, Scope},
    Error as CoreError, Language,
};
use imix_whatsapp::{
    accounts::{AccountPatch, AccountService, NewAccount, WhatsAppRepos},
    model::{CodeMethod, TemplateDefinitionComponent},
    storage::{MockTemplateRepository, MockWhatsAppAccountRepository},
    templates::{MockTemplateCounter, NewTemplateRequest, TemplateService},
    MessageTemplate, MockWhatsAppClient, ServiceError, WhatsAppAccount,
};

/// The mocks; each starts with no expectation, so any call it did not expect fails the test.
#[derive(Default)]
struct Ports {
    tenants: MockTenantDirectory,
    accounts: MockWhatsAppAccountRepository,
    templates: MockTemplateRepository,
    client: MockWhatsAppClient,
    counter: MockTemplateCounter,
    audit: MockAuditSink,
}

impl Ports {
    /// Every storage, client and counter call forbidden (`times(0)`), audit too.
    fn untouchable() -> Self {
        let mut p = Ports::default();
        p.tenants.expect_profile().times(0);
        p.accounts.expect_get().times(0);
        p.accounts.expect_insert().times(0);
        p.accounts.expect_update().times(0);
        p.accounts.expect_delete().times(0);
        p.accounts.expect_list().times(0);
        p.templates.expect_get().times(0);
        p.templates.expect_insert().times(0);
        p.templates.expect_update().times(0);
        p.templates.expect_delete().times(0);
        p.templates.expect_list().times(0);
        p.client.expect_create_template().times(0);
        p.client.expect_delete_template().times(0);
        p.client.expect_get_phone_number().times(0);
        p.client.expect_request_code().times(0);
        p.client.expect_verify_code().times(0);
        p.client.expect_register().times(0);
        p.counter.expect_reserve().times(0);
        p.counter.expect_release().times(0);
        p.counter.expect_reconcile().times(0);
        p.audit.expect_record().times(0);
        p
    }

    fn services(self, cipher: Cipher) -> (AccountService, TemplateService) {
        let repos = WhatsAppRepos {
            tenants: Arc::new(self.tenants),
            accounts: Arc::new(self.accounts),
            templates: Arc::new(self.templates),
        };
        let client = Arc::new(self.client);
        let counter = Arc::new(self.counter);
        let audit = Arc::new(self.audit);
        let accounts = AccountService::new(
            repos.clone(),
            client.clone(),
            cipher,
            "https://crm.example.com",
            counter.clone(),
            audit.clone(),
        );
        let templates = TemplateService::new(repos, client, accounts.clone(), counter, audit);
        (accounts, templates)
    }
}

/// An active tenant without limits, as the tenant directory describes it.
fn profile(id: TenantId) -> TenantProfile {
    TenantProfile {
        id,
        name: "Acme".into(),
        status: TenantStatus::Active,
        default_language: Language::En,
        limits: UsageLimits::default(),
    }
}

fn cipher() -> Cipher {
    Cipher::new(EncryptionKey::generate(), Vec::new())
}

fn caller(tenant: Option<TenantId>, permissions: &[Permission]) -> AccessContext {
    AccessContext::new(
        Principal::new(UserId::new(), "caller@example.com"),
        tenant,
        tenant.is_none(),
        permissions.iter().copied().collect(),
        None,
    )
}

const ALL_WHATSAPP: &[Permission] = &[
    Permission::WhatsAppAccountsRead,
    Permission::WhatsAppAccountsManage,
    Permission::TemplatesRead,
    Permission::TemplatesManage,
];

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

fn new_template() -> NewTemplateRequest {
    NewTemplateRequest {
        account_id: WhatsAppAccountId::new().to_string(),
        name: "order_update".into(),
        language: "en_US".into(),
        category: "UTILITY".into(),
        components: vec![serde_json::to_value(TemplateDefinitionComponent::text(
            "BODY", "Hi {{1}}",
        ))
        .unwrap()],
    }
}

fn forbidden(result: Result<impl std::fmt::Debug, ServiceError>, permission: Permission) {
    match result {
        Err(ServiceError::Access(AccessDenied::Forbidden { permission: p })) => {
            assert_eq!(p, permission)
        }
        other => panic!("expected forbidden ({permission}), got {other:?}"),
    }
}

fn tenant_not_found(result: Result<impl std::fmt::Debug, ServiceError>) {
    match result {
        Err(ServiceError::Access(AccessDenied::NotFound { entity: "tenant" })) => {}
        other => panic!("expected tenant not found, got {other:?}"),
    }
}

#[tokio::test]
async fn account_operations_without_the_permission_never_reach_a_port() {
    let (accounts, _) = Ports::untouchable().services(cipher());
    let own = TenantId::new();
    let id = WhatsAppAccountId::new();
    let pin = SecretString::from("123456");
    // Nothing at all.
    let nobody = caller(Some(own), &[]);
    forbidden(
        accounts.list(&nobody, own, PageRequest::default()).await,
        Permission::WhatsAppAccountsRead,
    );
    forbidden(
        accounts.get(&nobody, id).await,
        Permission::WhatsAppAccountsRead,
    );
    // Read only: every change is refused.
    let reader = caller(
        Some(own),
        &[
            Permission::WhatsAppAccountsRead,
            Permission::TemplatesManage,
        ],
    );
    let manage = Permission::WhatsAppAccountsManage;
    forbidden(accounts.add(&reader, own, new_account()).await, manage);
    forbidden(
        accounts.edit(&reader, id, AccountPatch::default()).await,
        manage,
    );
    forbidden(accounts.delete(&reader, id).await, manage);
    forbidden(accounts.verify(&reader, id).await, manage);
    forbidden(
        accounts
            .request_code(&reader, id, CodeMethod::Sms, "en_US")
            .await,
        manage,
    );
    forbidden(accounts.verify_code(&reader, id, "123456").await, manage);
    forbidden(accounts.register(&reader, id, &pin).await, manage);
}

#[tokio::test]
async fn template_operations_without_the_permission_never_reach_a_port() {
    let (_, templates) = Ports::untouchable().services(cipher());
    let own = TenantId::new();
    let id = TemplateId::new();
    let nobody = caller(Some(own), &[Permission::WhatsAppAccountsManage]);
    forbidden(
        templates
            .list(&nobody, own, None, None, PageRequest::default())
            .await,
        Permission::TemplatesRead,
    );
    forbidden(
        templates.get(&nobody, own, id).await,
        Permission::TemplatesRead,
    );
    let reader = caller(Some(own), &[Permission::TemplatesRead]);
    let manage = Permission::TemplatesManage;
    forbidden(templates.create(&reader, own, new_template()).await, manage);
    forbidden(templates.delete(&reader, own, id).await, manage);
    forbidden(templates.sync(&reader, own, None).await, manage);
}

#[tokio::test]
async fn a_tenant_caller_naming_another_tenant_finds_nothing_and_touches_nothing() {
    let (accounts, templates) = Ports::untouchable().services(cipher());
    let own = TenantId::new();
    let other = TenantId::new();
    let admin = caller(Some(own), ALL_WHATSAPP);
    tenant_not_found(accounts.add(&admin, other, new_account()).await);
    tenant_not_found(accounts.list(&admin, other, PageRequest::default()).await);
    tenant_not_found(
        templates
            .list(&admin, other, None, None, PageRequest::default())
            .await,
    );
    tenant_not_found(templates.get(&admin, other, TemplateId::new()).await);
    tenant_not_found(templates.create(&admin, other, new_template()).await);
    tenant_not_found(templates.delete(&admin, other, TemplateId::new()).await);
    tenant_not_found(templates.sync(&admin, other, None).await);
}

#[tokio::test]
async fn another_tenants_account_id_is_looked_up_in_the_callers_tenant_only() {
    let own = TenantId::new();
    let foreign = WhatsAppAccountId::new();
    let mut ports = Ports::untouchable();
    ports.accounts.checkpoint();
    // The store sees only the caller's scope, and (as the store does for another tenant's
    // record) answers not found; nothing else is called.
    ports
        .accounts
        .expect_get()
        .withf(move |scope, id| *scope == Scope::Tenant(own) && *id == foreign)
        .times(4)
        .returning(|_, id| {
            Err(CoreError::NotFound {
                entity: "whatsapp account",
                id: id.to_string(),
            })
        });
    ports.accounts.expect_update().times(0);
    ports.accounts.expect_delete().times(0);
    let (accounts, _) = ports.services(cipher());
    let admin = caller(Some(own), ALL_WHATSAPP);
    for result in [
        accounts.get(&admin, foreign).await.map(|_| ()),
        accounts
            .edit(&admin, foreign, AccountPatch::default())
            .await
            .map(|_| ()),
        accounts.delete(&admin, foreign).await,
        accounts.verify(&admin, foreign).await.map(|_| ()),
    ] {
        assert!(
            matches!(result, Err(ServiceError::Store(CoreError::NotFound { .. }))),
            "{result:?}"
        );
    }
}

#[tokio::test]
async fn a_permitted_add_reaches_the_store_in_the_named_tenant_and_is_audited() {
    let tid = TenantId::new();
    let mut ports = Ports::default();
    ports
        .tenants
        .expect_profile()
        .withf(move |id| *id == tid)
        .times(1)
        .returning(|id| Ok(profile(id)));
    ports
        .accounts
        .expect_insert()
        .withf(move |a| a.tenant_id == tid && a.phone_number_id == "2001")
        .times(1)
        .returning(|_| Ok(()));
    ports
        .audit
        .expect_record()
        .withf(move |ctx, action, target_type, _, t| {
            ctx.is_platform_admin()
                && action == "whatsapp_account.create"
                && target_type == "whatsapp_account"
                && *t == Some(tid)
        })
        .times(1)
        .return_const(());
    let (accounts, _) = ports.services(cipher());
    // A platform admin acts inside the tenant it names.
    let platform = caller(None, &Permission::ALL);
    let added = accounts.add(&platform, tid, new_account()).await.unwrap();
    assert_eq!(added.tenant_id, tid);
}

#[tokio::test]
async fn permitted_reads_reach_the_store_in_the_right_scope() {
    let own = TenantId::new();
    let named = TenantId::new();
    let mut ports = Ports::default();
    // A tenant reader lists its own tenant; a platform admin lists the tenant it names.
    ports
        .accounts
        .expect_list()
        .withf(move |scope, _| *scope == Scope::Tenant(own) || *scope == Scope::Tenant(named))
        .times(2)
        .returning(|_, _| {
            Ok(Page {
                items: Vec::new(),
                next_cursor: None,
            })
        });
    // A platform admin reads an account by id in the platform scope.
    ports
        .accounts
        .expect_get()
        .withf(|scope, _| *scope == Scope::Platform)
        .times(1)
        .returning(|_, id| {
            Err(CoreError::NotFound {
                entity: "whatsapp account",
                id: id.to_string(),
            })
        });
    ports
        .templates
        .expect_list()
        .withf(move |scope, _, _| *scope == Scope::Tenant(own))
        .times(1)
        .returning(|_, _, _| {
            Ok(Page {
                items: Vec::new(),
                next_cursor: None,
            })
        });
    let (accounts, templates) = ports.services(cipher());
    let reader = caller(
        Some(own),
        &[Permission::WhatsAppAccountsRead, Permission::TemplatesRead],
    );
    let platform = caller(None, &Permission::ALL);
    accounts
        .list(&reader, own, PageRequest::default())
        .await
        .unwrap();
    accounts
        .list(&platform, named, PageRequest::default())
        .await
        .unwrap();
    assert!(accounts
        .get(&platform, WhatsAppAccountId::new())
        .await
        .is_err());
    templates
        .list(&reader, own, None, None, PageRequest::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_permitted_template_delete_reaches_meta_the_store_and_the_audit_log() {
    let own = TenantId::new();
    let cipher = cipher();
    // An account with a sealed token, made by the service itself.
    let account: Arc<Mutex<Option<WhatsAppAccount>>> = Arc::default();
    let mut setup = Ports::default();
    setup
        .tenants
        .expect_profile()
        .returning(|id| Ok(profile(id)));
    let slot = account.clone();
    setup.accounts.expect_insert().returning(move |a| {
        *slot.lock().unwrap() = Some(a.clone());
        Ok(())
    });
    setup.audit.expect_record().return_const(());
    let (setup_accounts, _) = setup.services(cipher.clone());
    let admin = caller(Some(own), ALL_WHATSAPP);
    setup_accounts
        .add(&admin, own, new_account())
        .await
        .unwrap();
    let account = account.lock().unwrap().clone().unwrap();

    let template = MessageTemplate {
        id: TemplateId::new(),
        tenant_id: own,
        account_id: account.id,
        meta_id: "9001".into(),
        name: "order_update".into(),
        language: "en_US".into(),
        category: "UTILITY".into(),
        status: "APPROVED".into(),
        components: serde_json::json!([]),
        rejected_reason: None,
        version: 1,
        created_at: imix_core::now(),
        updated_at: imix_core::now(),
    };
    let tid = template.id;
    let mut ports = Ports::default();
    let t = template.clone();
    ports
        .templates
        .expect_get()
        .withf(move |scope, id| *scope == Scope::Tenant(own) && *id == tid)
        .times(1)
        .returning(move |_, _| Ok(t.clone()));
    let a = account.clone();
    ports
        .accounts
        .expect_get()
        .withf(move |scope, _| *scope == Scope::Tenant(own))
        .times(1)
        .returning(move |_, _| Ok(a.clone()));
    ports
        .client
        .expect_delete_template()
        .withf(|_, waba, name, hsm| {
            waba == "1001" && name == "order_update" && *hsm == Some("9001")
        })
        .times(1)
        .returning(|_, _, _, _| Ok(()));
    ports
        .templates
        .expect_delete()
        .withf(move |scope, id| *scope == Scope::Tenant(own) && *id == tid)
        .times(1)
        .returning(|_, _| Ok(()));
    ports
        .counter
        .expect_release()
        .withf(move |t| *t == own)
        .times(1)
        .returning(|_| Ok(()));
    ports
        .audit
        .expect_record()
        .withf(move |_, action, _, target, t| {
            action == "template.delete" && *target == tid.to_string() && *t == Some(own)
        })
        .times(1)
        .return_const(());
    let (_, templates) = ports.services(cipher);
    templates.delete(&admin, own, tid).await.unwrap();
}

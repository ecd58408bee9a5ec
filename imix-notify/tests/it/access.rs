//! The SMTP settings operations check the caller themselves: over `mockall` mocks of every
//! storage port, a caller without the permission or naming another tenant is refused before
//! any port is called, and a permitted call reaches the settings port in the right scope and
//! the audit log. The mail outbox listing likewise.

use std::{collections::BTreeSet, sync::Arc};

use imix_core::{
    access::{AccessContext, AccessDenied, Permission, Principal},
    crypto::{Cipher, EncryptionKey},
    directory::{MockTenantDirectory, TenantProfile, TenantStatus, UsageLimits},
    id::{TenantId, UserId},
    model::SettingsScope,
    store::{
        Backend, MockAuditLogRepository, MockBlobStore, MockCounterRepository,
        MockSettingsRepository, MockStoreAdmin, Page, PageRequest, Scope, Store,
    },
    Language,
};
use imix_notify::{
    outbox::{MockMailerResolver, OutboxConfig},
    settings::SmtpSettingsInput,
    storage::MockMailOutboxRepository,
    templates::Templates,
    Notifier, NotifyError,
};

/// Core's shared ports as the notifier uses them (settings, audit log, counters); every
/// other port is a mock that fails the test if called. The one place that knows the
/// shape of core's `Store`.
fn store_of(
    settings: MockSettingsRepository,
    audit: MockAuditLogRepository,
    counters: MockCounterRepository,
) -> Store {
    Store {
        backend: Backend::Custom,
        settings: Arc::new(settings),
        blobs: Arc::new(MockBlobStore::new()),
        audit: Arc::new(audit),
        counters: Arc::new(counters),
        admin: Arc::new(MockStoreAdmin::new()),
    }
}

/// An active tenant.
fn profile(name: &str) -> TenantProfile {
    TenantProfile {
        id: TenantId::new(),
        name: name.to_owned(),
        status: TenantStatus::Active,
        default_language: Language::En,
        limits: UsageLimits::default(),
    }
}

/// The ports a notifier reads; each mock fails the test on any call it was not told of.
#[derive(Default)]
struct Ports {
    tenants: MockTenantDirectory,
    settings: MockSettingsRepository,
    audit: MockAuditLogRepository,
    counters: MockCounterRepository,
    outbox: MockMailOutboxRepository,
    resolver: MockMailerResolver,
}

impl Ports {
    fn untouchable() -> Self {
        let mut p = Ports::default();
        p.tenants.expect_profile().times(0);
        p.settings.expect_get().times(0);
        p.settings.expect_insert().times(0);
        p.settings.expect_update().times(0);
        p.audit.expect_append().times(0);
        p.counters.expect_try_add().times(0);
        p.resolver.expect_mailer_for().times(0);
        p.outbox.expect_list().times(0);
        p.outbox.expect_insert().times(0);
        p
    }

    fn notifier(self) -> Notifier {
        let store = store_of(self.settings, self.audit, self.counters);
        Notifier::new(
            &store,
            Arc::new(self.outbox),
            Arc::new(self.tenants),
            Cipher::new(EncryptionKey::generate(), Vec::new()),
            Arc::new(Templates::new("http://localhost:8000").unwrap()),
            Arc::new(self.resolver),
            OutboxConfig::default(),
        )
    }
}

fn caller(tenant: Option<TenantId>, permissions: &[Permission]) -> AccessContext {
    AccessContext::new(
        Principal::new(UserId::new(), "caller@example.com"),
        tenant,
        tenant.is_none(),
        permissions.iter().copied().collect::<BTreeSet<_>>(),
        Some("192.0.2.9".into()),
    )
}

fn settings() -> SmtpSettingsInput {
    SmtpSettingsInput {
        host: "smtp.example.com".into(),
        port: 587,
        username: None,
        password: None,
        from_email: "hello@acme.example".into(),
        from_name: None,
        security: "starttls".into(),
    }
}

fn refused<T: std::fmt::Debug>(result: Result<T, NotifyError>, expected: AccessDenied) {
    match result {
        Err(NotifyError::Access(denied)) => assert_eq!(denied, expected),
        other => panic!("expected {expected:?}, got {other:?}"),
    }
}

#[tokio::test]
async fn smtp_settings_without_the_permission_never_reach_a_port() {
    let notifier = Ports::untouchable().notifier();
    let own = TenantId::new();
    let tenant = SettingsScope::Tenant(own);
    // An agent of the tenant: no settings.manage.
    let agent = caller(
        Some(own),
        &[Permission::TenantRead, Permission::TemplatesRead],
    );
    let need = AccessDenied::Forbidden {
        permission: Permission::SettingsManage,
    };
    refused(notifier.smtp_settings(&agent, tenant).await, need);
    refused(
        notifier.put_smtp_settings(&agent, tenant, settings()).await,
        need,
    );
    refused(
        notifier
            .send_test_email(&agent, tenant, "x@example.com", Language::En)
            .await,
        need,
    );
    // The tenant's admin may not touch the platform's settings.
    let admin = caller(Some(own), &[Permission::SettingsManage]);
    let need = AccessDenied::Forbidden {
        permission: Permission::PlatformSettings,
    };
    let platform = SettingsScope::Platform;
    refused(notifier.smtp_settings(&admin, platform).await, need);
    refused(
        notifier
            .put_smtp_settings(&admin, platform, settings())
            .await,
        need,
    );
    refused(
        notifier
            .send_test_email(&admin, platform, "x@example.com", Language::En)
            .await,
        need,
    );
}

#[tokio::test]
async fn another_tenants_smtp_settings_are_not_found_and_untouched() {
    let notifier = Ports::untouchable().notifier();
    let admin = caller(Some(TenantId::new()), &[Permission::SettingsManage]);
    let other = SettingsScope::Tenant(TenantId::new());
    let not_found = AccessDenied::NotFound { entity: "tenant" };
    refused(notifier.smtp_settings(&admin, other).await, not_found);
    refused(
        notifier.put_smtp_settings(&admin, other, settings()).await,
        not_found,
    );
    refused(
        notifier
            .send_test_email(&admin, other, "x@example.com", Language::En)
            .await,
        not_found,
    );
}

#[tokio::test]
async fn a_permitted_read_reaches_the_settings_of_the_named_tenant() {
    let tenant = profile("Acme");
    let tid = tenant.id;
    let mut ports = Ports::default();
    ports
        .tenants
        .expect_profile()
        .withf(move |id| *id == tid)
        .times(2)
        .returning(move |_| Ok(tenant.clone()));
    ports
        .settings
        .expect_get()
        .withf(move |scope, key| *scope == SettingsScope::Tenant(tid) && key == "smtp")
        .times(2)
        .returning(|_, _| Ok(None));
    let notifier = ports.notifier();
    // Its own admin, and a platform admin, see the tenant's (absent) settings.
    let own_admin = caller(Some(tid), &[Permission::SettingsManage]);
    let platform = caller(None, &Permission::ALL);
    for ctx in [&own_admin, &platform] {
        assert!(notifier
            .smtp_settings(ctx, SettingsScope::Tenant(tid))
            .await
            .unwrap()
            .is_none());
    }
}

#[tokio::test]
async fn a_permitted_platform_save_is_stored_and_audited() {
    let mut ports = Ports::default();
    ports
        .settings
        .expect_get()
        .withf(|scope, _| *scope == SettingsScope::Platform)
        .times(1)
        .returning(|_, _| Ok(None));
    ports
        .settings
        .expect_insert()
        .withf(|doc| doc.scope == SettingsScope::Platform && doc.key == "smtp")
        .times(1)
        .returning(|_| Ok(()));
    let platform = caller(None, &Permission::ALL);
    let actor = platform.user_id();
    ports
        .audit
        .expect_append()
        .withf(move |e| {
            e.action == "settings.smtp.update"
                && e.target_type == "smtp_settings"
                && e.tenant_id.is_none()
                && e.actor_id == Some(actor)
                && e.client_addr.as_deref() == Some("192.0.2.9")
        })
        .times(1)
        .returning(|_| Ok(()));
    let notifier = ports.notifier();
    let view = notifier
        .put_smtp_settings(&platform, SettingsScope::Platform, settings())
        .await
        .unwrap();
    assert_eq!(view.host, "smtp.example.com");
}

#[tokio::test]
async fn nothing_is_sent_for_a_deactivated_tenant() {
    let mut tenant = profile("Acme");
    tenant.status = TenantStatus::Deactivated;
    let tid = tenant.id;
    let mut ports = Ports::untouchable();
    ports.tenants.checkpoint();
    ports
        .tenants
        .expect_profile()
        .times(1)
        .returning(move |_| Ok(tenant.clone()));
    let notifier = ports.notifier();
    let admin = caller(Some(tid), &[Permission::SettingsManage]);
    assert!(matches!(
        notifier
            .send_test_email(
                &admin,
                SettingsScope::Tenant(tid),
                "x@example.com",
                Language::En
            )
            .await,
        Err(NotifyError::TenantDeactivated)
    ));
}

#[tokio::test]
async fn the_outbox_listing_without_platform_system_never_reads_the_outbox() {
    let notifier = Ports::untouchable().notifier();
    let need = AccessDenied::Forbidden {
        permission: Permission::PlatformSystem,
    };
    let own = TenantId::new();
    let tenant_admin = caller(
        Some(own),
        &[
            Permission::SettingsManage,
            Permission::UsersManage,
            Permission::AuditRead,
        ],
    );
    let settings_operator = caller(None, &[Permission::PlatformSettings]);
    for ctx in [&tenant_admin, &settings_operator] {
        refused(
            notifier
                .list_outbox(ctx, None, PageRequest::default())
                .await,
            need,
        );
        refused(
            notifier
                .list_outbox(ctx, Some(own), PageRequest::default())
                .await,
            need,
        );
    }
}

#[tokio::test]
async fn a_tenant_caller_naming_another_tenants_outbox_gets_not_found() {
    let notifier = Ports::untouchable().notifier();
    // Even holding the permission (it is platform-only; this context is made by hand), a
    // caller of one tenant cannot name another.
    let confined = caller(Some(TenantId::new()), &[Permission::PlatformSystem]);
    refused(
        notifier
            .list_outbox(&confined, Some(TenantId::new()), PageRequest::default())
            .await,
        AccessDenied::NotFound { entity: "tenant" },
    );
}

#[tokio::test]
async fn a_permitted_listing_reads_the_outbox_in_the_right_scope() {
    let own = TenantId::new();
    let named = TenantId::new();
    let mut ports = Ports::default();
    let mut seen = mockall::Sequence::new();
    for expected in [Scope::Platform, Scope::Tenant(named), Scope::Tenant(own)] {
        ports
            .outbox
            .expect_list()
            .withf(move |scope, page| *scope == expected && page.limit == Some(7))
            .times(1)
            .in_sequence(&mut seen)
            .returning(|_, _| {
                Ok(Page {
                    items: Vec::new(),
                    next_cursor: None,
                })
            });
    }
    let notifier = ports.notifier();
    let page = || PageRequest {
        cursor: None,
        limit: Some(7),
    };
    let operator = caller(None, &[Permission::PlatformSystem]);
    notifier.list_outbox(&operator, None, page()).await.unwrap();
    notifier
        .list_outbox(&operator, Some(named), page())
        .await
        .unwrap();
    // A caller confined to a tenant (by hand, see above) sees only its own tenant's.
    let confined = caller(Some(own), &[Permission::PlatformSystem]);
    notifier.list_outbox(&confined, None, page()).await.unwrap();
}

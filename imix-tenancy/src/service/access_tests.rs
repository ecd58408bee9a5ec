//! The tenants and users operations check their caller before any storage port: over
//! `mockall` mocks of the six ports the service holds ([`super::TenancyRepos`]), a caller
//! without the permission is refused and no port is called, a tenant's caller naming
//! another tenant's id gets "not found", and a permitted call reaches the port in the right
//! [`Scope`].

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{collections::BTreeSet, sync::Arc};

use crate::{
    records::{Role, Tenant, User},
    storage::{
        MockApiKeyRepository, MockAuthTokenRepository, MockTenantRepository, MockUserRepository,
    },
};
use imix_core::{
    id::{TenantId, UserId},
    store::{
        MockAuditLogRepository, MockBlobStore, MockCounterRepository, Page, PageRequest, Scope,
    },
};
use secrecy::SecretString;

use super::{
    NewTenant, NewUser, TenancyConfig, TenancyRepos, TenancyService, TenantPatch, UserPatch,
};
use crate::{
    emails::PlainAccountEmails, permission::Permission, quota::MockQuotaStore,
    throttle::MemoryThrottle, AuthContext, TenancyError,
};

/// The service's ports; each mock fails the test on any call it was not told of.
#[derive(Default)]
struct Ports {
    tenants: MockTenantRepository,
    users: MockUserRepository,
    auth_tokens: MockAuthTokenRepository,
    api_keys: MockApiKeyRepository,
    audit: MockAuditLogRepository,
    blobs: MockBlobStore,
    counters: MockCounterRepository,
}

impl Ports {
    /// Ports that fail the test on any call of the methods the tenants and users
    /// operations use.
    fn untouchable() -> Self {
        let mut p = Ports::default();
        p.tenants.expect_get().times(0);
        p.tenants.expect_list().times(0);
        p.tenants.expect_insert().times(0);
        p.tenants.expect_update().times(0);
        p.users.expect_get().times(0);
        p.users.expect_list().times(0);
        p.users.expect_insert().times(0);
        p.users.expect_update().times(0);
        p.audit.expect_append().times(0);
        p.counters.expect_try_add().times(0);
        p
    }

    fn service(self) -> TenancyService {
        TenancyService::with_repos(
            TenancyRepos {
                tenants: Arc::new(self.tenants),
                users: Arc::new(self.users),
                auth_tokens: Arc::new(self.auth_tokens),
                api_keys: Arc::new(self.api_keys),
                audit: Arc::new(self.audit),
                blobs: Arc::new(self.blobs),
                counters: Arc::new(self.counters),
            },
            TenancyConfig {
                secret_key: SecretString::from("k".repeat(40)),
                access_token_minutes: 60,
                public_url: "http://localhost:8000".parse().unwrap(),
            },
            Arc::new(PlainAccountEmails::new(Arc::new(
                imix_notify::RecordingMailer::default(),
            ))),
            Arc::new(MemoryThrottle::default()),
            Arc::new(MockQuotaStore::new()),
        )
        .unwrap()
    }
}

/// A caller of `tenant` (`None`: a platform admin) holding exactly `permissions`.
fn caller(tenant: Option<TenantId>, permissions: &[Permission]) -> AuthContext {
    let user = User::new("caller@example.com", Role::Admin, tenant);
    AuthContext::new(
        user,
        permissions.iter().copied().collect::<BTreeSet<_>>(),
        Some("192.0.2.7".into()),
    )
}

fn forbidden<T: std::fmt::Debug>(result: Result<T, TenancyError>, permission: Permission) {
    match result {
        Err(TenancyError::Forbidden {
            permission: Some(p),
            ..
        }) => assert_eq!(p, permission),
        other => panic!("expected a refusal for want of {permission}, got {other:?}"),
    }
}

fn not_found<T: std::fmt::Debug>(result: Result<T, TenancyError>, what: &str) {
    match result {
        Err(TenancyError::NotFound { entity }) => assert_eq!(entity, what),
        other => panic!("expected {what} not found, got {other:?}"),
    }
}

fn empty<T>() -> Page<T> {
    Page {
        items: Vec::new(),
        next_cursor: None,
    }
}

fn new_user(tenant_id: Option<TenantId>) -> NewUser {
    NewUser {
        email: "new@acme.example".into(),
        first_name: "New".into(),
        last_name: "User".into(),
        role: Role::Agent,
        tenant_id,
        default_language: None,
        permissions: Vec::new(),
        password: None,
    }
}

#[tokio::test]
async fn tenant_operations_without_the_permission_never_reach_a_port() {
    let service = Ports::untouchable().service();
    let own = TenantId::new();
    // A tenant's user holding nothing tenancy checks here.
    let agent = caller(Some(own), &[Permission::TemplatesRead]);
    forbidden(
        service.get_tenant(&agent, own).await,
        Permission::TenantRead,
    );
    forbidden(
        service.list_tenants(&agent, PageRequest::default()).await,
        Permission::TenantRead,
    );
    forbidden(
        service
            .update_tenant(&agent, own, TenantPatch::default())
            .await,
        Permission::TenantManage,
    );
    forbidden(
        service
            .create_tenant(
                &agent,
                NewTenant {
                    name: "Other".into(),
                    ..NewTenant::default()
                },
            )
            .await,
        Permission::PlatformTenants,
    );
    // A tenant's own admin may not create tenants either.
    let tenant_admin = caller(
        Some(own),
        &[Permission::TenantRead, Permission::TenantManage],
    );
    forbidden(
        service
            .create_tenant(&tenant_admin, NewTenant::default())
            .await,
        Permission::PlatformTenants,
    );
}

#[tokio::test]
async fn another_tenants_id_is_not_found_and_never_read() {
    let service = Ports::untouchable().service();
    let tenant_admin = caller(
        Some(TenantId::new()),
        &[Permission::TenantRead, Permission::TenantManage],
    );
    let other = TenantId::new();
    not_found(service.get_tenant(&tenant_admin, other).await, "tenant");
    not_found(
        service
            .update_tenant(&tenant_admin, other, TenantPatch::default())
            .await,
        "tenant",
    );
    not_found(service.logo(&tenant_admin, other).await, "tenant");
    not_found(service.documents(&tenant_admin, other).await, "tenant");
}

#[tokio::test]
async fn permitted_tenant_reads_reach_the_port_in_the_callers_scope() {
    let own = Tenant::new("Acme");
    let own_id = own.id;
    let mut ports = Ports::default();
    ports
        .tenants
        .expect_get()
        .withf(move |id| *id == own_id)
        .times(1)
        .returning(move |_| Ok(own.clone()));
    let mut order = mockall::Sequence::new();
    for scope in [Scope::Tenant(own_id), Scope::Platform] {
        ports
            .tenants
            .expect_list()
            .withf(move |s, page| *s == scope && page.limit == Some(5))
            .times(1)
            .in_sequence(&mut order)
            .returning(|_, _| Ok(empty()));
    }
    let service = ports.service();
    let reader = caller(Some(own_id), &[Permission::TenantRead]);
    assert_eq!(
        service.get_tenant(&reader, own_id).await.unwrap().id,
        own_id
    );
    let page = PageRequest {
        cursor: None,
        limit: Some(5),
    };
    service.list_tenants(&reader, page.clone()).await.unwrap();
    let operator = caller(None, &[Permission::PlatformTenants]);
    service.list_tenants(&operator, page).await.unwrap();
}

#[tokio::test]
async fn user_operations_without_the_permission_never_reach_a_port() {
    let service = Ports::untouchable().service();
    let own = TenantId::new();
    let reader = caller(Some(own), &[Permission::TenantRead]);
    let someone = UserId::new();
    forbidden(
        service.get_user(&reader, someone).await,
        Permission::UsersRead,
    );
    forbidden(
        service
            .list_users(&reader, None, PageRequest::default())
            .await,
        Permission::UsersRead,
    );
    forbidden(
        service.create_user(&reader, new_user(Some(own))).await,
        Permission::UsersManage,
    );
    forbidden(
        service
            .update_user(&reader, someone, UserPatch::default())
            .await,
        Permission::UsersManage,
    );
    forbidden(
        service.deactivate_user(&reader, someone).await,
        Permission::UsersManage,
    );
    forbidden(
        service.activate_user(&reader, someone).await,
        Permission::UsersManage,
    );
    // Users who may read users still may not change them.
    let users_reader = caller(Some(own), &[Permission::UsersRead]);
    forbidden(
        service
            .update_user(&users_reader, someone, UserPatch::default())
            .await,
        Permission::UsersManage,
    );
}

#[tokio::test]
async fn another_tenant_named_for_users_is_not_found_and_never_read() {
    let service = Ports::untouchable().service();
    let admin = caller(
        Some(TenantId::new()),
        &[Permission::UsersRead, Permission::UsersManage],
    );
    let other = TenantId::new();
    not_found(
        service
            .list_users(&admin, Some(other), PageRequest::default())
            .await,
        "tenant",
    );
    not_found(
        service.create_user(&admin, new_user(Some(other))).await,
        "tenant",
    );
}

#[tokio::test]
async fn a_user_id_is_looked_up_only_in_the_callers_tenant() {
    let own = TenantId::new();
    let other_tenants_user = UserId::new();
    let mut ports = Ports::default();
    ports
        .users
        .expect_get()
        .withf(move |scope, id| *scope == Scope::Tenant(own) && *id == other_tenants_user)
        .times(1)
        .returning(|_, id| {
            Err(imix_core::Error::NotFound {
                entity: "user",
                id: id.to_string(),
            })
        });
    let service = ports.service();
    let admin = caller(Some(own), &[Permission::UsersRead]);
    not_found(service.get_user(&admin, other_tenants_user).await, "user");
}

#[tokio::test]
async fn permitted_user_listings_reach_the_port_in_the_right_scope() {
    let own = TenantId::new();
    let named = TenantId::new();
    let mut ports = Ports::default();
    let mut order = mockall::Sequence::new();
    for scope in [
        Scope::Tenant(own),
        Scope::Tenant(own),
        Scope::Platform,
        Scope::Tenant(named),
    ] {
        ports
            .users
            .expect_list()
            .withf(move |s, _| *s == scope)
            .times(1)
            .in_sequence(&mut order)
            .returning(|_, _| Ok(empty()));
    }
    let service = ports.service();
    let page = PageRequest::default;
    let tenant_admin = caller(Some(own), &[Permission::UsersRead]);
    service
        .list_users(&tenant_admin, None, page())
        .await
        .unwrap();
    service
        .list_users(&tenant_admin, Some(own), page())
        .await
        .unwrap();
    let operator = caller(None, &[Permission::UsersRead]);
    service.list_users(&operator, None, page()).await.unwrap();
    service
        .list_users(&operator, Some(named), page())
        .await
        .unwrap();
}

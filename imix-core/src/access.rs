//! Who is calling and what they may do: the one access context every capability's services
//! take.
//!
//! An [`AccessContext`] carries the caller ([`Principal`]), their tenant (or none, for the
//! platform operator's users) and their [`Permission`]s. `imix-tenancy` builds it from a
//! verified access token; tests and integrators build one with [`AccessContext::new`].
//!
//! Every service operation of every capability takes `&AccessContext` and, before touching
//! storage, checks the permission and the tenant itself:
//!
//! - an operation on a tenant named by the caller (`POST /tenants/{id}/…`) calls
//!   [`AccessContext::authorize`], which answers the [`Scope`] to use;
//! - an operation addressed by a resource id (`GET /whatsapp-accounts/{id}`) calls
//!   [`AccessContext::authorize_scope`]: the scope confines the lookup to the caller's
//!   tenant, so another tenant's record is simply not found by the store.
//!
//! A tenant caller naming another tenant gets [`AccessDenied::NotFound`], exactly what a
//! missing tenant answers, so ids of other tenants reveal nothing; a missing permission is
//! [`AccessDenied::Forbidden`].
//!
//! ```
//! use std::collections::BTreeSet;
//! use imix_core::{
//!     access::{AccessContext, AccessDenied, Permission, Principal},
//!     id::{TenantId, UserId},
//!     store::Scope,
//! };
//!
//! let own = TenantId::new();
//! let ctx = AccessContext::new(
//!     Principal::new(UserId::new(), "agent@acme.example"),
//!     Some(own),
//!     false,
//!     BTreeSet::from([Permission::TemplatesRead]),
//!     None,
//! );
//! assert_eq!(ctx.authorize(Permission::TemplatesRead, own), Ok(Scope::Tenant(own)));
//! assert!(matches!(
//!     ctx.authorize(Permission::TemplatesRead, TenantId::new()),
//!     Err(AccessDenied::NotFound { .. })
//! ));
//! assert!(matches!(
//!     ctx.authorize(Permission::TemplatesManage, own),
//!     Err(AccessDenied::Forbidden { .. })
//! ));
//! ```

use std::{collections::BTreeSet, fmt, str::FromStr, sync::Arc};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{
    id::{TenantId, UserId},
    model::AuditEntry,
    store::{AuditLogRepository, Scope},
};

/// Something a user may be allowed to do. Which roles hold which permissions is
/// `imix-tenancy`'s matrix (`docs/permissions.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Permission {
    /// See their own tenant's profile.
    TenantRead,
    /// Edit their own tenant's profile, logo and documents (not limits, status or notes).
    TenantManage,
    /// See the tenant's users.
    UsersRead,
    /// Create, edit, deactivate and activate the tenant's users.
    UsersManage,
    /// See WhatsApp accounts.
    WhatsAppAccountsRead,
    /// Add, edit, verify and delete WhatsApp accounts.
    WhatsAppAccountsManage,
    /// See message templates.
    TemplatesRead,
    /// Create, sync and delete message templates.
    TemplatesManage,
    /// See contacts and groups.
    ContactsRead,
    /// Create, edit, import and delete contacts and groups.
    ContactsManage,
    /// See conversations and messages.
    ConversationsRead,
    /// Read every conversation of the tenant, not only those assigned to the caller and
    /// unassigned ones.
    ConversationsReadAll,
    /// Send messages and replies.
    ConversationsReply,
    /// Assign conversations and change their status.
    ConversationsAssign,
    /// Manage the inbox's shared tools: label definitions and canned responses, and
    /// delete any user's private notes.
    InboxManage,
    /// See usage counters and limits.
    UsageRead,
    /// See the audit log.
    AuditRead,
    /// Manage the tenant's own settings (its SMTP sender).
    SettingsManage,
    /// Manage the tenant's integrations: API keys and webhook endpoints (event
    /// subscriptions) with their delivery log.
    IntegrationsManage,
    /// Platform: create tenants, change limits, status and private notes, see all tenants.
    PlatformTenants,
    /// Platform: SMTP and AI provider settings.
    PlatformSettings,
    /// Platform: updates and backups.
    PlatformSystem,
}

impl Permission {
    /// Every permission, in display order.
    pub const ALL: [Permission; 22] = [
        Permission::TenantRead,
        Permission::TenantManage,
        Permission::UsersRead,
        Permission::UsersManage,
        Permission::WhatsAppAccountsRead,
        Permission::WhatsAppAccountsManage,
        Permission::TemplatesRead,
        Permission::TemplatesManage,
        Permission::ContactsRead,
        Permission::ContactsManage,
        Permission::ConversationsRead,
        Permission::ConversationsReadAll,
        Permission::ConversationsReply,
        Permission::ConversationsAssign,
        Permission::InboxManage,
        Permission::UsageRead,
        Permission::AuditRead,
        Permission::SettingsManage,
        Permission::IntegrationsManage,
        Permission::PlatformTenants,
        Permission::PlatformSettings,
        Permission::PlatformSystem,
    ];

    /// The wire name, e.g. `users.manage`.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::TenantRead => "tenant.read",
            Permission::TenantManage => "tenant.manage",
            Permission::UsersRead => "users.read",
            Permission::UsersManage => "users.manage",
            Permission::WhatsAppAccountsRead => "whatsapp_accounts.read",
            Permission::WhatsAppAccountsManage => "whatsapp_accounts.manage",
            Permission::TemplatesRead => "templates.read",
            Permission::TemplatesManage => "templates.manage",
            Permission::ContactsRead => "contacts.read",
            Permission::ContactsManage => "contacts.manage",
            Permission::ConversationsRead => "conversations.read",
            Permission::ConversationsReadAll => "conversations.read_all",
            Permission::ConversationsReply => "conversations.reply",
            Permission::ConversationsAssign => "conversations.assign",
            Permission::InboxManage => "inbox.manage",
            Permission::UsageRead => "usage.read",
            Permission::AuditRead => "audit.read",
            Permission::SettingsManage => "settings.manage",
            Permission::IntegrationsManage => "integrations.manage",
            Permission::PlatformTenants => "platform.tenants",
            Permission::PlatformSettings => "platform.settings",
            Permission::PlatformSystem => "platform.system",
        }
    }

    /// Whether only platform users (no tenant) may hold it.
    pub fn is_platform_only(self) -> bool {
        matches!(
            self,
            Permission::PlatformTenants | Permission::PlatformSettings | Permission::PlatformSystem
        )
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Permission {
    type Err = crate::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Permission::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                crate::Error::invalid("permissions", format!("`{s}` is not a known permission"))
            })
    }
}

/// Why an [`AccessContext`] refused an operation. Each capability's error enum wraps it
/// (`#[from]`); the server answers 403 `forbidden` (with `details.permission`) or 404.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AccessDenied {
    /// The caller lacks `permission`.
    #[error("requires the `{permission}` permission")]
    Forbidden {
        /// The permission the operation needs.
        permission: Permission,
    },
    /// The record (a tenant, when a caller names another tenant) does not exist as far as
    /// the caller may know.
    #[error("{entity} not found")]
    NotFound {
        /// The kind of record, e.g. `"tenant"`.
        entity: &'static str,
    },
}

/// The authenticated caller: a user id and the email they signed in with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user's id.
    pub user_id: UserId,
    /// The user's email, as recorded in the audit log.
    pub email: String,
}

impl Principal {
    /// A principal.
    pub fn new(user_id: UserId, email: impl Into<String>) -> Self {
        Self {
            user_id,
            email: email.into(),
        }
    }
}

/// Who is calling, in which tenant (or the platform), with which permissions, from where.
/// Cheap to clone.
///
/// `imix-tenancy` makes one from each verified token (`AuthContext::access`); integrators
/// and tests make one with [`AccessContext::new`]. It proves nothing by itself: whoever
/// builds it vouches for the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessContext {
    principal: Principal,
    tenant: Option<TenantId>,
    platform_admin: bool,
    permissions: BTreeSet<Permission>,
    client_addr: Option<String>,
}

impl AccessContext {
    /// A context: `tenant` is the caller's tenant (`None` for platform users),
    /// `platform_admin` whether they administer the platform (only meaningful without a
    /// tenant: it is forced to `false` for a tenant user). For integrators and tests;
    /// the server gets its contexts from `imix-tenancy`.
    pub fn new(
        principal: Principal,
        tenant: Option<TenantId>,
        platform_admin: bool,
        permissions: BTreeSet<Permission>,
        client_addr: Option<String>,
    ) -> Self {
        Self {
            principal,
            platform_admin: platform_admin && tenant.is_none(),
            tenant,
            permissions,
            client_addr,
        }
    }

    /// The caller.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// The caller's user id.
    pub fn user_id(&self) -> UserId {
        self.principal.user_id
    }

    /// The caller's tenant; `None` for platform users.
    pub fn tenant_id(&self) -> Option<TenantId> {
        self.tenant
    }

    /// Whether the caller administers the platform (no tenant, role Admin).
    pub fn is_platform_admin(&self) -> bool {
        self.platform_admin
    }

    /// The caller's permissions.
    pub fn permissions(&self) -> &BTreeSet<Permission> {
        &self.permissions
    }

    /// The caller's address as the server saw it.
    pub fn client_addr(&self) -> Option<&str> {
        self.client_addr.as_deref()
    }

    /// Whether the caller holds `permission`.
    pub fn has(&self, permission: Permission) -> bool {
        self.permissions.contains(&permission)
    }

    /// [`AccessDenied::Forbidden`] unless the caller holds `permission`.
    pub fn require(&self, permission: Permission) -> Result<(), AccessDenied> {
        if self.has(permission) {
            Ok(())
        } else {
            Err(AccessDenied::Forbidden { permission })
        }
    }

    /// What the caller may see when an operation is addressed by a resource id: their
    /// tenant's records, or everything for platform users.
    pub fn scope(&self) -> Scope {
        match self.tenant {
            None => Scope::Platform,
            Some(t) => Scope::Tenant(t),
        }
    }

    /// The scope for acting on `tenant`'s records, without a permission check: allowed for
    /// platform users and members of that tenant; for anyone else the tenant does not
    /// exist ([`AccessDenied::NotFound`]).
    pub fn tenant_scope(&self, tenant: TenantId) -> Result<Scope, AccessDenied> {
        match self.tenant {
            None => Ok(Scope::Tenant(tenant)),
            Some(own) if own == tenant => Ok(Scope::Tenant(tenant)),
            Some(_) => Err(AccessDenied::NotFound { entity: "tenant" }),
        }
    }

    /// Checks `permission`, then that the caller may act on `tenant`; answers the scope to
    /// use ([`Scope::Tenant`]`(tenant)`, for platform users too).
    pub fn authorize(
        &self,
        permission: Permission,
        tenant: TenantId,
    ) -> Result<Scope, AccessDenied> {
        self.require(permission)?;
        self.tenant_scope(tenant)
    }

    /// Checks `permission`; answers [`AccessContext::scope`], for operations addressed by a
    /// resource id.
    pub fn authorize_scope(&self, permission: Permission) -> Result<Scope, AccessDenied> {
        self.require(permission)?;
        Ok(self.scope())
    }
}

/// Where services record who did what (the audit log). `imix-tenancy` implements it over
/// its audit log; a capability's service takes it as a port, so it records its own actions
/// without depending on tenancy.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait AuditSink: Send + Sync {
    /// Records that `ctx` did `action` (e.g. `template.create`) on the `target_type` record
    /// `target_id`, in `tenant` (`None`: a platform record). Failures are logged, never
    /// answered: the action already happened.
    async fn record(
        &self,
        ctx: &AccessContext,
        action: &str,
        target_type: &str,
        target_id: String,
        tenant: Option<TenantId>,
    );
}

/// Appends each recorded action to the audit log, with the caller's id, email and address.
#[derive(Clone)]
pub struct AuditLog {
    repo: Arc<dyn AuditLogRepository>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").finish_non_exhaustive()
    }
}

impl AuditLog {
    /// The sink over the audit log's storage port.
    pub fn new(repo: Arc<dyn AuditLogRepository>) -> Self {
        Self { repo }
    }
}

/// The audit entry of `ctx` doing `action` on a `target_type` record makes (in `tenant`, else the
/// caller's own tenant).
pub fn audit_entry(
    ctx: &AccessContext,
    action: &str,
    target_type: &str,
    target_id: String,
    tenant: Option<TenantId>,
) -> AuditEntry {
    let mut e = AuditEntry::new(action, target_type);
    e.actor_id = Some(ctx.user_id());
    e.actor_email = Some(ctx.principal().email.clone());
    e.tenant_id = tenant.or(ctx.tenant_id());
    e.target_id = Some(target_id);
    e.client_addr = ctx.client_addr().map(str::to_owned);
    e
}

#[async_trait]
impl AuditSink for AuditLog {
    async fn record(
        &self,
        ctx: &AccessContext,
        action: &str,
        target_type: &str,
        target_id: String,
        tenant: Option<TenantId>,
    ) {
        let e = audit_entry(ctx, action, target_type, target_id, tenant);
        if let Err(err) = self.repo.append(&e).await {
            tracing::error!(error = %err, action = %e.action, "cannot write the audit log");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(tenant: Option<TenantId>, admin: bool, perms: &[Permission]) -> AccessContext {
        AccessContext::new(
            Principal::new(UserId::new(), "someone@example.com"),
            tenant,
            admin,
            perms.iter().copied().collect(),
            Some("192.0.2.1".into()),
        )
    }

    #[test]
    fn a_missing_permission_is_forbidden_naming_it() {
        let own = TenantId::new();
        let c = ctx(Some(own), false, &[Permission::TemplatesRead]);
        assert!(c.has(Permission::TemplatesRead));
        assert_eq!(c.require(Permission::TemplatesRead), Ok(()));
        assert_eq!(
            c.require(Permission::TemplatesManage),
            Err(AccessDenied::Forbidden {
                permission: Permission::TemplatesManage
            })
        );
        assert_eq!(
            c.authorize(Permission::TemplatesManage, own),
            Err(AccessDenied::Forbidden {
                permission: Permission::TemplatesManage
            })
        );
        assert_eq!(
            c.authorize_scope(Permission::TemplatesManage),
            Err(AccessDenied::Forbidden {
                permission: Permission::TemplatesManage
            })
        );
    }

    #[test]
    fn a_tenant_caller_naming_another_tenant_finds_nothing() {
        let own = TenantId::new();
        let c = ctx(Some(own), false, &[Permission::TemplatesRead]);
        assert_eq!(
            c.authorize(Permission::TemplatesRead, own),
            Ok(Scope::Tenant(own))
        );
        assert_eq!(
            c.authorize(Permission::TemplatesRead, TenantId::new()),
            Err(AccessDenied::NotFound { entity: "tenant" })
        );
        assert_eq!(
            c.tenant_scope(TenantId::new()),
            Err(AccessDenied::NotFound { entity: "tenant" })
        );
        assert_eq!(
            c.authorize_scope(Permission::TemplatesRead),
            Ok(Scope::Tenant(own))
        );
        assert_eq!(c.scope(), Scope::Tenant(own));
    }

    #[test]
    fn the_platform_acts_on_any_tenant_within_that_tenant() {
        let any = TenantId::new();
        let c = ctx(None, true, &Permission::ALL);
        assert!(c.is_platform_admin());
        assert_eq!(
            c.authorize(Permission::SettingsManage, any),
            Ok(Scope::Tenant(any))
        );
        assert_eq!(
            c.authorize_scope(Permission::TemplatesRead),
            Ok(Scope::Platform)
        );
        assert_eq!(c.scope(), Scope::Platform);
        // A platform user without permissions gets nothing.
        let nobody = ctx(None, false, &[]);
        assert_eq!(
            nobody.authorize(Permission::TemplatesRead, any),
            Err(AccessDenied::Forbidden {
                permission: Permission::TemplatesRead
            })
        );
    }

    #[test]
    fn a_tenant_user_is_never_a_platform_admin() {
        let c = ctx(Some(TenantId::new()), true, &[]);
        assert!(!c.is_platform_admin());
        assert_eq!(c.client_addr(), Some("192.0.2.1"));
        assert_eq!(c.principal().email, "someone@example.com");
    }

    #[test]
    fn permission_names_round_trip() {
        for p in Permission::ALL {
            assert_eq!(p.as_str().parse::<Permission>().unwrap(), p);
        }
        assert!("root.everything".parse::<Permission>().is_err());
    }

    #[cfg(feature = "mock")]
    #[tokio::test]
    async fn audit_log_records_the_caller_the_target_and_the_tenant() {
        let tenant = TenantId::new();
        let user = UserId::new();
        let ctx = AccessContext::new(
            Principal::new(user, "admin@acme.example"),
            Some(tenant),
            false,
            BTreeSet::new(),
            Some("192.0.2.7".into()),
        );
        let mut repo = crate::store::MockAuditLogRepository::new();
        repo.expect_append()
            .withf(move |e| {
                e.action == "template.create"
                    && e.target_type == "template"
                    && e.target_id.as_deref() == Some("t-1")
                    && e.tenant_id == Some(tenant)
                    && e.actor_id == Some(user)
                    && e.actor_email.as_deref() == Some("admin@acme.example")
                    && e.client_addr.as_deref() == Some("192.0.2.7")
            })
            .times(1)
            .returning(|_| Ok(()));
        AuditLog::new(Arc::new(repo))
            .record(&ctx, "template.create", "template", "t-1".into(), None)
            .await;
    }
}

//! The authenticated context: who is calling, in which tenant, with which permissions.
//!
//! It can only be made by [`crate::TenancyService::authenticate`], so a handler that takes
//! an `AuthContext` cannot be reached without a valid, current token. It holds the
//! capability-neutral [`AccessContext`] ([`AuthContext::access`]) that the services of
//! every other capability take, plus the full [`User`] record tenancy itself needs.

use std::collections::BTreeSet;

use crate::records::{Role, User};
use imix_core::{
    access::{AccessContext, Principal},
    id::{TenantId, UserId},
    store::Scope,
};

use crate::{permission::Permission, TenancyError};

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct AuthContext {
    user: User,
    access: AccessContext,
    api_key: Option<crate::records::ApiKeyId>,
}

impl AuthContext {
    pub(crate) fn new(
        user: User,
        permissions: BTreeSet<Permission>,
        client_addr: Option<String>,
    ) -> Self {
        let access = AccessContext::new(
            Principal::new(user.id, user.email.clone()),
            user.tenant_id,
            user.tenant_id.is_none() && user.role == Role::Admin,
            permissions,
            client_addr,
        );
        Self {
            user,
            access,
            api_key: None,
        }
    }

    /// The context of a request authenticated with an API key: `user` stands for the key
    /// (its id is the key's, its email `api-key:<hint>`, what the audit log records).
    pub(crate) fn for_api_key(
        key: crate::records::ApiKeyId,
        user: User,
        permissions: BTreeSet<Permission>,
        client_addr: Option<String>,
    ) -> Self {
        Self {
            api_key: Some(key),
            ..Self::new(user, permissions, client_addr)
        }
    }

    /// The API key the request was authenticated with; `None` for a signed-in user.
    pub fn api_key(&self) -> Option<crate::records::ApiKeyId> {
        self.api_key
    }

    /// The access context to hand to any capability's service: the same caller, tenant,
    /// permissions and address.
    pub fn access(&self) -> &AccessContext {
        &self.access
    }

    /// The caller.
    pub fn user(&self) -> &User {
        &self.user
    }

    /// The caller's id.
    pub fn user_id(&self) -> UserId {
        self.user.id
    }

    /// The caller's tenant; `None` for platform users.
    pub fn tenant_id(&self) -> Option<TenantId> {
        self.access.tenant_id()
    }

    /// The caller's address as the server saw it.
    pub fn client_addr(&self) -> Option<&str> {
        self.access.client_addr()
    }

    /// Whether the caller is a platform administrator (no tenant, role Admin).
    pub fn is_platform_admin(&self) -> bool {
        self.access.is_platform_admin()
    }

    /// The caller's permissions.
    pub fn permissions(&self) -> &BTreeSet<Permission> {
        self.access.permissions()
    }

    /// Whether the caller holds `permission`.
    pub fn has(&self, permission: Permission) -> bool {
        self.access.has(permission)
    }

    /// Fails with [`TenancyError::Forbidden`] unless the caller holds `permission`.
    pub fn require(&self, permission: Permission) -> Result<(), TenancyError> {
        Ok(self.access.require(permission)?)
    }

    /// What the caller may see by default: everything for platform users, their tenant
    /// otherwise ([`AccessContext::scope`]).
    pub fn scope(&self) -> Scope {
        self.access.scope()
    }

    /// The scope for acting on `tenant`'s records: allowed for platform users and members of
    /// that tenant; for anyone else the tenant "does not exist" ([`TenancyError::NotFound`]),
    /// so another tenant's ids reveal nothing ([`AccessContext::tenant_scope`]).
    pub fn scope_for(&self, tenant: TenantId) -> Result<Scope, TenancyError> {
        Ok(self.access.tenant_scope(tenant)?)
    }
}

//! The authenticated context: who is calling, in which tenant, with which permissions.
//!
//! It can only be made by [`crate::TenancyService::authenticate`], so a handler that takes
//! an `AuthContext` cannot be reached without a valid, current token.

use std::collections::BTreeSet;

use imix_core::{
    id::{TenantId, UserId},
    model::{Role, User},
    store::Scope,
};

use crate::{permission::Permission, TenancyError};

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct AuthContext {
    user: User,
    permissions: BTreeSet<Permission>,
    client_addr: Option<String>,
}

impl AuthContext {
    pub(crate) fn new(
        user: User,
        permissions: BTreeSet<Permission>,
        client_addr: Option<String>,
    ) -> Self {
        Self {
            user,
            permissions,
            client_addr,
        }
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
        self.user.tenant_id
    }

    /// The caller's address as the server saw it.
    pub fn client_addr(&self) -> Option<&str> {
        self.client_addr.as_deref()
    }

    /// Whether the caller is a platform administrator (no tenant, role Admin).
    pub fn is_platform_admin(&self) -> bool {
        self.user.tenant_id.is_none() && self.user.role == Role::Admin
    }

    /// The caller's permissions.
    pub fn permissions(&self) -> &BTreeSet<Permission> {
        &self.permissions
    }

    /// Whether the caller holds `permission`.
    pub fn has(&self, permission: Permission) -> bool {
        self.permissions.contains(&permission)
    }

    /// Fails with [`TenancyError::Forbidden`] unless the caller holds `permission`.
    pub fn require(&self, permission: Permission) -> Result<(), TenancyError> {
        if self.has(permission) {
            Ok(())
        } else {
            Err(TenancyError::missing(permission))
        }
    }

    /// What the caller may see by default: everything for platform users, their tenant
    /// otherwise.
    pub fn scope(&self) -> Scope {
        match self.user.tenant_id {
            None => Scope::Platform,
            Some(t) => Scope::Tenant(t),
        }
    }

    /// The scope for acting on `tenant`'s records: allowed for platform users and members of
    /// that tenant; for anyone else the tenant "does not exist" ([`TenancyError::NotFound`]),
    /// so another tenant's ids reveal nothing.
    pub fn scope_for(&self, tenant: TenantId) -> Result<Scope, TenancyError> {
        match self.user.tenant_id {
            None => Ok(Scope::Tenant(tenant)),
            Some(own) if own == tenant => Ok(Scope::Tenant(tenant)),
            Some(_) => Err(TenancyError::NotFound { entity: "tenant" }),
        }
    }
}

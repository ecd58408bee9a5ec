//! Users: create (with invitation or initial password), read, edit, deactivate, activate.

use std::collections::BTreeSet;

use crate::records::{Role, TenantStatus, User, UserStatus};
use imix_core::{
    id::{TenantId, UserId},
    store::{ConflictBackoff, Page, PageRequest, Scope},
    Language,
};
use secrecy::SecretString;

use super::{now, TenancyService};
use crate::{
    password::check_policy,
    permission::{platform_role_permissions, tenant_role_permissions, Permission},
    quota::CountKind,
    validate, AuthContext, TenancyError,
};

/// A user to create (the admin guide's "Creating a New User").
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Email, unique platform-wide regardless of case.
    pub email: String,
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
    /// Role.
    pub role: Role,
    /// Tenant; `None` from a platform admin creates a platform user, from a tenant user it
    /// means their own tenant.
    pub tenant_id: Option<TenantId>,
    /// Language; defaults to the tenant's.
    pub default_language: Option<Language>,
    /// Permissions, for the custom role only.
    pub permissions: Vec<String>,
    /// An initial password (the user must change it at first sign-in); without one, an
    /// invitation email is sent.
    pub password: Option<SecretString>,
}

/// Changes to a user; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct UserPatch {
    /// New email.
    pub email: Option<String>,
    /// New first name.
    pub first_name: Option<String>,
    /// New last name.
    pub last_name: Option<String>,
    /// New role.
    pub role: Option<Role>,
    /// New language.
    pub default_language: Option<Language>,
    /// New permissions (custom role).
    pub permissions: Option<Vec<String>>,
}

pub(super) fn parse_permissions(
    role: Role,
    raw: &[String],
) -> Result<Vec<Permission>, TenancyError> {
    if role != Role::Custom {
        if raw.is_empty() {
            return Ok(Vec::new());
        }
        return Err(TenancyError::invalid(
            "permissions",
            "only the custom role carries explicit permissions",
        ));
    }
    let mut out = Vec::with_capacity(raw.len());
    for p in raw {
        let perm: Permission = p.parse().map_err(|_| {
            TenancyError::invalid("permissions", format!("`{p}` is not a known permission"))
        })?;
        if perm.is_platform_only() {
            return Err(TenancyError::invalid(
                "permissions",
                format!("`{p}` cannot be granted to tenant users"),
            ));
        }
        out.push(perm);
    }
    Ok(out)
}

fn effective_permissions(
    role: Role,
    tenant: Option<TenantId>,
    custom: &[Permission],
) -> BTreeSet<Permission> {
    match tenant {
        None => platform_role_permissions(role),
        Some(_) => tenant_role_permissions(role, custom),
    }
}

/// Effective permissions of a user as stored.
fn permissions_of(u: &User) -> BTreeSet<Permission> {
    let custom: Vec<Permission> = u
        .permissions
        .iter()
        .filter_map(|p| p.parse().ok())
        .collect();
    effective_permissions(u.role, u.tenant_id, &custom)
}

/// Nobody may give anyone more than they hold themselves.
pub(super) fn check_no_escalation(
    ctx: &AuthContext,
    granted: &BTreeSet<Permission>,
) -> Result<(), TenancyError> {
    match granted.iter().find(|p| !ctx.has(**p)) {
        Some(p) => Err(TenancyError::forbidden(format!(
            "cannot grant `{p}`, which you do not hold yourself"
        ))),
        None => Ok(()),
    }
}

impl TenancyService {
    /// Creates a user. Sends the invitation email unless an initial password is given.
    pub async fn create_user(&self, ctx: &AuthContext, new: NewUser) -> Result<User, TenancyError> {
        ctx.require(Permission::UsersManage)?;
        let tenant_id = match (ctx.tenant_id(), new.tenant_id) {
            (None, t) => t,
            (Some(own), None) => Some(own),
            (Some(own), Some(t)) if t == own => Some(own),
            (Some(_), Some(_)) => return Err(TenancyError::NotFound { entity: "tenant" }),
        };
        let tenant = match tenant_id {
            Some(t) => Some(self.repos.tenants.get(t).await.map_err(|e| match e {
                imix_core::Error::NotFound { .. } => {
                    TenancyError::invalid("tenant_id", "no such tenant")
                }
                other => other.into(),
            })?),
            None => None,
        };
        if tenant_id.is_none() && new.role != Role::Admin {
            return Err(TenancyError::invalid(
                "role",
                "a platform user (without tenant) must be an admin",
            ));
        }
        let custom = parse_permissions(new.role, &new.permissions)?;
        check_no_escalation(ctx, &effective_permissions(new.role, tenant_id, &custom))?;

        // Every invalid field is reported at once.
        let mut problems = validate::Problems::default();
        let email = problems.check(validate::email("email", &new.email));
        let mut user = User::new(
            email.unwrap_or_else(|| new.email.trim().to_owned()),
            new.role,
            tenant_id,
        );
        if let Some(v) = problems.check(validate::required_name("first_name", &new.first_name, 100))
        {
            user.first_name = v;
        }
        if let Some(v) = problems.check(validate::required_name("last_name", &new.last_name, 100)) {
            user.last_name = v;
        }
        user.permissions = custom.iter().map(|p| p.as_str().to_owned()).collect();
        user.default_language = new
            .default_language
            .or(tenant.as_ref().map(|t| t.default_language))
            .unwrap_or_default();
        if let Some(password) = &new.password {
            problems.check(check_policy("password", password, &user));
        }
        problems.finish()?;
        if let Some(password) = &new.password {
            user.password_hash = Some(self.hasher.hash_async(password).await?);
            user.must_change_password = true;
            user.status = UserStatus::Active;
        }
        // Agents (users that are not deactivated, invited ones included) are reserved before
        // the user exists, so concurrent creations never exceed the limit.
        if let Some(t) = &tenant {
            self.counts
                .reserve(t.id, CountKind::Agents, t.limits.max_agents)
                .await?;
        }
        if let Err(e) = self.repos.users.insert(&user).await {
            if let Some(t) = &tenant {
                self.release_agent(t.id).await;
            }
            return Err(e.into());
        }
        self.audit(Self::entry_for(ctx, "user.create", &user)).await;
        let tenant_active = tenant
            .as_ref()
            .is_none_or(|t| t.status == TenantStatus::Active);
        if new.password.is_none() && !tenant_active {
            // Nothing is sent on behalf of a deactivated tenant: the invitation goes out
            // when the tenant is activated again.
            tracing::info!(user = %user.id, "invitation held: the tenant is deactivated");
        } else if new.password.is_none() {
            if let Err(e) = self.send_invitation(&user).await {
                // The user exists; the invitation can be sent again by an admin.
                tracing::error!(error = %e, user = %user.id, "invitation email not sent");
            }
        }
        Ok(user)
    }

    async fn release_agent(&self, tenant: TenantId) {
        if let Err(e) = self.counts.release(tenant, CountKind::Agents).await {
            tracing::error!(error = %e, %tenant, "cannot release an agent slot");
        }
    }

    fn entry_for(ctx: &AuthContext, action: &str, user: &User) -> imix_core::model::AuditEntry {
        let mut e = Self::entry(ctx, action, "user", user.id.to_string());
        e.tenant_id = user.tenant_id.or(ctx.tenant_id());
        e
    }

    /// A user visible to the caller. Everyone can read themselves.
    pub async fn get_user(&self, ctx: &AuthContext, id: UserId) -> Result<User, TenancyError> {
        if id != ctx.user_id() {
            ctx.require(Permission::UsersRead)?;
        }
        Ok(self.repos.users.get(ctx.scope(), id).await?)
    }

    /// Users visible to the caller, optionally of one tenant.
    pub async fn list_users(
        &self,
        ctx: &AuthContext,
        tenant: Option<TenantId>,
        page: PageRequest,
    ) -> Result<Page<User>, TenancyError> {
        ctx.require(Permission::UsersRead)?;
        let scope = match tenant {
            Some(t) => ctx.scope_for(t)?,
            None => ctx.scope(),
        };
        Ok(self.repos.users.list(scope, page).await?)
    }

    /// Edits a user.
    pub async fn update_user(
        &self,
        ctx: &AuthContext,
        id: UserId,
        patch: UserPatch,
    ) -> Result<User, TenancyError> {
        ctx.require(Permission::UsersManage)?;
        // Not found (or not visible) comes before any field problem.
        self.repos.users.get(ctx.scope(), id).await?;
        // Every invalid field is reported at once.
        let mut problems = validate::Problems::default();
        let email = patch
            .email
            .as_deref()
            .and_then(|v| problems.check(validate::email("email", v)));
        let first_name = patch
            .first_name
            .as_deref()
            .and_then(|v| problems.check(validate::required_name("first_name", v, 100)));
        let last_name = patch
            .last_name
            .as_deref()
            .and_then(|v| problems.check(validate::required_name("last_name", v, 100)));
        problems.finish()?;
        // The client sent no version: only the fields it sent are applied, to the user as
        // currently stored, again if someone else changed the user meanwhile.
        let stored = self
            .modify_user(ctx.scope(), id, |next| {
                let current = next.clone();
                if let Some(v) = &email {
                    next.email.clone_from(v);
                }
                if let Some(v) = &first_name {
                    next.first_name.clone_from(v);
                }
                if let Some(v) = &last_name {
                    next.last_name.clone_from(v);
                }
                if let Some(lang) = patch.default_language {
                    next.default_language = lang;
                }
                if let Some(role) = patch.role {
                    if next.tenant_id.is_none() && role != Role::Admin {
                        return Err(TenancyError::invalid(
                            "role",
                            "a platform user (without tenant) must be an admin",
                        ));
                    }
                    next.role = role;
                    if role != Role::Custom && patch.permissions.is_none() {
                        next.permissions.clear();
                    }
                }
                if let Some(perms) = &patch.permissions {
                    next.permissions = parse_permissions(next.role, perms)?
                        .iter()
                        .map(|p| p.as_str().to_owned())
                        .collect();
                }
                // Neither the user as they are nor as they would be may hold more than the
                // caller.
                check_no_escalation(ctx, &permissions_of(&current))?;
                check_no_escalation(ctx, &permissions_of(next))?;
                if next.id == ctx.user_id() && next.role != current.role {
                    return Err(TenancyError::forbidden("you cannot change your own role"));
                }
                next.updated_at = now();
                Ok(true)
            })
            .await?;
        self.audit(Self::entry_for(ctx, "user.update", &stored))
            .await;
        Ok(stored)
    }

    /// Deactivates a user: they cannot sign in and their tokens stop working at once.
    pub async fn deactivate_user(
        &self,
        ctx: &AuthContext,
        id: UserId,
    ) -> Result<User, TenancyError> {
        self.set_user_status(ctx, id, true).await
    }

    /// Activates a deactivated user again.
    pub async fn activate_user(&self, ctx: &AuthContext, id: UserId) -> Result<User, TenancyError> {
        self.set_user_status(ctx, id, false).await
    }

    async fn set_user_status(
        &self,
        ctx: &AuthContext,
        id: UserId,
        deactivate: bool,
    ) -> Result<User, TenancyError> {
        ctx.require(Permission::UsersManage)?;
        if deactivate && id == ctx.user_id() {
            return Err(TenancyError::forbidden("you cannot deactivate yourself"));
        }
        // Writes to one user take turns on this replica; a race with another replica is
        // retried on the user as then stored. An activation reserves an agent slot (and may
        // be refused by the limit) before it is stored, at most once, and gives it back if
        // it is not stored or someone else activated the user meanwhile; a deactivation
        // gives its slot up once stored: the agent count stays exact.
        let _turn = self.user_writes.take(id).await;
        let mut backoff = ConflictBackoff::new();
        let mut reserved: Option<TenantId> = None;
        let outcome = loop {
            if !backoff.next_attempt().await {
                break Err(TenancyError::VersionConflict { entity: "user" });
            }
            let current = match self.repos.users.get(ctx.scope(), id).await {
                Ok(current) => current,
                Err(e) => break Err(e.into()),
            };
            if let Err(e) = check_no_escalation(ctx, &permissions_of(&current)) {
                break Err(e);
            }
            let mut next = current.clone();
            next.status = match (deactivate, &current.password_hash) {
                (true, _) => UserStatus::Deactivated,
                (false, Some(_)) => UserStatus::Active,
                (false, None) => UserStatus::Invited,
            };
            if next.status == current.status {
                break Ok((current, false));
            }
            next.updated_at = now();
            if let (false, Some(tenant_id), None) = (deactivate, current.tenant_id, reserved) {
                let limit = match self.repos.tenants.get(tenant_id).await {
                    Ok(t) => t.limits.max_agents,
                    Err(e) => break Err(e.into()),
                };
                if let Err(e) = self
                    .counts
                    .reserve(tenant_id, CountKind::Agents, limit)
                    .await
                {
                    break Err(e.into());
                }
                reserved = Some(tenant_id);
            }
            match self.repos.users.update(ctx.scope(), &next).await {
                Ok(stored) => break Ok((stored, true)),
                Err(imix_core::Error::VersionConflict { .. }) => continue,
                Err(e) => break Err(e.into()),
            }
        };
        let stored = match outcome {
            Ok((stored, true)) => stored,
            Ok((current, false)) => {
                if let Some(tenant_id) = reserved {
                    self.release_agent(tenant_id).await;
                }
                return Ok(current);
            }
            Err(e) => {
                if let Some(tenant_id) = reserved {
                    self.release_agent(tenant_id).await;
                }
                return Err(e);
            }
        };
        if let (true, Some(tenant_id)) = (deactivate, stored.tenant_id) {
            self.release_agent(tenant_id).await;
        }
        let action = if deactivate {
            "user.deactivate"
        } else {
            "user.activate"
        };
        self.audit(Self::entry_for(ctx, action, &stored)).await;
        Ok(stored)
    }

    /// Replaces user `id` (visible in `scope`) with `change` applied to its current state,
    /// for writes the client did not version. `change` answers whether there is anything to
    /// write (`false`: the user is answered as stored). Writes to one user take turns on this
    /// replica ([`super::write_turns::WriteTurns`]); a race with another replica is not an error either: the
    /// user is read again and `change` applied again ([`ConflictBackoff`]); only after
    /// [`ConflictBackoff::MAX_ATTEMPTS`] lost races is it a version conflict.
    pub(crate) async fn modify_user(
        &self,
        scope: Scope,
        id: UserId,
        mut change: impl FnMut(&mut User) -> Result<bool, TenancyError>,
    ) -> Result<User, TenancyError> {
        let _turn = self.user_writes.take(id).await;
        let mut backoff = ConflictBackoff::new();
        while backoff.next_attempt().await {
            let mut user = self.repos.users.get(scope, id).await?;
            if !change(&mut user)? {
                return Ok(user);
            }
            match self.repos.users.update(scope, &user).await {
                Ok(stored) => return Ok(stored),
                Err(imix_core::Error::VersionConflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        tracing::warn!(user = %id, attempts = backoff.attempts(), "user update kept losing races");
        Err(TenancyError::VersionConflict { entity: "user" })
    }
}

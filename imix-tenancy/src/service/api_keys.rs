//! API keys: created by a tenant's integrations manager, shown once, stored as a SHA-256,
//! accepted as bearer tokens with the permissions of their role, looked up on every request
//! (so a deleted key is refused at once, on every replica).

use std::collections::BTreeSet;

use imix_core::{
    id::{TenantId, UserId},
    store::{Page, PageRequest, Scope},
};
use secrecy::{ExposeSecret, SecretString};

use super::{
    now,
    users::{check_no_escalation, parse_permissions},
    TenancyService,
};
use crate::{
    permission::{tenant_role_permissions, Permission},
    records::{
        ApiKey, ApiKeyId, Role, TenantStatus, User, UserStatus, API_KEY_HINT_CHARS, API_KEY_PREFIX,
    },
    token::{random_token, token_hash},
    validate, AuthContext, TenancyError,
};

/// A key's last-used time is written at most this often: a busy integration would
/// otherwise write on every request.
pub const API_KEY_TOUCH_EVERY_SECS: i64 = 60;

/// Longest key name, in characters.
const MAX_NAME_CHARS: usize = 100;

/// What `POST /tenants/{id}/api-keys` asks for.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    /// A name for people.
    pub name: String,
    /// The role the key acts with: never above the creator's permissions.
    pub role: Role,
    /// Permissions, for the custom role only.
    pub permissions: Vec<String>,
}

/// A key just created: the record and the key itself, which is never available again.
#[derive(Debug)]
pub struct NewApiKeyCreated {
    /// The stored record.
    pub record: ApiKey,
    /// The key, to show once.
    pub key: SecretString,
}

/// The permissions a key holds.
fn key_permissions(key: &ApiKey) -> BTreeSet<Permission> {
    let custom: Vec<Permission> = key
        .permissions
        .iter()
        .filter_map(|p| p.parse().ok())
        .collect();
    tenant_role_permissions(key.role, &custom)
}

impl TenancyService {
    /// Creates an API key of `tenant`. Needs `integrations.manage` there; the key's
    /// permissions must all be held by the caller.
    pub async fn create_api_key(
        &self,
        ctx: &AuthContext,
        tenant: TenantId,
        new: NewApiKey,
    ) -> Result<NewApiKeyCreated, TenancyError> {
        ctx.access()
            .authorize(Permission::IntegrationsManage, tenant)?;
        // A key minting keys could outlive its own revocation (a probe's leaked admin key
        // made itself a successor); every key traces back to a person who signed in.
        if ctx.api_key().is_some() {
            return Err(TenancyError::forbidden(
                "an API key cannot create API keys: sign in as a person to create one",
            ));
        }
        let name = validate::required_name("name", &new.name, MAX_NAME_CHARS)?;
        let custom = parse_permissions(new.role, &new.permissions)?;
        let granted = tenant_role_permissions(new.role, &custom);
        check_no_escalation(ctx, &granted)?;
        // The tenant must exist (a platform admin may name any id).
        self.repos.tenants.get(tenant).await?;
        let secret = format!("{API_KEY_PREFIX}{}", random_token());
        let record = ApiKey {
            id: ApiKeyId::new(),
            tenant_id: tenant,
            name,
            role: new.role,
            permissions: custom.iter().map(|p| p.as_str().to_owned()).collect(),
            key_hash: token_hash(&secret),
            hint: secret.chars().take(API_KEY_HINT_CHARS).collect(),
            created_by: Some(ctx.user_id()),
            created_at: now(),
            last_used_at: None,
        };
        self.repos.api_keys.insert(&record).await?;
        let mut entry = Self::entry(ctx, "api_key.create", "api_key", record.id.to_string());
        entry.tenant_id = Some(tenant);
        self.audit(entry).await;
        Ok(NewApiKeyCreated {
            record,
            key: SecretString::from(secret),
        })
    }

    /// The API keys of `tenant`, oldest first (records only: keys are never shown again).
    pub async fn list_api_keys(
        &self,
        ctx: &AuthContext,
        tenant: TenantId,
        page: PageRequest,
    ) -> Result<Page<ApiKey>, TenancyError> {
        let scope = ctx
            .access()
            .authorize(Permission::IntegrationsManage, tenant)?;
        Ok(self.repos.api_keys.list(scope, page).await?)
    }

    /// Deletes an API key of `tenant`: requests with it are refused from now on. Another
    /// tenant's key is not found.
    pub async fn delete_api_key(
        &self,
        ctx: &AuthContext,
        tenant: TenantId,
        id: ApiKeyId,
    ) -> Result<(), TenancyError> {
        ctx.access()
            .authorize(Permission::IntegrationsManage, tenant)?;
        // Confined to the tenant named in the path, also for platform admins, so the path's
        // tenant and the key's always agree.
        self.repos
            .api_keys
            .delete(Scope::Tenant(tenant), id)
            .await?;
        let mut entry = Self::entry(ctx, "api_key.delete", "api_key", id.to_string());
        entry.tenant_id = Some(tenant);
        self.audit(entry).await;
        Ok(())
    }

    /// Authenticates a request bearing an API key (`imix_…`): the key must exist and its
    /// tenant be active. The context acts with the key's role in the key's tenant; its user
    /// stands for the key (id = the key's id, email `api-key:<hint>`).
    pub async fn authenticate_api_key(
        &self,
        key: &SecretString,
        client_addr: Option<String>,
    ) -> Result<AuthContext, TenancyError> {
        let presented = key.expose_secret().trim();
        if !presented.starts_with(API_KEY_PREFIX) {
            return Err(TenancyError::Unauthenticated);
        }
        let Some(record) = self
            .repos
            .api_keys
            .find_by_hash(&token_hash(presented))
            .await?
        else {
            return Err(TenancyError::Unauthenticated);
        };
        let tenant = match self.repos.tenants.get(record.tenant_id).await {
            Ok(t) => t,
            Err(imix_core::Error::NotFound { .. }) => return Err(TenancyError::Unauthenticated),
            Err(e) => return Err(e.into()),
        };
        if tenant.status == TenantStatus::Deactivated {
            return Err(TenancyError::TenantDeactivated);
        }
        let now = now();
        let stale = record
            .last_used_at
            .is_none_or(|t| (now - t).num_seconds() >= API_KEY_TOUCH_EVERY_SECS);
        if stale {
            // Bookkeeping only: the request goes on if it cannot be written.
            if let Err(e) = self.repos.api_keys.touch(record.id, now).await {
                tracing::warn!(error = %e, api_key = %record.id, "api key last use not recorded");
            }
        }
        let mut user = User::new(
            format!("api-key:{}", record.hint),
            record.role,
            Some(record.tenant_id),
        );
        user.id = UserId::from_uuid(record.id.as_uuid());
        user.first_name = record.name.clone();
        user.status = UserStatus::Active;
        user.created_at = record.created_at;
        user.updated_at = record.created_at;
        user.last_login_at = record.last_used_at;
        user.permissions = record.permissions.clone();
        let permissions = key_permissions(&record);
        Ok(AuthContext::for_api_key(
            record.id,
            user,
            permissions,
            client_addr,
        ))
    }
}

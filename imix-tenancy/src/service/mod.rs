//! The tenancy service: sign-in, users, tenants, audit. One struct, split by concern into
//! modules; HTTP handlers call it with an [`AuthContext`].

#[cfg(test)]
mod access_tests;
mod api_keys;
mod auth;
mod tenants;
mod usage;
mod users;
mod write_turns;

use std::sync::Arc;

use imix_core::{
    model::AuditEntry,
    store::{AuditLogRepository, BlobStore, CounterRepository, Page, PageRequest, Store},
    Timestamp,
};
use secrecy::SecretString;

use crate::storage::{
    ApiKeyRepository, AuthTokenRepository, TenancyStorage, TenantRepository, UserRepository,
};

pub use api_keys::{NewApiKey, NewApiKeyCreated, API_KEY_TOUCH_EVERY_SECS};
pub use auth::SignIn;
pub use tenants::{NewTenant, StoredFile, TenantPatch, MAX_DOCUMENT_BYTES, MAX_LOGO_BYTES};
pub use usage::Usage;
pub use users::{NewUser, UserPatch};

use crate::{
    emails::AccountEmails,
    password::PasswordHasher,
    permission::Permission,
    quota::{CountLimits, QuotaStore},
    throttle::SignInThrottle,
    token::TokenIssuer,
    AuthContext, TenancyError,
};

/// How long an invitation link is valid.
pub const INVITATION_VALID_HOURS: i64 = 72;
/// How long a password-reset link is valid.
pub const RESET_VALID_HOURS: i64 = 1;

/// Settings of the service that come from the server's configuration.
#[derive(Clone)]
pub struct TenancyConfig {
    /// Signs access tokens.
    pub secret_key: SecretString,
    /// Access token lifetime.
    pub access_token_minutes: u32,
    /// External base URL; set-password links are `{public_url}/set-password?token=…`.
    pub public_url: url::Url,
}

/// The storage ports the tenancy service uses, and nothing else of the store (no WhatsApp,
/// settings or outbox ports): what its unit tests mock.
#[derive(Clone)]
pub struct TenancyRepos {
    /// Tenants.
    pub tenants: Arc<dyn TenantRepository>,
    /// Users.
    pub users: Arc<dyn UserRepository>,
    /// Invitation and password-reset tokens.
    pub auth_tokens: Arc<dyn AuthTokenRepository>,
    /// API keys.
    pub api_keys: Arc<dyn ApiKeyRepository>,
    /// The audit log.
    pub audit: Arc<dyn AuditLogRepository>,
    /// Logos and documents.
    pub blobs: Arc<dyn BlobStore>,
    /// Counters (agents reserved against Max Agents, sign-in throttles).
    pub counters: Arc<dyn CounterRepository>,
}

impl TenancyRepos {
    /// The ports of `store` and `storage` the service uses.
    pub fn new(store: &Store, storage: &TenancyStorage) -> Self {
        Self {
            tenants: storage.tenants.clone(),
            users: storage.users.clone(),
            auth_tokens: storage.auth_tokens.clone(),
            api_keys: storage.api_keys.clone(),
            audit: store.audit.clone(),
            blobs: store.blobs.clone(),
            counters: store.counters.clone(),
        }
    }
}

impl std::fmt::Debug for TenancyRepos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenancyRepos").finish_non_exhaustive()
    }
}

/// Sign-in, users, tenants and the audit log, over the storage ports.
#[derive(Clone)]
pub struct TenancyService {
    repos: TenancyRepos,
    hasher: PasswordHasher,
    tokens: TokenIssuer,
    emails: Arc<dyn AccountEmails>,
    throttle: Arc<dyn SignInThrottle>,
    public_url: url::Url,
    counts: CountLimits,
    quota: Arc<dyn QuotaStore>,
    tenant_writes: write_turns::WriteTurns<imix_core::id::TenantId>,
    user_writes: write_turns::WriteTurns<imix_core::id::UserId>,
}

impl std::fmt::Debug for TenancyService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenancyService").finish_non_exhaustive()
    }
}

impl TenancyService {
    /// Builds the service over the shared ports of `store` and tenancy's own repositories,
    /// opened on `store.backend` ([`TenancyStorage::open`]).
    pub fn new(
        store: Store,
        config: TenancyConfig,
        emails: Arc<dyn AccountEmails>,
        throttle: Arc<dyn SignInThrottle>,
        quota: Arc<dyn QuotaStore>,
    ) -> Result<Self, TenancyError> {
        Self::with_repos(
            TenancyRepos::new(&store, &TenancyStorage::open(&store.backend)?),
            config,
            emails,
            throttle,
            quota,
        )
    }

    /// Builds the service over exactly `repos` (tests pass mocks).
    pub fn with_repos(
        repos: TenancyRepos,
        config: TenancyConfig,
        emails: Arc<dyn AccountEmails>,
        throttle: Arc<dyn SignInThrottle>,
        quota: Arc<dyn QuotaStore>,
    ) -> Result<Self, TenancyError> {
        Ok(Self {
            counts: CountLimits::new(repos.counters.clone()),
            quota,
            repos,
            hasher: PasswordHasher::new()?,
            tokens: TokenIssuer::new(&config.secret_key, config.access_token_minutes),
            emails,
            throttle,
            public_url: config.public_url,
            tenant_writes: Default::default(),
            user_writes: Default::default(),
        })
    }

    /// The storage ports the service works on.
    pub fn repos(&self) -> &TenancyRepos {
        &self.repos
    }

    /// Appends to the audit log. A failure to audit is logged, never hidden silently, but
    /// does not undo the action that already happened.
    pub(crate) async fn audit(&self, entry: AuditEntry) {
        if let Err(e) = self.repos.audit.append(&entry).await {
            tracing::error!(error = %e, action = %entry.action, "cannot write the audit log");
        }
    }

    /// An audit entry for an action by `ctx`.
    pub(crate) fn entry(
        ctx: &AuthContext,
        action: &str,
        target_type: &str,
        target_id: String,
    ) -> AuditEntry {
        let mut e = AuditEntry::new(action, target_type);
        e.actor_id = Some(ctx.user_id());
        e.actor_email = Some(ctx.user().email.clone());
        e.tenant_id = ctx.tenant_id();
        e.target_id = Some(target_id);
        e.client_addr = ctx.client_addr().map(str::to_owned);
        e
    }

    /// Records an action of `ctx` on a target of another domain (WhatsApp accounts,
    /// templates, settings, …) in the audit log, with the caller's identity and address.
    pub async fn record_action(
        &self,
        ctx: &AuthContext,
        action: &str,
        target_type: &str,
        target_id: String,
        tenant: Option<imix_core::id::TenantId>,
    ) {
        let mut e = Self::entry(ctx, action, target_type, target_id);
        if tenant.is_some() {
            e.tenant_id = tenant;
        }
        self.audit(e).await;
    }

    /// The audit log: a platform admin sees everything, a tenant user with `audit.read` sees
    /// their tenant's entries. Newest first.
    pub async fn audit_log(
        &self,
        ctx: &AuthContext,
        page: PageRequest,
    ) -> Result<Page<AuditEntry>, TenancyError> {
        ctx.require(Permission::AuditRead)?;
        Ok(self.repos.audit.list(ctx.scope(), page).await?)
    }

    pub(crate) fn link(&self, token: &str) -> String {
        let mut url = self.public_url.clone();
        url.set_path("/set-password");
        url.set_query(Some(&format!("token={token}")));
        url.to_string()
    }
}

/// The current time (one place, so tests of time-dependent rules pass `now` explicitly).
pub(crate) fn now() -> Timestamp {
    imix_core::now()
}

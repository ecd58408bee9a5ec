//! The tenancy service: sign-in, users, tenants, audit. One struct, split by concern into
//! modules; HTTP handlers call it with an [`AuthContext`].

mod auth;
mod tenants;
mod usage;
mod users;

use std::sync::Arc;

use imix_core::{
    model::AuditEntry,
    store::{Page, PageRequest, Store},
    Timestamp,
};
use secrecy::SecretString;

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

/// Sign-in, users, tenants and the audit log, over the storage ports.
#[derive(Clone)]
pub struct TenancyService {
    store: Store,
    hasher: PasswordHasher,
    tokens: TokenIssuer,
    emails: Arc<dyn AccountEmails>,
    throttle: Arc<dyn SignInThrottle>,
    public_url: url::Url,
    counts: CountLimits,
    quota: Arc<dyn QuotaStore>,
    tenant_writes: tenants::TenantWriteLocks,
}

impl std::fmt::Debug for TenancyService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenancyService").finish_non_exhaustive()
    }
}

impl TenancyService {
    /// Builds the service.
    pub fn new(
        store: Store,
        config: TenancyConfig,
        emails: Arc<dyn AccountEmails>,
        throttle: Arc<dyn SignInThrottle>,
        quota: Arc<dyn QuotaStore>,
    ) -> Result<Self, TenancyError> {
        Ok(Self {
            counts: CountLimits::new(store.counters.clone()),
            quota,
            store,
            hasher: PasswordHasher::new()?,
            tokens: TokenIssuer::new(&config.secret_key, config.access_token_minutes),
            emails,
            throttle,
            public_url: config.public_url,
            tenant_writes: tenants::TenantWriteLocks::default(),
        })
    }

    /// The store the service works on.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Appends to the audit log. A failure to audit is logged, never hidden silently, but
    /// does not undo the action that already happened.
    pub(crate) async fn audit(&self, entry: AuditEntry) {
        if let Err(e) = self.store.audit.append(&entry).await {
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
        Ok(self.store.audit.list(ctx.scope(), page).await?)
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

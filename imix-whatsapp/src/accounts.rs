//! WhatsApp Business accounts: the admin guide's "Adding a WhatsApp Account", verification
//! against the Graph API, and Meta's phone number verification walk (request a code, verify
//! it, register with the two-step PIN).
//!
//! The access token and the app secret are write-only: they are sealed with the at-rest
//! [`Cipher`] (bound to the account id and the field) before they reach the store, opened
//! only to call Meta, and shown back only as `"****1234"` hints.
//!
//! Every operation takes the caller's [`AccessContext`] and checks it before touching
//! storage: `whatsapp_accounts.read` to see, `whatsapp_accounts.manage` to change, and the
//! tenant (a tenant's user naming another tenant finds nothing). Changes are recorded in
//! the audit log through the [`AuditSink`] port.

use std::sync::Arc;

use imix_core::{
    access::{AccessContext, AuditSink, Permission},
    crypto::Cipher,
    directory::TenantDirectory,
    id::{TenantId, WhatsAppAccountId},
    secret::{hint, SecretString},
    store::{Page, PageRequest, Scope, Store},
    Error as CoreError,
};
use rand::Rng;

use crate::{
    client::{AccessToken, WhatsAppClient},
    error::ServiceError,
    model::{CodeMethod, TemplateQuery},
    records::{Verification, VerificationStatus, WhatsAppAccount},
    storage::{TemplateFilter, TemplateRepository, WhatsAppAccountRepository, WhatsAppStorage},
    templates::TemplateCounter,
};

/// Result of the services.
pub type ServiceResult<T> = std::result::Result<T, ServiceError>;

/// How many characters a generated webhook verify token has.
pub const GENERATED_VERIFY_TOKEN_LEN: usize = 40;

const SECRET_ACCESS_TOKEN: &str = "access_token";
const SECRET_APP_SECRET: &str = "app_secret";

/// A new account, as the admin guide's form has it (plus the app secret).
pub struct NewAccount {
    /// WhatsApp Business Account ID.
    pub waba_id: String,
    /// Business Account ID.
    pub business_account_id: String,
    /// WhatsApp phone ID.
    pub phone_number_id: String,
    /// App ID.
    pub app_id: String,
    /// Display phone number.
    pub display_phone_number: String,
    /// Business name.
    pub business_name: String,
    /// Meta access token.
    pub access_token: SecretString,
    /// Meta app secret (signs webhooks).
    pub app_secret: SecretString,
    /// Webhook token; generated when absent or blank.
    pub webhook_verify_token: Option<String>,
}

/// An edit: `None` keeps the field as it is; a secret given replaces the stored one.
#[derive(Default)]
pub struct AccountPatch {
    /// WhatsApp Business Account ID.
    pub waba_id: Option<String>,
    /// Business Account ID.
    pub business_account_id: Option<String>,
    /// WhatsApp phone ID.
    pub phone_number_id: Option<String>,
    /// App ID.
    pub app_id: Option<String>,
    /// Display phone number.
    pub display_phone_number: Option<String>,
    /// Business name.
    pub business_name: Option<String>,
    /// A new access token.
    pub access_token: Option<SecretString>,
    /// A new app secret.
    pub app_secret: Option<SecretString>,
    /// A new webhook token (blank: generate a new one).
    pub webhook_verify_token: Option<String>,
    /// The number's outbound rate, 1 to 1,000 messages per second (Meta's default is 80).
    pub max_messages_per_second: Option<u32>,
}

/// The highest outbound rate a number may be given (Meta's highest throughput tier).
pub const MAX_MESSAGES_PER_SECOND: u32 = 1000;

/// The ports the WhatsApp services use: the capability's own repositories, and the tenant
/// directory (not tenancy's repositories) to read tenants through.
#[derive(Clone)]
pub struct WhatsAppRepos {
    /// Tenants: that a tenant exists, and its Max Templates.
    pub tenants: Arc<dyn TenantDirectory>,
    /// WhatsApp Business accounts.
    pub accounts: Arc<dyn WhatsAppAccountRepository>,
    /// Message templates.
    pub templates: Arc<dyn TemplateRepository>,
}

impl WhatsAppRepos {
    /// The repositories of `storage`, and `tenants`.
    pub fn new(storage: WhatsAppStorage, tenants: Arc<dyn TenantDirectory>) -> Self {
        Self {
            tenants,
            accounts: storage.accounts,
            templates: storage.templates,
        }
    }

    /// The capability's repositories opened on `store`'s backend (see
    /// [`WhatsAppStorage::open`]; migrate it first with [`crate::storage::migrate`]), and
    /// `tenants`. A backend without an adapter here is [`CoreError::Invalid`].
    pub fn open(store: &Store, tenants: Arc<dyn TenantDirectory>) -> imix_core::Result<Self> {
        Ok(Self::new(WhatsAppStorage::open(&store.backend)?, tenants))
    }
}

impl std::fmt::Debug for WhatsAppRepos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhatsAppRepos").finish_non_exhaustive()
    }
}

/// Accounts over their storage ports, the Graph API client, the at-rest cipher and the
/// audit log. Cheap to clone.
#[derive(Clone)]
pub struct AccountService {
    repos: WhatsAppRepos,
    client: Arc<dyn WhatsAppClient>,
    cipher: Cipher,
    public_url: String,
    counter: Arc<dyn TemplateCounter>,
    audit: Arc<dyn AuditSink>,
}

impl std::fmt::Debug for AccountService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountService")
            .field("public_url", &self.public_url)
            .finish_non_exhaustive()
    }
}

impl AccountService {
    /// The service. `public_url` is the server's external base URL (webhook URIs are
    /// `{public_url}/webhooks/whatsapp/{account_id}`); `counter` keeps the tenants' template
    /// counts right when an account and its templates are deleted; `audit` records who
    /// changed what.
    pub fn new(
        repos: WhatsAppRepos,
        client: Arc<dyn WhatsAppClient>,
        cipher: Cipher,
        public_url: &str,
        counter: Arc<dyn TemplateCounter>,
        audit: Arc<dyn AuditSink>,
    ) -> Self {
        Self {
            repos,
            client,
            cipher,
            public_url: public_url.trim_end_matches('/').to_owned(),
            counter,
            audit,
        }
    }

    async fn record(&self, ctx: &AccessContext, action: &str, account: &WhatsAppAccount) {
        self.audit
            .record(
                ctx,
                action,
                "whatsapp_account",
                account.id.to_string(),
                Some(account.tenant_id),
            )
            .await;
    }

    /// The callback URL to paste into Meta's app dashboard for `account`.
    pub fn webhook_uri(&self, account: WhatsAppAccountId) -> String {
        format!("{}/webhooks/whatsapp/{account}", self.public_url)
    }

    /// Adds an account to `tenant` (`whatsapp_accounts.manage`). A phone number id already
    /// used by any account is [`CoreError::Duplicate`] (`phone_number_id`).
    pub async fn add(
        &self,
        ctx: &AccessContext,
        tenant: TenantId,
        new: NewAccount,
    ) -> ServiceResult<WhatsAppAccount> {
        ctx.authorize(Permission::WhatsAppAccountsManage, tenant)?;
        // The tenant must exist (a platform admin may name any tenant id).
        self.repos.tenants.profile(tenant).await?;
        let id = WhatsAppAccountId::new();
        let now = imix_core::now();
        let verify_token = match new.webhook_verify_token {
            Some(t) if !t.trim().is_empty() => valid_verify_token(t.trim())?,
            _ => generate_verify_token(),
        };
        let account = WhatsAppAccount {
            health: crate::records::AccountHealth::default(),
            max_messages_per_second: None,
            id,
            tenant_id: tenant,
            waba_id: meta_id("waba_id", new.waba_id)?,
            business_account_id: meta_id("business_account_id", new.business_account_id)?,
            phone_number_id: meta_id("phone_number_id", new.phone_number_id)?,
            app_id: meta_id("app_id", new.app_id)?,
            display_phone_number: text("display_phone_number", new.display_phone_number, 32)?,
            business_name: text("business_name", new.business_name, 200)?,
            access_token_enc: self.seal(id, SECRET_ACCESS_TOKEN, &new.access_token)?,
            access_token_hint: hint(&new.access_token),
            app_secret_enc: self.seal(id, SECRET_APP_SECRET, &new.app_secret)?,
            app_secret_hint: hint(&new.app_secret),
            webhook_verify_token: verify_token,
            verification: Verification::default(),
            version: 1,
            created_at: now,
            updated_at: now,
        };
        self.repos.accounts.insert(&account).await?;
        tracing::info!(target: "imix_whatsapp", account = %id, tenant = %tenant, "whatsapp account added");
        self.record(ctx, "whatsapp_account.create", &account).await;
        Ok(account)
    }

    /// The account (`whatsapp_accounts.read`), if the caller's tenant owns it.
    pub async fn get(
        &self,
        ctx: &AccessContext,
        id: WhatsAppAccountId,
    ) -> ServiceResult<WhatsAppAccount> {
        let scope = ctx.authorize_scope(Permission::WhatsAppAccountsRead)?;
        Ok(self.repos.accounts.get(scope, id).await?)
    }

    /// `tenant`'s accounts (`whatsapp_accounts.read`), oldest first.
    pub async fn list(
        &self,
        ctx: &AccessContext,
        tenant: TenantId,
        page: PageRequest,
    ) -> ServiceResult<Page<WhatsAppAccount>> {
        let scope = ctx.authorize(Permission::WhatsAppAccountsRead, tenant)?;
        Ok(self.repos.accounts.list(scope, page).await?)
    }

    /// Edits the account (`whatsapp_accounts.manage`). Changing the token, the phone number
    /// or the WABA resets the verification to `unverified`.
    pub async fn edit(
        &self,
        ctx: &AccessContext,
        id: WhatsAppAccountId,
        patch: AccountPatch,
    ) -> ServiceResult<WhatsAppAccount> {
        let scope = ctx.authorize_scope(Permission::WhatsAppAccountsManage)?;
        let mut a = self.repos.accounts.get(scope, id).await?;
        let mut reverify = false;
        if let Some(v) = patch.waba_id {
            let v = meta_id("waba_id", v)?;
            reverify |= v != a.waba_id;
            a.waba_id = v;
        }
        if let Some(v) = patch.business_account_id {
            a.business_account_id = meta_id("business_account_id", v)?;
        }
        if let Some(v) = patch.phone_number_id {
            let v = meta_id("phone_number_id", v)?;
            reverify |= v != a.phone_number_id;
            a.phone_number_id = v;
        }
        if let Some(v) = patch.app_id {
            a.app_id = meta_id("app_id", v)?;
        }
        if let Some(v) = patch.display_phone_number {
            a.display_phone_number = text("display_phone_number", v, 32)?;
        }
        if let Some(v) = patch.business_name {
            a.business_name = text("business_name", v, 200)?;
        }
        if let Some(token) = patch.access_token {
            a.access_token_enc = self.seal(id, SECRET_ACCESS_TOKEN, &token)?;
            a.access_token_hint = hint(&token);
            reverify = true;
        }
        if let Some(secret) = patch.app_secret {
            a.app_secret_enc = self.seal(id, SECRET_APP_SECRET, &secret)?;
            a.app_secret_hint = hint(&secret);
        }
        if let Some(rate) = patch.max_messages_per_second {
            if !(1..=MAX_MESSAGES_PER_SECOND).contains(&rate) {
                return Err(ServiceError::Invalid {
                    field: "max_messages_per_second",
                    message: format!("must be from 1 to {MAX_MESSAGES_PER_SECOND}"),
                });
            }
            a.max_messages_per_second = Some(rate);
        }
        if let Some(t) = patch.webhook_verify_token {
            a.webhook_verify_token = if t.trim().is_empty() {
                generate_verify_token()
            } else {
                valid_verify_token(t.trim())?
            };
        }
        if reverify {
            a.verification = Verification::default();
        }
        a.updated_at = imix_core::now();
        let stored = self.repos.accounts.update(scope, &a).await?;
        self.record(ctx, "whatsapp_account.update", &stored).await;
        Ok(stored)
    }

    /// Deletes the account and its local templates (`whatsapp_accounts.manage`; Meta keeps
    /// the WABA's templates).
    pub async fn delete(&self, ctx: &AccessContext, id: WhatsAppAccountId) -> ServiceResult<()> {
        let scope = ctx.authorize_scope(Permission::WhatsAppAccountsManage)?;
        let account = self.repos.accounts.get(scope, id).await?;
        self.repos.accounts.delete(scope, id).await?;
        let filter = TemplateFilter {
            account_id: Some(id),
            status: None,
        };
        loop {
            let page = self
                .repos
                .templates
                .list(scope, filter.clone(), PageRequest::first(500))
                .await?;
            if page.items.is_empty() {
                break;
            }
            for t in page.items {
                match self.repos.templates.delete(scope, t.id).await {
                    Ok(()) => self.counter.release(account.tenant_id).await?,
                    Err(CoreError::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        tracing::info!(target: "imix_whatsapp", account = %id, "whatsapp account deleted");
        self.record(ctx, "whatsapp_account.delete", &account).await;
        Ok(())
    }

    /// Checks the account with Meta: reads the phone number with the stored token, checks
    /// that the token also reaches the WABA (so the ids belong together), and stores the
    /// outcome with the check time. A token Meta refuses is recorded as `failed` and
    /// answered with [`ServiceError::TokenInvalid`] carrying Meta's message.
    /// `whatsapp_accounts.manage`.
    pub async fn verify(
        &self,
        ctx: &AccessContext,
        id: WhatsAppAccountId,
    ) -> ServiceResult<WhatsAppAccount> {
        let scope = ctx.authorize_scope(Permission::WhatsAppAccountsManage)?;
        let account = self.repos.accounts.get(scope, id).await?;
        let token = self.access_token(&account)?;
        match self.check(&account, &token).await {
            Ok(verification) => self.store_verification(scope, account, verification).await,
            // Meta unreachable or failing: nothing was learnt about the account.
            Err(ServiceError::Graph(e)) if e.is_retryable() => Err(ServiceError::Graph(e)),
            Err(e) => {
                let last_error = match &e {
                    ServiceError::TokenInvalid { message, .. } => message.clone(),
                    ServiceError::Graph(g) => g
                        .graph_error()
                        .map(|m| m.message.clone())
                        .unwrap_or_else(|| g.to_string()),
                    other => other.to_string(),
                };
                let failed = Verification {
                    status: VerificationStatus::Failed,
                    checked_at: Some(imix_core::now()),
                    last_error: Some(last_error),
                    ..account.verification.clone()
                };
                self.store_verification(scope, account, failed).await?;
                Err(e)
            }
        }
    }

    async fn check(
        &self,
        account: &WhatsAppAccount,
        token: &AccessToken,
    ) -> ServiceResult<Verification> {
        let phone = self
            .client
            .get_phone_number(token, &account.phone_number_id)
            .await?;
        // The same token must reach the WABA: Meta answers 100/33 for a WABA the token's
        // business does not own.
        self.client
            .list_templates(
                token,
                &account.waba_id,
                &TemplateQuery {
                    limit: Some(1),
                    ..TemplateQuery::default()
                },
            )
            .await?;
        // Webhooks for the WABA reach the app only once it is subscribed; subscribing again
        // is harmless, so every successful verification makes sure of it.
        self.client
            .subscribe_app(token, &account.waba_id, None)
            .await?;
        Ok(Verification {
            status: VerificationStatus::Verified,
            verified_name: phone.verified_name,
            code_verification_status: phone.code_verification_status,
            quality_rating: phone.quality_rating,
            messaging_limit: phone.messaging_limit_tier,
            name_status: phone.name_status,
            checked_at: Some(imix_core::now()),
            last_error: None,
        })
    }

    async fn store_verification(
        &self,
        scope: Scope,
        mut account: WhatsAppAccount,
        verification: Verification,
    ) -> ServiceResult<WhatsAppAccount> {
        // Re-read on a concurrent edit: the verification applies to whatever else changed.
        for _ in 0..3 {
            account.verification = verification.clone();
            account.updated_at = imix_core::now();
            match self.repos.accounts.update(scope, &account).await {
                Ok(stored) => return Ok(stored),
                Err(CoreError::VersionConflict { .. }) => {
                    account = self.repos.accounts.get(scope, account.id).await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(CoreError::VersionConflict {
            entity: "whatsapp account",
            id: account.id.to_string(),
            expected: account.version,
        }
        .into())
    }

    /// Step 1 of Meta's verification: sends a code to the number by SMS or voice.
    /// `whatsapp_accounts.manage`.
    pub async fn request_code(
        &self,
        ctx: &AccessContext,
        id: WhatsAppAccountId,
        method: CodeMethod,
        language: &str,
    ) -> ServiceResult<()> {
        let scope = ctx.authorize_scope(Permission::WhatsAppAccountsManage)?;
        let account = self.repos.accounts.get(scope, id).await?;
        let language = text("language", language.to_owned(), 16)?;
        let token = self.access_token(&account)?;
        self.client
            .request_code(&token, &account.phone_number_id, method, &language)
            .await?;
        Ok(())
    }

    /// Step 2: submits the code received. `whatsapp_accounts.manage`.
    pub async fn verify_code(
        &self,
        ctx: &AccessContext,
        id: WhatsAppAccountId,
        code: &str,
    ) -> ServiceResult<()> {
        let scope = ctx.authorize_scope(Permission::WhatsAppAccountsManage)?;
        let account = self.repos.accounts.get(scope, id).await?;
        let code = code.trim();
        if code.is_empty() || code.len() > 16 || !code.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(invalid("code", "must be the code Meta sent, e.g. 123456"));
        }
        let token = self.access_token(&account)?;
        self.client
            .verify_code(&token, &account.phone_number_id, code)
            .await?;
        Ok(())
    }

    /// Step 3: registers the number for Cloud API use with its six-digit two-step PIN.
    /// `whatsapp_accounts.manage`.
    pub async fn register(
        &self,
        ctx: &AccessContext,
        id: WhatsAppAccountId,
        pin: &SecretString,
    ) -> ServiceResult<()> {
        use imix_core::secret::ExposeSecret;
        let scope = ctx.authorize_scope(Permission::WhatsAppAccountsManage)?;
        let account = self.repos.accounts.get(scope, id).await?;
        let pin = pin.expose_secret();
        if pin.len() != 6 || !pin.chars().all(|c| c.is_ascii_digit()) {
            return Err(invalid("pin", "must be six digits"));
        }
        let token = self.access_token(&account)?;
        self.client
            .register(&token, &account.phone_number_id, pin)
            .await?;
        Ok(())
    }

    /// The account's access token, opened for a Graph API call. No access check: `account`
    /// must have been read through an authorized operation (or, for webhooks, found by the
    /// signed delivery).
    pub fn access_token(&self, account: &WhatsAppAccount) -> ServiceResult<AccessToken> {
        Ok(AccessToken::from(self.cipher.decrypt_secret(
            &account.access_token_enc,
            &WhatsAppAccount::secret_aad(account.id, SECRET_ACCESS_TOKEN),
        )?))
    }

    /// The account's app secret, opened to check a webhook signature (no access check, as
    /// for [`AccountService::access_token`]).
    pub fn app_secret(&self, account: &WhatsAppAccount) -> ServiceResult<SecretString> {
        Ok(self.cipher.decrypt_secret(
            &account.app_secret_enc,
            &WhatsAppAccount::secret_aad(account.id, SECRET_APP_SECRET),
        )?)
    }

    fn seal(
        &self,
        id: WhatsAppAccountId,
        field: &'static str,
        secret: &SecretString,
    ) -> ServiceResult<String> {
        use imix_core::secret::ExposeSecret;
        let value = secret.expose_secret();
        if value.trim().is_empty() {
            return Err(invalid(field, "must not be empty"));
        }
        if value.len() > 4096 || value.chars().any(char::is_whitespace) {
            return Err(invalid(
                field,
                "must be one line without spaces, at most 4096 characters",
            ));
        }
        Ok(self
            .cipher
            .encrypt_secret(secret, &WhatsAppAccount::secret_aad(id, field))?)
    }
}

pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> ServiceError {
    ServiceError::Invalid {
        field,
        message: message.into(),
    }
}

/// A Meta id: 1–64 characters of `A-Z a-z 0-9 _ -` (Meta's are digits).
fn meta_id(field: &'static str, value: String) -> ServiceResult<String> {
    let v = value.trim();
    if v.is_empty() || v.len() > 64 {
        return Err(invalid(field, "must be 1 to 64 characters"));
    }
    if !v
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(invalid(field, "must be the id Meta shows (digits)"));
    }
    Ok(v.to_owned())
}

fn text(field: &'static str, value: String, max: usize) -> ServiceResult<String> {
    let v = value.trim();
    if v.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if v.chars().count() > max {
        return Err(invalid(field, format!("must be at most {max} characters")));
    }
    Ok(v.to_owned())
}

fn valid_verify_token(token: &str) -> ServiceResult<String> {
    if token.len() < 8 || token.len() > 128 || !token.chars().all(|c| c.is_ascii_graphic()) {
        return Err(invalid(
            "webhook_verify_token",
            "must be 8 to 128 printable characters without spaces (leave it blank to generate one)",
        ));
    }
    Ok(token.to_owned())
}

/// A fresh verify token: [`GENERATED_VERIFY_TOKEN_LEN`] random URL-safe characters.
pub fn generate_verify_token() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut rng = rand::rngs::OsRng;
    (0..GENERATED_VERIFY_TOKEN_LEN)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_verify_tokens_are_long_url_safe_and_distinct() {
        let a = generate_verify_token();
        let b = generate_verify_token();
        assert!(a.len() >= 32);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_ne!(a, b);
    }
}

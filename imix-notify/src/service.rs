//! [`Notifier`]: the one service the HTTP layer and other crates talk to.

use std::{sync::Arc, time::Duration};

use imix_core::{
    access::{AccessContext, AuditLog, AuditSink, Permission},
    crypto::Cipher,
    directory::{TenantDirectory, TenantProfile},
    id::TenantId,
    model::SettingsScope,
    store::{CounterRepository, Page, PageRequest, Store},
    Language,
};

use crate::{
    outbox::{MailerResolver, Outbox, OutboxConfig, OutboxEntryView, OutboxWorker},
    settings::{SmtpSettingsInput, SmtpSettingsService, SmtpSettingsView},
    storage::MailOutboxRepository,
    templates::{EmailContent, Templates},
    MailError, Mailbox, NotifyError, OutboxId, SendReceipt,
};

/// How long the SMTP test may take before it answers with a timeout.
pub const TEST_EMAIL_TIMEOUT: Duration = Duration::from_secs(15);

/// Test emails a tenant may send per [`TEST_EMAIL_WINDOW`].
pub const TEST_EMAILS_PER_WINDOW: u64 = 5;
/// The window test emails are counted in (fixed windows of 10 minutes).
pub const TEST_EMAIL_WINDOW: Duration = Duration::from_secs(10 * 60);

/// SMTP settings, test email, localized emails through the outbox, and the outbox listing.
/// Cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    settings: SmtpSettingsService,
    outbox: Outbox,
    resolver: Arc<dyn MailerResolver>,
    counters: Arc<dyn CounterRepository>,
    tenants: Arc<dyn TenantDirectory>,
    audit: Arc<dyn AuditSink>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier").finish_non_exhaustive()
    }
}

impl Notifier {
    /// A notifier keeping SMTP settings, test-email counters and the audit trail in
    /// `store`'s shared ports and emails in `outbox` (open it with
    /// [`crate::storage::open`]), reading tenants (to refuse or hold what a deactivated
    /// tenant would send) from `tenants`, sealing secrets with `cipher`, rendering with
    /// `templates` and sending through whatever `resolver` picks per email.
    pub fn new(
        store: &Store,
        outbox: Arc<dyn MailOutboxRepository>,
        tenants: Arc<dyn TenantDirectory>,
        cipher: Cipher,
        templates: Arc<Templates>,
        resolver: Arc<dyn MailerResolver>,
        config: OutboxConfig,
    ) -> Self {
        Self {
            settings: SmtpSettingsService::new(store.settings.clone(), cipher.clone()),
            outbox: Outbox::new(outbox, cipher, templates, config),
            resolver,
            counters: store.counters.clone(),
            tenants,
            audit: Arc::new(AuditLog::new(store.audit.clone())),
        }
    }

    /// Records changes in `audit` instead of the store's audit log.
    pub fn with_audit(mut self, audit: Arc<dyn AuditSink>) -> Self {
        self.audit = audit;
        self
    }

    /// The access check of every SMTP settings operation: `platform.settings` for the
    /// platform's settings; `settings.manage` and the tenant (another tenant's settings are
    /// "not found") for a tenant's, whose record is then read (an unknown tenant is not
    /// found, even for platform admins).
    async fn authorize_settings(
        &self,
        ctx: &AccessContext,
        scope: SettingsScope,
    ) -> Result<Option<TenantProfile>, NotifyError> {
        match scope {
            SettingsScope::Platform => {
                ctx.require(Permission::PlatformSettings)?;
                Ok(None)
            }
            SettingsScope::Tenant(t) => {
                ctx.authorize(Permission::SettingsManage, t)?;
                Ok(Some(self.tenants.profile(t).await?))
            }
        }
    }

    /// The usual wiring: emails go through the stored SMTP settings (tenant, else
    /// platform); links start at `public_url` (`IMIX_PUBLIC_URL`). The other arguments are
    /// those of [`Notifier::new`].
    #[cfg(feature = "smtp")]
    pub fn with_smtp(
        store: &Store,
        outbox: Arc<dyn MailOutboxRepository>,
        tenants: Arc<dyn TenantDirectory>,
        cipher: Cipher,
        public_url: &str,
        smtp: crate::SmtpOptions,
        config: OutboxConfig,
    ) -> Result<Self, NotifyError> {
        let templates = Arc::new(Templates::new(public_url)?);
        let allow_private_hosts = smtp.allow_private_hosts;
        let settings = SmtpSettingsService::new(store.settings.clone(), cipher.clone());
        let resolver = Arc::new(crate::SettingsMailerResolver::new(settings, smtp));
        let mut notifier = Self::new(store, outbox, tenants, cipher, templates, resolver, config);
        notifier.settings = notifier.settings.allow_private_hosts(allow_private_hosts);
        Ok(notifier)
    }

    /// The SMTP settings service.
    pub fn settings(&self) -> &SmtpSettingsService {
        &self.settings
    }

    /// The outbox.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// The templates.
    pub fn templates(&self) -> &Arc<Templates> {
        self.outbox.templates()
    }

    /// `GET .../settings/smtp`: the settings of exactly `scope`, password hidden; `None`
    /// when that scope has none (a tenant then uses the platform's). Platform settings need
    /// `platform.settings`; a tenant's need `settings.manage` in that tenant (or a platform
    /// admin).
    pub async fn smtp_settings(
        &self,
        ctx: &AccessContext,
        scope: SettingsScope,
    ) -> Result<Option<SmtpSettingsView>, NotifyError> {
        self.authorize_settings(ctx, scope).await?;
        self.settings.get_view(scope).await
    }

    /// `PUT .../settings/smtp`: checks the caller as [`Notifier::smtp_settings`] does,
    /// validates (every bad field named), stores, and records `settings.smtp.update` in the
    /// audit log.
    pub async fn put_smtp_settings(
        &self,
        ctx: &AccessContext,
        scope: SettingsScope,
        input: SmtpSettingsInput,
    ) -> Result<SmtpSettingsView, NotifyError> {
        self.authorize_settings(ctx, scope).await?;
        let view = self.settings.put(scope, input).await?;
        let tenant = match scope {
            SettingsScope::Platform => None,
            SettingsScope::Tenant(t) => Some(t),
        };
        self.audit
            .record(
                ctx,
                "settings.smtp.update",
                "smtp_settings",
                scope.to_string(),
                tenant,
            )
            .await;
        Ok(view)
    }

    /// `POST .../settings/smtp/test`: sends the test email to `to` now, through the
    /// settings `scope`'s emails use (a tenant's own, else the platform's), without the
    /// outbox. Answers within [`TEST_EMAIL_TIMEOUT`] with the server's reply or a
    /// classified [`MailError`] (inside [`NotifyError::Mail`]).
    ///
    /// A tenant may send [`TEST_EMAILS_PER_WINDOW`] test emails per [`TEST_EMAIL_WINDOW`]
    /// (counted in the store, so across replicas); more are refused with
    /// [`NotifyError::Throttled`] before anything is contacted. Platform tests are not
    /// counted. The caller is checked as for [`Notifier::smtp_settings`]; nothing is sent
    /// for a deactivated tenant ([`NotifyError::TenantDeactivated`]).
    pub async fn send_test_email(
        &self,
        ctx: &AccessContext,
        scope: SettingsScope,
        to: &str,
        language: Language,
    ) -> Result<SendReceipt, NotifyError> {
        if let Some(tenant) = self.authorize_settings(ctx, scope).await? {
            if !tenant.is_active() {
                return Err(NotifyError::TenantDeactivated);
            }
        }
        let to = to.trim();
        if !crate::settings::is_valid_email(to) {
            return Err(NotifyError::invalid("to", "is not a valid email address"));
        }
        let tenant = match scope {
            SettingsScope::Platform => None,
            SettingsScope::Tenant(t) => Some(t),
        };
        if let Some(t) = tenant {
            self.count_test_email(t).await?;
        }
        let attempt = async {
            let resolved = self.resolver.mailer_for(tenant).await?;
            let content = EmailContent::SmtpTest {
                host: resolved.server.clone(),
            };
            let rendered = self
                .templates()
                .render(&content, language)
                .map_err(|e| MailError::other(e.to_string()).caused_by(e))?;
            let email = crate::Email {
                to: Mailbox::new(to),
                subject: rendered.subject,
                text: rendered.text,
                html: Some(rendered.html),
                language,
            };
            resolved.mailer.send(&email).await
        };
        match tokio::time::timeout(TEST_EMAIL_TIMEOUT, attempt).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(MailError::Timeout.into()),
        }
    }

    /// Counts one test email of `tenant` in the current fixed window.
    async fn count_test_email(&self, tenant: TenantId) -> Result<(), NotifyError> {
        crate::throttle::take_in_window(
            self.counters.as_ref(),
            &format!("smtp-test:{tenant}"),
            TEST_EMAILS_PER_WINDOW,
            TEST_EMAIL_WINDOW,
            imix_core::now(),
        )
        .await?
        .map_err(|retry_after_secs| NotifyError::Throttled { retry_after_secs })
    }

    /// Renders `content` in `language` and puts it in the outbox for `to`, on behalf of
    /// `tenant` (`None` = platform email). Returns as soon as it is stored; the worker
    /// sends it. Pick the language with [`crate::templates::pick_language`].
    pub async fn send(
        &self,
        tenant: Option<TenantId>,
        to: Mailbox,
        language: Language,
        content: &EmailContent,
    ) -> Result<OutboxId, NotifyError> {
        self.outbox.enqueue(tenant, to, language, content).await
    }

    /// `GET /api/v1/system/mail-outbox`: recent emails, newest first, metadata and
    /// redacted text only. Needs `platform.system`; lists every tenant's and the platform's
    /// emails, or only `tenant`'s when one is named (a caller confined to a tenant sees only
    /// its own: naming another tenant is "not found"). The permission is checked before the
    /// outbox is read.
    pub async fn list_outbox(
        &self,
        ctx: &AccessContext,
        tenant: Option<TenantId>,
        page: PageRequest,
    ) -> Result<Page<OutboxEntryView>, NotifyError> {
        let scope = match tenant {
            Some(t) => ctx.authorize(Permission::PlatformSystem, t)?,
            None => ctx.authorize_scope(Permission::PlatformSystem)?,
        };
        self.outbox.list(scope, page).await
    }

    /// The background worker; run it with `tokio::spawn(worker.run(shutdown))`.
    pub fn worker(&self) -> OutboxWorker {
        self.outbox
            .worker(self.resolver.clone())
            .with_tenants(self.tenants.clone())
    }
}

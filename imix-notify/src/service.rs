//! [`Notifier`]: the one service the HTTP layer and other crates talk to.

use std::{sync::Arc, time::Duration};

use imix_core::{
    crypto::Cipher,
    id::TenantId,
    model::{OutboxId, SettingsScope},
    store::{CounterRepository, Page, PageRequest, Scope, Store},
    Language,
};

use crate::{
    outbox::{MailerResolver, Outbox, OutboxConfig, OutboxEntryView, OutboxWorker},
    settings::{SmtpSettingsInput, SmtpSettingsService, SmtpSettingsView},
    templates::{EmailContent, Templates},
    MailError, Mailbox, NotifyError, SendReceipt,
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
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier").finish_non_exhaustive()
    }
}

impl Notifier {
    /// A notifier over `store`, sealing secrets with `cipher`, rendering with `templates`
    /// and sending through whatever `resolver` picks per email.
    pub fn new(
        store: &Store,
        cipher: Cipher,
        templates: Arc<Templates>,
        resolver: Arc<dyn MailerResolver>,
        config: OutboxConfig,
    ) -> Self {
        Self {
            settings: SmtpSettingsService::new(store.settings.clone(), cipher.clone()),
            outbox: Outbox::new(store.outbox.clone(), cipher, templates, config),
            resolver,
            counters: store.counters.clone(),
        }
    }

    /// The usual wiring: emails go through the stored SMTP settings (tenant, else
    /// platform); links start at `public_url` (`IMIX_PUBLIC_URL`).
    #[cfg(feature = "smtp")]
    pub fn with_smtp(
        store: &Store,
        cipher: Cipher,
        public_url: &str,
        smtp: crate::SmtpOptions,
        config: OutboxConfig,
    ) -> Result<Self, NotifyError> {
        let templates = Arc::new(Templates::new(public_url)?);
        let allow_private_hosts = smtp.allow_private_hosts;
        let settings = SmtpSettingsService::new(store.settings.clone(), cipher.clone());
        let resolver = Arc::new(crate::SettingsMailerResolver::new(settings, smtp));
        let mut notifier = Self::new(store, cipher, templates, resolver, config);
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
    /// when that scope has none (a tenant then uses the platform's).
    pub async fn smtp_settings(
        &self,
        scope: SettingsScope,
    ) -> Result<Option<SmtpSettingsView>, NotifyError> {
        self.settings.get_view(scope).await
    }

    /// `PUT .../settings/smtp`: validates (every bad field named) and stores.
    pub async fn put_smtp_settings(
        &self,
        scope: SettingsScope,
        input: SmtpSettingsInput,
    ) -> Result<SmtpSettingsView, NotifyError> {
        self.settings.put(scope, input).await
    }

    /// `POST .../settings/smtp/test`: sends the test email to `to` now, through the
    /// settings `scope`'s emails use (a tenant's own, else the platform's), without the
    /// outbox. Answers within [`TEST_EMAIL_TIMEOUT`] with the server's reply or a
    /// classified [`MailError`] (inside [`NotifyError::Mail`]).
    ///
    /// A tenant may send [`TEST_EMAILS_PER_WINDOW`] test emails per [`TEST_EMAIL_WINDOW`]
    /// (counted in the store, so across replicas); more are refused with
    /// [`NotifyError::Throttled`] before anything is contacted. Platform tests are not
    /// counted.
    pub async fn send_test_email(
        &self,
        scope: SettingsScope,
        to: &str,
        language: Language,
    ) -> Result<SendReceipt, NotifyError> {
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
                .map_err(|e| MailError::Other(e.to_string()))?;
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
    /// redacted text only.
    pub async fn list_outbox(
        &self,
        scope: Scope,
        page: PageRequest,
    ) -> Result<Page<OutboxEntryView>, NotifyError> {
        self.outbox.list(scope, page).await
    }

    /// The background worker; run it with `tokio::spawn(worker.run(shutdown))`.
    pub fn worker(&self) -> OutboxWorker {
        self.outbox.worker(self.resolver.clone())
    }
}

//! The settings-driven [`MailerResolver`]: each email goes through the SMTP settings of its
//! tenant, else the platform's, as stored *now*.
//!
//! The settings document is read for every email (one small read), and the built
//! [`SmtpMailer`] is cached by scope and document version: a change saved through any
//! replica is used by the next email on every replica, with no restart and no stale cache.

use std::{collections::HashMap, sync::Arc, sync::Mutex, time::Duration};

use async_trait::async_trait;
use imix_core::{id::TenantId, model::SettingsScope};

use crate::{
    outbox::{MailerResolver, ResolvedMailer},
    settings::SmtpSettingsService,
    smtp::{SmtpMailer, DEFAULT_TIMEOUT},
    MailError, NotifyError,
};

/// Process-wide SMTP options (not per settings document).
#[derive(Debug, Clone)]
pub struct SmtpOptions {
    /// Connect and per-command timeout (default 10 s).
    pub timeout: Duration,
    /// An extra CA certificate (PEM) trusted besides the public roots: a private relay's
    /// CA, or a test server's throwaway one.
    pub extra_root_pem: Option<Vec<u8>>,
}

impl Default for SmtpOptions {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_TIMEOUT,
            extra_root_pem: None,
        }
    }
}

/// Resolves mailers from stored SMTP settings.
pub struct SettingsMailerResolver {
    settings: SmtpSettingsService,
    options: SmtpOptions,
    cache: Mutex<HashMap<SettingsScope, (u64, ResolvedMailer)>>,
}

impl std::fmt::Debug for SettingsMailerResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SettingsMailerResolver")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl SettingsMailerResolver {
    /// Resolves through `settings`, building SMTP mailers with `options`.
    pub fn new(settings: SmtpSettingsService, options: SmtpOptions) -> Self {
        Self {
            settings,
            options,
            cache: Mutex::new(HashMap::new()),
        }
    }
}

fn settings_error(e: NotifyError) -> MailError {
    MailError::Other(format!("cannot read the SMTP settings: {e}"))
}

#[async_trait]
impl MailerResolver for SettingsMailerResolver {
    async fn mailer_for(&self, tenant: Option<TenantId>) -> Result<ResolvedMailer, MailError> {
        let Some((scope, settings, version)) = self
            .settings
            .effective(tenant)
            .await
            .map_err(settings_error)?
        else {
            return Err(MailError::NotConfigured);
        };
        if let Ok(cache) = self.cache.lock() {
            if let Some((v, cached)) = cache.get(&scope) {
                if *v == version {
                    return Ok(cached.clone());
                }
            }
        }
        let mailer = SmtpMailer::new(settings.to_config(&self.options))?;
        let resolved = ResolvedMailer {
            mailer: Arc::new(mailer),
            server: format!("{}:{}", settings.host, settings.port),
        };
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(scope, (version, resolved.clone()));
        }
        Ok(resolved)
    }
}

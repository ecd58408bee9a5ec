//! The settings-driven [`MailerResolver`]: each email goes through the SMTP settings of its
//! tenant, else the platform's, as stored *now*.
//!
//! The settings document is read for every email (one small read), and the built
//! [`SmtpMailer`] is cached by scope and document version: a change saved through any
//! replica is used by the next email on every replica, with no restart and no stale cache.
//!
//! A tenant's own host is resolved and checked before every email (see [`crate::host`]),
//! and the mailer connects to the checked address, so a DNS change cannot point it inside
//! the server's network between the check and the connection.

use std::{collections::HashMap, net::IpAddr, sync::Arc, sync::Mutex, time::Duration};

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
    /// Whether tenant settings may name hosts with loopback, private or link-local
    /// addresses (`IMIX_ALLOW_PRIVATE_SMTP_HOSTS`; default `false`). Platform settings
    /// always may.
    pub allow_private_hosts: bool,
}

impl Default for SmtpOptions {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_TIMEOUT,
            extra_root_pem: None,
            allow_private_hosts: false,
        }
    }
}

/// A built mailer with the settings version and the checked address it was built for.
type Cached = (u64, Option<IpAddr>, ResolvedMailer);

/// Resolves mailers from stored SMTP settings.
pub struct SettingsMailerResolver {
    settings: SmtpSettingsService,
    options: SmtpOptions,
    cache: Mutex<HashMap<SettingsScope, Cached>>,
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
            settings: settings.allow_private_hosts(options.allow_private_hosts),
            options,
            cache: Mutex::new(HashMap::new()),
        }
    }
}

fn settings_error(e: NotifyError) -> MailError {
    MailError::other(format!("cannot read the SMTP settings: {e}")).caused_by(e)
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
        let pinned = if self.settings.requires_public_host(scope) {
            Some(crate::host::resolve_public(&settings.host, settings.port).await?)
        } else {
            None
        };
        if let Ok(cache) = self.cache.lock() {
            if let Some((v, ip, cached)) = cache.get(&scope) {
                if *v == version && *ip == pinned {
                    return Ok(cached.clone());
                }
            }
        }
        let mut config = settings.to_config(&self.options);
        config.connect_to = pinned;
        let mailer = SmtpMailer::new(config)?;
        let resolved = ResolvedMailer {
            mailer: Arc::new(mailer),
            server: format!("{}:{}", settings.host, settings.port),
        };
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(scope, (version, pinned, resolved.clone()));
        }
        Ok(resolved)
    }
}

//! SMTP settings: stored as the settings document `smtp` of the platform or of one tenant,
//! validated field by field, the password sealed with the at-rest cipher and never returned.
//!
//! A tenant's emails use the tenant's own settings when it has some, else the platform's.
//! Nothing is cached across requests except by document version, so a change made through
//! any replica applies to the next email sent by every replica.

use std::{fmt, str::FromStr, sync::Arc};

use imix_core::{
    crypto::Cipher,
    id::TenantId,
    model::{SettingsDoc, SettingsScope},
    store::SettingsRepository,
    Error as CoreError, Timestamp,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::{error::FieldError, NotifyError};

/// The settings document key.
pub const SMTP_SETTINGS_KEY: &str = "smtp";

/// How the connection to the SMTP server is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// A plain connection upgraded with `STARTTLS`, which is required (usually port 587).
    Starttls,
    /// TLS from the first byte, "SMTPS" (usually port 465).
    Tls,
    /// No encryption at all: credentials and emails cross the network in clear. For local
    /// development against a mail catcher only.
    None,
}

impl SmtpSecurity {
    /// `starttls`, `tls` or `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            SmtpSecurity::Starttls => "starttls",
            SmtpSecurity::Tls => "tls",
            SmtpSecurity::None => "none",
        }
    }

    /// The port this mode normally uses: 587, 465, 25.
    pub fn default_port(self) -> u16 {
        match self {
            SmtpSecurity::Starttls => 587,
            SmtpSecurity::Tls => 465,
            SmtpSecurity::None => 25,
        }
    }

    /// Whether this mode sends in clear (flagged in the API).
    pub fn is_insecure(self) -> bool {
        matches!(self, SmtpSecurity::None)
    }
}

impl fmt::Display for SmtpSecurity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SmtpSecurity {
    type Err = NotifyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "starttls" => Ok(SmtpSecurity::Starttls),
            "tls" | "ssl" => Ok(SmtpSecurity::Tls),
            "none" => Ok(SmtpSecurity::None),
            _ => Err(NotifyError::invalid(
                "security",
                "must be one of starttls, tls, none",
            )),
        }
    }
}

/// What an administrator submits (`PUT .../settings/smtp`). Raw values: [`SmtpSettingsService::put`]
/// validates them and names every invalid field.
#[derive(Clone, Default)]
pub struct SmtpSettingsInput {
    /// Server host name or IP address.
    pub host: String,
    /// Server port, 1–65535 (wider type so an out-of-range value can be reported).
    pub port: i64,
    /// Username; empty or `None` = no authentication.
    pub username: Option<String>,
    /// New password. `None` keeps the stored one; an empty string removes it.
    pub password: Option<SecretString>,
    /// Sender address.
    pub from_email: String,
    /// Sender display name.
    pub from_name: Option<String>,
    /// `starttls`, `tls` or `none`.
    pub security: String,
}

impl fmt::Debug for SmtpSettingsInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpSettingsInput")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "[REDACTED]"))
            .field("from_email", &self.from_email)
            .field("from_name", &self.from_name)
            .field("security", &self.security)
            .finish()
    }
}

/// Settings as the API shows them: the password is never returned, only whether one is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SmtpSettingsView {
    /// Whose settings these are.
    pub scope: SettingsScope,
    /// Server host.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// Username, if authentication is configured.
    pub username: Option<String>,
    /// Whether a password is stored.
    pub password_set: bool,
    /// Sender address.
    pub from_email: String,
    /// Sender display name.
    pub from_name: Option<String>,
    /// Security mode.
    pub security: SmtpSecurity,
    /// `true` when `security` is `none`: emails and credentials travel in clear, acceptable
    /// for local development only.
    pub insecure: bool,
    /// The settings document's version.
    pub version: u64,
    /// When they were last changed.
    pub updated_at: Timestamp,
}

/// Decrypted settings, in memory only (the password is a [`SecretString`]).
#[derive(Clone)]
pub struct SmtpSettings {
    /// Server host.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// Username, if authentication is configured.
    pub username: Option<String>,
    /// Password, if stored.
    pub password: Option<SecretString>,
    /// Sender address.
    pub from_email: String,
    /// Sender display name.
    pub from_name: Option<String>,
    /// Security mode.
    pub security: SmtpSecurity,
}

impl fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password_set", &self.password.is_some())
            .field("from_email", &self.from_email)
            .field("security", &self.security)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "smtp")]
impl SmtpSettings {
    /// The adapter configuration for these settings.
    pub fn to_config(&self, options: &crate::SmtpOptions) -> crate::smtp::SmtpConfig {
        let credentials = self.username.as_ref().map(|user| {
            (
                user.clone(),
                self.password
                    .clone()
                    .unwrap_or_else(|| SecretString::from(String::new())),
            )
        });
        crate::smtp::SmtpConfig {
            host: self.host.clone(),
            port: self.port,
            security: self.security,
            credentials,
            from: crate::Mailbox {
                name: self.from_name.clone(),
                email: self.from_email.clone(),
            },
            timeout: options.timeout,
            extra_root_pem: options.extra_root_pem.clone(),
            connect_to: None,
        }
    }
}

/// The stored shape: the password sealed.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredSmtp {
    host: String,
    port: u16,
    username: Option<String>,
    password_sealed: Option<String>,
    from_email: String,
    from_name: Option<String>,
    security: SmtpSecurity,
}

/// Checks an email address's syntax: `local@domain`, a dotted domain of letters, digits and
/// hyphens (internationalized domains in their `xn--` form), no spaces or brackets.
pub fn is_valid_email(address: &str) -> bool {
    let Some((local, domain)) = address.rsplit_once('@') else {
        return false;
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = domain.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    local_ok && domain_ok
}

fn is_valid_host(host: &str) -> bool {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// Reads and writes SMTP settings. Cheap to clone.
#[derive(Clone)]
pub struct SmtpSettingsService {
    repo: Arc<dyn SettingsRepository>,
    cipher: Cipher,
    allow_private_hosts: bool,
}

impl fmt::Debug for SmtpSettingsService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpSettingsService")
            .finish_non_exhaustive()
    }
}

fn associated_data(scope: SettingsScope) -> Vec<u8> {
    format!("settings:{scope}:{SMTP_SETTINGS_KEY}.password").into_bytes()
}

impl SmtpSettingsService {
    /// Settings kept in `repo`, passwords sealed with `cipher`.
    ///
    /// Tenant settings may only name hosts with public addresses (see [`crate::host`]);
    /// [`SmtpSettingsService::allow_private_hosts`] lifts that.
    pub fn new(repo: Arc<dyn SettingsRepository>, cipher: Cipher) -> Self {
        Self {
            repo,
            cipher,
            allow_private_hosts: false,
        }
    }

    /// Lets tenant settings name hosts with loopback, private or link-local addresses
    /// (`IMIX_ALLOW_PRIVATE_SMTP_HOSTS=true`). Platform settings always may.
    pub fn allow_private_hosts(mut self, allow: bool) -> Self {
        self.allow_private_hosts = allow;
        self
    }

    /// Whether tenant settings may name non-public hosts.
    pub fn private_hosts_allowed(&self) -> bool {
        self.allow_private_hosts
    }

    /// Whether `scope`'s settings must name a host with public addresses only.
    pub fn requires_public_host(&self, scope: SettingsScope) -> bool {
        matches!(scope, SettingsScope::Tenant(_)) && !self.allow_private_hosts
    }

    async fn stored(
        &self,
        scope: SettingsScope,
    ) -> Result<Option<(StoredSmtp, SettingsDoc)>, NotifyError> {
        let Some(doc) = self.repo.get(scope, SMTP_SETTINGS_KEY).await? else {
            return Ok(None);
        };
        let stored: StoredSmtp =
            serde_json::from_value(doc.value.clone()).map_err(|e| CoreError::Corrupt {
                entity: "smtp settings",
                source: e.into(),
            })?;
        Ok(Some((stored, doc)))
    }

    fn view(scope: SettingsScope, stored: &StoredSmtp, doc: &SettingsDoc) -> SmtpSettingsView {
        SmtpSettingsView {
            scope,
            host: stored.host.clone(),
            port: stored.port,
            username: stored.username.clone(),
            password_set: stored.password_sealed.is_some(),
            from_email: stored.from_email.clone(),
            from_name: stored.from_name.clone(),
            security: stored.security,
            insecure: stored.security.is_insecure(),
            version: doc.version,
            updated_at: doc.updated_at,
        }
    }

    /// The settings of exactly `scope` as the API shows them; `None` if never set.
    pub async fn get_view(
        &self,
        scope: SettingsScope,
    ) -> Result<Option<SmtpSettingsView>, NotifyError> {
        Ok(self
            .stored(scope)
            .await?
            .map(|(stored, doc)| Self::view(scope, &stored, &doc)))
    }

    /// Validates and stores the settings of `scope`; answers the stored view. Every invalid
    /// field is reported at once ([`NotifyError::Invalid`]). A concurrent writer wins or
    /// loses as a whole (optimistic versioning; this retries on a conflict).
    pub async fn put(
        &self,
        scope: SettingsScope,
        input: SmtpSettingsInput,
    ) -> Result<SmtpSettingsView, NotifyError> {
        let mut errors = Vec::new();
        let mut bad = |field: &'static str, message: &str| {
            errors.push(FieldError {
                field,
                message: message.to_owned(),
            })
        };
        let host = input.host.trim().to_owned();
        if !is_valid_host(&host) {
            bad("host", "must be a host name or an IP address");
        }
        let port = u16::try_from(input.port).ok().filter(|p| *p >= 1);
        if port.is_none() {
            bad("port", "must be between 1 and 65535");
        }
        let from_email = input.from_email.trim().to_owned();
        if !is_valid_email(&from_email) {
            bad("from_email", "is not a valid email address");
        }
        let from_name = non_empty(input.from_name);
        if let Some(name) = from_name.as_deref() {
            if name.chars().count() > 200 {
                bad("from_name", "must be at most 200 characters");
            } else if let Some(problem) = crate::text::name_problem(name) {
                bad("from_name", problem);
            }
        }
        let security = input.security.parse::<SmtpSecurity>().ok();
        if security.is_none() {
            bad("security", "must be one of starttls, tls, none");
        }
        let username = non_empty(input.username);
        if username
            .as_deref()
            .is_some_and(|u| u.len() > 320 || u.chars().any(char::is_control))
        {
            bad(
                "username",
                "must be at most 320 characters, without control characters",
            );
        }
        if input
            .password
            .as_ref()
            .is_some_and(|p| p.expose_secret().chars().any(|c| c == '\r' || c == '\n'))
        {
            bad("password", "must not contain line breaks");
        }
        if self.requires_public_host(scope) && is_valid_host(&host) {
            // Checked again right before every connection: DNS can change. A name that does
            // not resolve gets the same answer as a private one: otherwise the difference
            // would tell a tenant which names exist inside our network.
            let port = port.unwrap_or(25);
            let public = match crate::host::resolve(&host, port).await {
                Ok(addresses) => {
                    !addresses.is_empty() && addresses.iter().all(|ip| crate::host::is_public(*ip))
                }
                Err(_) => false,
            };
            if !public {
                bad(
                    "host",
                    "must resolve to public addresses only: tenant SMTP servers cannot be on \
                     loopback, private or link-local addresses",
                );
            }
        }
        let (Some(port), Some(security), true) = (port, security, errors.is_empty()) else {
            return Err(NotifyError::Invalid(errors));
        };
        let new_password = input
            .password
            .map(|p| {
                if p.expose_secret().is_empty() {
                    Ok(None)
                } else {
                    self.cipher
                        .encrypt_secret(&p, &associated_data(scope))
                        .map(Some)
                }
            })
            .transpose()
            .map_err(CoreError::from)?;

        for _ in 0..5 {
            let existing = self.stored(scope).await?;
            let password_sealed = match (&new_password, &existing) {
                (Some(p), _) => p.clone(),
                (None, Some((old, _))) => old.password_sealed.clone(),
                (None, None) => None,
            };
            if username.is_some() && password_sealed.is_none() {
                return Err(NotifyError::invalid(
                    "password",
                    "is required when a username is set",
                ));
            }
            let stored = StoredSmtp {
                host: host.clone(),
                port,
                username: username.clone(),
                password_sealed,
                from_email: from_email.clone(),
                from_name: from_name.clone(),
                security,
            };
            let value = serde_json::to_value(&stored).map_err(|e| CoreError::Corrupt {
                entity: "smtp settings",
                source: e.into(),
            })?;
            let written = match existing {
                None => {
                    let doc = SettingsDoc::new(scope, SMTP_SETTINGS_KEY, value);
                    self.repo.insert(&doc).await.map(|()| doc)
                }
                Some((_, mut doc)) => {
                    doc.value = value;
                    doc.updated_at = imix_core::now();
                    self.repo.update(&doc).await
                }
            };
            match written {
                Ok(doc) => return Ok(Self::view(scope, &stored, &doc)),
                Err(CoreError::VersionConflict { .. } | CoreError::Duplicate { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(CoreError::VersionConflict {
            entity: "settings",
            id: format!("{scope}/{SMTP_SETTINGS_KEY}"),
            expected: 0,
        }
        .into())
    }

    /// The decrypted settings of exactly `scope`, with the document version.
    pub async fn load(
        &self,
        scope: SettingsScope,
    ) -> Result<Option<(SmtpSettings, u64)>, NotifyError> {
        let Some((stored, doc)) = self.stored(scope).await? else {
            return Ok(None);
        };
        let password = stored
            .password_sealed
            .as_deref()
            .map(|sealed| self.cipher.decrypt_secret(sealed, &associated_data(scope)))
            .transpose()
            .map_err(CoreError::from)?;
        Ok(Some((
            SmtpSettings {
                host: stored.host,
                port: stored.port,
                username: stored.username,
                password,
                from_email: stored.from_email,
                from_name: stored.from_name,
                security: stored.security,
            },
            doc.version,
        )))
    }

    /// The settings emails for `tenant` go out with: the tenant's own, else the platform's
    /// (`tenant = None` is platform email). Returns the scope they came from and the version.
    pub async fn effective(
        &self,
        tenant: Option<TenantId>,
    ) -> Result<Option<(SettingsScope, SmtpSettings, u64)>, NotifyError> {
        if let Some(t) = tenant {
            let scope = SettingsScope::Tenant(t);
            if let Some((s, v)) = self.load(scope).await? {
                return Ok(Some((scope, s, v)));
            }
        }
        Ok(self
            .load(SettingsScope::Platform)
            .await?
            .map(|(s, v)| (SettingsScope::Platform, s, v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_syntax() {
        for ok in [
            "a@example.com",
            "first.last+tag@sub.example.org",
            "x@xn--bcher-kva.ch",
        ] {
            assert!(is_valid_email(ok), "{ok}");
        }
        for bad in [
            "",
            "a",
            "a@",
            "@example.com",
            "a@localhost",
            "a b@example.com",
            "a@ex ample.com",
            "a..b@example.com",
            "<a@example.com>",
        ] {
            assert!(!is_valid_email(bad), "{bad}");
        }
    }

    #[test]
    fn security_modes_parse() {
        assert_eq!(
            "STARTTLS".parse::<SmtpSecurity>().ok(),
            Some(SmtpSecurity::Starttls)
        );
        assert_eq!("tls".parse::<SmtpSecurity>().ok(), Some(SmtpSecurity::Tls));
        assert!("ssl3".parse::<SmtpSecurity>().is_err());
        assert_eq!(SmtpSecurity::Tls.default_port(), 465);
        assert!(SmtpSecurity::None.is_insecure());
    }
}

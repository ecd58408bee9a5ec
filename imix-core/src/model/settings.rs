use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

use crate::{id::TenantId, Error, Timestamp};

/// Whose settings a document holds: the platform's, or one tenant's (which override the
/// platform's where the feature allows, e.g. a tenant's own SMTP sender).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum SettingsScope {
    /// Platform-wide settings.
    Platform,
    /// One tenant's settings.
    Tenant(TenantId),
}

impl fmt::Display for SettingsScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SettingsScope::Platform => f.write_str("platform"),
            SettingsScope::Tenant(id) => write!(f, "tenant:{id}"),
        }
    }
}

impl FromStr for SettingsScope {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            None if s == "platform" => Ok(SettingsScope::Platform),
            Some(("tenant", id)) => Ok(SettingsScope::Tenant(id.parse()?)),
            _ => Err(Error::invalid(
                "scope",
                format!("`{s}` is not a settings scope"),
            )),
        }
    }
}

impl From<SettingsScope> for String {
    fn from(scope: SettingsScope) -> Self {
        scope.to_string()
    }
}

impl TryFrom<String> for SettingsScope {
    type Error = Error;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

/// A keyed, versioned settings document (for example key `smtp` in scope `platform`).
/// Its `value` is whatever JSON the owning feature defines; credentials inside it are
/// stored encrypted by that feature, never in clear.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SettingsDoc {
    /// Whose settings these are.
    pub scope: SettingsScope,
    /// Which settings, e.g. `smtp` or `ai`.
    pub key: String,
    /// The settings themselves.
    pub value: serde_json::Value,
    /// Optimistic-concurrency version (1 on creation).
    pub version: u64,
    /// When it was last changed.
    pub updated_at: Timestamp,
}

impl SettingsDoc {
    /// A new document at version 1.
    pub fn new(scope: SettingsScope, key: impl Into<String>, value: serde_json::Value) -> Self {
        Self {
            scope,
            key: key.into(),
            value,
            version: 1,
            updated_at: crate::now(),
        }
    }
}

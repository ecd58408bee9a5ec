//! API keys: long-lived bearer credentials of a tenant, for integrators' programs.

use serde::{Deserialize, Serialize};

use imix_core::{
    id::{TenantId, UserId},
    Timestamp,
};

use super::Role;

imix_core::define_id!(
    /// Identifies an API key.
    ApiKeyId,
    "api_key"
);

/// Every API key starts with this, so it is told apart from an access token (a JWT) at a
/// glance, by people and by secret scanners.
pub const API_KEY_PREFIX: &str = "imix_";

/// How many characters of a key (its [`API_KEY_PREFIX`] included) are kept in clear, so that
/// people can tell their keys apart in a list. 8 random characters of 43 reveal 48 of 256
/// bits: the rest is still far beyond guessing.
pub const API_KEY_HINT_CHARS: usize = 13;

/// An API key as stored: never the key itself, only its SHA-256 ([`ApiKey::key_hash`]).
///
/// A key is 256 random bits, so a fast hash is enough: nobody can guess a preimage, and a
/// slow password hash (argon2) would only cost every request tens of milliseconds while it
/// is looked up by hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    /// The key's id.
    pub id: ApiKeyId,
    /// The tenant it acts in; a key never reaches another tenant.
    pub tenant_id: TenantId,
    /// A name for people ("CRM sync").
    pub name: String,
    /// The role it acts with; its permissions are the role's ([`Role::Custom`]: the list).
    pub role: Role,
    /// Explicit permissions (only meaningful for [`Role::Custom`]).
    #[serde(default)]
    pub permissions: Vec<String>,
    /// Hex SHA-256 of the key; unique.
    pub key_hash: String,
    /// The first [`API_KEY_HINT_CHARS`] characters of the key, for people to recognise it.
    pub hint: String,
    /// Who created it (a user, or another key's id as a user id).
    pub created_by: Option<UserId>,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it was last used to authenticate a request; written at most once a minute.
    pub last_used_at: Option<Timestamp>,
}

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

use imix_core::{
    id::{TenantId, UserId},
    Error, Language, Timestamp,
};

/// The roles of the admin guide's "Creating a New User".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Manages the tenant (or, without a tenant, the whole platform).
    Admin,
    /// Manages the tenant's day-to-day work.
    Manager,
    /// Talks to customers.
    Agent,
    /// Oversees agents.
    Supervisor,
    /// Reads, changes nothing.
    ReadOnly,
    /// Sees usage and billing.
    Billing,
    /// Holds an explicit list of permissions.
    Custom,
}

impl Role {
    /// The role's wire name, e.g. `read_only`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Manager => "manager",
            Role::Agent => "agent",
            Role::Supervisor => "supervisor",
            Role::ReadOnly => "read_only",
            Role::Billing => "billing",
            Role::Custom => "custom",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            Role::Admin,
            Role::Manager,
            Role::Agent,
            Role::Supervisor,
            Role::ReadOnly,
            Role::Billing,
            Role::Custom,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
        .ok_or_else(|| Error::invalid("role", format!("`{s}` is not a known role")))
    }
}

/// Where a user is in their life cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserStatus {
    /// Created; has not set a password yet.
    #[default]
    Invited,
    /// Can sign in.
    Active,
    /// Cannot sign in; existing tokens are rejected.
    Deactivated,
}

/// An argon2id PHC string. Its `Debug` output is redacted so it never reaches a log.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PasswordHash(String);

impl PasswordHash {
    /// Wraps a PHC string produced by a password hasher.
    pub fn new(phc: impl Into<String>) -> Self {
        Self(phc.into())
    }

    /// The PHC string, for verification.
    pub fn as_phc(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash([REDACTED])")
    }
}

/// A person who signs in: every field of the admin guide's "Creating a New User".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// The user's id.
    pub id: UserId,
    /// Email address, unique platform-wide regardless of case. Stored as entered.
    pub email: String,
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
    /// Role.
    pub role: Role,
    /// Explicit permissions (only meaningful for [`Role::Custom`]).
    #[serde(default)]
    pub permissions: Vec<String>,
    /// The tenant the user belongs to; `None` for a platform user (the agency's operator).
    pub tenant_id: Option<TenantId>,
    /// The user's language.
    pub default_language: Language,
    /// Invited, active or deactivated.
    pub status: UserStatus,
    /// argon2id hash of the password, once one is set.
    pub password_hash: Option<PasswordHash>,
    /// The user must change their password before doing anything else.
    pub must_change_password: bool,
    /// Access tokens carry the generation they were issued in and are accepted only while it
    /// is current: a password change or reset increments it, revoking every token issued
    /// before, on every replica at once (the user is read from the store on each request).
    /// Absent in records written before it existed, which count as generation 0.
    #[serde(default)]
    pub token_generation: u64,
    /// Optimistic-concurrency version (1 on creation).
    pub version: u64,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it was last changed.
    pub updated_at: Timestamp,
    /// When the user last signed in.
    pub last_login_at: Option<Timestamp>,
}

impl User {
    /// A new invited user.
    pub fn new(email: impl Into<String>, role: Role, tenant_id: Option<TenantId>) -> Self {
        let now = imix_core::now();
        Self {
            id: UserId::new(),
            email: email.into(),
            first_name: String::new(),
            last_name: String::new(),
            role,
            permissions: Vec::new(),
            tenant_id,
            default_language: Language::En,
            status: UserStatus::Invited,
            password_hash: None,
            must_change_password: false,
            token_generation: 0,
            version: 1,
            created_at: now,
            updated_at: now,
            last_login_at: None,
        }
    }

    /// The email as it is compared for uniqueness: trimmed and lower-cased.
    pub fn normalized_email(&self) -> String {
        normalize_email(&self.email)
    }
}

/// Normalizes an email address for case-insensitive comparison.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

use serde::{Deserialize, Serialize};

use imix_core::{
    id::{TenantId, UserId},
    Timestamp,
};

/// What a single-use token lets its bearer do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenPurpose {
    /// Set the first password of an invited user.
    Invitation,
    /// Reset a forgotten password.
    PasswordReset,
}

impl TokenPurpose {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenPurpose::Invitation => "invitation",
            TokenPurpose::PasswordReset => "password_reset",
        }
    }
}

/// A single-use token sent by email (invitation or password reset). Only the SHA-256 of the
/// token is stored: a copy of the database does not let anyone set passwords.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthToken {
    /// Hex SHA-256 of the token as sent; the primary key.
    pub token_hash: String,
    /// Whose password it sets.
    pub user_id: UserId,
    /// The user's tenant, for tenant-scoped clean-up.
    pub tenant_id: Option<TenantId>,
    /// Invitation or reset.
    pub purpose: TokenPurpose,
    /// When it was issued.
    pub created_at: Timestamp,
    /// After this it is refused.
    pub expires_at: Timestamp,
    /// When it was used; a used token is refused.
    pub used_at: Option<Timestamp>,
}

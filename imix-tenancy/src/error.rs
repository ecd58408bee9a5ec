//! The error type of the tenancy services.

use imix_notify::MailError;

use crate::permission::Permission;

/// Everything the tenancy services can refuse or fail with. The server maps each variant to
/// an HTTP status and error code; this crate knows nothing of HTTP.
#[derive(Debug, thiserror::Error)]
pub enum TenancyError {
    /// No valid access token.
    #[error("a valid access token is required")]
    Unauthenticated,
    /// Wrong email or password (never says which).
    #[error("invalid email or password")]
    InvalidCredentials,
    /// Too many failed sign-ins for this account; try again after `retry_after_secs`.
    #[error("too many failed sign-in attempts; try again in {retry_after_secs} seconds")]
    TooManyAttempts {
        /// Seconds until the account can be tried again.
        retry_after_secs: u64,
    },
    /// The user must change their password before doing anything else.
    #[error("the password must be changed before anything else")]
    PasswordChangeRequired,
    /// The user's tenant is deactivated.
    #[error("the tenant is deactivated")]
    TenantDeactivated,
    /// The user is deactivated.
    #[error("the account is deactivated")]
    AccountDeactivated,
    /// The caller lacks a permission or may not do this.
    #[error("not allowed: {reason}")]
    Forbidden {
        /// The missing permission, when one is the reason.
        permission: Option<Permission>,
        /// Why, for people.
        reason: String,
    },
    /// Not found, or not visible to the caller (another tenant's records look missing).
    #[error("{entity} not found")]
    NotFound {
        /// The kind of record.
        entity: &'static str,
    },
    /// A field value is not acceptable.
    #[error("invalid {field}: {message}")]
    Invalid {
        /// The field.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// Several fields are not acceptable: every problem, each naming its field (a single
    /// bad field is [`TenancyError::Invalid`]).
    #[error("invalid fields: {}", .0.iter().map(|p| format!("{}: {}", p.field, p.message)).collect::<Vec<_>>().join("; "))]
    InvalidFields(Vec<FieldProblem>),
    /// The email is already used by another user.
    #[error("a user with this email already exists")]
    EmailTaken,
    /// Someone else changed the record first.
    #[error("the {entity} was changed by someone else; reload and try again")]
    VersionConflict {
        /// The kind of record.
        entity: &'static str,
    },
    /// A usage limit of the tenant is reached.
    #[error("the tenant's limit of {limit} {what} is reached")]
    LimitReached {
        /// What is limited, e.g. `agents`.
        what: &'static str,
        /// The limit.
        limit: u64,
    },
    /// An upload is larger than allowed.
    #[error("{field} is larger than {max_bytes} bytes")]
    TooLarge {
        /// The field, e.g. `logo`.
        field: &'static str,
        /// The limit.
        max_bytes: u64,
    },
    /// An invitation or reset token is unknown, used or expired.
    #[error("the link is invalid, expired or already used")]
    TokenInvalid,
    /// A usage limit refused the action, or the quota backend failed.
    #[error(transparent)]
    Quota(#[from] crate::quota::QuotaError),
    /// An email could not be sent.
    #[error("email could not be sent: {0}")]
    Mail(#[from] MailError),
    /// The store failed.
    #[error("storage failure: {0}")]
    Store(imix_core::Error),
    /// Anything else unexpected: a library failed where it should not (password hashing,
    /// token signing, a worker task).
    #[error("internal error: {context}: {source}")]
    Internal {
        /// What was being done, e.g. `"cannot sign a token"`.
        context: &'static str,
        /// The library's own error.
        #[source]
        source: imix_core::BoxError,
    },
}

/// One invalid field of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    /// The field, as named in the API (`first_name`, `limits.max_agents`, …).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl TenancyError {
    /// A [`TenancyError::Invalid`].
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        TenancyError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    /// A [`TenancyError::Internal`]: `context` says what was being done.
    pub fn internal(context: &'static str, source: impl Into<imix_core::BoxError>) -> Self {
        TenancyError::Internal {
            context,
            source: source.into(),
        }
    }

    /// A [`TenancyError::Forbidden`] for a missing permission.
    pub fn missing(permission: Permission) -> Self {
        TenancyError::Forbidden {
            permission: Some(permission),
            reason: format!("requires the `{permission}` permission"),
        }
    }

    /// A [`TenancyError::Forbidden`] with a reason.
    pub fn forbidden(reason: impl Into<String>) -> Self {
        TenancyError::Forbidden {
            permission: None,
            reason: reason.into(),
        }
    }
}

impl From<imix_core::access::AccessDenied> for TenancyError {
    fn from(e: imix_core::access::AccessDenied) -> Self {
        use imix_core::access::AccessDenied as D;
        match e {
            D::Forbidden { permission } => TenancyError::missing(permission),
            D::NotFound { entity } => TenancyError::NotFound { entity },
        }
    }
}

impl From<imix_core::Error> for TenancyError {
    fn from(e: imix_core::Error) -> Self {
        use imix_core::Error as E;
        match e {
            E::NotFound { entity, .. } => TenancyError::NotFound { entity },
            E::Duplicate { field: "email", .. } => TenancyError::EmailTaken,
            E::VersionConflict { entity, .. } => TenancyError::VersionConflict { entity },
            E::Invalid { field, message } => TenancyError::Invalid { field, message },
            other => TenancyError::Store(other),
        }
    }
}

//! The error type of `imix-notify`.

use std::fmt;

use crate::MailError;

/// One invalid field of a request, named as in the API (`host`, `port`, `from_email`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field, e.g. `port`.
    pub field: &'static str,
    /// What is wrong with it, for a human.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Everything the notification services can fail with. Servers map `Invalid` to 422,
/// `Store` by its own variants, `Mail` to a classified error body.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// One or more fields are invalid; every problem is listed, each naming its field.
    #[error("invalid settings: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldError>),
    /// The caller lacks the permission, or named another tenant.
    #[error(transparent)]
    Access(#[from] imix_core::access::AccessDenied),
    /// The tenant is deactivated: nothing is sent on its behalf.
    #[error("the tenant is deactivated: nothing is sent on its behalf until it is activated")]
    TenantDeactivated,
    /// The store failed or refused (not found, version conflict, backend down).
    #[error(transparent)]
    Store(#[from] imix_core::Error),
    /// Sending failed, classified.
    #[error(transparent)]
    Mail(#[from] MailError),
    /// A template could not be rendered (a bug in the shipped templates, caught by tests).
    #[error("cannot render the {template} email: {source}")]
    Template {
        /// Which template.
        template: &'static str,
        /// The template engine's error.
        #[source]
        source: minijinja::Error,
    },
    /// Too many requests of this kind (test emails of one tenant); try again after
    /// `retry_after_secs`.
    #[error("too many test emails; try again in {retry_after_secs} seconds")]
    Throttled {
        /// Seconds until the window ends.
        retry_after_secs: u64,
    },
    /// A localized string is missing or has a syntax error (also a bug caught by tests).
    #[error("localization error: {message}")]
    Localization {
        /// What is wrong, naming the file or message.
        message: String,
        /// The Fluent parser's, resolver's or language tag's error, when there is one (the
        /// first, when Fluent reported several: all of them are in `message`).
        #[source]
        source: Option<imix_core::BoxError>,
    },
}

impl NotifyError {
    /// A [`NotifyError::Localization`] without an underlying error.
    pub fn localization(message: impl Into<String>) -> Self {
        NotifyError::Localization {
            message: message.into(),
            source: None,
        }
    }

    /// A [`NotifyError::Localization`] caused by `source`.
    pub fn localization_caused_by(
        message: impl Into<String>,
        source: impl Into<imix_core::BoxError>,
    ) -> Self {
        NotifyError::Localization {
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// A single-field [`NotifyError::Invalid`].
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        NotifyError::Invalid(vec![FieldError {
            field,
            message: message.into(),
        }])
    }
}

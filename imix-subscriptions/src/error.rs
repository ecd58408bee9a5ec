//! The one error type of subscriptions; the server maps it to HTTP.

use imix_core::access::AccessDenied;

/// Why a subscription operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SubscriptionError {
    /// The caller may not do this, or the record is not theirs to see.
    #[error(transparent)]
    Access(#[from] AccessDenied),
    /// A field value is not acceptable.
    #[error("invalid {field}: {message}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Why, for people.
        message: String,
    },
    /// A storage failure (not found included).
    #[error(transparent)]
    Store(#[from] imix_core::Error),
    /// The endpoint's secret could not be sealed or opened.
    #[error("the endpoint secret could not be {action}")]
    Crypto {
        /// `sealed` or `opened`.
        action: &'static str,
    },
}

impl SubscriptionError {
    /// An invalid field.
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            message: message.into(),
        }
    }
}

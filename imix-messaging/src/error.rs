//! The errors of messaging.

/// What can go wrong in messaging.
#[derive(Debug, thiserror::Error)]
pub enum MessagingError {
    /// No entry of a webhook delivery verified with its account's app secret: nothing was
    /// stored.
    #[error("no entry of the delivery is signed by the app secret of its number's account")]
    Unverified,
    /// The caller lacks the permission, or named another tenant.
    #[error(transparent)]
    Denied(#[from] imix_core::access::AccessDenied),
    /// Storage failed, or a record was not found.
    #[error(transparent)]
    Store(#[from] imix_core::Error),
    /// An account's secret could not be opened.
    #[error("cannot open the app secret of account {account}")]
    Secret {
        /// The account.
        account: imix_core::id::WhatsAppAccountId,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A stored delivery is not the JSON Meta sends.
    #[error("delivery {delivery} is not a webhook payload: {source}")]
    Malformed {
        /// The delivery.
        delivery: crate::DeliveryId,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// The tenant has as many records of a counted kind as its limit allows (Max Contacts,
    /// Max Contact Groups): nothing was created.
    #[error("the tenant's limit of {limit} {limit_name} is reached ({current} in use)")]
    LimitReached {
        /// The limit's name: `contacts` or `contact_groups`.
        limit_name: &'static str,
        /// The tenant's limit.
        limit: u64,
        /// How many it has.
        current: u64,
    },
    /// The usage counters failed.
    #[error("usage counters failed: {0}")]
    Counter(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Only a note's author may edit it.
    #[error("only the author of a note may edit it")]
    NotAuthor,
}

/// Messaging's result type.
pub type Result<T, E = MessagingError> = std::result::Result<T, E>;

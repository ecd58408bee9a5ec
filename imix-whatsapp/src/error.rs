//! The crate's error type and Meta's Graph API error object.
//!
//! Every failure of a Graph API call becomes an [`Error`]; [`Error::class`] sorts it into
//! [`ErrorClass::Retryable`], [`ErrorClass::Authentication`] or [`ErrorClass::Permanent`],
//! which is what the outbound dispatcher acts on. Meta's original error object is kept
//! whole in [`ApiError::error`].

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A boxed error from a lower layer (HTTP client, I/O).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The body of every Graph API error response: `{"error": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GraphErrorResponse {
    /// The error object.
    pub error: GraphError,
}

/// Meta's error object (`GraphAPIError` in the Cloud API specification).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GraphError {
    /// Human-readable description, e.g. `"(#131047) Re-engagement message"`.
    pub message: String,
    /// Error category, e.g. `"OAuthException"`.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// Numeric error code, e.g. `190`, `130429`, `132001`.
    pub code: i64,
    /// More specific code, when Meta gives one (e.g. `463`: token expired).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_subcode: Option<i64>,
    /// WhatsApp-specific details (`{"messaging_product": "whatsapp", "details": "..."}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_data: Option<GraphErrorData>,
    /// Whether Meta says the error is temporary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_transient: Option<bool>,
    /// User-facing title, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_user_title: Option<String>,
    /// User-facing message, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_user_msg: Option<String>,
    /// Trace id to quote to Meta's support.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fbtrace_id: Option<String>,
}

/// The `error_data` member of a WhatsApp error.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct GraphErrorData {
    /// Always `"whatsapp"` when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messaging_product: Option<String>,
    /// A longer explanation of the error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
}

/// How a caller should react to an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Try again later (throughput and rate limits, 5xx, timeouts, transport failures),
    /// after [`Error::retry_after`] when it is known.
    Retryable,
    /// The access token is invalid, expired or lacks a permission: retrying will not help
    /// until the account's credentials are fixed.
    Authentication,
    /// The request itself is wrong or cannot be delivered (outside the 24-hour window,
    /// undeliverable, template errors, invalid parameters): do not retry it.
    Permanent,
}

/// A Graph API error response: HTTP status, `Retry-After` and Meta's error object.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// The HTTP status of the response.
    pub status: u16,
    /// The `Retry-After` header, when the response carried one (seconds).
    pub retry_after: Option<Duration>,
    /// Meta's error object, unchanged.
    pub error: GraphError,
}

/// Error codes Meta documents as rate or throughput limits.
const RATE_LIMIT_CODES: &[i64] = &[
    4,      // application request limit reached
    80007,  // WhatsApp Business Account rate limit
    130429, // Cloud API throughput reached
    131056, // too many messages to the same recipient (pair rate limit)
    133016, // registration / deregistration rate limit
];

/// Error codes Meta documents as temporary service errors.
const TRANSIENT_CODES: &[i64] = &[
    1,      // API unknown
    2,      // API service
    131000, // something went wrong
    131016, // service unavailable
    133004, // server temporarily unavailable
];

impl ApiError {
    /// Sorts this error: see [`ErrorClass`].
    pub fn class(&self) -> ErrorClass {
        let code = self.error.code;
        if matches!(code, 190 | 102 | 104 | 10) || (200..=299).contains(&code) {
            return ErrorClass::Authentication;
        }
        if RATE_LIMIT_CODES.contains(&code)
            || TRANSIENT_CODES.contains(&code)
            || self.status >= 500
            || self.status == 429
            || self.error.is_transient == Some(true)
        {
            return ErrorClass::Retryable;
        }
        ErrorClass::Permanent
    }
}

/// Every error of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Graph API answered with an error object.
    #[error("Graph API error {} ({}): {}", .0.error.code, .0.error.kind, .0.error.message)]
    Api(Box<ApiError>),
    /// The Graph API answered with an error status but no error object.
    #[error("Graph API answered HTTP {status} without an error object")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The `Retry-After` header, when present.
        retry_after: Option<Duration>,
    },
    /// The Graph API answered `{"success": false}`.
    #[error("Graph API answered success: false to {operation}")]
    NotSuccessful {
        /// The operation, e.g. `register`.
        operation: &'static str,
    },
    /// The request did not complete within the configured timeout.
    #[error("Graph API request timed out")]
    Timeout,
    /// The request could not be sent or its response not read.
    #[error("could not reach the Graph API")]
    Transport(#[source] BoxError),
    /// The response body did not have the documented shape.
    #[error("unexpected Graph API response body")]
    Decode(#[source] serde_json::Error),
    /// The answer was larger than the client reads (see `GraphApiConfig::max_json_bytes`
    /// and `max_media_bytes`); reading stopped at the cap.
    #[error("Graph API answer larger than {limit} bytes")]
    TooLarge {
        /// The cap, in bytes.
        limit: u64,
    },
    /// The client was configured with an unusable value.
    #[error("invalid WhatsApp client configuration: {field}")]
    Config {
        /// The offending setting.
        field: &'static str,
        /// Why it was rejected.
        #[source]
        source: BoxError,
    },
    /// An argument cannot be sent as given (e.g. an id that is not a single path segment).
    #[error("invalid argument: {field}")]
    Invalid {
        /// The offending argument.
        field: &'static str,
    },
    /// A webhook's `X-Hub-Signature-256` header is missing, malformed or does not match.
    #[error("invalid webhook signature")]
    InvalidSignature,
    /// A simulator could not start or act (simulator feature only).
    #[error("Graph API simulator: {0}")]
    Simulator(#[source] BoxError),
}

impl Error {
    /// Sorts the error: see [`ErrorClass`]. Timeouts, transport failures and 5xx/429
    /// statuses are retryable; an invalid signature or configuration is permanent.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Api(e) => e.class(),
            Error::Status { status, .. } if *status >= 500 || *status == 429 => {
                ErrorClass::Retryable
            }
            Error::Status { status, .. } if *status == 401 => ErrorClass::Authentication,
            Error::Timeout | Error::Transport(_) => ErrorClass::Retryable,
            Error::Status { .. }
            | Error::Decode(_)
            | Error::TooLarge { .. }
            | Error::NotSuccessful { .. }
            | Error::Config { .. }
            | Error::Invalid { .. }
            | Error::InvalidSignature
            | Error::Simulator(_) => ErrorClass::Permanent,
        }
    }

    /// Whether the request may succeed if sent again later.
    pub fn is_retryable(&self) -> bool {
        self.class() == ErrorClass::Retryable
    }

    /// How long to wait before retrying, when the response said (`Retry-After`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Api(e) => e.retry_after,
            Error::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Whether Meta may have received the request although no answer came: a timeout, or
    /// a connection that failed after it was made (the request may have been written). A
    /// send that failed so has an unknown outcome; one refused while connecting did not
    /// arrive.
    pub fn request_may_have_arrived(&self) -> bool {
        match self {
            Error::Timeout => true,
            Error::Transport(source) => {
                #[cfg(feature = "client")]
                if let Some(e) = source.downcast_ref::<reqwest::Error>() {
                    return !e.is_connect();
                }
                let _ = source;
                true
            }
            _ => false,
        }
    }

    /// Meta's error object, when the Graph API returned one.
    pub fn graph_error(&self) -> Option<&GraphError> {
        match self {
            Error::Api(e) => Some(&e.error),
            _ => None,
        }
    }

    /// Meta's error code, when the Graph API returned one.
    pub fn code(&self) -> Option<i64> {
        self.graph_error().map(|e| e.code)
    }
}

/// Errors of the account and template services ([`crate::accounts`], [`crate::templates`]).
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The caller lacks the operation's permission, or named another tenant.
    #[error(transparent)]
    Access(#[from] imix_core::access::AccessDenied),
    /// The store failed, or the record is missing / outside the caller's scope / duplicate.
    #[error(transparent)]
    Store(#[from] imix_core::Error),
    /// A value is not acceptable; `field` names it.
    #[error("invalid {field}: {message}")]
    Invalid {
        /// The offending field, e.g. `phone_number_id`.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// Meta refused the account's access token (error 190: expired, revoked or malformed;
    /// or a permission error). `message` is Meta's own.
    #[error("Meta rejected the access token: {message}")]
    TokenInvalid {
        /// Meta's message, e.g. "Error validating access token: Session has expired…".
        message: String,
        /// Meta's error code (190 for an invalid or expired token).
        code: i64,
        /// Meta's subcode (463: expired), when given.
        subcode: Option<i64>,
    },
    /// The Graph API answered with an error (other than the token's), or could not be
    /// reached. [`Error::class`] tells a request Meta refused from an outage.
    #[error(transparent)]
    Graph(Error),
    /// The tenant has as many templates as its Max Templates allows.
    #[error("the tenant's limit of {limit} templates is reached ({current} in use)")]
    LimitReached {
        /// The tenant's limit.
        limit: u64,
        /// How many it has.
        current: u64,
    },
    /// The usage counters failed.
    #[error("template counters failed: {0}")]
    Quota(#[source] BoxError),
    /// A stored credential could not be opened (wrong or missing encryption key).
    #[error("cannot open a stored credential: {0}")]
    Crypto(#[from] imix_core::crypto::CryptoError),
}

impl From<Error> for ServiceError {
    /// Meta's authentication errors (190 and the permission codes) become
    /// [`ServiceError::TokenInvalid`]; every other error stays [`ServiceError::Graph`].
    fn from(err: Error) -> Self {
        match &err {
            Error::Api(api) if api.class() == ErrorClass::Authentication => {
                ServiceError::TokenInvalid {
                    message: api.error.message.clone(),
                    code: api.error.code,
                    subcode: api.error.error_subcode,
                }
            }
            _ => ServiceError::Graph(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, code: i64) -> Error {
        Error::Api(Box::new(ApiError {
            status,
            retry_after: None,
            error: GraphError {
                message: "m".into(),
                kind: "OAuthException".into(),
                code,
                error_subcode: None,
                error_data: None,
                is_transient: None,
                error_user_title: None,
                error_user_msg: None,
                fbtrace_id: None,
            },
        }))
    }

    #[test]
    fn services_see_token_refusals_as_token_invalid_with_metas_message() {
        match ServiceError::from(api(401, 190)) {
            ServiceError::TokenInvalid { message, code, .. } => {
                assert_eq!((message.as_str(), code), ("m", 190));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            ServiceError::from(api(400, 136025)),
            ServiceError::Graph(e) if e.code() == Some(136025)
        ));
        assert!(matches!(
            ServiceError::from(Error::Timeout),
            ServiceError::Graph(Error::Timeout)
        ));
    }

    #[test]
    fn classifies_documented_codes() {
        for code in [130429, 131056, 80007, 4, 131000, 133004] {
            assert_eq!(api(400, code).class(), ErrorClass::Retryable, "{code}");
        }
        assert_eq!(api(500, 100).class(), ErrorClass::Retryable);
        assert_eq!(api(401, 190).class(), ErrorClass::Authentication);
        for code in [131047, 131026, 132000, 132001, 132015, 100] {
            assert_eq!(api(400, code).class(), ErrorClass::Permanent, "{code}");
        }
        assert_eq!(Error::Timeout.class(), ErrorClass::Retryable);
        assert_eq!(Error::InvalidSignature.class(), ErrorClass::Permanent);
        assert_eq!(
            Error::Status {
                status: 503,
                retry_after: Some(Duration::from_secs(2))
            }
            .retry_after(),
            Some(Duration::from_secs(2))
        );
    }
}

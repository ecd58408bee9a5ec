//! The one error type of `imix-ai`.
//!
//! Provider failures are sorted into classes from the HTTP status and the documented error
//! `code`/`type` of the OpenAI-style error body (`{"error":{"message","type","param","code"}}`);
//! message text is only consulted where DeepSeek documents no code (its 400 "maximum context
//! length" and "Model Not Exist" answers). Every class carries a message an operator can act
//! on, a stable [`AiError::code`] for the API, and [`AiError::is_retryable`] for the
//! fallback chain. HTTP statuses for our own API are chosen by the server, not here.

use std::time::Duration;

use crate::chat::ProviderKind;

/// A boxed underlying error (the HTTP client's, a JSON decoder's, an I/O error).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in the assistant: a provider's classified failure, an
/// invalid setting, or the store underneath.
#[derive(Debug, thiserror::Error)]
pub enum AiError {
    /// The provider refused the API key (HTTP 401 or 403).
    #[error("{provider} refused the API key (HTTP {status}): check the key in Settings > AI Assistant ({message})")]
    InvalidKey {
        /// The provider that answered.
        provider: ProviderKind,
        /// 401 or 403.
        status: u16,
        /// The provider's own message, with our key masked if it was echoed.
        message: String,
    },
    /// The configured model does not exist or the key has no access to it.
    #[error("{provider} does not know the model {model:?} or the key has no access to it: check the model name ({message})")]
    ModelNotFound {
        /// The provider that answered.
        provider: ProviderKind,
        /// The model that was asked for.
        model: String,
        /// The provider's own message.
        message: String,
    },
    /// Too many requests for now (HTTP 429): try again after `retry_after` when given.
    #[error("{provider} is rate limiting requests{}: try again later ({message})", retry_after.map(|d| format!(" for {}s", d.as_secs_f32().ceil())).unwrap_or_default())]
    RateLimited {
        /// The provider that answered.
        provider: ProviderKind,
        /// The provider's `Retry-After` (seconds), when it sent one.
        retry_after: Option<Duration>,
        /// The provider's own message.
        message: String,
    },
    /// The account has no credit left: OpenAI's 429 `insufficient_quota`, DeepSeek's 402
    /// "Insufficient Balance". Waiting does not help; the operator must top up.
    #[error("{provider} account is out of quota or balance: add credit or check the plan with the provider ({message})")]
    QuotaExceeded {
        /// The provider that answered.
        provider: ProviderKind,
        /// The provider's own message.
        message: String,
    },
    /// The prompt plus the completion budget exceed the model's context window.
    #[error("the conversation is too long for the {provider} model's context window: fewer messages or a smaller max tokens are needed ({message})")]
    ContextTooLong {
        /// The provider that answered.
        provider: ProviderKind,
        /// The provider's own message (it usually names the limit).
        message: String,
    },
    /// The provider refused the request for another reason (a 400 or 422 that is none of
    /// the above, e.g. an unsupported parameter). Not retryable.
    #[error("{provider} refused the request (HTTP {status}): {message}")]
    Rejected {
        /// The provider that answered.
        provider: ProviderKind,
        /// The HTTP status.
        status: u16,
        /// The provider's own message.
        message: String,
    },
    /// The provider failed on its side (HTTP 5xx, e.g. DeepSeek's 503 "Server Overloaded"),
    /// or reported an error in the middle of a stream.
    #[error("{provider} had a server error (HTTP {status}): try again later ({message})")]
    Server {
        /// The provider that answered.
        provider: ProviderKind,
        /// The HTTP status (500 when an error arrived inside a stream).
        status: u16,
        /// The provider's own message.
        message: String,
    },
    /// No answer within the configured timeout.
    #[error("{provider} did not answer within {}s: try again, or raise the timeout", after.as_secs_f32())]
    Timeout {
        /// The provider asked.
        provider: ProviderKind,
        /// The timeout that expired.
        after: Duration,
    },
    /// The provider could not be reached, or the connection broke (a stream cut before
    /// `data: [DONE]` too).
    #[error("cannot reach {provider}: {source}: check the API URL and the network")]
    Network {
        /// The provider asked.
        provider: ProviderKind,
        /// The transport's error.
        #[source]
        source: BoxError,
    },
    /// The provider answered something that is not the documented response shape.
    #[error("{provider} sent an answer that cannot be read ({what})")]
    BadResponse {
        /// The provider that answered.
        provider: ProviderKind,
        /// What could not be read, e.g. `response JSON`.
        what: String,
        /// The decoding error, when there is one.
        #[source]
        source: Option<BoxError>,
    },
    /// No provider is configured (an empty fallback chain, no API key).
    #[error("no AI provider is configured: {message}")]
    NotConfigured {
        /// What is missing.
        message: String,
    },
    /// A setting is not acceptable; `field` names it.
    #[error("invalid {field}: {message}")]
    Invalid {
        /// The offending field, e.g. `temperature` or `base_url`.
        field: String,
        /// What is wrong with it, for a human.
        message: String,
    },
    /// The store underneath failed (settings, usage counters).
    #[error(transparent)]
    Store(#[from] imix_core::Error),
}

impl AiError {
    /// Whether the same provider may succeed if asked again after a pause: rate limits,
    /// server errors, timeouts and broken connections. A refused key, an unknown model, an
    /// exhausted quota, a too-long prompt or an unreadable answer will not change by waiting.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            AiError::RateLimited { .. }
                | AiError::Server { .. }
                | AiError::Timeout { .. }
                | AiError::Network { .. }
        )
    }

    /// Whether the error came from (or on the way to) a provider, so the next provider of a
    /// fallback order may do better. Settings and store errors are not.
    pub fn is_provider_error(&self) -> bool {
        self.provider().is_some()
    }

    /// The provider the error is about, if any.
    pub fn provider(&self) -> Option<ProviderKind> {
        match self {
            AiError::InvalidKey { provider, .. }
            | AiError::ModelNotFound { provider, .. }
            | AiError::RateLimited { provider, .. }
            | AiError::QuotaExceeded { provider, .. }
            | AiError::ContextTooLong { provider, .. }
            | AiError::Rejected { provider, .. }
            | AiError::Server { provider, .. }
            | AiError::Timeout { provider, .. }
            | AiError::Network { provider, .. }
            | AiError::BadResponse { provider, .. } => Some(*provider),
            AiError::NotConfigured { .. } | AiError::Invalid { .. } | AiError::Store(_) => None,
        }
    }

    /// The provider's `Retry-After`, for a rate limit that sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            AiError::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// A stable snake_case code for the API's error body, e.g. `ai_invalid_key`.
    pub fn code(&self) -> &'static str {
        match self {
            AiError::InvalidKey { .. } => "ai_invalid_key",
            AiError::ModelNotFound { .. } => "ai_model_not_found",
            AiError::RateLimited { .. } => "ai_rate_limited",
            AiError::QuotaExceeded { .. } => "ai_quota_exceeded",
            AiError::ContextTooLong { .. } => "ai_context_too_long",
            AiError::Rejected { .. } => "ai_request_rejected",
            AiError::Server { .. } => "ai_provider_error",
            AiError::Timeout { .. } => "ai_timeout",
            AiError::Network { .. } => "ai_network_error",
            AiError::BadResponse { .. } => "ai_bad_response",
            AiError::NotConfigured { .. } => "ai_not_configured",
            AiError::Invalid { .. } => "invalid_field",
            AiError::Store(_) => "internal_error",
        }
    }
}

/// The parts of an OpenAI-style error body we read.
#[derive(Debug, Default)]
pub(crate) struct ErrorBody {
    pub message: String,
    pub kind: Option<String>,
    pub code: Option<String>,
}

impl ErrorBody {
    /// Reads `{"error":{"message","type","code"}}`. Anything else is described by its size
    /// only, never quoted: an API URL can be pointed at a service that is not a provider
    /// (a typo, or on purpose at an internal one), and its answers must not be relayed.
    pub(crate) fn parse(body: &str) -> ErrorBody {
        let value: Option<serde_json::Value> = serde_json::from_str(body).ok();
        let error = value.as_ref().and_then(|v| v.get("error"));
        let text = |v: Option<&serde_json::Value>| match v {
            Some(serde_json::Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        match error {
            Some(serde_json::Value::String(s)) => ErrorBody {
                message: s.clone(),
                ..ErrorBody::default()
            },
            Some(e) => ErrorBody {
                message: text(e.get("message")).unwrap_or_default(),
                kind: text(e.get("type")),
                code: text(e.get("code")),
            },
            None => ErrorBody {
                message: format!(
                    "an answer of {} bytes that is not an OpenAI-style error; is the API URL right?",
                    body.len()
                ),
                ..ErrorBody::default()
            },
        }
    }

    fn has(&self, token: &str) -> bool {
        self.code.as_deref() == Some(token) || self.kind.as_deref() == Some(token)
    }

    fn says(&self, phrase: &str) -> bool {
        self.message.to_ascii_lowercase().contains(phrase)
    }
}

/// Sorts a provider's non-2xx answer into a class.
pub(crate) fn classify(
    provider: ProviderKind,
    model: &str,
    status: u16,
    retry_after: Option<Duration>,
    body: ErrorBody,
) -> AiError {
    let message = if body.message.is_empty() {
        format!("HTTP {status}")
    } else {
        body.message.clone()
    };
    let model_missing =
        body.has("model_not_found") || body.says("model not exist") || body.says("does not exist");
    let context = body.has("context_length_exceeded")
        || body.says("maximum context length")
        || body.says("context length");
    match status {
        401 | 403 => AiError::InvalidKey {
            provider,
            status,
            message,
        },
        402 => AiError::QuotaExceeded { provider, message },
        404 => AiError::ModelNotFound {
            provider,
            model: model.to_owned(),
            message,
        },
        429 if body.has("insufficient_quota") => AiError::QuotaExceeded { provider, message },
        429 => AiError::RateLimited {
            provider,
            retry_after,
            message,
        },
        _ if body.has("model_not_found") => AiError::ModelNotFound {
            provider,
            model: model.to_owned(),
            message,
        },
        400 | 413 | 422 if context => AiError::ContextTooLong { provider, message },
        400 | 422 if model_missing => AiError::ModelNotFound {
            provider,
            model: model.to_owned(),
            message,
        },
        500..=599 => AiError::Server {
            provider,
            status,
            message,
        },
        _ => AiError::Rejected {
            provider,
            status,
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(status: u16, body: &str) -> AiError {
        classify(
            ProviderKind::Deepseek,
            "deepseek-reasoner",
            status,
            None,
            ErrorBody::parse(body),
        )
    }

    #[test]
    fn documented_bodies_are_classified() {
        assert_eq!(class(401, "{}").code(), "ai_invalid_key");
        assert_eq!(
            class(402, r#"{"error":{"message":"Insufficient Balance"}}"#).code(),
            "ai_quota_exceeded"
        );
        assert_eq!(
            class(429, r#"{"error":{"message":"x","type":"insufficient_quota","code":"insufficient_quota"}}"#).code(),
            "ai_quota_exceeded"
        );
        assert_eq!(class(429, "").code(), "ai_rate_limited");
        assert_eq!(
            class(400, r#"{"error":{"message":"This model's maximum context length is 65536 tokens. However, you requested 70000 tokens"}}"#).code(),
            "ai_context_too_long"
        );
        assert_eq!(
            class(
                400,
                r#"{"error":{"message":"Model Not Exist","code":"invalid_request_error"}}"#
            )
            .code(),
            "ai_model_not_found"
        );
        assert_eq!(
            class(400, r#"{"error":{"message":"Invalid Format"}}"#).code(),
            "ai_request_rejected"
        );
        assert_eq!(class(503, "<html>busy</html>").code(), "ai_provider_error");
        assert!(class(503, "").is_retryable());
        assert!(!class(401, "").is_retryable());
    }

    #[test]
    fn a_body_that_is_not_an_error_object_is_not_quoted() {
        let e = class(500, "<html>internal admin page: secret=42</html>");
        assert!(!e.to_string().contains("secret"), "{e}");
        assert!(e.to_string().contains("43 bytes"), "{e}");
    }
}

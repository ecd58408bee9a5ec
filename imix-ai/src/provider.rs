//! The provider port: one trait every AI backend implements, the configuration of the two
//! built-in adapters, and [`build_provider`] that picks the adapter for a configuration.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::SecretString;

use crate::chat::{ChatRequest, ChatResponse, ProviderKind, StreamEvent};
use crate::error::AiError;

/// A streamed answer: pieces of reasoning and content, then one [`StreamEvent::Done`]; a
/// failure part-way is an `Err` item (after which the stream ends).
pub type ChatStream = futures::stream::BoxStream<'static, Result<StreamEvent, AiError>>;

/// What a connection test found: the provider answered a one-line prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionReport {
    /// The provider asked.
    pub provider: ProviderKind,
    /// The model that answered, as the provider names it.
    pub model: String,
    /// Time from sending the request to the whole answer.
    pub latency: Duration,
    /// Tokens the round trip used (a tenant's test is counted like its other calls).
    pub usage: crate::chat::TokenUsage,
}

/// The prompt of a connection test.
pub const CONNECTION_TEST_PROMPT: &str = "Connection test: answer with the single word OK.";

/// The completion bound of a connection test.
pub const CONNECTION_TEST_MAX_TOKENS: u32 = 16;

/// The most tokens a connection test is expected to use: its prompt's estimate, the chat
/// framing and its completion bound (what a tenant's test reserves against its limit).
pub fn connection_test_budget() -> u64 {
    u64::from(crate::prompt::estimate_tokens(CONNECTION_TEST_PROMPT))
        + 8
        + u64::from(CONNECTION_TEST_MAX_TOKENS)
}

/// An AI backend that answers chats.
///
/// Adapters send their own configured model, temperature and max tokens; a request's
/// non-empty `model` and its `temperature` override them for that call, and the smaller of
/// the request's and the configuration's `max_tokens` is sent.
#[async_trait]
pub trait AiProvider: Send + Sync {
    /// Which provider this is.
    fn kind(&self) -> ProviderKind;

    /// The configured model.
    fn model(&self) -> &str;

    /// Asks for a whole answer.
    async fn complete(&self, req: &ChatRequest) -> Result<ChatResponse, AiError>;

    /// Asks for a streamed answer. Errors before the first byte (a refused key, a rate
    /// limit) are returned here; later ones arrive as `Err` items of the stream.
    async fn stream(&self, req: &ChatRequest) -> Result<ChatStream, AiError>;

    /// A tiny round trip (a one-line prompt, a few tokens) that proves the URL, key and
    /// model work, and how long an answer takes.
    async fn test_connection(&self) -> Result<ConnectionReport, AiError>;
}

/// How to reach one provider.
///
/// `Debug` shows everything but the key.
#[derive(Clone)]
pub struct ProviderConfig {
    /// Which provider (and so which adapter quirks apply).
    pub kind: ProviderKind,
    /// The API key, sent as `Authorization: Bearer …` and never logged.
    pub api_key: SecretString,
    /// The API's base URL, without `/chat/completions`, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    /// Model name, e.g. `gpt-4o-mini` or `deepseek-reasoner`.
    pub model: String,
    /// Sampling temperature 0.0–1.0; never sent to reasoning models, which ignore or refuse it.
    pub temperature: Option<f32>,
    /// Upper bound of completion tokens per call.
    pub max_tokens: Option<u32>,
    /// How long to wait for a whole answer (for a stream: for the first byte, then between
    /// two chunks).
    pub timeout: Duration,
}

impl ProviderConfig {
    /// OpenAI's API.
    pub const CHATGPT_BASE_URL: &'static str = "https://api.openai.com/v1";
    /// The DeepSeek API URL the admin guide gives.
    pub const DEEPSEEK_BASE_URL: &'static str = "https://deep.ip.mr/api/v1";
    /// The ChatGPT model used when none is configured.
    pub const CHATGPT_MODEL: &'static str = "gpt-4o-mini";
    /// The DeepSeek model used when none is configured (R1).
    pub const DEEPSEEK_MODEL: &'static str = "deepseek-reasoner";
    /// The timeout used when none is configured: reasoning models think for a while.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

    /// A configuration with the provider's default URL and model, no temperature or token
    /// bound, and [`Self::DEFAULT_TIMEOUT`].
    pub fn new(kind: ProviderKind, api_key: SecretString) -> Self {
        ProviderConfig {
            kind,
            api_key,
            base_url: Self::default_base_url(kind).to_owned(),
            model: Self::default_model(kind).to_owned(),
            temperature: None,
            max_tokens: None,
            timeout: Self::DEFAULT_TIMEOUT,
        }
    }

    /// The provider's default base URL.
    pub fn default_base_url(kind: ProviderKind) -> &'static str {
        match kind {
            ProviderKind::Chatgpt => Self::CHATGPT_BASE_URL,
            ProviderKind::Deepseek => Self::DEEPSEEK_BASE_URL,
        }
    }

    /// The provider's default model.
    pub fn default_model(kind: ProviderKind) -> &'static str {
        match kind {
            ProviderKind::Chatgpt => Self::CHATGPT_MODEL,
            ProviderKind::Deepseek => Self::DEEPSEEK_MODEL,
        }
    }

    /// Sets the base URL.
    pub fn with_base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = base_url.into();
        self
    }

    /// Sets the model.
    pub fn with_model(mut self, model: impl Into<String>) -> Self {
        self.model = model.into();
        self
    }

    /// Sets the temperature.
    pub fn with_temperature(mut self, temperature: Option<f32>) -> Self {
        self.temperature = temperature;
        self
    }

    /// Sets the completion token bound.
    pub fn with_max_tokens(mut self, max_tokens: Option<u32>) -> Self {
        self.max_tokens = max_tokens;
        self
    }

    /// Sets the timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderConfig")
            .field("kind", &self.kind)
            .field("api_key", &"[redacted]")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("temperature", &self.temperature)
            .field("max_tokens", &self.max_tokens)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Checks a provider base URL: absolute `http` or `https` with a host, no query, fragment
/// or credentials. Answers it without a trailing `/`. For settings validation.
pub fn validate_base_url(base_url: &str) -> Result<String, AiError> {
    let invalid = |message: &str| AiError::Invalid {
        field: "base_url".to_owned(),
        message: message.to_owned(),
    };
    let url = url::Url::parse(base_url.trim()).map_err(|e| invalid(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("must be an http or https URL"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("must name a host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("must not carry a query or fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "must not carry credentials (the API key goes in its own field)",
        ));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// The adapter for a configuration: both providers speak the OpenAI Chat Completions
/// protocol (`POST {base_url}/chat/completions` with a bearer key), with DeepSeek's
/// `reasoning_content` and parameter rules applied for [`ProviderKind::Deepseek`].
///
/// `http` is shared by all providers (its connection pool); build it with rustls and no
/// global timeout (streams can be long; each call has `config.timeout`).
pub fn build_provider(config: ProviderConfig, http: reqwest::Client) -> Arc<dyn AiProvider> {
    Arc::new(crate::openai_compat::OpenAiCompatible::new(config, http))
}

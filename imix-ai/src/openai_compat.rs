//! The adapter for OpenAI-compatible Chat Completions APIs: OpenAI (ChatGPT) and DeepSeek.
//!
//! ## Why no client crate
//!
//! We looked at `async-openai` (0.43), the best-kept Rust OpenAI client. Its response and
//! stream-delta types have no `reasoning_content`, so DeepSeek R1's reasoning would be lost
//! (it only knows `completion_tokens_details.reasoning_tokens`); its errors keep the error
//! body but not the HTTP status nor `Retry-After`, which our classes and the fallback chain
//! need; and it retries 429s itself, which would fight our own retry policy. The protocol we
//! use is one POST and one response shape, so the adapter is written here over `reqwest`
//! (the workspace's HTTP client, rustls), with serde types that keep both providers'
//! documented fields.
//!
//! Server-sent events are parsed by `eventsource-stream` (the SSE parser under
//! `reqwest-eventsource` and `async-openai`): it follows the HTML spec (comments such as
//! DeepSeek's `: keep-alive` dropped, multi-line `data:`, CRLF, UTF-8 split across
//! chunks), so [`crate::sse`] only maps events to [`crate::StreamEvent`]s.
//!
//! ## Provider rules
//!
//! - ChatGPT: the bound is sent as `max_completion_tokens` (OpenAI deprecated `max_tokens`,
//!   and its reasoning models refuse it); streams ask for `stream_options.include_usage`.
//!   o1/o3/o4 and gpt-5 (not `gpt-5-chat`) models get no `temperature` (they refuse it).
//! - DeepSeek: the bound is sent as `max_tokens`; `reasoning_content` is parsed apart from
//!   `content` (full answers and stream deltas); for `deepseek-reasoner` and R1 models no
//!   `temperature` is sent (nor `top_p`, penalties or `logprobs`, which we never send),
//!   since the reasoner ignores or refuses them. DeepSeek sends usage in the last chunk.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use crate::chat::{ChatMessage, ChatRequest, ChatResponse, ProviderKind, TokenUsage};
use crate::error::{classify, AiError, ErrorBody};
use crate::provider::{AiProvider, ChatStream, ConnectionReport, ProviderConfig};

/// Adapter for one OpenAI-compatible provider.
pub(crate) struct OpenAiCompatible {
    config: ProviderConfig,
    http: reqwest::Client,
    endpoint: String,
}

impl std::fmt::Debug for OpenAiCompatible {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiCompatible")
            .field("config", &self.config)
            .finish()
    }
}

/// Whether the model refuses or ignores sampling parameters (reasoning models).
pub(crate) fn is_reasoning_model(kind: ProviderKind, model: &str) -> bool {
    let m = model.to_ascii_lowercase();
    let m = m.rsplit('/').next().unwrap_or(&m);
    match kind {
        ProviderKind::Deepseek => m.contains("reasoner") || m.contains("r1"),
        ProviderKind::Chatgpt => {
            m.starts_with("o1")
                || m.starts_with("o3")
                || m.starts_with("o4")
                || (m.starts_with("gpt-5") && !m.contains("chat"))
        }
    }
}

#[derive(Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    messages: &'a [ChatMessage],
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_completion_tokens: Option<u32>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

#[derive(Deserialize)]
struct WireResponse {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    choices: Vec<WireChoice>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireChoice {
    message: WireMessage,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireMessage {
    #[serde(default)]
    content: Option<String>,
    /// DeepSeek's field; some OpenAI-compatible gateways call it `reasoning`.
    #[serde(default, alias = "reasoning")]
    reasoning_content: Option<String>,
}

/// `usage` of a response or of a stream's last chunk.
#[derive(Deserialize, Default)]
pub(crate) struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    completion_tokens_details: Option<WireCompletionDetails>,
}

#[derive(Deserialize, Default)]
struct WireCompletionDetails {
    #[serde(default)]
    reasoning_tokens: Option<u64>,
}

impl From<WireUsage> for TokenUsage {
    fn from(u: WireUsage) -> Self {
        TokenUsage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            reasoning_tokens: u
                .completion_tokens_details
                .and_then(|d| d.reasoning_tokens)
                .unwrap_or(0),
        }
    }
}

/// Parses `Retry-After` given in seconds (the form both providers use).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Duration::from_secs_f64(s.min(86_400.0)))
}

impl OpenAiCompatible {
    pub(crate) fn new(config: ProviderConfig, http: reqwest::Client) -> Self {
        let endpoint = format!("{}/chat/completions", config.base_url.trim_end_matches('/'));
        OpenAiCompatible {
            config,
            http,
            endpoint,
        }
    }

    fn kind_(&self) -> ProviderKind {
        self.config.kind
    }

    /// The model a call uses: the request's when it names one.
    fn model_for<'a>(&'a self, req: &'a ChatRequest) -> &'a str {
        if req.model.trim().is_empty() {
            &self.config.model
        } else {
            &req.model
        }
    }

    fn body<'a>(&'a self, req: &'a ChatRequest, stream: bool) -> WireRequest<'a> {
        let kind = self.kind_();
        let model = self.model_for(req);
        let reasoning = is_reasoning_model(kind, model);
        let temperature = if reasoning {
            None
        } else {
            req.temperature.or(self.config.temperature)
        };
        let max = match (req.max_tokens, self.config.max_tokens) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let (max_tokens, max_completion_tokens) = match kind {
            ProviderKind::Chatgpt => (None, max),
            ProviderKind::Deepseek => (max, None),
        };
        WireRequest {
            model,
            messages: &req.messages,
            temperature,
            max_tokens,
            max_completion_tokens,
            stream,
            stream_options: (stream && kind == ProviderKind::Chatgpt).then_some(StreamOptions {
                include_usage: true,
            }),
        }
    }

    /// Masks our key wherever a provider echoed it in a message.
    pub(crate) fn scrub(&self, mut e: AiError) -> AiError {
        let key = self.config.api_key.expose_secret();
        if key.len() < 4 {
            return e;
        }
        match &mut e {
            AiError::InvalidKey { message, .. }
            | AiError::ModelNotFound { message, .. }
            | AiError::RateLimited { message, .. }
            | AiError::QuotaExceeded { message, .. }
            | AiError::ContextTooLong { message, .. }
            | AiError::Rejected { message, .. }
            | AiError::Server { message, .. }
                if message.contains(key) =>
            {
                *message = message.replace(key, "[redacted]");
            }
            _ => {}
        }
        e
    }

    fn transport_error(&self, e: reqwest::Error) -> AiError {
        if e.is_timeout() {
            AiError::Timeout {
                provider: self.kind_(),
                after: self.config.timeout,
            }
        } else if e.is_builder() {
            AiError::Invalid {
                field: "base_url".to_owned(),
                message: format!("{:?} is not a usable API URL", self.config.base_url),
            }
        } else {
            // reqwest's error names the URL, never the headers: the key cannot leak here.
            AiError::Network {
                provider: self.kind_(),
                source: Box::new(e.without_url()),
            }
        }
    }

    /// Sends the request; answers the response when its status is a success.
    async fn send(&self, req: &ChatRequest, stream: bool) -> Result<reqwest::Response, AiError> {
        let body = self.body(req, stream);
        let mut builder = self
            .http
            .post(&self.endpoint)
            .bearer_auth(self.config.api_key.expose_secret())
            .json(&body);
        if stream {
            builder = builder.header(reqwest::header::ACCEPT, "text/event-stream");
        } else {
            builder = builder.timeout(self.config.timeout);
        }
        let sending = builder.send();
        let response = if stream {
            // Only the wait for the headers is bounded here; chunks have their own bound.
            match tokio::time::timeout(self.config.timeout, sending).await {
                Ok(r) => r,
                Err(_) => {
                    return Err(AiError::Timeout {
                        provider: self.kind_(),
                        after: self.config.timeout,
                    })
                }
            }
        } else {
            sending.await
        }
        .map_err(|e| self.transport_error(e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let wait = retry_after(response.headers());
        let text = match read_capped(response, MAX_ERROR_BYTES).await {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(_) => String::new(),
        };
        let e = classify(
            self.kind_(),
            self.model_for(req),
            status.as_u16(),
            wait,
            ErrorBody::parse(&text),
        );
        tracing::warn!(
            provider = %self.kind_(),
            status = status.as_u16(),
            code = e.code(),
            "AI provider refused a chat completion"
        );
        Err(self.scrub(e))
    }
}

/// The largest whole answer read from a provider: far above any completion a configured
/// `max_tokens` allows (with DeepSeek's reasoning), far below what would strain the
/// server's memory if a provider (or a tenant's URL) sent without end.
const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;
/// The most of an error answer read (only its JSON `error` object is used).
const MAX_ERROR_BYTES: usize = 64 * 1024;

/// Why [`read_capped`] stopped.
enum Capped {
    Transport(reqwest::Error),
    TooLarge,
}

/// The body of `response`, refused as soon as it passes `cap` bytes (a declared
/// `Content-Length` over it is refused before reading).
async fn read_capped(mut response: reqwest::Response, cap: usize) -> Result<Vec<u8>, Capped> {
    if response.content_length().is_some_and(|n| n > cap as u64) {
        return Err(Capped::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(Capped::Transport)? {
        if body.len() + chunk.len() > cap {
            return Err(Capped::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[async_trait]
impl AiProvider for OpenAiCompatible {
    fn kind(&self) -> ProviderKind {
        self.config.kind
    }

    fn model(&self) -> &str {
        &self.config.model
    }

    async fn complete(&self, req: &ChatRequest) -> Result<ChatResponse, AiError> {
        let response = self.send(req, false).await?;
        let bytes = match read_capped(response, MAX_ANSWER_BYTES).await {
            Ok(bytes) => bytes,
            Err(Capped::Transport(e)) => return Err(self.transport_error(e)),
            Err(Capped::TooLarge) => {
                return Err(AiError::BadResponse {
                    provider: self.kind_(),
                    what: format!("an answer larger than {MAX_ANSWER_BYTES} bytes"),
                    source: None,
                })
            }
        };
        let wire: WireResponse =
            serde_json::from_slice(&bytes).map_err(|e| AiError::BadResponse {
                provider: self.kind_(),
                what: "chat completion JSON".to_owned(),
                source: Some(Box::new(e)),
            })?;
        let Some(choice) = wire.choices.into_iter().next() else {
            return Err(AiError::BadResponse {
                provider: self.kind_(),
                what: "a chat completion without choices".to_owned(),
                source: None,
            });
        };
        let mut reasoning = choice.message.reasoning_content.filter(|r| !r.is_empty());
        let mut content = choice.message.content.unwrap_or_default();
        if self.kind_() == ProviderKind::Deepseek {
            let (inline, answer) = crate::sse::ThinkSplitter::split(&content);
            content = answer;
            if !inline.is_empty() {
                reasoning = Some(match reasoning {
                    Some(r) => r + "\n" + &inline,
                    None => inline,
                });
            }
        }
        Ok(ChatResponse {
            provider: self.kind_(),
            model: wire.model.unwrap_or_else(|| self.model_for(req).to_owned()),
            content,
            reasoning,
            usage: wire.usage.map(TokenUsage::from).unwrap_or_default(),
            finish_reason: choice.finish_reason,
        })
    }

    async fn stream(&self, req: &ChatRequest) -> Result<ChatStream, AiError> {
        let response = self.send(req, true).await?;
        Ok(crate::sse::events(
            self.kind_(),
            self.model_for(req).to_owned(),
            self.config.timeout,
            response,
        ))
    }

    async fn test_connection(&self) -> Result<ConnectionReport, AiError> {
        let req = ChatRequest {
            messages: vec![ChatMessage::user(crate::provider::CONNECTION_TEST_PROMPT)],
            model: String::new(),
            temperature: None,
            // Reasoning models spend tokens thinking before they answer; a round trip is
            // all we need, so a short or empty answer is fine.
            max_tokens: Some(crate::provider::CONNECTION_TEST_MAX_TOKENS),
        };
        let started = Instant::now();
        let answer = self.complete(&req).await?;
        Ok(ConnectionReport {
            provider: self.kind_(),
            model: answer.model,
            latency: started.elapsed(),
            usage: answer.usage,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasoning_models_are_recognised() {
        assert!(is_reasoning_model(
            ProviderKind::Deepseek,
            "deepseek-reasoner"
        ));
        assert!(is_reasoning_model(
            ProviderKind::Deepseek,
            "deepseek-ai/DeepSeek-R1"
        ));
        assert!(!is_reasoning_model(ProviderKind::Deepseek, "deepseek-chat"));
        assert!(is_reasoning_model(ProviderKind::Chatgpt, "o3-mini"));
        assert!(!is_reasoning_model(ProviderKind::Chatgpt, "gpt-4o-mini"));
        assert!(!is_reasoning_model(
            ProviderKind::Chatgpt,
            "gpt-5-chat-latest"
        ));
    }
}

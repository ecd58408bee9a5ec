//! The vocabulary every part of the assistant shares: which provider, who says what in a
//! chat, and how many tokens it cost. Kept apart from the adapters so that prompt building,
//! settings and the HTTP clients can evolve separately.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

/// An AI provider the assistant can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// OpenAI's Chat Completions API ("ChatGPT" in the admin guide).
    Chatgpt,
    /// DeepSeek R1 through an OpenAI-compatible API, with its separate `reasoning_content`.
    Deepseek,
}

impl ProviderKind {
    /// Every provider, in the default fallback order.
    pub const ALL: [ProviderKind; 2] = [ProviderKind::Chatgpt, ProviderKind::Deepseek];

    /// `chatgpt` or `deepseek`: the name used in settings, routes and usage records.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Chatgpt => "chatgpt",
            ProviderKind::Deepseek => "deepseek",
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name given is not a provider we know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown AI provider {0:?}: expected chatgpt or deepseek")]
pub struct UnknownProvider(pub String);

impl FromStr for ProviderKind {
    type Err = UnknownProvider;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "chatgpt" | "openai" => Ok(ProviderKind::Chatgpt),
            "deepseek" | "deepseek-r1" => Ok(ProviderKind::Deepseek),
            _ => Err(UnknownProvider(s.to_owned())),
        }
    }
}

/// Who a chat message is from, as the Chat Completions API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions from us (never from a customer).
    System,
    /// What the model is asked to answer; carries customer text as quoted data.
    User,
    /// An earlier answer of the model.
    Assistant,
}

/// One message of a chat sent to a provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Who says it.
    pub role: Role,
    /// What is said.
    pub content: String,
}

impl ChatMessage {
    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        ChatMessage {
            role: Role::System,
            content: content.into(),
        }
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        ChatMessage {
            role: Role::User,
            content: content.into(),
        }
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        ChatMessage {
            role: Role::Assistant,
            content: content.into(),
        }
    }
}

/// What to ask a provider: the chat, and the knobs an operator configured.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    /// The chat, system instructions first.
    pub messages: Vec<ChatMessage>,
    /// Model name, e.g. `gpt-4o-mini` or `deepseek-reasoner`.
    pub model: String,
    /// Sampling temperature 0.0–1.0 (not sent to models that ignore or refuse it).
    pub temperature: Option<f32>,
    /// Upper bound of completion tokens.
    pub max_tokens: Option<u32>,
}

/// Tokens a call used, as the provider reported them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUsage {
    /// Tokens of the prompt.
    pub prompt_tokens: u64,
    /// Tokens of the completion, reasoning included when the provider counts it there.
    pub completion_tokens: u64,
    /// Tokens spent on reasoning (DeepSeek R1's `reasoning_tokens`), 0 when not reported.
    pub reasoning_tokens: u64,
}

impl TokenUsage {
    /// Prompt plus completion tokens: what the provider bills.
    pub fn total(&self) -> u64 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }
}

/// A provider's whole answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatResponse {
    /// Which provider answered.
    pub provider: ProviderKind,
    /// The model that answered, as the provider names it.
    pub model: String,
    /// The answer. Never contains the reasoning.
    pub content: String,
    /// DeepSeek R1's chain of thought, kept apart; never shown as the answer.
    pub reasoning: Option<String>,
    /// Token usage.
    pub usage: TokenUsage,
    /// Why the model stopped (`stop`, `length`, …) when reported.
    pub finish_reason: Option<String>,
}

/// One event of a streamed answer.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// A piece of the answer.
    Content(String),
    /// A piece of the reasoning (DeepSeek R1), never part of the answer.
    Reasoning(String),
    /// The stream ended at `data: [DONE]`; usage when the provider sent it.
    Done {
        /// The model that answered.
        model: String,
        /// Token usage, when the provider reported it in the stream.
        usage: Option<TokenUsage>,
        /// Why the model stopped, when reported.
        finish_reason: Option<String>,
    },
}

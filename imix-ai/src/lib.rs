//! # imix-ai
//!
//! Owns the AI assistant: the provider trait, the OpenAI (ChatGPT) and DeepSeek R1 adapters,
//! and the reply assistant that drafts answers for agents from a conversation.
#![forbid(unsafe_code)]

pub mod assistant;
pub mod auto_reply;
pub mod chat;
pub mod error;
pub mod fallback;
pub mod handoff;
pub mod hours;
pub mod language;
mod openai_compat;
pub mod prompt;
pub mod provider;
pub mod settings;
#[cfg(feature = "simulator")]
pub mod simulator;
mod sse;
pub mod usage;

pub use chat::{
    ChatMessage, ChatRequest, ChatResponse, ProviderKind, Role, StreamEvent, TokenUsage,
    UnknownProvider,
};
pub use error::AiError;
pub use fallback::{ChainStream, FallbackChain, RetryPolicy};
pub use provider::{
    build_provider, validate_base_url, AiProvider, ChatStream, ConnectionReport, ProviderConfig,
};

//! # imix-ai
//!
//! Owns the AI assistant: the provider trait, the OpenAI (ChatGPT) and DeepSeek R1 adapters,
//! and the reply assistant that drafts answers for agents from a conversation.
#![forbid(unsafe_code)]

pub mod chat;

pub use chat::{
    ChatMessage, ChatRequest, ChatResponse, ProviderKind, Role, StreamEvent, TokenUsage,
    UnknownProvider,
};

//! The assistant: from a tenant's effective settings and a conversation's plain text to a
//! suggested reply or a summary, through the providers in fallback order.
//!
//! It works on [`Turn`]s (plain text), so any chat can use it; the server turns WhatsApp
//! messages into turns. It never sends anything.

use std::{sync::Arc, time::Duration};

use imix_core::Language;

use crate::{
    chat::{ChatRequest, ProviderKind, TokenUsage},
    error::AiError,
    fallback::{ChainStream, FallbackChain, RetryPolicy},
    language::conversation_language,
    prompt::{self, PromptInput, PromptLimits, Speaker, Task, Turn},
    provider::{build_provider, AiProvider, ConnectionReport, ProviderConfig},
    settings::{EffectiveAi, EffectiveProvider},
};

/// How many of the customer's last messages language detection reads.
pub const DETECTION_MESSAGES: usize = 5;

/// A conversation as the assistant sees it.
#[derive(Debug, Clone)]
pub struct ConversationText<'a> {
    /// The business (tenant) name.
    pub business_name: &'a str,
    /// The contact's language, when known.
    pub contact_language: Option<Language>,
    /// The tenant's default language.
    pub tenant_default: Language,
    /// The turns, oldest first.
    pub turns: &'a [Turn],
}

impl ConversationText<'_> {
    /// The conversation's language (see [`crate::language`]).
    pub fn language(&self) -> Language {
        let customer: Vec<&str> = self
            .turns
            .iter()
            .rev()
            .filter(|t| t.speaker == Speaker::Customer)
            .take(DETECTION_MESSAGES)
            .map(|t| t.text.as_str())
            .collect();
        conversation_language(self.contact_language, customer, self.tenant_default)
    }
}

/// A whole answer of the assistant.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The text: a suggested reply or a summary. Never the reasoning.
    pub text: String,
    /// The provider that answered.
    pub provider: ProviderKind,
    /// Its model.
    pub model: String,
    /// The language asked for.
    pub language: Language,
    /// Tokens used.
    pub usage: TokenUsage,
}

/// A prepared call: the request, the chain to send it through, and the language.
pub struct Prepared {
    /// The chat request (model left to each provider).
    pub request: ChatRequest,
    /// Providers in order.
    pub chain: FallbackChain,
    /// The language asked for.
    pub language: Language,
    /// The prompt's estimated tokens (see [`crate::prompt`]).
    pub estimated_prompt_tokens: u32,
    /// The largest completion bound (`max_tokens`) among the chain's providers.
    pub max_tokens: u32,
    /// The tenant's daily token limit from the settings the call was prepared with.
    pub daily_token_limit: Option<u64>,
}

impl Prepared {
    /// The most tokens the call is expected to use: the prompt's estimate plus the
    /// completion bound. What is reserved against the daily limit before the call.
    pub fn budget(&self) -> u64 {
        u64::from(self.estimated_prompt_tokens) + u64::from(self.max_tokens)
    }
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("chain", &self.chain)
            .field("language", &self.language)
            .finish_non_exhaustive()
    }
}

/// Builds providers from settings and runs the tasks. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Assistant {
    http: reqwest::Client,
    /// The client for providers whose key (and so URL) a tenant set: see
    /// [`Assistant::with_tenant_http`].
    tenant_http: reqwest::Client,
    policy: RetryPolicy,
    timeout: Duration,
}

impl Assistant {
    /// An assistant using `http` for every provider call, retrying per `policy`, each call
    /// bounded by `timeout`.
    pub fn new(http: reqwest::Client, policy: RetryPolicy, timeout: Duration) -> Self {
        Self {
            tenant_http: http.clone(),
            http,
            policy,
            timeout,
        }
    }

    /// Uses `http` for the providers whose key a tenant set, and so whose URL a tenant may
    /// have chosen: an embedding server gives it a client that refuses its internal
    /// network (a resolver that drops private addresses, no redirects), while the
    /// platform's own URLs, the operator's choice, use the main client.
    pub fn with_tenant_http(mut self, http: reqwest::Client) -> Self {
        self.tenant_http = http;
        self
    }

    /// The adapter for one provider's settings.
    pub fn provider(&self, p: &EffectiveProvider) -> Arc<dyn AiProvider> {
        let http = if p.key_from == imix_core::model::SettingsScope::Platform {
            &self.http
        } else {
            &self.tenant_http
        };
        let config = ProviderConfig::new(p.kind, p.api_key.clone())
            .with_base_url(p.base_url.clone())
            .with_model(p.model.clone())
            .with_temperature(Some(p.temperature))
            .with_max_tokens(Some(p.max_tokens))
            .with_timeout(self.timeout);
        build_provider(config, http.clone())
    }

    /// A tiny round trip with one provider's settings.
    pub async fn test(&self, p: &EffectiveProvider) -> Result<ConnectionReport, AiError> {
        self.provider(p).test_connection().await
    }

    /// The request and chain for `task` on `conversation`: the prompt is bounded for the
    /// smallest context window and the largest `max_tokens` among the providers, so it fits
    /// whichever answers.
    pub fn prepare(
        &self,
        settings: &EffectiveAi,
        task: Task,
        conversation: &ConversationText<'_>,
        language: Option<Language>,
    ) -> Result<Prepared, AiError> {
        if settings.providers.is_empty() {
            return Err(AiError::NotConfigured {
                message: "no provider has an API key: set one in Settings > AI Assistant"
                    .to_owned(),
            });
        }
        let language = language.unwrap_or_else(|| conversation.language());
        let context = settings
            .providers
            .iter()
            .map(|p| prompt::context_window(&p.model))
            .min()
            .unwrap_or(8_192);
        let max_tokens = settings
            .providers
            .iter()
            .map(|p| p.max_tokens)
            .max()
            .unwrap_or(crate::settings::DEFAULT_MAX_TOKENS);
        let limits = PromptLimits {
            context_tokens: context,
            ..PromptLimits::for_model("", max_tokens)
        };
        let input = PromptInput {
            task,
            business_name: conversation.business_name,
            instructions: settings.instructions.as_deref(),
            language,
            turns: conversation.turns,
        };
        let built = prompt::build(&input, limits).map_err(|e| AiError::Invalid {
            field: "max_tokens".to_owned(),
            message: e.to_string(),
        })?;
        let chain = FallbackChain::new(
            settings
                .providers
                .iter()
                .map(|p| self.provider(p))
                .collect(),
            self.policy,
        );
        Ok(Prepared {
            request: ChatRequest {
                messages: built.messages,
                model: String::new(),
                temperature: None,
                max_tokens: None,
            },
            chain,
            language,
            estimated_prompt_tokens: built.estimated_tokens,
            max_tokens,
            daily_token_limit: settings.daily_token_limit,
        })
    }

    /// Runs a prepared call to a whole answer.
    pub async fn complete(&self, prepared: &Prepared) -> Result<Answer, AiError> {
        let response = prepared.chain.complete(&prepared.request).await?;
        Ok(Answer {
            text: response.content.trim().to_owned(),
            provider: response.provider,
            model: response.model,
            language: prepared.language,
            usage: response.usage,
        })
    }

    /// Runs a prepared call as a stream (see [`FallbackChain::stream`]).
    pub async fn stream(&self, prepared: &Prepared) -> Result<ChainStream, AiError> {
        prepared.chain.stream(&prepared.request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    #[test]
    fn language_from_the_customers_last_messages() {
        let turns = [
            Turn {
                speaker: Speaker::Agent,
                text: "Hello, how can we help?".into(),
                at: Utc::now(),
            },
            Turn {
                speaker: Speaker::Customer,
                text: "Bonjour, c'est combien la livraison ?".into(),
                at: Utc::now(),
            },
        ];
        let c = ConversationText {
            business_name: "Alpha",
            contact_language: None,
            tenant_default: Language::En,
            turns: &turns,
        };
        assert_eq!(c.language(), Language::Fr);
    }
}

//! Retries and the fallback order: a [`FallbackChain`] asks its providers in turn.
//!
//! Each provider is asked up to [`RetryPolicy::max_attempts`] times while its errors are
//! retryable ([`AiError::is_retryable`]: rate limits, server errors, timeouts, broken
//! connections), waiting an exponential backoff with jitter between attempts, or the
//! provider's `Retry-After` when it sent one. A `Retry-After` longer than
//! [`RetryPolicy::max_backoff`] is not waited for: the next provider is asked at once (a
//! caller would rather get another provider's answer than wait a minute). Errors that waiting
//! does not cure (refused key, unknown model, exhausted quota, too-long prompt, unreadable
//! answer) move to the next provider at once. When every provider failed, the last error is
//! answered; each failure is logged (provider, code, attempt — never the key).
//!
//! Streams are retried and fall back only until their first event: once a piece of the
//! answer was handed out, a failure is the caller's `Err` item.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use rand::Rng;

use crate::chat::{ChatRequest, ChatResponse, ProviderKind};
use crate::error::AiError;
use crate::provider::{AiProvider, ChatStream};

/// How often and how patiently one provider is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per provider, the first included (0 is taken as 1).
    pub max_attempts: u32,
    /// The wait before the second attempt; doubled for each further one.
    pub first_backoff: Duration,
    /// The longest wait between two attempts, `Retry-After` included.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    /// 3 attempts, 500 ms then 1 s, at most 10 s (a `Retry-After` up to 10 s is honoured).
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            first_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// No retries: each provider is asked once.
    pub fn no_retry() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// The wait after failed attempt number `attempt` (1-based), or `None` when the same
    /// provider should not be asked again (attempts used up, not retryable, or a
    /// `Retry-After` beyond `max_backoff`).
    pub fn wait_after(&self, attempt: u32, error: &AiError) -> Option<Duration> {
        if attempt >= self.max_attempts.max(1) || !error.is_retryable() {
            return None;
        }
        if let Some(wait) = error.retry_after() {
            return (wait <= self.max_backoff).then_some(wait);
        }
        let exp = self
            .first_backoff
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.max_backoff);
        // "Equal jitter": half fixed, half random, so concurrent callers spread out but
        // none retries at once.
        let half = exp / 2;
        let jitter =
            rand::thread_rng().gen_range(0..=half.as_millis().min(u64::MAX as u128) as u64);
        Some(half + Duration::from_millis(jitter))
    }
}

/// A stream that a [`FallbackChain`] obtained, with the provider that serves it.
pub struct ChainStream {
    /// The provider that answers.
    pub provider: ProviderKind,
    /// That provider's configured model.
    pub model: String,
    /// The events.
    pub stream: ChatStream,
}

impl std::fmt::Debug for ChainStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainStream")
            .field("provider", &self.provider)
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

/// Providers in fallback order, each retried per the policy.
///
/// Every provider is asked with its own configured model: the request's `model` is
/// cleared, since one provider's model name means nothing to another.
#[derive(Clone)]
pub struct FallbackChain {
    providers: Vec<Arc<dyn AiProvider>>,
    policy: RetryPolicy,
}

impl std::fmt::Debug for FallbackChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let order: Vec<String> = self
            .providers
            .iter()
            .map(|p| format!("{}:{}", p.kind(), p.model()))
            .collect();
        f.debug_struct("FallbackChain")
            .field("providers", &order)
            .field("policy", &self.policy)
            .finish()
    }
}

impl FallbackChain {
    /// A chain asking `providers` in this order.
    pub fn new(providers: Vec<Arc<dyn AiProvider>>, policy: RetryPolicy) -> Self {
        FallbackChain { providers, policy }
    }

    /// The providers, in order.
    pub fn providers(&self) -> &[Arc<dyn AiProvider>] {
        &self.providers
    }

    /// The retry policy.
    pub fn policy(&self) -> RetryPolicy {
        self.policy
    }

    fn empty() -> AiError {
        AiError::NotConfigured {
            message: "the fallback order names no provider with an API key".to_owned(),
        }
    }

    /// A whole answer from the first provider that gives one.
    pub async fn complete(&self, req: &ChatRequest) -> Result<ChatResponse, AiError> {
        let req = ChatRequest {
            model: String::new(),
            ..req.clone()
        };
        let mut last = None;
        for provider in &self.providers {
            let mut attempt = 1;
            loop {
                match provider.complete(&req).await {
                    Ok(answer) => return Ok(answer),
                    Err(e) => {
                        let wait = self.note(provider.as_ref(), attempt, &e);
                        last = Some(e);
                        match wait {
                            Some(wait) => tokio::time::sleep(wait).await,
                            None => break,
                        }
                    }
                }
                attempt += 1;
            }
        }
        Err(last.unwrap_or_else(Self::empty))
    }

    /// A streamed answer from the first provider whose stream yields a first event.
    pub async fn stream(&self, req: &ChatRequest) -> Result<ChainStream, AiError> {
        let req = ChatRequest {
            model: String::new(),
            ..req.clone()
        };
        let mut last = None;
        for provider in &self.providers {
            let mut attempt = 1;
            loop {
                let e = match provider.stream(&req).await {
                    Ok(mut stream) => match stream.next().await {
                        Some(Ok(first)) => {
                            return Ok(ChainStream {
                                provider: provider.kind(),
                                model: provider.model().to_owned(),
                                stream: futures::stream::once(async move { Ok(first) })
                                    .chain(stream)
                                    .boxed(),
                            })
                        }
                        Some(Err(e)) => e,
                        None => AiError::BadResponse {
                            provider: provider.kind(),
                            what: "an empty stream".to_owned(),
                            source: None,
                        },
                    },
                    Err(e) => e,
                };
                let wait = self.note(provider.as_ref(), attempt, &e);
                last = Some(e);
                match wait {
                    Some(wait) => tokio::time::sleep(wait).await,
                    None => break,
                }
                attempt += 1;
            }
        }
        Err(last.unwrap_or_else(Self::empty))
    }

    /// Logs a failed attempt; answers the wait before the next one on the same provider.
    fn note(&self, provider: &dyn AiProvider, attempt: u32, e: &AiError) -> Option<Duration> {
        let wait = self.policy.wait_after(attempt, e);
        tracing::warn!(
            provider = %provider.kind(),
            model = provider.model(),
            attempt,
            code = e.code(),
            retry_in_ms = wait.map(|w| w.as_millis() as u64),
            error = %e,
            "AI provider attempt failed"
        );
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_error() -> AiError {
        AiError::Server {
            provider: ProviderKind::Chatgpt,
            status: 500,
            message: "x".into(),
        }
    }

    #[test]
    fn backoff_grows_with_jitter_and_stops() {
        let p = RetryPolicy {
            max_attempts: 4,
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(300),
        };
        let e = server_error();
        for _ in 0..50 {
            let w1 = p.wait_after(1, &e).unwrap();
            assert!(w1 >= Duration::from_millis(50) && w1 <= Duration::from_millis(100));
            let w3 = p.wait_after(3, &e).unwrap();
            assert!(w3 >= Duration::from_millis(150) && w3 <= Duration::from_millis(300));
        }
        assert_eq!(p.wait_after(4, &e), None);
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_cap() {
        let p = RetryPolicy::default();
        let limited = |s| AiError::RateLimited {
            provider: ProviderKind::Deepseek,
            retry_after: Some(Duration::from_secs(s)),
            message: String::new(),
        };
        assert_eq!(p.wait_after(1, &limited(2)), Some(Duration::from_secs(2)));
        assert_eq!(p.wait_after(1, &limited(60)), None);
        let key = AiError::InvalidKey {
            provider: ProviderKind::Deepseek,
            status: 401,
            message: String::new(),
        };
        assert_eq!(p.wait_after(1, &key), None);
    }
}

//! Token usage per tenant per UTC day (prompt, completion, reasoning), and the optional
//! daily token limit.
//!
//! Counters live on the store's [`CounterRepository`] (SQLite or MongoDB, shared by every
//! replica), one per tenant, day and kind, expiring a day after their day, like the daily
//! message counters. The limit counts prompt plus completion tokens (what providers bill;
//! reasoning tokens are part of the completion). It is checked **before** a provider is
//! called: a tenant at or over its limit is refused without a call. A call's size is only
//! known afterwards, so the call that crosses the limit is allowed to finish and counted in
//! full; the next one is refused.

use std::{fmt, sync::Arc};

use chrono::{DateTime, Days, NaiveDate, Utc};
use imix_core::{id::TenantId, store::CounterRepository, Timestamp};
use serde::Serialize;

use crate::chat::TokenUsage;

/// Today's tokens of a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DailyTokens {
    /// The UTC day.
    pub day: NaiveDate,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens (reasoning included).
    pub completion_tokens: u64,
    /// Of which reasoning.
    pub reasoning_tokens: u64,
    /// Prompt plus completion: what the limit counts.
    pub total_tokens: u64,
    /// When the counters start again from 0 (next UTC midnight).
    pub resets_at: Timestamp,
}

/// The tenant reached its daily token limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the daily limit of {limit} AI tokens is reached ({used} used); it resets at {resets_at}")]
pub struct TokenLimitReached {
    /// The limit.
    pub limit: u64,
    /// Tokens used today.
    pub used: u64,
    /// When it resets.
    pub resets_at: Timestamp,
}

/// What the meter can fail with.
#[derive(Debug, thiserror::Error)]
pub enum MeterError {
    /// The limit is reached.
    #[error(transparent)]
    LimitReached(#[from] TokenLimitReached),
    /// The counters are unavailable.
    #[error(transparent)]
    Store(#[from] imix_core::Error),
}

const KINDS: [&str; 3] = ["prompt", "completion", "reasoning"];

/// Counts tokens. Cheap to clone.
#[derive(Clone)]
pub struct TokenMeter {
    counters: Arc<dyn CounterRepository>,
}

impl fmt::Debug for TokenMeter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenMeter").finish_non_exhaustive()
    }
}

fn key(tenant: TenantId, day: NaiveDate, kind: &str) -> String {
    format!("ai-tokens:{tenant}:{day}:{kind}")
}

fn next_midnight(day: NaiveDate) -> Timestamp {
    day.checked_add_days(Days::new(1))
        .unwrap_or(day)
        .and_hms_opt(0, 0, 0)
        .unwrap_or_default()
        .and_utc()
}

impl TokenMeter {
    /// A meter over `counters`.
    pub fn new(counters: Arc<dyn CounterRepository>) -> Self {
        Self { counters }
    }

    /// `tenant`'s tokens on the UTC day of `now`.
    pub async fn today(
        &self,
        tenant: TenantId,
        now: DateTime<Utc>,
    ) -> Result<DailyTokens, imix_core::Error> {
        let day = now.date_naive();
        let mut values = [0u64; 3];
        for (v, kind) in values.iter_mut().zip(KINDS) {
            *v = self.counters.get(&key(tenant, day, kind)).await?;
        }
        Ok(DailyTokens {
            day,
            prompt_tokens: values[0],
            completion_tokens: values[1],
            reasoning_tokens: values[2],
            total_tokens: values[0].saturating_add(values[1]),
            resets_at: next_midnight(day),
        })
    }

    /// Refuses when `tenant` has used `limit` tokens or more today (`None`: no limit).
    pub async fn check(
        &self,
        tenant: TenantId,
        limit: Option<u64>,
        now: DateTime<Utc>,
    ) -> Result<(), MeterError> {
        let Some(limit) = limit else {
            return Ok(());
        };
        let today = self.today(tenant, now).await?;
        if today.total_tokens >= limit {
            return Err(TokenLimitReached {
                limit,
                used: today.total_tokens,
                resets_at: today.resets_at,
            }
            .into());
        }
        Ok(())
    }

    /// Counts a call's `usage` for `tenant` on the day of `now`.
    pub async fn record(
        &self,
        tenant: TenantId,
        usage: TokenUsage,
        now: DateTime<Utc>,
    ) -> Result<(), imix_core::Error> {
        let day = now.date_naive();
        // Kept a day past their day, as the message counters are.
        let expires = next_midnight(day) + chrono::Duration::days(1);
        for (kind, units) in KINDS.into_iter().zip([
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.reasoning_tokens,
        ]) {
            if units > 0 {
                self.counters
                    .try_add(&key(tenant, day, kind), units, None, Some(expires))
                    .await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resets_at_next_utc_midnight() {
        let day = NaiveDate::from_ymd_opt(2026, 12, 31).unwrap();
        assert_eq!(next_midnight(day).to_rfc3339(), "2027-01-01T00:00:00+00:00");
    }
}

//! Token usage per tenant per UTC day (prompt, completion, reasoning), and the optional
//! daily token limit.
//!
//! Counters live on the store's [`CounterRepository`] (SQLite or MongoDB, shared by every
//! replica), one per tenant, day and kind, expiring a day after their day, like the daily
//! message counters. The limit counts prompt plus completion tokens (what providers bill;
//! reasoning tokens are part of the completion).
//!
//! # Reservations
//!
//! A call's size is only known afterwards, so before a provider is called the call's
//! **maximum** (the prompt's estimate plus the completion's `max_tokens`) is reserved on a
//! fourth counter, `total`, with one atomic [`CounterRepository::try_add`] bounded by the
//! limit: of many concurrent calls, only those whose maxima fit in what is left pass, the
//! others are refused without a call ([`TokenMeter::reserve`]). When the call ends the
//! reservation is settled to the real usage ([`Reservation::settle`]: the difference is
//! given back); a failed call gives it all back ([`Reservation::release`]); a reservation
//! dropped unsettled (a stream the client closed, a request cancelled) counts its
//! `on_drop` usage, by default the prompt estimate once the provider was asked. The limit
//! is therefore never exceeded by concurrency; it can only be passed by a provider counting
//! more prompt tokens than our estimate, which errs high (see [`crate::prompt`]).

use std::{fmt, sync::Arc};

use chrono::{DateTime, Days, NaiveDate, Utc};
use imix_core::{
    id::TenantId,
    store::{CounterOutcome, CounterRepository},
    Timestamp,
};
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
    /// Held by calls still running (their maxima minus nothing yet): counted against the
    /// limit until they settle.
    pub reserved_tokens: u64,
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

/// One call's maximum is larger than the whole daily limit: it can never pass, today or
/// after the reset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("one request may use up to {requested} AI tokens (prompt estimate plus max tokens), more than the whole daily limit of {limit}: raise daily_token_limit or lower max_tokens")]
pub struct LimitTooSmall {
    /// The limit.
    pub limit: u64,
    /// The call's maximum.
    pub requested: u64,
}

/// What the meter can fail with.
#[derive(Debug, thiserror::Error)]
pub enum MeterError {
    /// The limit is reached.
    #[error(transparent)]
    LimitReached(#[from] TokenLimitReached),
    /// One call's maximum exceeds the limit itself.
    #[error(transparent)]
    TooSmall(#[from] LimitTooSmall),
    /// The counters are unavailable.
    #[error(transparent)]
    Store(#[from] imix_core::Error),
}

const KINDS: [&str; 3] = ["prompt", "completion", "reasoning"];

/// The counter the limit is enforced on: settled usage plus running reservations.
const TOTAL: &str = "total";

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

/// Counters are kept a day past their day, as the message counters are.
fn expiry(day: NaiveDate) -> Timestamp {
    next_midnight(day) + chrono::Duration::days(1)
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
        let total_tokens = values[0].saturating_add(values[1]);
        let held = self.counters.get(&key(tenant, day, TOTAL)).await?;
        Ok(DailyTokens {
            day,
            prompt_tokens: values[0],
            completion_tokens: values[1],
            reasoning_tokens: values[2],
            total_tokens,
            reserved_tokens: held.saturating_sub(total_tokens),
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
        let used = today.total_tokens.saturating_add(today.reserved_tokens);
        if used >= limit {
            return Err(TokenLimitReached {
                limit,
                used,
                resets_at: today.resets_at,
            }
            .into());
        }
        Ok(())
    }

    /// Reserves `max_tokens` (a call's maximum: prompt estimate plus completion bound) for
    /// `tenant` on the day of `now`, atomically against `limit` (`None`: no limit, the
    /// reservation is still held so that a limit set later in the day sees it). Refused
    /// with [`TokenLimitReached`] when it does not fit in what is left, and with
    /// [`LimitTooSmall`] when it exceeds the limit itself.
    pub async fn reserve(
        &self,
        tenant: TenantId,
        max_tokens: u64,
        limit: Option<u64>,
        now: DateTime<Utc>,
    ) -> Result<Reservation, MeterError> {
        let day = now.date_naive();
        let max_tokens = max_tokens.max(1);
        if let Some(limit) = limit {
            if max_tokens > limit {
                return Err(LimitTooSmall {
                    limit,
                    requested: max_tokens,
                }
                .into());
            }
        }
        let total = key(tenant, day, TOTAL);
        let expires = Some(expiry(day));
        // Usage counted before `total` existed (a server upgraded during the day) is
        // carried over once: the add only succeeds while `total` is still 0.
        if self.counters.get(&total).await? == 0 {
            let today = self.today(tenant, now).await?;
            if today.total_tokens > 0 {
                self.counters
                    .try_add(
                        &total,
                        today.total_tokens,
                        Some(today.total_tokens),
                        expires,
                    )
                    .await?;
            }
        }
        let outcome = self
            .counters
            .try_add(&total, max_tokens, limit, expires)
            .await?;
        match outcome {
            CounterOutcome::Added { .. } => Ok(Reservation {
                meter: self.clone(),
                tenant,
                day,
                held: max_tokens,
                on_drop: None,
                open: true,
            }),
            CounterOutcome::Rejected { value } => Err(TokenLimitReached {
                limit: limit.unwrap_or(u64::MAX),
                used: value,
                resets_at: next_midnight(day),
            }
            .into()),
        }
    }

    /// Counts a call's `usage` for `tenant` on the day of `now`.
    pub async fn record(
        &self,
        tenant: TenantId,
        usage: TokenUsage,
        now: DateTime<Utc>,
    ) -> Result<(), imix_core::Error> {
        let day = now.date_naive();
        self.count(tenant, day, usage).await?;
        // Not reserved: added to what the limit counts as it is.
        let total = usage.prompt_tokens.saturating_add(usage.completion_tokens);
        if total > 0 {
            self.counters
                .try_add(&key(tenant, day, TOTAL), total, None, Some(expiry(day)))
                .await?;
        }
        Ok(())
    }

    /// Adds `usage` to the prompt, completion and reasoning counters of `day`.
    async fn count(
        &self,
        tenant: TenantId,
        day: NaiveDate,
        usage: TokenUsage,
    ) -> Result<(), imix_core::Error> {
        let expires = expiry(day);
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

/// Tokens held for one running call (see the module documentation). Settle it with
/// [`Reservation::settle`] or give it back with [`Reservation::release`]; dropped unsettled
/// it counts its [`Reservation::count_on_drop`] usage (nothing unless set), from a spawned
/// task.
#[must_use = "a reservation holds tokens until it is settled or released"]
pub struct Reservation {
    meter: TokenMeter,
    tenant: TenantId,
    day: NaiveDate,
    held: u64,
    on_drop: Option<TokenUsage>,
    open: bool,
}

impl fmt::Debug for Reservation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reservation")
            .field("tenant", &self.tenant)
            .field("day", &self.day)
            .field("held", &self.held)
            .field("on_drop", &self.on_drop)
            .finish_non_exhaustive()
    }
}

impl Reservation {
    /// The tokens held.
    pub fn held(&self) -> u64 {
        self.held
    }

    /// What is counted if the reservation is dropped unsettled: say the prompt estimate
    /// once the provider was asked (a provider bills a prompt it read even when the caller
    /// went away), or the usage a stream reported so far.
    pub fn count_on_drop(&mut self, usage: TokenUsage) {
        self.on_drop = Some(usage);
    }

    /// Counts the call's real `usage` and gives back what the reservation held beyond it
    /// (or adds what the call used beyond it: the limit cannot refuse tokens already spent).
    pub async fn settle(mut self, usage: TokenUsage) -> Result<(), imix_core::Error> {
        self.open = false;
        settle(&self.meter, self.tenant, self.day, self.held, usage).await
    }

    /// Gives the whole reservation back (the call failed, nothing was answered).
    pub async fn release(self) -> Result<(), imix_core::Error> {
        self.settle(TokenUsage::default()).await
    }
}

async fn settle(
    meter: &TokenMeter,
    tenant: TenantId,
    day: NaiveDate,
    held: u64,
    usage: TokenUsage,
) -> Result<(), imix_core::Error> {
    meter.count(tenant, day, usage).await?;
    let used = usage.prompt_tokens.saturating_add(usage.completion_tokens);
    let total = key(tenant, day, TOTAL);
    if used < held {
        meter.counters.subtract(&total, held - used).await?;
    } else if used > held {
        meter
            .counters
            .try_add(&total, used - held, None, Some(expiry(day)))
            .await?;
    }
    Ok(())
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.open {
            return;
        }
        let usage = self.on_drop.unwrap_or_default();
        let (meter, tenant, day, held) = (self.meter.clone(), self.tenant, self.day, self.held);
        // Without a runtime (a test's end) there is nothing to write with; the counter
        // expires with its day.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                if let Err(e) = settle(&meter, tenant, day, held, usage).await {
                    tracing::error!(error = %e, tenant = %tenant, "cannot settle an AI token reservation");
                }
            });
        }
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

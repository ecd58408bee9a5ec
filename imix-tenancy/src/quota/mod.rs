//! Usage limits, enforced exactly.
//!
//! Two kinds of limits (the admin guide's "Configure usage limits", [`UsageLimits`]):
//!
//! - **Daily limits** — messages and media sent per tenant per **UTC day** — behind the
//!   [`QuotaStore`] port. [`QuotaStore::try_consume`] takes units atomically or refuses with
//!   [`QuotaError::LimitReached`] (limit, used, and the reset time: the next UTC midnight);
//!   [`QuotaStore::release`] refunds a send that never reached Meta. Adapters:
//!   [`RedisQuotaStore`] (feature `redis`: one Lua script per call, keys expiring after the
//!   day) and [`StoreQuotaStore`] over the storage port
//!   [`CounterRepository`](imix_core::store::CounterRepository) (SQLite or MongoDB).
//! - **Count limits** — templates, agents, contacts, contact groups — in [`CountLimits`],
//!   always on the store (durable, shared by every replica): a slot is
//!   [reserved](CountLimits::reserve) atomically before a record is created and
//!   [released](CountLimits::release) when it is deleted (or its creation failed).
//!
//! Every check-and-take is a single atomic step in the backend, never read-then-write, so
//! concurrent requests — on one server or on several replicas sharing Redis or MongoDB —
//! never go over a limit. `None` as a limit means unlimited.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use imix_core::id::TenantId;
//! use imix_tenancy::quota::{DailyQuota, QuotaError, QuotaStore, StoreQuotaStore};
//!
//! let dir = tempfile::tempdir()?;
//! let store = imix_core::store::sqlite::open(dir.path()).await?;
//! store.admin.migrate().await?;
//! let quotas = StoreQuotaStore::new(store.counters.clone());
//!
//! let (tenant, now) = (TenantId::new(), imix_core::now());
//! let taken = quotas.try_consume(tenant, DailyQuota::Messages, 1, Some(1), now).await?;
//! assert_eq!(taken.used, 1);
//! let refused = quotas.try_consume(tenant, DailyQuota::Messages, 1, Some(1), now).await;
//! assert!(matches!(refused, Err(QuotaError::LimitReached { limit: 1, used: 1, .. })));
//! // The send failed before reaching Meta: give the unit back.
//! quotas.release(tenant, DailyQuota::Messages, 1, taken.day).await?;
//! assert_eq!(quotas.usage(tenant, now).await?.messages, 0);
//! # Ok(()) }
//! ```
//!
//! [`UsageLimits`]: crate::records::UsageLimits

use async_trait::async_trait;
use chrono::{Days, NaiveDate, NaiveTime};
use imix_core::{directory::UsageLimits, id::TenantId, Timestamp};

mod counts;
mod error;
#[cfg(feature = "redis")]
mod redis_store;
mod store;

pub use counts::{CountKind, CountLimits, Counts};
pub use error::QuotaError;
#[cfg(feature = "redis")]
pub use redis_store::RedisQuotaStore;
pub use store::StoreQuotaStore;

/// How long a daily counter outlives its day: a refund shortly after midnight still lands
/// on the day it belongs to, and yesterday's figures stay readable for a while.
pub const DAILY_COUNTER_GRACE: chrono::Duration = chrono::Duration::days(1);

/// A per-tenant counter that starts again from 0 every UTC day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DailyQuota {
    /// Outbound messages of any type.
    Messages,
    /// Outbound messages that carry media (image, video, audio, document, sticker).
    Media,
}

impl DailyQuota {
    /// Both daily quotas.
    pub const ALL: [DailyQuota; 2] = [DailyQuota::Messages, DailyQuota::Media];

    /// `"messages"` or `"media"`: the name in keys and error details.
    pub fn as_str(&self) -> &'static str {
        match self {
            DailyQuota::Messages => "messages",
            DailyQuota::Media => "media",
        }
    }

    /// The tenant's limit for this quota (`None` = unlimited).
    pub fn limit(&self, limits: &UsageLimits) -> Option<u64> {
        match self {
            DailyQuota::Messages => limits.max_messages_per_day,
            DailyQuota::Media => limits.max_media_per_day,
        }
    }

    /// The counter key of `tenant` for `day`: `tenant:<id>:<quota>:<YYYY-MM-DD>`.
    pub fn key(&self, tenant: TenantId, day: NaiveDate) -> String {
        format!(
            "tenant:{tenant}:{}:{}",
            self.as_str(),
            day.format("%Y-%m-%d")
        )
    }
}

impl std::fmt::Display for DailyQuota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The UTC day `now` falls on.
pub fn utc_day(now: Timestamp) -> NaiveDate {
    now.date_naive()
}

/// When the counters of `day` reset: the following UTC midnight.
pub fn next_reset(day: NaiveDate) -> Timestamp {
    day.checked_add_days(Days::new(1))
        .unwrap_or(NaiveDate::MAX)
        .and_time(NaiveTime::MIN)
        .and_utc()
}

/// When the stored counter of `day` may be dropped: [`DAILY_COUNTER_GRACE`] after the day.
pub fn counter_expiry(day: NaiveDate) -> Timestamp {
    next_reset(day) + DAILY_COUNTER_GRACE
}

/// Units taken by a successful [`QuotaStore::try_consume`]; keep `day` to release them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Consumed {
    /// Which daily counter.
    pub quota: DailyQuota,
    /// The UTC day the units were counted on (pass it to [`QuotaStore::release`]).
    pub day: NaiveDate,
    /// How many units were taken.
    pub units: u64,
    /// The day's counter after taking them.
    pub used: u64,
    /// The limit that was checked (`None` = unlimited).
    pub limit: Option<u64>,
    /// When the counter starts again from 0: the next UTC midnight.
    pub resets_at: Timestamp,
}

impl Consumed {
    /// What is left of the limit today (`None` = unlimited).
    pub fn remaining(&self) -> Option<u64> {
        self.limit.map(|l| l.saturating_sub(self.used))
    }
}

/// A tenant's daily counters for one UTC day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DailyUsage {
    /// The UTC day.
    pub day: NaiveDate,
    /// Messages counted so far that day.
    pub messages: u64,
    /// Media messages counted so far that day.
    pub media: u64,
    /// When these counters start again from 0: the next UTC midnight.
    pub resets_at: Timestamp,
}

impl DailyUsage {
    /// The counter of `quota`.
    pub fn get(&self, quota: DailyQuota) -> u64 {
        match quota {
            DailyQuota::Messages => self.messages,
            DailyQuota::Media => self.media,
        }
    }
}

/// Per-tenant daily counters (messages and media per UTC day), checked and taken
/// atomically.
///
/// `now` is passed in (the caller's clock, normally [`imix_core::now`]) and only decides
/// which UTC day is counted; it must be close to the real time, because stored counters
/// expire by the real clock [`DAILY_COUNTER_GRACE`] after their day.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait QuotaStore: Send + Sync {
    /// Takes `units` of `quota` from the tenant's counter for the UTC day of `now` if the
    /// counter stays within `limit` (`None` = unlimited); otherwise takes nothing and
    /// returns [`QuotaError::LimitReached`]. Concurrent calls never exceed the limit.
    async fn try_consume(
        &self,
        tenant: TenantId,
        quota: DailyQuota,
        units: u64,
        limit: Option<u64>,
        now: Timestamp,
    ) -> Result<Consumed, QuotaError>;

    /// Gives back `units` of `quota` on `day` (from [`Consumed::day`]), for a send that
    /// never reached Meta. Never goes below 0; returns the day's counter afterwards.
    async fn release(
        &self,
        tenant: TenantId,
        quota: DailyQuota,
        units: u64,
        day: NaiveDate,
    ) -> Result<u64, QuotaError>;

    /// The tenant's counters for the UTC day of `now`.
    async fn usage(&self, tenant: TenantId, now: Timestamp) -> Result<DailyUsage, QuotaError>;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn days_are_utc_and_reset_at_the_next_midnight() {
        let late = "2026-11-26T23:59:59.999Z".parse::<Timestamp>().unwrap();
        let day = utc_day(late);
        assert_eq!(day.to_string(), "2026-11-26");
        assert_eq!(next_reset(day).to_rfc3339(), "2026-11-27T00:00:00+00:00");
        // A time in another zone counts on its UTC day.
        let paris = chrono::DateTime::parse_from_rfc3339("2026-11-27T00:30:00+01:00").unwrap();
        assert_eq!(utc_day(paris.to_utc()).to_string(), "2026-11-26");
        assert_eq!(
            counter_expiry(day).to_rfc3339(),
            "2026-11-28T00:00:00+00:00"
        );
        // The last representable day does not overflow.
        assert_eq!(next_reset(NaiveDate::MAX).date_naive(), NaiveDate::MAX);
    }

    #[test]
    fn keys_name_the_tenant_the_quota_and_the_day() {
        let tenant = TenantId::new();
        let day = NaiveDate::from_ymd_opt(2026, 1, 5).unwrap();
        assert_eq!(
            DailyQuota::Media.key(tenant, day),
            format!("tenant:{tenant}:media:2026-01-05")
        );
        let limits = UsageLimits {
            max_messages_per_day: Some(7),
            ..UsageLimits::default()
        };
        assert_eq!(DailyQuota::Messages.limit(&limits), Some(7));
        assert_eq!(DailyQuota::Media.limit(&limits), None);
    }
}

//! The error type of usage-limit enforcement.

use imix_core::{BoxError, Timestamp};

use super::{CountKind, DailyQuota};

/// Everything quota enforcement can refuse or fail with. The server maps the two
/// `*LimitReached` variants to 429 `limit_reached` (with the figures as details) and the
/// rest to 500/503; this crate knows nothing of HTTP.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QuotaError {
    /// The tenant's daily limit for `quota` would be exceeded: nothing was taken.
    #[error(
        "the daily limit of {limit} {quota} is reached ({used} used today); it resets at {resets_at}"
    )]
    LimitReached {
        /// Which daily counter.
        quota: DailyQuota,
        /// The tenant's limit for it.
        limit: u64,
        /// How much of it is used today.
        used: u64,
        /// When the counter starts again from 0: the next UTC midnight.
        resets_at: Timestamp,
    },
    /// The tenant already has as many `kind` as its limit allows: nothing was reserved.
    #[error("the limit of {limit} {kind} is reached ({current} in use)")]
    CountLimitReached {
        /// What is counted.
        kind: CountKind,
        /// The tenant's limit for it.
        limit: u64,
        /// How many the tenant has now.
        current: u64,
    },
    /// The counter store (SQLite or MongoDB) failed.
    #[error("quota counters: {0}")]
    Store(#[from] imix_core::Error),
    /// Another backend (Redis) failed.
    #[error("quota backend failed while trying to {action}: {source}")]
    Backend {
        /// What was being done, e.g. `"consume a daily quota"`.
        action: &'static str,
        /// The backend's own error.
        #[source]
        source: BoxError,
    },
}

impl QuotaError {
    /// Whether this is one of the "limit reached" refusals (as opposed to a failure).
    pub fn is_limit_reached(&self) -> bool {
        matches!(
            self,
            QuotaError::LimitReached { .. } | QuotaError::CountLimitReached { .. }
        )
    }
}

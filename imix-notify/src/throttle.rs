//! Email throttles: test emails per tenant, password-reset emails per address. Counted in
//! the store's counters (fixed windows), so every replica sharing the database shares the
//! limits, and a restart does not reset them.

use std::time::Duration;

use imix_core::{
    store::{CounterOutcome, CounterRepository},
    Timestamp,
};

/// Counts one event under `key` in the current fixed `window` (windows start at multiples
/// of its length since the Unix epoch). `Ok(Ok(()))` when it stays within `limit`;
/// `Ok(Err(seconds))` when the window is full, with the seconds until it ends (nothing is
/// counted then); `Err` when the counters cannot be reached.
pub async fn take_in_window(
    counters: &dyn CounterRepository,
    key: &str,
    limit: u64,
    window: Duration,
    now: Timestamp,
) -> Result<Result<(), u64>, imix_core::Error> {
    let length = window.as_secs().max(1);
    let now_secs = u64::try_from(now.timestamp()).unwrap_or(0);
    let start = now_secs - now_secs % length;
    let remaining = (start + length).saturating_sub(now_secs).max(1);
    let expires_at = now + chrono::Duration::seconds(i64::try_from(remaining).unwrap_or(i64::MAX));
    match counters
        .try_add(&format!("{key}:{start}"), 1, Some(limit), Some(expires_at))
        .await?
    {
        CounterOutcome::Added { .. } => Ok(Ok(())),
        CounterOutcome::Rejected { .. } => Ok(Err(remaining)),
    }
}

//! Sign-in throttling: after [`MAX_FAILURES`] failed sign-ins for one account within
//! [`WINDOW`], further attempts are refused until the window ends (OWASP ASVS 2.2.1).

use std::{collections::HashMap, sync::Mutex, time::Duration};

use async_trait::async_trait;
use imix_core::Timestamp;

/// Failed attempts allowed per window.
pub const MAX_FAILURES: u64 = 5;
/// The window.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);

/// Counts failed sign-ins per account key. The key is a hash of the normalized email, so
/// the throttle never stores addresses.
#[async_trait]
pub trait SignInThrottle: Send + Sync {
    /// `Err(seconds)` while the key is locked out.
    async fn check(&self, key: &str, now: Timestamp) -> Result<(), u64>;
    /// Records a failure.
    async fn record_failure(&self, key: &str, now: Timestamp);
    /// Forgets the key's failures (after a successful sign-in).
    async fn reset(&self, key: &str);
}

/// An in-process throttle: for a single server (the embedded deployment) and tests.
#[derive(Debug, Default)]
pub struct MemoryThrottle {
    windows: Mutex<HashMap<String, (u64, Timestamp)>>,
}

fn window() -> chrono::Duration {
    chrono::Duration::from_std(WINDOW).unwrap_or(chrono::Duration::minutes(15))
}

#[async_trait]
impl SignInThrottle for MemoryThrottle {
    async fn check(&self, key: &str, now: Timestamp) -> Result<(), u64> {
        let map = match self.windows.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        match map.get(key) {
            Some((count, started)) if *count >= MAX_FAILURES && now < *started + window() => {
                Err((*started + window() - now).num_seconds().max(1) as u64)
            }
            _ => Ok(()),
        }
    }

    async fn record_failure(&self, key: &str, now: Timestamp) {
        let mut map = match self.windows.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        let entry = map.entry(key.to_owned()).or_insert((0, now));
        if now >= entry.1 + window() {
            *entry = (0, now);
        }
        entry.0 += 1;
    }

    async fn reset(&self, key: &str) {
        let mut map = match self.windows.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.remove(key);
    }
}

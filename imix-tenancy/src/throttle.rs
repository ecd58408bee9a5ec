//! Sign-in throttling: after [`MAX_FAILURES`] failed sign-ins for one account within
//! [`WINDOW`], further attempts are refused until the window ends (OWASP ASVS 2.2.1).

use std::{collections::HashMap, sync::Arc, sync::Mutex, time::Duration};

use async_trait::async_trait;
use imix_core::{store::CounterRepository, Timestamp};

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

/// A throttle over the store's counters: shared by every replica that shares the database
/// (MongoDB), durable across restarts. The window restarts with each failure, so an account
/// stays locked [`WINDOW`] after the failure that locked it; `Retry-After` reports that
/// upper bound.
pub struct StoreThrottle {
    counters: Arc<dyn CounterRepository>,
}

impl StoreThrottle {
    /// A throttle over `counters` (usually `store.counters.clone()`).
    pub fn new(counters: Arc<dyn CounterRepository>) -> Self {
        Self { counters }
    }

    fn key(key: &str) -> String {
        format!("sign-in-failures:{key}")
    }
}

#[async_trait]
impl SignInThrottle for StoreThrottle {
    async fn check(&self, key: &str, _now: Timestamp) -> Result<(), u64> {
        match self.counters.get(&Self::key(key)).await {
            Ok(failures) if failures >= MAX_FAILURES => Err(WINDOW.as_secs()),
            Ok(_) => Ok(()),
            Err(e) => {
                // Fail open on a counter outage: sign-in still costs an argon2 verification.
                tracing::error!(error = %e, "sign-in throttle unavailable");
                Ok(())
            }
        }
    }

    async fn record_failure(&self, key: &str, now: Timestamp) {
        if let Err(e) = self
            .counters
            .try_add(&Self::key(key), 1, None, Some(now + window()))
            .await
        {
            tracing::error!(error = %e, "cannot record a failed sign-in");
        }
    }

    async fn reset(&self, key: &str) {
        if let Err(e) = self.counters.set(&Self::key(key), 0, None).await {
            tracing::error!(error = %e, "cannot reset the sign-in throttle");
        }
    }
}

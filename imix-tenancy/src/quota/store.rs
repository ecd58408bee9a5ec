//! Daily quotas on the storage port: SQLite for one server, MongoDB for several replicas.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::NaiveDate;
use imix_core::{
    id::TenantId,
    store::{CounterOutcome, CounterRepository},
    Timestamp,
};

use super::{
    counter_expiry, next_reset, utc_day, Consumed, DailyQuota, DailyUsage, QuotaError, QuotaStore,
};

/// A [`QuotaStore`] over [`CounterRepository`]: each tenant, quota and day is one counter
/// (`tenant:<id>:messages:2026-11-26`), taken with one atomic conditional add. Works on
/// whichever backend the store has: SQLite (one transaction) or MongoDB (one conditional
/// find-one-and-update), so replicas sharing a MongoDB database share the limits exactly.
#[derive(Clone)]
pub struct StoreQuotaStore {
    counters: Arc<dyn CounterRepository>,
}

impl StoreQuotaStore {
    /// Counts in `counters`, usually `store.counters.clone()`.
    pub fn new(counters: Arc<dyn CounterRepository>) -> Self {
        Self { counters }
    }
}

impl std::fmt::Debug for StoreQuotaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreQuotaStore").finish_non_exhaustive()
    }
}

#[async_trait]
impl QuotaStore for StoreQuotaStore {
    async fn try_consume(
        &self,
        tenant: TenantId,
        quota: DailyQuota,
        units: u64,
        limit: Option<u64>,
        now: Timestamp,
    ) -> Result<Consumed, QuotaError> {
        let day = utc_day(now);
        let resets_at = next_reset(day);
        let outcome = self
            .counters
            .try_add(
                &quota.key(tenant, day),
                units,
                limit,
                Some(counter_expiry(day)),
            )
            .await?;
        match (outcome, limit) {
            (CounterOutcome::Added { value }, _) => Ok(Consumed {
                quota,
                day,
                units,
                used: value,
                limit,
                resets_at,
            }),
            (CounterOutcome::Rejected { value }, Some(limit)) => Err(QuotaError::LimitReached {
                quota,
                limit,
                used: value,
                resets_at,
            }),
            // A counter without a limit cannot refuse; an adapter that says so is broken.
            (CounterOutcome::Rejected { .. }, None) => Err(QuotaError::Backend {
                action: "consume a daily quota",
                source: "the counter store refused an unlimited add".into(),
            }),
        }
    }

    async fn release(
        &self,
        tenant: TenantId,
        quota: DailyQuota,
        units: u64,
        day: NaiveDate,
    ) -> Result<u64, QuotaError> {
        Ok(self
            .counters
            .subtract(&quota.key(tenant, day), units)
            .await?)
    }

    async fn usage(&self, tenant: TenantId, now: Timestamp) -> Result<DailyUsage, QuotaError> {
        let day = utc_day(now);
        Ok(DailyUsage {
            day,
            messages: self
                .counters
                .get(&DailyQuota::Messages.key(tenant, day))
                .await?,
            media: self
                .counters
                .get(&DailyQuota::Media.key(tenant, day))
                .await?,
            resets_at: next_reset(day),
        })
    }
}

#[cfg(all(test, feature = "mock"))]
mod tests {
    #![allow(clippy::unwrap_used)]

    use imix_core::store::MockCounterRepository;
    use mockall::predicate::{always, eq};

    use super::*;

    #[tokio::test]
    async fn consume_uses_the_day_key_and_maps_a_refusal_to_limit_reached() {
        let tenant = TenantId::new();
        let now = "2026-11-26T23:59:59Z".parse::<Timestamp>().unwrap();
        let key = format!("tenant:{tenant}:media:2026-11-26");
        let expiry = "2026-11-28T00:00:00Z".parse::<Timestamp>().unwrap();
        let mut counters = MockCounterRepository::new();
        counters
            .expect_try_add()
            .with(eq(key.clone()), eq(2), eq(Some(3)), eq(Some(expiry)))
            .times(1)
            .returning(|_, _, _, _| Ok(CounterOutcome::Rejected { value: 2 }));
        counters
            .expect_subtract()
            .with(eq(key), always())
            .times(1)
            .returning(|_, _| Ok(1));
        let quotas = StoreQuotaStore::new(Arc::new(counters));

        let err = quotas
            .try_consume(tenant, DailyQuota::Media, 2, Some(3), now)
            .await
            .unwrap_err();
        match err {
            QuotaError::LimitReached {
                quota,
                limit,
                used,
                resets_at,
            } => {
                assert_eq!((quota, limit, used), (DailyQuota::Media, 3, 2));
                assert_eq!(resets_at.to_rfc3339(), "2026-11-27T00:00:00+00:00");
            }
            other => panic!("expected LimitReached, got {other:?}"),
        }
        let day = utc_day(now);
        assert_eq!(
            quotas
                .release(tenant, DailyQuota::Media, 1, day)
                .await
                .unwrap(),
            1
        );
    }

    #[tokio::test]
    async fn store_failures_surface_as_store_errors() {
        let mut counters = MockCounterRepository::new();
        counters
            .expect_try_add()
            .returning(|_, _, _, _| Err(imix_core::Error::backend("add", "disk full")));
        let quotas = StoreQuotaStore::new(Arc::new(counters));
        let err = quotas
            .try_consume(
                TenantId::new(),
                DailyQuota::Messages,
                1,
                None,
                imix_core::now(),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, QuotaError::Store(_)), "{err:?}");
        assert!(!err.is_limit_reached());
    }
}

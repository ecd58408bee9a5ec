//! The daily quota store the server uses: Redis (one Lua check-and-increment per send) when
//! `REDIS_URL` is set, otherwise the store's counters. The Redis connection is made on first
//! use, so the server starts (and `/health` can say what is wrong) while Redis is down.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::NaiveDate;
use imix_core::{id::TenantId, store::Store, Timestamp};
use imix_tenancy::quota::{
    Consumed, DailyQuota, DailyUsage, QuotaError, QuotaStore, RedisQuotaStore, StoreQuotaStore,
};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::OnceCell;

/// Builds the quota store for this configuration.
pub fn quota_store(store: &Store, redis_url: Option<&SecretString>) -> Arc<dyn QuotaStore> {
    match redis_url {
        Some(url) => Arc::new(LazyRedisQuota {
            url: url.clone(),
            inner: OnceCell::new(),
        }),
        None => Arc::new(StoreQuotaStore::new(store.counters.clone())),
    }
}

/// A [`RedisQuotaStore`] connected on first use (and retried on later calls until it is).
struct LazyRedisQuota {
    url: SecretString,
    inner: OnceCell<RedisQuotaStore>,
}

impl LazyRedisQuota {
    async fn get(&self) -> Result<&RedisQuotaStore, QuotaError> {
        self.inner
            .get_or_try_init(|| async {
                let connect = RedisQuotaStore::connect(
                    self.url.expose_secret(),
                    RedisQuotaStore::DEFAULT_PREFIX,
                );
                match tokio::time::timeout(std::time::Duration::from_secs(3), connect).await {
                    Ok(result) => result,
                    Err(_) => Err(QuotaError::Backend {
                        action: "connect to Redis",
                        source: "no answer within 3 s".into(),
                    }),
                }
            })
            .await
    }
}

#[async_trait]
impl QuotaStore for LazyRedisQuota {
    async fn try_consume(
        &self,
        tenant: TenantId,
        quota: DailyQuota,
        units: u64,
        limit: Option<u64>,
        now: Timestamp,
    ) -> Result<Consumed, QuotaError> {
        self.get()
            .await?
            .try_consume(tenant, quota, units, limit, now)
            .await
    }

    async fn release(
        &self,
        tenant: TenantId,
        quota: DailyQuota,
        units: u64,
        day: NaiveDate,
    ) -> Result<u64, QuotaError> {
        self.get().await?.release(tenant, quota, units, day).await
    }

    async fn usage(&self, tenant: TenantId, now: Timestamp) -> Result<DailyUsage, QuotaError> {
        self.get().await?.usage(tenant, now).await
    }
}

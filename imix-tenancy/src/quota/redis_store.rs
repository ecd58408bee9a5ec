//! Daily quotas on Redis: one Lua script per call, so check and increment are one atomic
//! step on the server, whichever replica sends it.

use async_trait::async_trait;
use chrono::NaiveDate;
use imix_core::{id::TenantId, Timestamp};
use redis::{aio::ConnectionManager, AsyncCommands, Script};

use super::{
    counter_expiry, next_reset, utc_day, Consumed, DailyQuota, DailyUsage, QuotaError, QuotaStore,
};

/// KEYS[1]: the day's counter. ARGV[1]: units; ARGV[2]: the limit, `''` for none;
/// ARGV[3]: when the key expires, in Unix seconds.
/// Returns `{1, value after}` when the units were taken, `{0, current value}` when the
/// limit refused them (and nothing changed).
const CONSUME_LUA: &str = r"
local units = tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if ARGV[2] ~= '' and current + units > tonumber(ARGV[2]) then
  return {0, current}
end
local value = redis.call('INCRBY', KEYS[1], units)
redis.call('EXPIREAT', KEYS[1], ARGV[3])
return {1, value}
";

/// KEYS[1]: the day's counter. ARGV[1]: units to give back. Never below 0, never creates
/// the key, keeps its expiry. Returns the value afterwards.
const RELEASE_LUA: &str = r"
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local take = math.min(current, tonumber(ARGV[1]))
if take <= 0 then
  return current
end
return redis.call('DECRBY', KEYS[1], take)
";

/// A [`QuotaStore`] on Redis. Keys are `<prefix>tenant:<id>:<quota>:<YYYY-MM-DD>` and
/// expire [`DAILY_COUNTER_GRACE`](super::DAILY_COUNTER_GRACE) after their UTC day.
///
/// Cheap to clone (one multiplexed, auto-reconnecting connection). Every replica makes its
/// own; they share the counters through the Redis server.
#[derive(Clone)]
pub struct RedisQuotaStore {
    conn: ConnectionManager,
    prefix: String,
    consume: Script,
    release: Script,
}

impl std::fmt::Debug for RedisQuotaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQuotaStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn redis_err(action: &'static str) -> impl Fn(redis::RedisError) -> QuotaError {
    move |e| QuotaError::Backend {
        action,
        source: e.into(),
    }
}

impl RedisQuotaStore {
    /// The default key prefix.
    pub const DEFAULT_PREFIX: &'static str = "imix:quota:";

    /// Connects to `url` (`redis://host:port/db`, `rediss://…`); keys start with `prefix`
    /// (say [`Self::DEFAULT_PREFIX`]; tests use their own so they never collide).
    pub async fn connect(url: &str, prefix: impl Into<String>) -> Result<Self, QuotaError> {
        let client = redis::Client::open(url).map_err(redis_err("parse the Redis URL"))?;
        let conn = client
            .get_connection_manager()
            .await
            .map_err(redis_err("connect to Redis"))?;
        Ok(Self::new(conn, prefix))
    }

    /// Uses an existing connection (the server shares one with its other Redis users).
    pub fn new(conn: ConnectionManager, prefix: impl Into<String>) -> Self {
        Self {
            conn,
            prefix: prefix.into(),
            consume: Script::new(CONSUME_LUA),
            release: Script::new(RELEASE_LUA),
        }
    }

    fn key(&self, tenant: TenantId, quota: DailyQuota, day: NaiveDate) -> String {
        format!("{}{}", self.prefix, quota.key(tenant, day))
    }
}

#[async_trait]
impl QuotaStore for RedisQuotaStore {
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
        let limit_arg = limit.map(|l| l.to_string()).unwrap_or_default();
        let (taken, value): (i64, i64) = self
            .consume
            .key(self.key(tenant, quota, day))
            .arg(units)
            .arg(limit_arg)
            .arg(counter_expiry(day).timestamp())
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(redis_err("consume a daily quota"))?;
        let value = u64::try_from(value).unwrap_or(0);
        match (taken, limit) {
            (1, _) => Ok(Consumed {
                quota,
                day,
                units,
                used: value,
                limit,
                resets_at,
            }),
            (_, Some(limit)) => Err(QuotaError::LimitReached {
                quota,
                limit,
                used: value,
                resets_at,
            }),
            (_, None) => Err(QuotaError::Backend {
                action: "consume a daily quota",
                source: "the quota script refused an unlimited consume".into(),
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
        let value: i64 = self
            .release
            .key(self.key(tenant, quota, day))
            .arg(units)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(redis_err("release a daily quota"))?;
        Ok(u64::try_from(value).unwrap_or(0))
    }

    async fn usage(&self, tenant: TenantId, now: Timestamp) -> Result<DailyUsage, QuotaError> {
        let day = utc_day(now);
        let keys = DailyQuota::ALL.map(|q| self.key(tenant, q, day));
        let values: Vec<Option<u64>> = self
            .conn
            .clone()
            .mget(&keys)
            .await
            .map_err(redis_err("read daily quotas"))?;
        let value = |i: usize| values.get(i).copied().flatten().unwrap_or(0);
        Ok(DailyUsage {
            day,
            messages: value(0),
            media: value(1),
            resets_at: next_reset(day),
        })
    }
}

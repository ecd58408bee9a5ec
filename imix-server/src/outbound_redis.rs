//! Outbound dispatch shared across replicas through Redis (when `REDIS_URL` is set): the
//! per-number rate limit as a GCRA reservation in one Lua script ([`RedisRateGate`]), and
//! the work queue as a Redis Stream with a consumer group ([`RedisStreamQueue`]).
//!
//! Both are adapters of ports of `imix-messaging` ([`RateGate`], [`OutboundQueue`]); they
//! live here, with the server's other Redis users (quota counters, live-event fan-out),
//! so that the messaging crate carries no Redis client and stays usable on its own.
//! Connections are made on first use: the server starts while Redis is down.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use async_trait::async_trait;
use imix_messaging::{
    outbound::{
        Dispatcher, OutboundQueue, OutboundService, QueueEntry, QueueError, RateGate, StreamConfig,
    },
    MessageId,
};
use redis::{aio::ConnectionManager, Script, Value};
use tokio::sync::{Mutex, OnceCell};

use crate::config::Config;

/// How long one Redis command may take before it counts as failed (Redis answers in well
/// under a millisecond; a hung connection must not hang a send forever).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// KEYS[1]: the number's theoretical arrival time (TAT, microseconds of Redis's clock).
/// ARGV[1]: the period between two sends, in microseconds.
/// Reserves the next slot: the later of now and the TAT; the TAT moves one period past it.
/// Returns how many microseconds the caller waits for its slot. Redis's own clock (`TIME`)
/// is the only clock involved, so replicas' clocks do not matter.
const GCRA_LUA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local period = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then
  tat = now
end
local next = tat + period
redis.call('SET', KEYS[1], string.format('%.0f', next), 'PX', math.floor((next - now) / 1000) + 1000)
return tat - now
";

/// A connection made on first use (and retried on later calls until it is).
struct LazyConnection {
    client: redis::Client,
    conn: OnceCell<ConnectionManager>,
}

impl LazyConnection {
    fn new(client: redis::Client) -> Self {
        Self {
            client,
            conn: OnceCell::new(),
        }
    }

    async fn get(&self) -> Result<ConnectionManager, QueueError> {
        let conn = self
            .conn
            .get_or_try_init(|| async {
                match tokio::time::timeout(COMMAND_TIMEOUT, self.client.get_connection_manager())
                    .await
                {
                    Ok(Ok(c)) => Ok(c),
                    Ok(Err(e)) => Err(QueueError::from(e)),
                    Err(_) => Err("Redis did not answer within 2 s".into()),
                }
            })
            .await?;
        Ok(conn.clone())
    }
}

/// Runs `cmd` on `conn` within [`COMMAND_TIMEOUT`] (plus `extra`, for blocking reads).
async fn query<T: redis::FromRedisValue>(
    cmd: &redis::Cmd,
    conn: &mut impl redis::aio::ConnectionLike,
    extra: Duration,
) -> Result<T, QueueError> {
    match tokio::time::timeout(COMMAND_TIMEOUT + extra, cmd.query_async(conn)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err("Redis did not answer in time".into()),
    }
}

/// The per-number rate limit shared by every replica: each send reserves a slot in Redis
/// (GCRA, one Lua script run atomically on the server, Redis's clock), then waits for it.
///
/// Slots are spaced `(1 s + allowance) / rate` apart, never bunched (no burst), so the
/// reservations of all replicas together never exceed the rate in any one-second window.
/// The `allowance` (default [`RedisRateGate::DEFAULT_ALLOWANCE`]) absorbs the jitter between
/// a slot and the moment the request reaches Meta (a store write and an HTTP call whose
/// times vary), so Meta does not see two slots' requests closer than their spacing push a
/// window over the rate; it costs 2 % of the rate at the default.
///
/// When Redis cannot be reached the gate keeps waiting and retrying (with back-off up to
/// 2 s): a send never goes without a reservation, so an outage slows sending down (and the
/// messages stay queued in the store) but never pushes a number above its rate, however
/// many replicas there are. A local bucket at a fraction of the rate was the alternative,
/// but it needs the replica count and is wrong while it changes.
pub struct RedisRateGate {
    conn: LazyConnection,
    prefix: String,
    script: Script,
    allowance: Duration,
    down: AtomicBool,
}

impl std::fmt::Debug for RedisRateGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRateGate")
            .field("prefix", &self.prefix)
            .field("allowance", &self.allowance)
            .finish_non_exhaustive()
    }
}

impl RedisRateGate {
    /// The default key prefix (a number's key is the prefix and its phone number id).
    pub const DEFAULT_PREFIX: &'static str = "imix:rate:";
    /// The default jitter allowance: 20 ms per second.
    pub const DEFAULT_ALLOWANCE: Duration = Duration::from_millis(20);

    /// A gate on `client`'s Redis with keys under `prefix`.
    pub fn new(client: redis::Client, prefix: impl Into<String>) -> Self {
        Self {
            conn: LazyConnection::new(client),
            prefix: prefix.into(),
            script: Script::new(GCRA_LUA),
            allowance: Self::DEFAULT_ALLOWANCE,
            down: AtomicBool::new(false),
        }
    }

    /// The spacing between two sends at `rate` per second, in microseconds.
    pub fn period_micros(&self, rate: u32) -> u64 {
        let second = 1_000_000 + u64::try_from(self.allowance.as_micros()).unwrap_or(0);
        second.div_ceil(u64::from(rate.max(1)))
    }

    /// Reserves the next slot of `phone_number_id`; answers how long to wait for it.
    async fn reserve(&self, phone_number_id: &str, rate: u32) -> Result<Duration, QueueError> {
        let mut conn = self.conn.get().await?;
        let mut invocation = self.script.key(format!("{}{phone_number_id}", self.prefix));
        invocation.arg(self.period_micros(rate));
        let invocation = invocation.invoke_async::<i64>(&mut conn);
        let wait = match tokio::time::timeout(COMMAND_TIMEOUT, invocation).await {
            Ok(Ok(w)) => w,
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => return Err("Redis did not answer in time".into()),
        };
        Ok(Duration::from_micros(u64::try_from(wait).unwrap_or(0)))
    }
}

#[async_trait]
impl RateGate for RedisRateGate {
    async fn acquire(&self, phone_number_id: &str, rate: u32) -> tokio::time::Instant {
        let mut pause = Duration::from_millis(100);
        loop {
            match self.reserve(phone_number_id, rate).await {
                Ok(wait) => {
                    if self.down.swap(false, Ordering::Relaxed) {
                        tracing::info!(target: "imix_whatsapp", "the shared rate limiter answers again");
                    }
                    let slot = tokio::time::Instant::now() + wait;
                    tokio::time::sleep_until(slot).await;
                    return slot;
                }
                Err(e) => {
                    if !self.down.swap(true, Ordering::Relaxed) {
                        tracing::warn!(target: "imix_whatsapp", error = %e, "cannot reach Redis for the shared rate limit: sends wait until it answers (never unpaced)");
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    fn late_after(&self) -> Option<Duration> {
        // Half the allowance: the rest covers the call's own jitter.
        Some(self.allowance / 2)
    }
}

/// The outbound work queue on a Redis Stream with one consumer group shared by the
/// replicas' dispatchers.
///
/// One stream per store (`imix:outbound:<namespace>`: replicas sharing a store share it,
/// other deployments on the same Redis do not); entries carry one field, `m`, the message
/// id. `XADD` announces, `XREADGROUP` hands each entry to one consumer, `XACK` ends it once
/// the outcome is stored, `XAUTOCLAIM` takes over what a dead consumer held. The stream is
/// capped (`MAXLEN ~ 1,000,000`): an entry trimmed unread is found by the store's sweep.
pub struct RedisStreamQueue {
    conn: LazyConnection,
    /// Blocking reads get their own connection, so they never hold up pushes and acks
    /// queued behind them on a multiplexed one.
    reader: Mutex<Option<redis::aio::MultiplexedConnection>>,
    stream: String,
    group: String,
    consumer: String,
    group_ready: AtomicBool,
    reclaim_cursor: Mutex<String>,
}

impl std::fmt::Debug for RedisStreamQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStreamQueue")
            .field("stream", &self.stream)
            .field("consumer", &self.consumer)
            .finish_non_exhaustive()
    }
}

/// The stream entries in `v` (a list of `[id, [field, value, …]]`); entries without a
/// readable message id are answered separately (to be acknowledged and forgotten).
fn parse_entries(v: &Value) -> (Vec<QueueEntry>, Vec<String>) {
    let (mut good, mut bad) = (Vec::new(), Vec::new());
    let Value::Array(items) = v else {
        return (good, bad);
    };
    for item in items {
        let Value::Array(parts) = item else { continue };
        let Some(entry) = parts.first().and_then(text) else {
            continue;
        };
        let message = match parts.get(1) {
            Some(Value::Array(fields)) => fields
                .chunks(2)
                .find(|kv| kv.first().and_then(text).as_deref() == Some("m"))
                .and_then(|kv| kv.get(1).and_then(text))
                .and_then(|m| m.parse::<MessageId>().ok()),
            _ => None,
        };
        match message {
            Some(message) => good.push(QueueEntry { entry, message }),
            None => bad.push(entry),
        }
    }
    (good, bad)
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

impl RedisStreamQueue {
    /// The consumer group every replica joins.
    pub const GROUP: &'static str = "dispatchers";

    /// The queue of the store named `namespace` on `client`'s Redis; this process reads as
    /// a consumer of its own (a random name).
    pub fn new(client: redis::Client, namespace: &str) -> Self {
        let consumer = format!(
            "{}-{}-{:016x}",
            hostname(),
            std::process::id(),
            rand::random::<u64>()
        );
        Self {
            conn: LazyConnection::new(client),
            reader: Mutex::new(None),
            stream: format!("imix:outbound:{namespace}"),
            group: Self::GROUP.into(),
            consumer,
            group_ready: AtomicBool::new(false),
            reclaim_cursor: Mutex::new("0-0".into()),
        }
    }

    /// The stream's key.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// Creates the group (reading from the stream's start) unless this process did.
    async fn ensure_group(
        &self,
        conn: &mut impl redis::aio::ConnectionLike,
    ) -> Result<(), QueueError> {
        if self.group_ready.load(Ordering::Relaxed) {
            return Ok(());
        }
        let created: Result<Value, QueueError> = query(
            redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(&self.stream)
                .arg(&self.group)
                .arg("0")
                .arg("MKSTREAM"),
            conn,
            Duration::ZERO,
        )
        .await;
        match created {
            Ok(_) => {}
            Err(e) if e.to_string().contains("BUSYGROUP") => {}
            Err(e) => return Err(e),
        }
        self.group_ready.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Notes a failure; a missing group (Redis lost the stream) is created again next time.
    fn failed(&self, e: QueueError) -> QueueError {
        if e.to_string().contains("NOGROUP") {
            self.group_ready.store(false, Ordering::Relaxed);
        }
        e
    }

    async fn ack_ids(&self, ids: &[String]) -> Result<(), QueueError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn.get().await?;
        let mut cmd = redis::cmd("XACK");
        cmd.arg(&self.stream).arg(&self.group);
        for id in ids {
            cmd.arg(id);
        }
        query::<i64>(&cmd, &mut conn, Duration::ZERO)
            .await
            .map(drop)
            .map_err(|e| self.failed(e))
    }

    /// Entries of `v`; unreadable ones are acknowledged (nothing can be done with them).
    async fn entries(&self, v: &Value) -> Vec<QueueEntry> {
        let (good, bad) = parse_entries(v);
        if !bad.is_empty() {
            tracing::warn!(target: "imix_whatsapp", count = bad.len(), "outbound queue entries without a message id dropped");
            if let Err(e) = self.ack_ids(&bad).await {
                tracing::warn!(target: "imix_whatsapp", error = %e, "cannot drop unreadable queue entries");
            }
        }
        good
    }
}

/// The blocking reader's connection while a read uses it. Unless the read finished, the
/// connection is dropped with the guard, which closes it: a read that failed may have left
/// it mid-reply, and a read that was cancelled (its dispatcher stopping) left its
/// `XREADGROUP … BLOCK` waiting at Redis, which would hand the next entries pushed within
/// the block time to this consumer although nobody reads them any more (they would wait
/// for another replica's take-over, [`StreamConfig::reclaim_idle`] later). Closing the
/// connection ends the blocked command at Redis.
struct ReaderGuard<'a> {
    slot: tokio::sync::MutexGuard<'a, Option<redis::aio::MultiplexedConnection>>,
    finished: bool,
}

impl Drop for ReaderGuard<'_> {
    fn drop(&mut self) {
        if !self.finished {
            *self.slot = None;
        }
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "imix".into())
}

#[async_trait]
impl OutboundQueue for RedisStreamQueue {
    fn consumer(&self) -> &str {
        &self.consumer
    }

    async fn push(&self, message: MessageId) -> Result<(), QueueError> {
        let mut conn = self.conn.get().await?;
        let _: String = query(
            redis::cmd("XADD")
                .arg(&self.stream)
                .arg("MAXLEN")
                .arg("~")
                .arg(1_000_000)
                .arg("*")
                .arg("m")
                .arg(message.to_string()),
            &mut conn,
            Duration::ZERO,
        )
        .await?;
        Ok(())
    }

    async fn read(&self, max: usize, block: Duration) -> Result<Vec<QueueEntry>, QueueError> {
        let mut reader = ReaderGuard {
            slot: self.reader.lock().await,
            finished: false,
        };
        let conn = match reader.slot.as_mut() {
            Some(c) => c,
            None => {
                let c = match tokio::time::timeout(
                    COMMAND_TIMEOUT,
                    self.conn.client.get_multiplexed_async_connection(),
                )
                .await
                {
                    Ok(Ok(c)) => c,
                    Ok(Err(e)) => return Err(e.into()),
                    Err(_) => return Err("Redis did not answer within 2 s".into()),
                };
                reader.slot.insert(c)
            }
        };
        let outcome = async {
            self.ensure_group(conn).await?;
            let block_ms = u64::try_from(block.as_millis()).unwrap_or(u64::MAX).max(1);
            query::<Value>(
                redis::cmd("XREADGROUP")
                    .arg("GROUP")
                    .arg(&self.group)
                    .arg(&self.consumer)
                    .arg("COUNT")
                    .arg(max.max(1))
                    .arg("BLOCK")
                    .arg(block_ms)
                    .arg("STREAMS")
                    .arg(&self.stream)
                    .arg(">"),
                conn,
                block,
            )
            .await
        }
        .await;
        let reply = match outcome {
            Ok(v) => v,
            // The guard drops the connection: a fresh one next time (this one may be
            // broken or mid-reply).
            Err(e) => return Err(self.failed(e)),
        };
        reader.finished = true;
        drop(reader);
        // [[stream, [[id, [field, value]], …]]], or nil when nothing came.
        let entries = match &reply {
            Value::Array(streams) => streams
                .iter()
                .filter_map(|s| match s {
                    Value::Array(kv) => kv.get(1).cloned(),
                    _ => None,
                })
                .collect::<Vec<_>>(),
            _ => Vec::new(),
        };
        let mut found = Vec::new();
        for list in &entries {
            found.extend(self.entries(list).await);
        }
        Ok(found)
    }

    async fn reclaim(&self, idle: Duration, max: usize) -> Result<Vec<QueueEntry>, QueueError> {
        let mut conn = self.conn.get().await?;
        self.ensure_group(&mut conn).await?;
        let mut cursor = self.reclaim_cursor.lock().await;
        let reply: Value = query(
            redis::cmd("XAUTOCLAIM")
                .arg(&self.stream)
                .arg(&self.group)
                .arg(&self.consumer)
                .arg(u64::try_from(idle.as_millis()).unwrap_or(u64::MAX))
                .arg(cursor.as_str())
                .arg("COUNT")
                .arg(max.max(1)),
            &mut conn,
            Duration::ZERO,
        )
        .await
        .map_err(|e| self.failed(e))?;
        // [next cursor, [[id, [field, value]], …], [deleted ids]]
        let Value::Array(parts) = &reply else {
            return Ok(Vec::new());
        };
        *cursor = parts.first().and_then(text).unwrap_or_else(|| "0-0".into());
        drop(cursor);
        match parts.get(1) {
            Some(list) => Ok(self.entries(list).await),
            None => Ok(Vec::new()),
        }
    }

    async fn ack(&self, entries: &[String]) -> Result<(), QueueError> {
        self.ack_ids(entries).await
    }
}

/// The name of the store replicas share, for the queue's key: the database for MongoDB,
/// the data directory for SQLite (FNV-1a of its path, stable across builds).
pub fn namespace(config: &Config) -> String {
    if config.mongodb_uri.is_some() {
        return format!("mongodb:{}", config.db_name);
    }
    let dir = std::fs::canonicalize(&config.data_dir).unwrap_or_else(|_| config.data_dir.clone());
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in dir.to_string_lossy().as_bytes() {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("sqlite:{hash:016x}")
}

/// The send API and dispatcher sharing Redis at `client` with the other replicas: the
/// shared rate gate, and the stream queue of this configuration's store.
pub fn replicated(
    config: &Config,
    client: redis::Client,
    service: OutboundService,
    dispatcher: Dispatcher,
) -> (OutboundService, Dispatcher) {
    let gate = Arc::new(RedisRateGate::new(
        client.clone(),
        RedisRateGate::DEFAULT_PREFIX,
    ));
    let queue: Arc<dyn OutboundQueue> = Arc::new(RedisStreamQueue::new(client, &namespace(config)));
    tracing::info!(
        consumer = queue.consumer(),
        "outbound dispatch shares its queue and rate limits through Redis"
    );
    (
        service.with_queue(queue.clone()),
        dispatcher
            .with_rate_gate(gate)
            .with_queue(queue, StreamConfig::default()),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests fail loudly by design
mod tests {
    use super::*;

    #[test]
    fn slots_are_spaced_with_the_allowance() {
        let gate = RedisRateGate::new(redis::Client::open("redis://127.0.0.1:1").unwrap(), "t:");
        assert_eq!(gate.period_micros(80), 12_750);
        assert_eq!(gate.period_micros(1000), 1_020);
        assert_eq!(gate.period_micros(0), 1_020_000);
    }

    #[test]
    fn entries_are_parsed_and_bad_ones_set_apart() {
        let id = MessageId::new();
        let b = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let v = Value::Array(vec![
            Value::Array(vec![
                b("1-0"),
                Value::Array(vec![b("m"), b(&id.to_string())]),
            ]),
            Value::Array(vec![b("2-0"), Value::Array(vec![b("m"), b("nonsense")])]),
            Value::Array(vec![b("3-0"), Value::Nil]),
        ]);
        let (good, bad) = parse_entries(&v);
        assert_eq!(
            good,
            vec![QueueEntry {
                entry: "1-0".into(),
                message: id
            }]
        );
        assert_eq!(bad, vec!["2-0".to_owned(), "3-0".to_owned()]);
    }
}

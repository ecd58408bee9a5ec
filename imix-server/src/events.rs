//! Wiring of live events: the durable log on the store, the fan-out (Redis pub/sub across
//! replicas when `REDIS_URL` is set, in-process otherwise), the bus ingest publishes
//! through, and the service the SSE endpoint opens streams with.

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use imix_messaging::events::{
    Event, EventBus, EventLog, EventRetention, EventService, Fanout, LocalFanout, StreamConfig,
};
use tokio::sync::{broadcast, mpsc};

use crate::{storage::Storage, ServerError};

/// The Redis channel events are published on.
pub const REDIS_CHANNEL: &str = "imix:events";
/// Events buffered per subscriber before it lags (and reads the log instead).
const SUBSCRIBER_BUFFER: usize = 1024;
/// Events waiting to be published to Redis before new ones are dropped (streams still get
/// them from the log at their next poll).
const PUBLISH_QUEUE: usize = 4096;
/// How often the log is pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// Live events, assembled.
#[derive(Clone)]
pub struct LiveEvents {
    /// What ingest publishes through.
    pub bus: EventBus,
    /// Opens users' streams.
    pub service: EventService,
    /// How often streams send a heartbeat comment.
    pub heartbeat: Duration,
}

impl std::fmt::Debug for LiveEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveEvents")
            .field("heartbeat", &self.heartbeat)
            .finish_non_exhaustive()
    }
}

impl LiveEvents {
    /// The log on `storage`'s backend, fanned out through `redis` if given. Must be called
    /// inside the Tokio runtime (the Redis fan-out runs tasks).
    pub fn new(
        storage: &Storage,
        redis: Option<&redis::Client>,
        heartbeat: Duration,
    ) -> Result<Self, ServerError> {
        let log: Arc<dyn EventLog> = imix_messaging::storage::events::open(&storage.store.backend)?;
        let fanout: Arc<dyn Fanout> = match redis {
            Some(client) => Arc::new(RedisFanout::start(client.clone())),
            None => Arc::new(LocalFanout::new(SUBSCRIBER_BUFFER)),
        };
        let config = StreamConfig {
            // Streams re-read the log as often as they beat: cheap, and an event Redis lost
            // arrives within one heartbeat.
            poll_every: heartbeat,
            ..StreamConfig::default()
        };
        Ok(Self {
            bus: EventBus::new(log.clone(), fanout.clone()),
            service: EventService::new(log, fanout, config),
            heartbeat,
        })
    }

    /// Prunes the log every ten minutes, for as long as the runtime runs.
    pub fn spawn_pruning(&self) -> tokio::task::JoinHandle<()> {
        let bus = self.bus.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(PRUNE_EVERY);
            loop {
                every.tick().await;
                match bus.prune(EventRetention::default()).await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(removed = n, "live events pruned"),
                    Err(e) => tracing::warn!(error = %e, "pruning live events failed"),
                }
            }
        })
    }
}

/// Fan-out through Redis pub/sub: events are published on [`REDIS_CHANNEL`] by a background
/// task, and every replica's subscriber task (this one's included) hands what it hears to
/// its local streams. Publishing never waits for Redis. Pub/sub delivers at most once; what
/// it loses (Redis down, a reconnect) streams read from the log at their next poll.
#[derive(Debug)]
pub struct RedisFanout {
    local: LocalFanout,
    outgoing: mpsc::Sender<Event>,
    tasks: [tokio::task::AbortHandle; 2],
}

impl Drop for RedisFanout {
    fn drop(&mut self) {
        // The server is gone (every state clone dropped): stop talking to Redis.
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl RedisFanout {
    /// Starts the publisher and subscriber tasks on `client`.
    pub fn start(client: redis::Client) -> Self {
        let local = LocalFanout::new(SUBSCRIBER_BUFFER);
        let (outgoing, queue) = mpsc::channel(PUBLISH_QUEUE);
        let tasks = [
            tokio::spawn(publish_loop(client.clone(), queue)).abort_handle(),
            tokio::spawn(subscribe_loop(client, local.clone())).abort_handle(),
        ];
        Self {
            local,
            outgoing,
            tasks,
        }
    }
}

impl Fanout for RedisFanout {
    fn publish(&self, event: &Event) {
        if self.outgoing.try_send(event.clone()).is_err() {
            tracing::warn!(
                "the Redis publish queue is full: an event goes to streams through the log only"
            );
        }
    }

    fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.local.subscribe()
    }
}

async fn publish_loop(client: redis::Client, mut queue: mpsc::Receiver<Event>) {
    let mut connection = None;
    while let Some(event) = queue.recv().await {
        let Ok(payload) = serde_json::to_string(&event) else {
            continue;
        };
        if connection.is_none() {
            match client.get_multiplexed_async_connection().await {
                Ok(c) => connection = Some(c),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot reach Redis to publish a live event");
                    continue;
                }
            }
        }
        if let Some(c) = connection.as_mut() {
            let published: redis::RedisResult<i64> = redis::cmd("PUBLISH")
                .arg(REDIS_CHANNEL)
                .arg(payload)
                .query_async(c)
                .await;
            if let Err(e) = published {
                tracing::warn!(error = %e, "publishing a live event to Redis failed");
                connection = None;
            }
        }
    }
}

async fn subscribe_loop(client: redis::Client, local: LocalFanout) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => match pubsub.subscribe(REDIS_CHANNEL).await {
                Ok(()) => {
                    backoff = Duration::from_millis(100);
                    let mut messages = pubsub.into_on_message();
                    while let Some(message) = messages.next().await {
                        let payload: Vec<u8> = message.get_payload_bytes().to_vec();
                        match serde_json::from_slice::<Event>(&payload) {
                            Ok(event) => local.publish(&event),
                            Err(e) => {
                                tracing::warn!(error = %e, "a message on the Redis events channel is not an event")
                            }
                        }
                    }
                    tracing::warn!("the Redis events subscription ended; reconnecting");
                }
                Err(e) => tracing::warn!(error = %e, "cannot subscribe to Redis live events"),
            },
            Err(e) => tracing::warn!(error = %e, "cannot reach Redis for live events"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

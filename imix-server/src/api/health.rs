use std::time::Duration;

use poem_openapi::{payload::Json, ApiResponse, Object, OpenApi};

use super::ApiTags;
use crate::{probe, state::AppState};

/// `GET /health`.
pub struct HealthApi {
    state: AppState,
}

impl HealthApi {
    /// The health API over `state`.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

/// Overall health.
#[derive(Debug, Object)]
pub struct Health {
    /// `ok` when every configured service answers, `degraded` otherwise.
    pub status: String,
    /// The server's version.
    pub version: String,
    /// The store.
    pub store: StoreHealth,
    /// Redis.
    pub redis: RedisHealth,
    /// The mail outbox worker of this replica.
    pub mail_outbox: MailOutboxHealth,
}

/// How long an email may wait past its due time before `/health` reports `degraded`: a
/// working worker sends a due email within seconds (a lost lease is taken over after two
/// minutes).
pub const OUTBOX_STALE_AFTER: Duration = Duration::from_secs(5 * 60);

/// Mail outbox health.
#[derive(Debug, Object)]
pub struct MailOutboxHealth {
    /// Whether this replica's outbox worker is running (false while it is being restarted
    /// after dying).
    pub worker_alive: bool,
    /// How long the most overdue email (of any replica) has waited past its due time, in
    /// seconds; 0 when none is overdue. Above 300 the status is `degraded`. Absent when the
    /// store could not be read.
    pub oldest_pending_seconds: Option<u64>,
    /// Emails this replica gave up on (`failed`) since it started; each is in the outbox
    /// listing with its `last_error`, and in the log.
    pub failures: u64,
    /// How often this replica's worker died and was restarted since it started.
    pub worker_restarts: u64,
}

/// Store health.
#[derive(Debug, Object)]
pub struct StoreHealth {
    /// `sqlite` or `mongodb`.
    pub backend: String,
    /// Whether the ping succeeded.
    pub ok: bool,
    /// Ping round trip in milliseconds.
    pub latency_ms: Option<f64>,
}

/// Redis health.
#[derive(Debug, Object)]
pub struct RedisHealth {
    /// Whether `REDIS_URL` is set.
    pub configured: bool,
    /// Whether `PING` succeeded; absent when not configured.
    pub ok: Option<bool>,
    /// Ping round trip in milliseconds.
    pub latency_ms: Option<f64>,
}

#[derive(ApiResponse)]
enum HealthResponse {
    /// Every configured service answers.
    #[oai(status = 200)]
    Ok(Json<Health>),
    /// The store or Redis does not answer, or the mail outbox is stuck.
    #[oai(status = 503)]
    Degraded(Json<Health>),
}

#[OpenApi(tag = "ApiTags::System")]
impl HealthApi {
    /// Health of the server and its services.
    ///
    /// Pings the store and, when configured, Redis, and reports the mail outbox worker.
    /// `degraded` (503) when the store or Redis does not answer, the outbox worker is not
    /// running, or an email has waited more than 5 minutes past its due time.
    /// Unauthenticated, for load balancers and monitoring; failure causes go to the log,
    /// not into this response.
    #[oai(path = "/health", method = "get", operation_id = "get_health")]
    async fn health(&self) -> HealthResponse {
        let store_probe = probe::store(&self.state.store).await;
        if let Some(e) = &store_probe.error {
            tracing::warn!(error = %e, "health: store ping failed");
        }
        let redis_probe = match &self.state.redis {
            Some(client) => Some(probe::redis(client).await),
            None => None,
        };
        if let Some(e) = redis_probe.as_ref().and_then(|p| p.error.as_ref()) {
            tracing::warn!(error = %e, "health: redis ping failed");
        }
        let outbox = self.state.notifier.outbox();
        let oldest_pending = match outbox.oldest_pending_age().await {
            Ok(age) => Some(age),
            Err(e) => {
                tracing::warn!(error = %e, "health: cannot read the mail outbox");
                None
            }
        };
        let worker = outbox.monitor().state();
        if !worker.alive {
            tracing::warn!("health: the mail outbox worker is not running");
        }
        let outbox_ok = worker.alive && oldest_pending.is_none_or(|age| age <= OUTBOX_STALE_AFTER);
        let healthy =
            store_probe.ok() && redis_probe.as_ref().is_none_or(probe::Probe::ok) && outbox_ok;
        let body = Health {
            status: if healthy { "ok" } else { "degraded" }.to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            store: StoreHealth {
                backend: self.state.store.admin.backend().to_owned(),
                ok: store_probe.ok(),
                latency_ms: store_probe.latency_ms(),
            },
            redis: RedisHealth {
                configured: redis_probe.is_some(),
                ok: redis_probe.as_ref().map(probe::Probe::ok),
                latency_ms: redis_probe.as_ref().and_then(probe::Probe::latency_ms),
            },
            mail_outbox: MailOutboxHealth {
                worker_alive: worker.alive,
                oldest_pending_seconds: oldest_pending.map(|age| age.as_secs()),
                failures: worker.failures,
                worker_restarts: worker.restarts,
            },
        };
        if healthy {
            HealthResponse::Ok(Json(body))
        } else {
            HealthResponse::Degraded(Json(body))
        }
    }
}

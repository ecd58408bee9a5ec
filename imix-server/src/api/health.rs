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
    /// The store or Redis does not answer.
    #[oai(status = 503)]
    Degraded(Json<Health>),
}

#[OpenApi(tag = "ApiTags::System")]
impl HealthApi {
    /// Health of the server and its services.
    ///
    /// Pings the store and, when configured, Redis. Unauthenticated, for load balancers
    /// and monitoring; failure causes go to the log, not into this response.
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
        let healthy = store_probe.ok() && redis_probe.as_ref().is_none_or(probe::Probe::ok);
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
        };
        if healthy {
            HealthResponse::Ok(Json(body))
        } else {
            HealthResponse::Degraded(Json(body))
        }
    }
}

//! Round trips to the backing services, shared by `/health` and `imix-server doctor`.

use std::time::{Duration, Instant};

use imix_core::store::Store;

/// How long a probe waits before calling a service unreachable.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// The outcome of one probe.
#[derive(Debug, Clone)]
pub struct Probe {
    /// How long the round trip took, when it succeeded.
    pub latency: Option<Duration>,
    /// Why it failed, for the log and the operator's terminal (never sent to clients).
    pub error: Option<String>,
}

impl Probe {
    /// Whether the service answered.
    pub fn ok(&self) -> bool {
        self.error.is_none()
    }

    /// Latency in milliseconds, rounded to microseconds.
    pub fn latency_ms(&self) -> Option<f64> {
        self.latency
            .map(|d| (d.as_secs_f64() * 1_000_000.0).round() / 1000.0)
    }
}

/// Pings the store.
pub async fn store(store: &Store) -> Probe {
    match tokio::time::timeout(PROBE_TIMEOUT, store.admin.ping()).await {
        Ok(Ok(latency)) => Probe {
            latency: Some(latency),
            error: None,
        },
        Ok(Err(e)) => Probe {
            latency: None,
            error: Some(one_line(&e.to_string())),
        },
        Err(_) => Probe {
            latency: None,
            error: Some(format!("no answer within {PROBE_TIMEOUT:?}")),
        },
    }
}

/// Sends `PING` to Redis.
pub async fn redis(client: &redis::Client) -> Probe {
    let started = Instant::now();
    let attempt = async {
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await
    };
    match tokio::time::timeout(PROBE_TIMEOUT, attempt).await {
        Ok(Ok(_)) => Probe {
            latency: Some(started.elapsed()),
            error: None,
        },
        Ok(Err(e)) => Probe {
            latency: None,
            error: Some(one_line(&e.to_string())),
        },
        Err(_) => Probe {
            latency: None,
            error: Some(format!("no answer within {PROBE_TIMEOUT:?}")),
        },
    }
}

/// Folds a possibly multi-line error message onto one line.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

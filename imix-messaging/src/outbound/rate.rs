//! Rate gates: what the dispatcher waits on before each send, so that no number sends above
//! its rate.
//!
//! [`RateGate`] is the port. The embedded gate is [`super::RateLimits`] (governor's GCRA
//! buckets in process memory: exact for one replica, but each replica would send at the
//! full rate). A shared gate (the server's Redis adapter) reserves each send in one place
//! for every replica, so the rate holds across them.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use tokio::time::Instant;

use super::RateLimits;

/// Paces the sends of each phone number.
///
/// `acquire` returns when one more message may leave `phone_number_id` at `rate` messages
/// per second. It never fails: a gate that cannot reach its backend keeps waiting (and
/// retrying) rather than let a message go unpaced, so an outage slows sending down but
/// never pushes a number above its rate.
#[async_trait]
pub trait RateGate: Send + Sync + std::fmt::Debug {
    /// Waits for the number's next send slot; answers the slot's time (about now).
    async fn acquire(&self, phone_number_id: &str, rate: u32) -> Instant;

    /// How late after its slot a send may still leave: a send held up longer (a slow
    /// store write between the slot and the call) takes a fresh slot instead, so sends
    /// leaving late do not crowd the ones after them. `None`: never re-acquire.
    fn late_after(&self) -> Option<Duration> {
        None
    }
}

/// The embedded gate: one process's [`RateLimits`] buckets.
#[derive(Debug, Clone, Default)]
pub struct LocalRateGate(pub Arc<RateLimits>);

#[async_trait]
impl RateGate for LocalRateGate {
    async fn acquire(&self, phone_number_id: &str, rate: u32) -> Instant {
        self.0.until_ready(phone_number_id, rate).await;
        Instant::now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_local_gate_spaces_sends_at_the_rate() {
        let gate: Arc<dyn RateGate> = Arc::new(LocalRateGate::default());
        let start = Instant::now();
        for _ in 0..11 {
            gate.acquire("p", 50).await;
        }
        // 11 sends at 50/s take at least 200 ms (no burst).
        assert!(start.elapsed() >= Duration::from_millis(190));
    }
}

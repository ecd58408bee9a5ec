//! The worker that processes stored deliveries: claims the oldest due one with a lease (so
//! several replicas share the work and none processes a delivery another holds), processes
//! it, and marks it done — or due again later with a growing delay when processing failed.
//! Deliveries left unprocessed by a crash are due at start and are taken again.

use std::{sync::Arc, time::Duration};

use imix_core::Error as CoreError;
use tokio::sync::Notify;

use crate::{
    ingest::process::{ProcessReport, Processor},
    records::Delivery,
    storage::DeliveryRepository,
};

/// How the worker paces itself.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// How long a claim holds a delivery; a worker that dies leaves it to another after this.
    pub lease: Duration,
    /// How often to look for due deliveries when not woken.
    pub poll: Duration,
    /// The delay after a first failure, doubled each time up to `max_backoff`.
    pub first_backoff: Duration,
    /// The longest delay between attempts.
    pub max_backoff: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(60),
            poll: Duration::from_secs(1),
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
        }
    }
}

/// Processes deliveries until stopped.
#[derive(Clone)]
pub struct IngestWorker {
    deliveries: Arc<dyn DeliveryRepository>,
    processor: Processor,
    wake: Arc<Notify>,
    config: WorkerConfig,
}

impl std::fmt::Debug for IngestWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestWorker")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn chrono_of(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

impl IngestWorker {
    /// A worker over `deliveries`, woken early by `wake` (shared with the
    /// [`crate::ingest::Receiver`]).
    pub fn new(
        deliveries: Arc<dyn DeliveryRepository>,
        processor: Processor,
        wake: Arc<Notify>,
        config: WorkerConfig,
    ) -> Self {
        Self {
            deliveries,
            processor,
            wake,
            config,
        }
    }

    /// Claims and processes due deliveries until none is due; returns how many it handled.
    pub async fn drain(&self) -> Result<usize, CoreError> {
        let mut handled = 0;
        loop {
            let now = imix_core::now();
            let lease_until = now + chrono_of(self.config.lease);
            let Some(delivery) = self.deliveries.claim_due(now, lease_until).await? else {
                return Ok(handled);
            };
            self.handle(delivery).await?;
            handled += 1;
        }
    }

    /// Runs until `stop` completes, processing deliveries as they come.
    pub async fn run(&self, stop: impl std::future::Future<Output = ()>) {
        let mut stop = std::pin::pin!(stop);
        loop {
            if let Err(e) = self.drain().await {
                tracing::error!(target: "imix_whatsapp", error = %e, "webhook processing failed; retrying");
            }
            tokio::select! {
                () = &mut stop => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(self.config.poll) => {}
            }
        }
    }

    async fn handle(&self, delivery: Delivery) -> Result<(), CoreError> {
        let outcome = self.processor.process(&delivery).await;
        let mut next = delivery.clone();
        next.lease_until = None;
        match &outcome {
            Ok(report) => {
                log_report(&delivery, report);
                next.processed_at = Some(imix_core::now());
                next.due_at = None;
                next.last_error = None;
            }
            Err(e) => {
                let exponent = delivery.attempts.saturating_sub(1).min(16);
                let delay = self
                    .config
                    .first_backoff
                    .saturating_mul(1u32 << exponent)
                    .min(self.config.max_backoff);
                tracing::warn!(target: "imix_whatsapp", delivery = %delivery.id, attempt = delivery.attempts, error = %e, retry_in = ?delay, "webhook delivery not processed; will retry");
                next.due_at = Some(imix_core::now() + chrono_of(delay));
                next.last_error = Some(e.to_string());
            }
        }
        match self.deliveries.update(&next).await {
            Ok(_) => Ok(()),
            // The lease ran out and another worker took it: that one finishes it.
            Err(CoreError::VersionConflict { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

fn log_report(delivery: &Delivery, report: &ProcessReport) {
    tracing::debug!(
        target: "imix_whatsapp",
        delivery = %delivery.id,
        stored = report.messages_stored,
        duplicates = report.messages_duplicate,
        statuses = report.statuses_applied,
        held = report.statuses_held,
        unattributed = report.unattributed,
        "webhook delivery processed"
    );
}

//! The worker that processes stored deliveries: claims the oldest due one with a lease (so
//! several replicas share the work and none processes a delivery another holds), processes
//! it, and marks it done — or due again later with a growing delay when processing failed.
//! Deliveries left unprocessed by a crash are due at start and are taken again.
//!
//! A worker runs [`WorkerConfig::concurrency`] claim-and-process loops at once. Each step
//! of processing waits for its write to be durable; on the embedded store concurrent
//! writes share one commit (group commit), so running deliveries side by side multiplies
//! throughput where one-at-a-time processing waits on the disk. Processing is correct in
//! any order and interleaving (the same holds for several replicas): messages are unique
//! per `wamid`, statuses only move forward and wait for their message, conversation and
//! contact updates are conditional on their version.

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
    /// How many deliveries one worker processes at once (at least 1).
    pub concurrency: usize,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(60),
            poll: Duration::from_secs(1),
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            concurrency: 32,
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

    /// The processor it runs deliveries through (the dispatcher applies held statuses to
    /// sent messages with the same one).
    pub fn processor(&self) -> &Processor {
        &self.processor
    }

    /// Claims and processes due deliveries, up to [`WorkerConfig::concurrency`] at a time,
    /// until none is due; returns how many it handled. Claims are made in batches as
    /// processing slots free up, so a backlog costs one claim write per batch rather than
    /// one per delivery.
    pub async fn drain(&self) -> Result<usize, CoreError> {
        let slots = self.config.concurrency.max(1);
        // Each delivery runs as its own task: it must progress while this loop awaits a
        // claim (futures merely stored here would not be polled meanwhile, and one holding
        // a pooled store connection could then block the claim waiting for it).
        let mut in_flight = tokio::task::JoinSet::new();
        let mut handled = 0;
        let mut backlog_left = true;
        let mut first_error = None;
        loop {
            // Top up once half the slots are free, while the last claim found all it asked
            // for; once a claim comes back short, finish what is in flight (a new
            // delivery wakes the worker again).
            if backlog_left && in_flight.len() <= slots / 2 {
                let now = imix_core::now();
                let lease_until = now + chrono_of(self.config.lease);
                let wanted = slots - in_flight.len();
                match self
                    .deliveries
                    .claim_due_batch(now, lease_until, wanted)
                    .await
                {
                    Ok(claimed) => {
                        backlog_left = claimed.len() == wanted;
                        for delivery in claimed {
                            let worker = self.clone();
                            in_flight.spawn(async move { worker.handle(delivery).await });
                        }
                    }
                    Err(e) => {
                        backlog_left = false;
                        first_error.get_or_insert(e);
                    }
                }
            }
            match in_flight.join_next().await {
                Some(Ok(Ok(()))) => handled += 1,
                // What is in flight still finishes; the error is reported at the end.
                Some(Ok(Err(e))) => {
                    backlog_left = false;
                    first_error.get_or_insert(e);
                }
                // A panic while processing: the delivery's lease runs out and it is taken
                // again; the others go on.
                Some(Err(join_error)) => {
                    tracing::error!(target: "imix_whatsapp", error = %join_error, "webhook processing task failed");
                }
                None if backlog_left => continue,
                None => break,
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(handled),
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

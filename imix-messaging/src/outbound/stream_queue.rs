//! The dispatcher over a shared work queue (the server's Redis Stream with a consumer
//! group), for replicas that share one store and one Redis.
//!
//! The store stays the source of truth and the guard; the queue only says *which* message
//! to look at next, and wakes every replica at once:
//!
//! 1. The send API stores the message `queued`, then announces its id
//!    ([`OutboundQueue::push`]; a failed announcement is only logged).
//! 2. A replica reads ids ([`OutboundQueue::read`]), claims each message in the store with
//!    a lease (one conditional update: a second replica holding the same id loses it), and
//!    dispatches it as the embedded path does (rate gate, `sending` before the call,
//!    outcome stored).
//! 3. Only once the outcome is stored is the entry acknowledged ([`OutboundQueue::ack`]).
//!    Entries a replica read and never acknowledged (it died) are taken over by another
//!    after [`StreamConfig::reclaim_idle`] ([`OutboundQueue::reclaim`]); the store's lease
//!    and status decide what to do with them (claim and send, or nothing: a message a dead
//!    worker left `sending` becomes `unknown`, never sent twice).
//! 4. Retries are pushed again when due (a timer in the replica that deferred them).
//! 5. A sweep of the store every [`StreamConfig::sweep_every`] claims what is due since
//!    [`StreamConfig::sweep_grace`] and was never handled: an announcement that failed, a
//!    stream Redis lost, a retry whose timer died with its replica. Nothing stays queued
//!    because the queue forgot it.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use imix_core::{store::Scope, Error as CoreError};
use tokio::{task::JoinSet, time::Instant};

use super::{
    dispatch::Outcome, rate::RateGate, DispatchConfig, Dispatcher, OutboundRecord, OutboundStatus,
};
use crate::records::MessageId;

/// What a queue adapter fails with (its backend's error, boxed).
pub type QueueError = Box<dyn std::error::Error + Send + Sync>;

/// One id read from the queue: `entry` is the queue's own handle, given back to
/// [`OutboundQueue::ack`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueEntry {
    /// The queue's id of the entry (a stream entry id).
    pub entry: String,
    /// The outbound message to look at.
    pub message: MessageId,
}

/// A work queue shared by the replicas: ids of messages to look at, each handed to one
/// consumer at a time, held until acknowledged, and taken over when its consumer stops
/// acknowledging.
#[async_trait]
pub trait OutboundQueue: Send + Sync + std::fmt::Debug {
    /// This consumer's name (unique per process).
    fn consumer(&self) -> &str;
    /// Announces `message` (stored `queued` before this call).
    async fn push(&self, message: MessageId) -> Result<(), QueueError>;
    /// Up to `max` entries no consumer has read yet, waiting at most `block` for one.
    async fn read(&self, max: usize, block: Duration) -> Result<Vec<QueueEntry>, QueueError>;
    /// Up to `max` entries read by any consumer and not acknowledged for `idle`, now this
    /// consumer's.
    async fn reclaim(&self, idle: Duration, max: usize) -> Result<Vec<QueueEntry>, QueueError>;
    /// Done with `entries`: the message's outcome is stored (or it needs nothing).
    async fn ack(&self, entries: &[String]) -> Result<(), QueueError>;
}

/// How the dispatcher uses a shared queue.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// How long an entry stays with a consumer that does not acknowledge it; `None` = the
    /// dispatcher's lease (by then the store's claim of a dead worker ran out too).
    pub reclaim_idle: Option<Duration>,
    /// How often the store is swept for messages the queue did not bring (and for
    /// messages left `sending`), and reclaiming is tried.
    pub sweep_every: Duration,
    /// How long a message may be due before the sweep takes it from the store directly.
    pub sweep_grace: Duration,
    /// The longest a read waits for a new entry.
    pub read_block: Duration,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            reclaim_idle: None,
            sweep_every: Duration::from_secs(2),
            sweep_grace: Duration::from_secs(10),
            read_block: Duration::from_secs(1),
        }
    }
}

/// The parts of a dispatcher that replicas share: the rate gate and the queue. Default:
/// the embedded ones (the process's buckets, the store's due-time polling).
#[derive(Debug, Clone, Default)]
pub(super) struct Replicated {
    pub(super) gate: Option<Arc<dyn RateGate>>,
    pub(super) queue: Option<Arc<dyn OutboundQueue>>,
    pub(super) stream: StreamConfig,
}

/// What the store says about a message read from the queue.
enum Claim {
    /// Ours now (lease taken).
    Claimed(Box<OutboundRecord>),
    /// Nothing to do: settled, being sent, gone, or due later (its retry is pushed again).
    Nothing,
    /// Another worker's lease holds it: the entry stays unacknowledged and is looked at
    /// again after the reclaim time.
    Held,
}

fn std_until(at: imix_core::Timestamp) -> Duration {
    (at - imix_core::now()).to_std().unwrap_or_default()
}

impl Dispatcher {
    /// Paces sends with `gate` (say, one shared by every replica) instead of this process's
    /// buckets.
    pub fn with_rate_gate(mut self, gate: Arc<dyn RateGate>) -> Self {
        self.replicated.gate = Some(gate);
        self
    }

    /// Takes work from `queue` (shared by the replicas) instead of polling the store; the
    /// store is still swept as `stream` says.
    pub fn with_queue(mut self, queue: Arc<dyn OutboundQueue>, stream: StreamConfig) -> Self {
        self.replicated.queue = Some(queue);
        self.replicated.stream = stream;
        self
    }

    /// The same dispatcher paced by `config` (tests use short leases).
    pub fn with_config(mut self, config: DispatchConfig) -> Self {
        self.config = config;
        self
    }

    /// The shared queue, if it takes work from one.
    pub fn queue(&self) -> Option<&Arc<dyn OutboundQueue>> {
        self.replicated.queue.as_ref()
    }

    /// Waits for the number's next send slot (the shared gate, else the local buckets);
    /// answers the slot's time.
    pub(super) async fn acquire(&self, phone_number_id: &str, rate: u32) -> Instant {
        match &self.replicated.gate {
            Some(gate) => gate.acquire(phone_number_id, rate).await,
            None => {
                self.limits.until_ready(phone_number_id, rate).await;
                Instant::now()
            }
        }
    }

    /// Right before the call: a send that is later than the gate allows after its `slot`
    /// takes a fresh slot (its old one goes unused), so a slow store write between slot
    /// and call cannot put two sends closer than their spacing where Meta counts them.
    pub(super) async fn depart(&self, phone_number_id: &str, rate: u32, slot: Instant) {
        let Some(gate) = &self.replicated.gate else {
            return;
        };
        let Some(late) = gate.late_after() else {
            return;
        };
        let mut slot = slot;
        // Bounded: a machine too busy to make any slot in time still sends (paced).
        for _ in 0..3 {
            if slot.elapsed() <= late {
                return;
            }
            slot = gate.acquire(phone_number_id, rate).await;
        }
    }

    /// [`Dispatcher::run`] over a shared queue.
    pub(super) async fn run_queue(
        &self,
        queue: Arc<dyn OutboundQueue>,
        stop: impl std::future::Future<Output = ()>,
    ) {
        let mut stop = std::pin::pin!(stop);
        let slots = self.config.concurrency.max(1);
        let cfg = self.replicated.stream.clone();
        let reclaim_idle = cfg.reclaim_idle.unwrap_or(self.config.lease);
        let mut tasks: JoinSet<()> = JoinSet::new();
        let mut next_sweep = Instant::now();
        let mut queue_down = false;
        loop {
            while let Some(done) = tasks.try_join_next() {
                if let Err(e) = done {
                    tracing::error!(target: "imix_whatsapp", error = %e, "dispatch task failed");
                }
            }
            if Instant::now() >= next_sweep {
                next_sweep = Instant::now() + cfg.sweep_every;
                self.sweep_store(&queue, &mut tasks, slots, cfg.sweep_grace)
                    .await;
                let free = slots.saturating_sub(tasks.len());
                if free > 0 {
                    match queue.reclaim(reclaim_idle, free).await {
                        Ok(entries) => {
                            if !entries.is_empty() {
                                tracing::info!(target: "imix_whatsapp", count = entries.len(), "took over queue entries a stopped dispatcher held");
                            }
                            for e in entries {
                                self.spawn_entry(&queue, &mut tasks, e);
                            }
                        }
                        Err(e) => {
                            tracing::warn!(target: "imix_whatsapp", error = %e, "cannot reclaim entries of the outbound queue")
                        }
                    }
                }
            }
            let free = slots.saturating_sub(tasks.len());
            if free == 0 {
                tokio::select! {
                    () = &mut stop => break,
                    _ = tasks.join_next() => {}
                }
                continue;
            }
            let block = if tasks.is_empty() {
                cfg.read_block
            } else {
                Duration::from_millis(100)
            }
            .min(next_sweep.saturating_duration_since(Instant::now()))
            .max(Duration::from_millis(1));
            tokio::select! {
                () = &mut stop => break,
                read = queue.read(free, block) => match read {
                    Ok(entries) => {
                        if queue_down {
                            tracing::info!(target: "imix_whatsapp", "the outbound queue answers again");
                            queue_down = false;
                        }
                        for e in entries {
                            self.spawn_entry(&queue, &mut tasks, e);
                        }
                    }
                    Err(e) => {
                        if !queue_down {
                            tracing::warn!(target: "imix_whatsapp", error = %e, "cannot read the outbound queue; the store's sweep keeps due messages going");
                            queue_down = true;
                        }
                        let pause = self.config.poll.min(next_sweep.saturating_duration_since(Instant::now()));
                        tokio::select! {
                            () = &mut stop => break,
                            () = tokio::time::sleep(pause) => {}
                        }
                    }
                }
            }
        }
        // As on the store path: messages being sent finish and their outcome is stored.
        while tasks.join_next().await.is_some() {}
    }

    /// Marks stale `sending` messages `unknown`, and claims from the store what has been
    /// due for longer than `grace` (the queue never brought it).
    async fn sweep_store(
        &self,
        queue: &Arc<dyn OutboundQueue>,
        tasks: &mut JoinSet<()>,
        slots: usize,
        grace: Duration,
    ) {
        if let Err(e) = self.sweep().await {
            tracing::error!(target: "imix_whatsapp", error = %e, "looking for messages left sending failed");
        }
        let free = slots.saturating_sub(tasks.len());
        if free == 0 {
            return;
        }
        let now = imix_core::now();
        let before = now - chrono::Duration::from_std(grace).unwrap_or_default();
        let lease = chrono::Duration::from_std(self.config.lease).unwrap_or_default();
        match self.records.claim_due(before, now + lease, free).await {
            Ok(claimed) => {
                if !claimed.is_empty() {
                    tracing::info!(target: "imix_whatsapp", count = claimed.len(), "due messages found in the store, not through the queue");
                }
                for r in claimed {
                    let (me, queue) = (self.clone(), queue.clone());
                    tasks.spawn(async move {
                        let id = r.id;
                        match me.dispatch(r).await {
                            Ok(Outcome::Deferred) => me.push_when_due(&queue, id).await,
                            Ok(_) => {}
                            Err(e) => {
                                tracing::error!(target: "imix_whatsapp", message = %id, error = %e, "dispatching a message failed; its lease runs out and it is looked at again")
                            }
                        }
                    });
                }
            }
            Err(e) => {
                tracing::error!(target: "imix_whatsapp", error = %e, "cannot claim due messages from the store")
            }
        }
    }

    fn spawn_entry(
        &self,
        queue: &Arc<dyn OutboundQueue>,
        tasks: &mut JoinSet<()>,
        entry: QueueEntry,
    ) {
        let (me, queue) = (self.clone(), queue.clone());
        tasks.spawn(async move { me.handle_entry(&queue, entry).await });
    }

    /// Claims and dispatches the entry's message; acknowledges the entry once its outcome
    /// is stored (or nothing needs doing).
    async fn handle_entry(&self, queue: &Arc<dyn OutboundQueue>, entry: QueueEntry) {
        let id = entry.message;
        let done = match self.claim(id).await {
            Ok(Claim::Claimed(r)) => match self.dispatch(*r).await {
                Ok(Outcome::Deferred) => {
                    self.push_when_due(queue, id).await;
                    true
                }
                Ok(_) => true,
                Err(e) => {
                    tracing::error!(target: "imix_whatsapp", message = %id, error = %e, "dispatching a message failed; its entry is taken over later");
                    false
                }
            },
            Ok(Claim::Nothing) => true,
            Ok(Claim::Held) => false,
            Err(e) => {
                tracing::error!(target: "imix_whatsapp", message = %id, error = %e, "cannot claim a message from the queue; its entry is taken over later");
                false
            }
        };
        if done {
            if let Err(e) = queue.ack(std::slice::from_ref(&entry.entry)).await {
                tracing::warn!(target: "imix_whatsapp", message = %id, error = %e, "cannot acknowledge a queue entry; another dispatcher will find it settled");
            }
        }
    }

    /// The store's claim of one message: queued, due and not leased → leased to us (a
    /// conditional update, so two replicas holding the same id never both get it).
    async fn claim(&self, id: MessageId) -> Result<Claim, CoreError> {
        let mut r = match self.records.get(Scope::Platform, id).await {
            Ok(r) => r,
            Err(CoreError::NotFound { .. }) => return Ok(Claim::Nothing),
            Err(e) => return Err(e),
        };
        let now = imix_core::now();
        if r.status != OutboundStatus::Queued {
            return Ok(Claim::Nothing);
        }
        if r.lease_until.is_some_and(|l| l > now) {
            return Ok(Claim::Held);
        }
        if r.due_at.is_some_and(|d| d > now) {
            // A retry not due yet: whoever deferred it pushes it again when due, and the
            // sweep finds it if that replica is gone.
            return Ok(Claim::Nothing);
        }
        r.lease_until =
            Some(now + chrono::Duration::from_std(self.config.lease).unwrap_or_default());
        r.updated_at = now;
        match self.records.update(&r).await {
            Ok(stored) => Ok(Claim::Claimed(Box::new(stored))),
            // Claimed (or settled) by someone else meanwhile.
            Err(CoreError::VersionConflict { .. }) => Ok(Claim::Held),
            Err(e) => Err(e),
        }
    }

    /// A deferred message is pushed again once due (best effort: the sweep is the
    /// backstop).
    async fn push_when_due(&self, queue: &Arc<dyn OutboundQueue>, id: MessageId) {
        let due = match self.records.get(Scope::Platform, id).await {
            Ok(r) if r.status == OutboundStatus::Queued => r.due_at,
            _ => return,
        };
        let wait = due.map(std_until).unwrap_or_default();
        let queue = queue.clone();
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            if let Err(e) = queue.push(id).await {
                tracing::warn!(target: "imix_whatsapp", message = %id, error = %e, "cannot queue a retry; the store's sweep finds it");
            }
        });
    }
}

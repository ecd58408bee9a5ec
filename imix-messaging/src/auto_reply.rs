//! Auto-reply jobs: one durable job per inbound text message of an account whose
//! auto-reply is on, created by ingest once the message and its conversation are stored,
//! and handled by a worker outside ingest (the assistant's answer takes seconds; ingest
//! must not wait for it, and a crash must not lose it).
//!
//! The job only says "look at this message"; what is done (answer, hand over to a human,
//! nothing) is decided when it is handled, on the state of that moment (see the server's
//! `auto_reply` module and `imix_ai::auto_reply`). A job is claimed with a lease, so
//! several workers or replicas share the work and one job is handled by one at a time.

use std::sync::Arc;

use async_trait::async_trait;
use imix_core::{
    id::{TenantId, WhatsAppAccountId},
    Error as CoreError, Timestamp,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::{
    error::Result,
    records::{ConversationId, Direction, Message, MessageId},
    storage::auto_reply::AutoReplyJobRepository,
};

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AutoReplyJobState {
    /// Waiting for a worker (or held by one).
    Pending,
    /// An answer was queued for sending (`reply_message_id`).
    Replied,
    /// The customer asked for a human: the conversation was flagged.
    HandedOff,
    /// Nothing to do (`outcome` says why).
    Skipped,
    /// The answer could not be made or queued (`outcome` says why); left to humans.
    Failed,
}

/// One inbound message to consider for an auto-reply. Keyed by the message. Operational
/// state: not part of backups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoReplyJob {
    /// The inbound message (one job per message).
    pub message_id: MessageId,
    /// The tenant.
    pub tenant_id: TenantId,
    /// The number the message came to (whose settings apply).
    pub account_id: WhatsAppAccountId,
    /// The message's conversation.
    pub conversation_id: ConversationId,
    /// Meta's time of the message.
    pub message_at: Timestamp,
    /// Where it stands.
    pub state: AutoReplyJobState,
    /// Why it was skipped or failed (a reason code and words).
    pub outcome: Option<String>,
    /// Whether it took one of the conversation's auto-replies (given back if no answer was
    /// queued): kept so that a job taken over after a crash does not take a second one.
    #[serde(default)]
    pub counted: bool,
    /// The queued answer (an outbound message id).
    pub reply_message_id: Option<MessageId>,
    /// Attempts so far (a claim counts one).
    pub attempts: u32,
    /// When it may be handled; `None` once done.
    pub due_at: Option<Timestamp>,
    /// While a worker holds it: until when.
    pub lease_until: Option<Timestamp>,
    /// Created.
    pub created_at: Timestamp,
    /// Last changed.
    pub updated_at: Timestamp,
    /// Optimistic-concurrency version.
    pub version: u64,
}

impl AutoReplyJob {
    /// The job for `message` if it is an inbound text message; `None` otherwise.
    pub fn for_message(message: &Message) -> Option<Self> {
        if message.direction != Direction::Inbound || message.kind != "text" {
            return None;
        }
        let now = imix_core::now();
        Some(Self {
            message_id: message.id,
            tenant_id: message.tenant_id,
            account_id: message.account_id,
            conversation_id: message.conversation_id,
            message_at: message.timestamp,
            state: AutoReplyJobState::Pending,
            outcome: None,
            counted: false,
            reply_message_id: None,
            attempts: 0,
            due_at: Some(now),
            lease_until: None,
            created_at: now,
            updated_at: now,
            version: 1,
        })
    }

    /// Marks the job done in `state` with `outcome`.
    pub fn finish(&mut self, state: AutoReplyJobState, outcome: Option<String>) {
        self.state = state;
        self.outcome = outcome;
        self.due_at = None;
        self.lease_until = None;
        self.updated_at = imix_core::now();
    }
}

/// Whether an account's auto-reply is on: asked before a job is made, so that tenants who
/// never turn it on get no job per message. The worker checks the settings again.
#[async_trait]
pub trait AutoReplyGate: Send + Sync {
    /// Whether `account` of `tenant` has auto-reply on.
    async fn enabled(&self, tenant: TenantId, account: WhatsAppAccountId) -> Result<bool>;
}

/// Creates auto-reply jobs for stored messages and wakes the worker. Cheap to clone.
#[derive(Clone)]
pub struct AutoReplyQueue {
    jobs: Arc<dyn AutoReplyJobRepository>,
    gate: Arc<dyn AutoReplyGate>,
    wake: Arc<Notify>,
}

impl std::fmt::Debug for AutoReplyQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AutoReplyQueue").finish_non_exhaustive()
    }
}

impl AutoReplyQueue {
    /// A queue into `jobs` for accounts `gate` says are on, waking `wake` (give the same
    /// one to the worker).
    pub fn new(
        jobs: Arc<dyn AutoReplyJobRepository>,
        gate: Arc<dyn AutoReplyGate>,
        wake: Arc<Notify>,
    ) -> Self {
        Self { jobs, gate, wake }
    }

    /// The jobs.
    pub fn jobs(&self) -> &Arc<dyn AutoReplyJobRepository> {
        &self.jobs
    }

    /// The wake-up the worker waits on.
    pub fn wake(&self) -> &Arc<Notify> {
        &self.wake
    }

    /// Makes sure `message` has its job if it is an inbound text message of an account
    /// with auto-reply on; idempotent, so ingest calls it for a new message and again for
    /// a redelivered one (a worker that died before making the job leaves it to the
    /// redelivery).
    pub async fn enqueue(&self, message: &Message) -> Result<()> {
        let Some(job) = AutoReplyJob::for_message(message) else {
            return Ok(());
        };
        if !self.gate.enabled(job.tenant_id, job.account_id).await? {
            return Ok(());
        }
        match self.jobs.insert(&job).await {
            Ok(()) => {
                self.wake.notify_one();
                Ok(())
            }
            Err(CoreError::Duplicate { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{ContactId, DeliveryState};

    fn message(kind: &str, direction: Direction) -> Message {
        Message {
            id: MessageId::new(),
            tenant_id: TenantId::new(),
            account_id: WhatsAppAccountId::new(),
            phone_number_id: "2001".into(),
            conversation_id: ConversationId::new(),
            contact_id: ContactId::new(),
            wamid: "wamid.1".into(),
            direction,
            kind: kind.into(),
            content: serde_json::json!({"type": kind, "text": {"body": "hello"}}),
            timestamp: imix_core::now(),
            state: DeliveryState::Received,
            statuses: Vec::new(),
            version: 1,
            created_at: imix_core::now(),
            auto_reply: false,
        }
    }

    #[test]
    fn a_job_is_made_for_inbound_text_only() {
        let m = message("text", Direction::Inbound);
        let job = AutoReplyJob::for_message(&m).unwrap();
        assert_eq!(job.message_id, m.id);
        assert_eq!(job.conversation_id, m.conversation_id);
        assert_eq!(job.state, AutoReplyJobState::Pending);
        assert!(job.due_at.is_some() && !job.counted);
        for kind in ["image", "reaction", "interactive", "button"] {
            assert!(AutoReplyJob::for_message(&message(kind, Direction::Inbound)).is_none());
        }
        assert!(AutoReplyJob::for_message(&message("text", Direction::Outbound)).is_none());
    }

    #[test]
    fn a_finished_job_is_never_due_again() {
        let mut job = AutoReplyJob::for_message(&message("text", Direction::Inbound)).unwrap();
        job.lease_until = Some(imix_core::now());
        job.finish(AutoReplyJobState::Skipped, Some("assigned".into()));
        assert_eq!(job.due_at, None);
        assert_eq!(job.lease_until, None);
        assert_eq!(job.outcome.as_deref(), Some("assigned"));
    }
}

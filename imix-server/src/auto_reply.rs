//! Auto-reply: the assistant answers a customer by itself, per WhatsApp account, when the
//! tenant turned it on (off by default).
//!
//! - Settings per account, in the tenant's settings documents (key `auto_reply:<account>`),
//!   managed by those who manage the tenant's AI settings (`settings.manage`); audited.
//! - Ingest makes a durable job per inbound text message of an account with auto-reply on
//!   ([`imix_messaging::auto_reply`]); the worker here handles it: the policy
//!   ([`imix_ai::auto_reply::decide`]) on the state of that moment, then either nothing, a
//!   hand-over flag on the conversation, or an answer prepared like a suggested reply and
//!   queued through the send API's own checks ([`OutboundService::send_auto_reply`]: quotas,
//!   the 24-hour window, blocked contacts), with an idempotency key derived from the
//!   inbound message so that a job handled twice (a lease taken over after a crash) queues
//!   one answer.
//! - Auto-replies per conversation are counted on a store counter, taken atomically before
//!   the provider is asked (never over the limit, also between replicas) and given back
//!   when no answer was queued.

use std::{future::Future, sync::Arc, time::Duration};

use async_trait::async_trait;
use imix_ai::{
    auto_reply::{decide, AutoReplyMode, AutoReplySettings, Decision, Facts, SkipReason},
    prompt::Task,
};
use imix_core::{
    access::{AccessContext, AuditSink, Permission, Principal},
    directory::TenantDirectory,
    id::{TenantId, UserId, WhatsAppAccountId},
    model::{SettingsDoc, SettingsScope},
    store::{ConflictBackoff, CounterOutcome, CounterRepository, Scope, SettingsRepository},
    Error as CoreError, Timestamp,
};
use imix_messaging::{
    auto_reply::{AutoReplyGate, AutoReplyJob, AutoReplyJobState, AutoReplyQueue},
    events::{EventSink, NewEvent},
    outbound::{NewSend, OutboundService, SendTarget},
    storage::{auto_reply::AutoReplyJobRepository, MessagingStorage},
    InboxService,
};
use imix_tenancy::AuthContext;
use imix_whatsapp::storage::WhatsAppAccountRepository;
use tokio::sync::Notify;

use crate::{ai::AiService, error::ApiError};

/// The settings document key of an account's auto-reply settings.
pub fn settings_key(account: WhatsAppAccountId) -> String {
    format!("auto_reply:{account}")
}

/// The counter of auto-replies sent in a conversation.
fn counter_key(tenant: TenantId, conversation: imix_messaging::ConversationId) -> String {
    format!("tenant:{tenant}:auto_replies:conversation:{conversation}")
}

/// The idempotency key of the answer to inbound message `message`.
pub fn idempotency_key(message: imix_messaging::MessageId) -> String {
    format!("auto-reply:{message}")
}

/// The assistant's user id (the same in every tenant; no user has it): what the send API
/// records as `created_by` of an auto-reply.
pub fn assistant_user_id() -> UserId {
    UserId::from_uuid(uuid::Uuid::from_u128(
        0x1a1a_0000_0000_7000_8000_0000_0000_0001,
    ))
}

/// A message older than this when its job is handled is not answered (a worker that was
/// down for hours does not answer a backlog).
pub const STALE_AFTER: chrono::Duration = chrono::Duration::hours(1);
/// How long a worker holds a job: longer than a provider call with its retries.
const LEASE: chrono::Duration = chrono::Duration::minutes(5);
/// A job claimed this many times without finishing (crashes) is given up.
const MAX_ATTEMPTS: u32 = 3;
/// How often the worker looks for due jobs when nothing wakes it (other replicas' jobs,
/// leases that ran out).
const POLL: Duration = Duration::from_secs(5);
/// WhatsApp's longest text body.
const MAX_TEXT_CHARS: usize = 4096;

/// The assistant's access in `tenant`: it reads and replies in the conversations nobody is
/// assigned to (no `conversations.read_all`: an assigned conversation is not its to answer,
/// and the send API refuses it).
fn assistant_access(tenant: TenantId) -> AccessContext {
    AccessContext::new(
        Principal::new(assistant_user_id(), "auto-reply@imix.invalid"),
        Some(tenant),
        false,
        [
            Permission::ConversationsRead,
            Permission::ConversationsReply,
            Permission::ContactsRead,
        ]
        .into_iter()
        .collect(),
        None,
    )
}

/// An account's stored auto-reply settings and when they changed.
#[derive(Debug, Clone)]
pub struct StoredSettings {
    /// The settings (defaults when never saved).
    pub settings: AutoReplySettings,
    /// Version of the stored document (0: never saved).
    pub version: u64,
    /// Last changed (`None`: never saved).
    pub updated_at: Option<Timestamp>,
}

/// Reads and writes accounts' auto-reply settings in the tenant's settings documents.
#[derive(Clone)]
pub struct AutoReplySettingsStore {
    settings: Arc<dyn SettingsRepository>,
}

impl AutoReplySettingsStore {
    /// Over the store's settings documents.
    pub fn new(settings: Arc<dyn SettingsRepository>) -> Self {
        Self { settings }
    }

    /// `account`'s settings (off when never saved; a document that cannot be read as
    /// settings counts as off, and is logged).
    pub async fn load(
        &self,
        tenant: TenantId,
        account: WhatsAppAccountId,
    ) -> Result<StoredSettings, CoreError> {
        let doc = self
            .settings
            .get(SettingsScope::Tenant(tenant), &settings_key(account))
            .await?;
        Ok(match doc {
            None => StoredSettings {
                settings: AutoReplySettings::default(),
                version: 0,
                updated_at: None,
            },
            Some(d) => StoredSettings {
                settings: serde_json::from_value(d.value.clone()).unwrap_or_else(|e| {
                    tracing::error!(error = %e, %account, "unreadable auto-reply settings: treated as off");
                    AutoReplySettings::default()
                }),
                version: d.version,
                updated_at: Some(d.updated_at),
            },
        })
    }

    /// Saves `account`'s settings (a concurrent save is retried on top of it).
    pub async fn save(
        &self,
        tenant: TenantId,
        account: WhatsAppAccountId,
        settings: AutoReplySettings,
    ) -> Result<StoredSettings, CoreError> {
        let scope = SettingsScope::Tenant(tenant);
        let key = settings_key(account);
        let value = serde_json::to_value(settings).map_err(|e| CoreError::Corrupt {
            entity: "auto-reply settings",
            source: e.into(),
        })?;
        let mut backoff = ConflictBackoff::new();
        while backoff.next_attempt().await {
            let stored = match self.settings.get(scope, &key).await? {
                Some(mut doc) => {
                    doc.value = value.clone();
                    doc.updated_at = imix_core::now();
                    match self.settings.update(&doc).await {
                        Ok(stored) => stored,
                        Err(CoreError::VersionConflict { .. }) => continue,
                        Err(e) => return Err(e),
                    }
                }
                None => {
                    let doc = SettingsDoc::new(scope, key.clone(), value.clone());
                    match self.settings.insert(&doc).await {
                        Ok(()) => doc,
                        Err(CoreError::Duplicate { .. }) => continue,
                        Err(e) => return Err(e),
                    }
                }
            };
            return Ok(StoredSettings {
                settings,
                version: stored.version,
                updated_at: Some(stored.updated_at),
            });
        }
        Err(CoreError::VersionConflict {
            entity: "auto-reply settings",
            id: key,
            expected: 0,
        })
    }
}

#[async_trait]
impl AutoReplyGate for AutoReplySettingsStore {
    async fn enabled(
        &self,
        tenant: TenantId,
        account: WhatsAppAccountId,
    ) -> imix_messaging::Result<bool> {
        Ok(self.load(tenant, account).await?.settings.enabled)
    }
}

/// The queue ingest makes jobs in, over the store; give its wake-up to [`AutoReply::new`].
pub fn queue(
    jobs: Arc<dyn AutoReplyJobRepository>,
    settings: Arc<dyn SettingsRepository>,
) -> AutoReplyQueue {
    AutoReplyQueue::new(
        jobs,
        Arc::new(AutoReplySettingsStore::new(settings)),
        Arc::new(Notify::new()),
    )
}

/// A `PUT` of an account's auto-reply settings as received.
#[derive(Debug, Clone)]
pub struct SettingsInput {
    /// On or off.
    pub enabled: bool,
    /// `always` or `outside_business_hours` (`None`: `always`).
    pub mode: Option<String>,
    /// 1–20 (`None`: 3).
    pub max_replies_per_conversation: Option<i64>,
}

/// What handling a job came to.
type Outcome = (AutoReplyJobState, Option<String>);

fn skipped(reason: &str) -> Outcome {
    (AutoReplyJobState::Skipped, Some(reason.to_owned()))
}

fn failed(e: &ApiError) -> Outcome {
    let body = e.body();
    (
        AutoReplyJobState::Failed,
        Some(format!("{}: {}", body.error.code, body.error.message)),
    )
}

/// Auto-reply settings and the worker. Cheap to clone.
#[derive(Clone)]
pub struct AutoReply {
    settings: AutoReplySettingsStore,
    accounts: Arc<dyn WhatsAppAccountRepository>,
    audit: Arc<dyn AuditSink>,
    ai: AiService,
    inbox: InboxService,
    outbound: OutboundService,
    storage: MessagingStorage,
    counters: Arc<dyn CounterRepository>,
    jobs: Arc<dyn AutoReplyJobRepository>,
    wake: Arc<Notify>,
    events: Arc<dyn EventSink>,
    tenants: Arc<dyn TenantDirectory>,
}

impl std::fmt::Debug for AutoReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AutoReply").finish_non_exhaustive()
    }
}

/// What [`AutoReply::new`] is built from.
pub struct AutoReplyParts {
    /// The settings documents.
    pub settings: Arc<dyn SettingsRepository>,
    /// WhatsApp accounts (scoped reads: another tenant's account is not found).
    pub accounts: Arc<dyn WhatsAppAccountRepository>,
    /// Where settings changes are recorded.
    pub audit: Arc<dyn AuditSink>,
    /// The assistant.
    pub ai: AiService,
    /// Conversation reads with access checks.
    pub inbox: InboxService,
    /// The send API.
    pub outbound: OutboundService,
    /// Messaging's records.
    pub storage: MessagingStorage,
    /// Store counters (auto-replies per conversation).
    pub counters: Arc<dyn CounterRepository>,
    /// The queue ingest fills.
    pub queue: AutoReplyQueue,
    /// Live events (a conversation flagged for a human).
    pub events: Arc<dyn EventSink>,
    /// Tenants (a deactivated tenant's messages are not answered).
    pub tenants: Arc<dyn TenantDirectory>,
}

impl AutoReply {
    /// Settings and worker over `parts`.
    pub fn new(parts: AutoReplyParts) -> Self {
        Self {
            settings: AutoReplySettingsStore::new(parts.settings),
            accounts: parts.accounts,
            audit: parts.audit,
            ai: parts.ai,
            inbox: parts.inbox,
            outbound: parts.outbound,
            storage: parts.storage,
            counters: parts.counters,
            jobs: parts.queue.jobs().clone(),
            wake: parts.queue.wake().clone(),
            events: parts.events,
            tenants: parts.tenants,
        }
    }

    /// The caller may manage `tenant`'s AI settings, and `account` is one of the tenant's
    /// accounts (another tenant's: 404, from the scoped read).
    async fn authorize(
        &self,
        ctx: &AuthContext,
        tenant: TenantId,
        account: WhatsAppAccountId,
    ) -> Result<(), ApiError> {
        let scope = ctx.access().authorize(Permission::SettingsManage, tenant)?;
        self.accounts.get(scope, account).await?;
        Ok(())
    }

    /// `GET .../whatsapp-accounts/{account}/auto-reply`.
    pub async fn get_settings(
        &self,
        ctx: &AuthContext,
        tenant: TenantId,
        account: WhatsAppAccountId,
    ) -> Result<StoredSettings, ApiError> {
        self.authorize(ctx, tenant, account).await?;
        Ok(self.settings.load(tenant, account).await?)
    }

    /// `PUT .../whatsapp-accounts/{account}/auto-reply`: validated (422 naming the field;
    /// `outside_business_hours` needs the tenant's business hours), saved, audited.
    pub async fn put_settings(
        &self,
        ctx: &AuthContext,
        tenant: TenantId,
        account: WhatsAppAccountId,
        input: SettingsInput,
    ) -> Result<StoredSettings, ApiError> {
        self.authorize(ctx, tenant, account).await?;
        let mode = match input.mode.as_deref() {
            None => AutoReplyMode::Always,
            Some(raw) => AutoReplyMode::parse(raw).ok_or_else(|| {
                ApiError::invalid_field("mode", "must be always or outside_business_hours")
            })?,
        };
        let max = match input.max_replies_per_conversation {
            None => imix_ai::auto_reply::DEFAULT_MAX_REPLIES,
            Some(n) => u32::try_from(n).map_err(|_| {
                ApiError::invalid_field(
                    "max_replies_per_conversation",
                    format!(
                        "must be between 1 and {}",
                        imix_ai::auto_reply::MAX_REPLIES_LIMIT
                    ),
                )
            })?,
        };
        let settings = AutoReplySettings {
            enabled: input.enabled,
            mode,
            max_replies_per_conversation: max,
        };
        let has_hours = self
            .ai
            .settings
            .effective(Some(tenant))
            .await
            .map_err(crate::ai::settings_error)?
            .business_hours
            .is_some();
        settings
            .validate(has_hours)
            .map_err(|e| ApiError::invalid_field(e.field, e.message))?;
        let stored = self.settings.save(tenant, account, settings).await?;
        // Whether the assistant talks to customers by itself: who changed it is kept.
        self.audit
            .record(
                ctx.access(),
                "settings.auto_reply.update",
                "whatsapp_account",
                account.to_string(),
                Some(tenant),
            )
            .await;
        Ok(stored)
    }

    /// Handles due jobs until `stop` completes; woken by ingest, and polling for jobs of
    /// other replicas and leases that ran out. A job being handled when `stop` comes is
    /// dropped and taken again once its lease runs out (its answer, if queued, is not
    /// queued twice: idempotency key).
    pub async fn run(&self, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => return,
                () = self.drain() => {}
            }
            tokio::select! {
                () = &mut stop => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// Handles every due job; returns when none is due.
    pub async fn drain(&self) {
        loop {
            let now = imix_core::now();
            match self.jobs.claim_due(now, now + LEASE).await {
                Ok(Some(job)) => self.handle(job).await,
                Ok(None) => return,
                Err(e) => {
                    tracing::error!(error = %e, "cannot claim an auto-reply job");
                    return;
                }
            }
        }
    }

    /// Handles one claimed job and records how it ended. Never panics or fails: every
    /// failure is recorded on the job and logged, and the conversation is left to humans.
    async fn handle(&self, mut job: AutoReplyJob) {
        let outcome = if job.attempts > MAX_ATTEMPTS {
            (
                AutoReplyJobState::Failed,
                Some(format!(
                    "gave up after {MAX_ATTEMPTS} attempts that did not finish"
                )),
            )
        } else {
            self.process(&mut job).await
        };
        if job.counted && outcome.0 != AutoReplyJobState::Replied {
            self.give_back(&job).await;
            job.counted = false;
        }
        match outcome.0 {
            AutoReplyJobState::Failed => tracing::warn!(
                message = %job.message_id, conversation = %job.conversation_id,
                outcome = outcome.1.as_deref().unwrap_or(""), "auto-reply failed; left to the team"
            ),
            _ => tracing::debug!(
                message = %job.message_id, state = ?outcome.0,
                outcome = outcome.1.as_deref().unwrap_or(""), "auto-reply job done"
            ),
        }
        job.finish(outcome.0, outcome.1);
        if let Err(e) = self.jobs.update(&job).await {
            // Its lease ran out and another worker took it: that one records it.
            tracing::warn!(error = %e, message = %job.message_id, "cannot record an auto-reply job's outcome");
        }
    }

    async fn give_back(&self, job: &AutoReplyJob) {
        if let Err(e) = self
            .counters
            .subtract(&counter_key(job.tenant_id, job.conversation_id), 1)
            .await
        {
            tracing::error!(error = %e, conversation = %job.conversation_id, "cannot give back an auto-reply count");
        }
    }

    async fn process(&self, job: &mut AutoReplyJob) -> Outcome {
        match self.try_process(job).await {
            Ok(outcome) => outcome,
            Err(e) => failed(&e),
        }
    }

    async fn try_process(&self, job: &mut AutoReplyJob) -> Result<Outcome, ApiError> {
        let tenant = job.tenant_id;
        let scope = Scope::Tenant(tenant);
        let access = assistant_access(tenant);
        let key = idempotency_key(job.message_id);
        // A job taken over after its answer was queued: that answer it is.
        if let Some(sent) = self
            .outbound
            .records()
            .find_by_idempotency_key(tenant, &key)
            .await?
        {
            job.reply_message_id = Some(sent.id);
            return Ok((AutoReplyJobState::Replied, None));
        }
        let settings = self.settings.load(tenant, job.account_id).await?.settings;
        if !settings.enabled {
            return Ok(skipped(SkipReason::Disabled.as_str()));
        }
        // Nothing is done on a deactivated tenant's behalf: the send API would refuse the
        // answer, but only after the provider was asked (and paid) for it.
        if !self.tenants.profile(tenant).await?.is_active() {
            return Ok(skipped("tenant_deactivated"));
        }
        let now = imix_core::now();
        if now - job.message_at > STALE_AFTER {
            return Ok(skipped("stale"));
        }
        let conversation = self
            .storage
            .conversations
            .get(scope, job.conversation_id)
            .await?;
        // A newer message of the customer has its own job, which answers both.
        if conversation
            .last_inbound_at
            .is_some_and(|t| t > job.message_at)
        {
            return Ok(skipped("newer_message"));
        }
        let message = self.storage.messages.get(scope, job.message_id).await?;
        let text = message
            .content
            .pointer("/text/body")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default();
        let contact = self
            .storage
            .contacts
            .get(scope, conversation.contact_id)
            .await?;
        if contact.blocked {
            return Ok(skipped("contact_blocked"));
        }
        let effective = self
            .ai
            .settings
            .effective(Some(tenant))
            .await
            .map_err(crate::ai::settings_error)?;
        let counter = counter_key(tenant, conversation.id);
        // This job's own count (taken before a crash) is not one of the others.
        let replies_so_far = u32::try_from(self.counters.get(&counter).await?)
            .unwrap_or(u32::MAX)
            .saturating_sub(u32::from(job.counted));
        let decision = decide(&Facts {
            settings,
            business_hours: effective.business_hours.as_ref(),
            now,
            assigned: conversation.assignee.is_some(),
            waiting_for_human: conversation.handoff_requested_at.is_some(),
            opted_out: contact.opt_out.as_ref().is_some_and(|o| o.opted_out),
            customer_text: text,
            opt_keyword: imix_messaging::ingest::opt_out_intent(text).is_some(),
            replies_so_far,
        });
        match decision {
            Decision::Skip(reason) => return Ok(skipped(reason.as_str())),
            Decision::HandOff => return self.hand_off(job).await,
            Decision::Reply => {}
        }
        if conversation.window_expires_at().is_none_or(|t| t <= now) {
            return Ok(skipped("outside_customer_service_window"));
        }
        // One of the conversation's auto-replies, taken before the provider is asked: two
        // workers answering two messages at once cannot go over the limit.
        if !job.counted {
            let taken = self
                .counters
                .try_add(
                    &counter,
                    1,
                    Some(u64::from(settings.max_replies_per_conversation)),
                    None,
                )
                .await?;
            if let CounterOutcome::Rejected { .. } = taken {
                return Ok(skipped(SkipReason::LimitReached.as_str()));
            }
            job.counted = true;
            // Recorded before the answer is asked for, so that a worker taking the job over
            // after a crash does not take a second one.
            match self.jobs.update(job).await {
                Ok(stored) => *job = stored,
                Err(e) => {
                    job.counted = true;
                    return Err(e.into());
                }
            }
        }
        let prepared = self
            .ai
            .prepare_as(
                &access,
                &self.inbox,
                tenant,
                conversation.id,
                Task::SuggestReply,
                None,
            )
            .await?;
        let answer = self.ai.complete(tenant, &prepared).await?;
        let reply: String = answer.text.trim().chars().take(MAX_TEXT_CHARS).collect();
        if reply.is_empty() {
            return Ok((
                AutoReplyJobState::Failed,
                Some("ai_empty_answer: the assistant answered nothing".into()),
            ));
        }
        let sent = self
            .outbound
            .send_auto_reply(
                &access,
                tenant,
                NewSend {
                    account_id: None,
                    target: SendTarget::Conversation(conversation.id),
                    body: serde_json::json!({ "type": "text", "text": { "body": reply } }),
                    idempotency_key: Some(key),
                },
            )
            .await;
        match sent {
            Ok(accepted) => {
                job.reply_message_id = Some(accepted.record.id);
                Ok((AutoReplyJobState::Replied, None))
            }
            Err(e) => Ok(failed(&ApiError::from(e))),
        }
    }

    /// Whether the job's conversation carries the hand-off flag.
    async fn flagged(&self, job: &AutoReplyJob) -> Result<bool, ApiError> {
        let c = self
            .storage
            .conversations
            .get(Scope::Tenant(job.tenant_id), job.conversation_id)
            .await?;
        Ok(c.handoff_requested_at.is_some())
    }

    /// Flags the conversation for the team (unassigned, as it is) and sends nothing.
    async fn hand_off(&self, job: &AutoReplyJob) -> Result<Outcome, ApiError> {
        let scope = Scope::Tenant(job.tenant_id);
        let mut backoff = ConflictBackoff::new();
        while backoff.next_attempt().await {
            let mut c = self
                .storage
                .conversations
                .get(scope, job.conversation_id)
                .await?;
            if c.handoff_requested_at.is_some() {
                break;
            }
            if c.assignee.is_some() {
                // Someone took it meanwhile: that is the human asked for.
                return Ok(skipped(SkipReason::Assigned.as_str()));
            }
            c.handoff_requested_at = Some(imix_core::now());
            c.updated_at = imix_core::now();
            match self.storage.conversations.update(scope, &c).await {
                Ok(updated) => {
                    self.events
                        .publish(NewEvent::conversation(&updated, false))
                        .await;
                    break;
                }
                Err(CoreError::VersionConflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        if backoff.attempts() > 0 && !self.flagged(job).await? {
            return Err(CoreError::VersionConflict {
                entity: "conversation",
                id: job.conversation_id.to_string(),
                expected: 0,
            }
            .into());
        }
        Ok((
            AutoReplyJobState::HandedOff,
            Some("the customer asked for a human".into()),
        ))
    }
}

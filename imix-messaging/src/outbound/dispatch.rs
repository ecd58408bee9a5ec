//! The dispatcher: hands queued messages to Meta, at most at each number's rate, and
//! records every outcome before it forgets it.
//!
//! Per message: claim (lease, atomic; several replicas share the queue) → wait for a token
//! of the number's bucket → mark `sending` (durable, before the call) → call Meta → store
//! the outcome. A worker that dies after marking `sending` leaves the message to
//! [`Dispatcher::sweep`], which marks it `unknown` once its lease ran out: Meta may have
//! accepted it, so it is never sent again by itself.

use std::{
    collections::HashMap,
    num::NonZeroU32,
    sync::{Arc, Mutex},
    time::Duration,
};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use imix_core::{
    id::WhatsAppAccountId,
    store::{ConflictBackoff, Scope},
    Error as CoreError, Timestamp,
};
use imix_whatsapp::{client::WhatsAppClient, ErrorClass};
use tokio::sync::Notify;

use super::{OutboundRecord, OutboundStatus, SendFailure, SendQuota, Sender, SenderAccounts};
use crate::{
    ingest::Processor,
    records::{DeliveryState, Direction, Message},
    storage::{outbound::OutboundRepository, MessagingStorage},
};

/// Meta's default throughput per number (messages per second).
pub const DEFAULT_RATE: u32 = 80;
/// The highest throughput Meta grants a number.
pub const MAX_RATE: u32 = 1000;

/// How the dispatcher paces itself.
#[derive(Debug, Clone)]
pub struct DispatchConfig {
    /// How long a claim holds a message; longer than the Graph API client's timeout, so a
    /// live worker's message is never taken for a dead one's.
    pub lease: Duration,
    /// How often to look for due messages (and stale `sending` ones) when not woken.
    pub poll: Duration,
    /// How many messages one worker handles at once.
    pub concurrency: usize,
    /// The delay after a first retryable failure, doubled each time up to `max_backoff`
    /// (with jitter; never shorter than Meta's `Retry-After`).
    pub first_backoff: Duration,
    /// The longest delay between attempts.
    pub max_backoff: Duration,
    /// Retryable failures after which a message is `failed`.
    pub max_attempts: u32,
    /// How long a recipient waits after Meta's pair rate limit (131056), doubled for each
    /// one in a row.
    pub pair_backoff: Duration,
    /// How often the messages of a paused account (token refused) are looked at again.
    pub paused_recheck: Duration,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(120),
            poll: Duration::from_secs(1),
            concurrency: 64,
            first_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(600),
            max_attempts: 10,
            pair_backoff: Duration::from_secs(6),
            paused_recheck: Duration::from_secs(60),
        }
    }
}

/// The messages of an account whose token Meta refused wait, queued, until it is verified
/// again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountPaused(pub WhatsAppAccountId);

/// Token buckets per phone number and back-off per recipient, for one process.
///
/// The buckets are [`governor`]'s GCRA limiters: a maintained, lock-free implementation
/// whose `until_ready` waits exactly as long as the rate needs, with no polling. Each
/// number's bucket holds one token (no burst): sends are spaced evenly at the number's
/// rate, so no one-second window ever holds more than the rate.
#[derive(Default)]
pub struct RateLimits {
    numbers: Mutex<HashMap<String, (u32, Arc<DefaultDirectRateLimiter>)>>,
    /// A second bucket per number, taken right before Meta is called (see
    /// [`RateLimits::until_call`]).
    calls: Mutex<HashMap<String, (u32, Arc<DefaultDirectRateLimiter>)>>,
    recipients: Mutex<HashMap<(String, String), (Timestamp, u32)>>,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits").finish_non_exhaustive()
    }
}

/// A number's rate: its setting within 1..=[`MAX_RATE`], [`DEFAULT_RATE`] when unset.
pub fn effective_rate(setting: Option<u32>) -> u32 {
    setting.unwrap_or(DEFAULT_RATE).clamp(1, MAX_RATE)
}

impl RateLimits {
    /// The bucket of `phone_number_id` at `rate` per second (a new one when the rate
    /// changed).
    fn bucket(&self, phone_number_id: &str, rate: u32) -> Arc<DefaultDirectRateLimiter> {
        Self::bucket_in(&self.numbers, phone_number_id, rate)
    }

    fn bucket_in(
        buckets: &Mutex<HashMap<String, (u32, Arc<DefaultDirectRateLimiter>)>>,
        phone_number_id: &str,
        rate: u32,
    ) -> Arc<DefaultDirectRateLimiter> {
        let mut numbers = buckets.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((r, limiter)) = numbers.get(phone_number_id) {
            if *r == rate {
                return limiter.clone();
            }
        }
        let period = Duration::from_secs(1) / rate.max(1);
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(NonZeroU32::MIN);
        let limiter = Arc::new(RateLimiter::direct(quota));
        numbers.insert(phone_number_id.to_owned(), (rate, limiter.clone()));
        limiter
    }

    /// Waits for a token of the number's bucket.
    pub async fn until_ready(&self, phone_number_id: &str, rate: u32) {
        self.bucket(phone_number_id, rate).until_ready().await;
    }

    /// Waits until the number's last call to Meta is at least `1 / rate` s ago. The
    /// bucket of [`RateLimits::until_ready`] spaces messages before they are marked
    /// `sending`, but that durable write takes a varying time (a group commit, longer
    /// under load), so calls could reach Meta bunched and a one-second window hold more
    /// than the rate (91 at 80/s was measured, docs/benchmarks.md). Spacing the calls
    /// themselves keeps every window within the rate; it only waits out such bunching.
    pub async fn until_call(&self, phone_number_id: &str, rate: u32) {
        Self::bucket_in(&self.calls, phone_number_id, rate)
            .until_ready()
            .await;
    }

    /// Until when `to` must not be sent to from `phone_number_id`, if it is backing off.
    fn recipient_wait(&self, phone_number_id: &str, to: &str, now: Timestamp) -> Option<Timestamp> {
        let map = self.recipients.lock().unwrap_or_else(|p| p.into_inner());
        let key = (phone_number_id.to_owned(), to.to_owned());
        match map.get(&key) {
            Some((until, _)) if *until > now => Some(*until),
            Some(_) => {
                // Past its wait: forgotten once a send to it succeeds.
                None
            }
            None => None,
        }
    }

    /// Meta refused a send to `to` for the pair rate limit: back off that recipient only,
    /// longer for each refusal in a row. Answers until when.
    fn recipient_limited(&self, phone_number_id: &str, to: &str, base: Duration) -> Timestamp {
        let mut map = self.recipients.lock().unwrap_or_else(|p| p.into_inner());
        let key = (phone_number_id.to_owned(), to.to_owned());
        let strikes = map.get(&key).map_or(0, |(_, s)| *s).min(8);
        let until = imix_core::now() + chrono_of(base.saturating_mul(1 << strikes));
        map.insert(key, (until, strikes + 1));
        until
    }

    fn recipient_ok(&self, phone_number_id: &str, to: &str) {
        let mut map = self.recipients.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&(phone_number_id.to_owned(), to.to_owned()));
    }
}

fn chrono_of(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// The delay before attempt `attempts + 1` after a retryable failure: exponential from
/// `first` up to `max`, the upper half jittered (so messages failed together do not
/// retry together), never shorter than Meta's `Retry-After`.
pub fn retry_delay(
    attempts: u32,
    first: Duration,
    max: Duration,
    retry_after: Option<Duration>,
) -> Duration {
    use rand::Rng;
    let exponent = attempts.saturating_sub(1).min(20);
    let full = first.saturating_mul(1u32 << exponent).min(max);
    let half = full / 2;
    let jitter_ms = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
    let jitter = Duration::from_millis(rand::thread_rng().gen_range(0..=jitter_ms));
    (half + jitter).max(retry_after.unwrap_or_default())
}

/// Whether Meta may have received a request that failed with `e` (a timeout, or a
/// connection that broke after the request was written): its outcome is unknown.
fn may_have_arrived(e: &imix_whatsapp::Error) -> bool {
    e.request_may_have_arrived()
}

/// Hands queued messages to Meta. Cheap to clone (shared state behind `Arc`s).
#[derive(Clone)]
pub struct Dispatcher {
    pub(super) records: Arc<dyn OutboundRepository>,
    storage: MessagingStorage,
    accounts: Arc<dyn SenderAccounts>,
    client: Arc<dyn WhatsAppClient>,
    quota: Arc<dyn SendQuota>,
    processor: Processor,
    pub(super) limits: Arc<RateLimits>,
    wake: Arc<Notify>,
    pub(super) config: DispatchConfig,
    /// The shared rate gate and queue, when replicas share Redis (see `stream_queue`).
    pub(super) replicated: super::stream_queue::Replicated,
    /// Uploads files of ours to Meta (messages referencing one fail without it).
    media: Option<super::media_upload::MediaUploads>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What became of one claimed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    Sent,
    Deferred,
    Failed,
    Unknown,
    Dropped,
}

impl Dispatcher {
    /// A dispatcher over `records`, writing accepted messages to `storage`'s
    /// conversations (held statuses applied by `processor`), sending with `client` as
    /// `accounts` says, giving failed messages' quota back to `quota`; woken by `wake`
    /// (shared with the [`super::OutboundService`]).
    #[allow(clippy::too_many_arguments)] // one port each
    pub fn new(
        records: Arc<dyn OutboundRepository>,
        storage: MessagingStorage,
        accounts: Arc<dyn SenderAccounts>,
        client: Arc<dyn WhatsAppClient>,
        quota: Arc<dyn SendQuota>,
        processor: Processor,
        wake: Arc<Notify>,
        config: DispatchConfig,
    ) -> Self {
        Self {
            records,
            storage,
            accounts,
            client,
            quota,
            processor,
            limits: Arc::new(RateLimits::default()),
            wake,
            config,
            media: None,
            replicated: Default::default(),
        }
    }

    /// Sends files of ours (media `blob`s) by uploading them with `uploads`.
    pub fn with_media_uploads(mut self, uploads: super::media_upload::MediaUploads) -> Self {
        self.media = Some(uploads);
        self
    }

    /// Marks `unknown` every message left `sending` by a worker whose lease ran out;
    /// answers how many.
    pub async fn sweep(&self) -> Result<usize, CoreError> {
        let mut marked = 0;
        loop {
            let now = imix_core::now();
            let stale = self.records.stale_sending(now, 100).await?;
            if stale.is_empty() {
                return Ok(marked);
            }
            let found = stale.len();
            for mut r in stale {
                tracing::warn!(target: "imix_whatsapp", message = %r.id, "message left sending by a stopped worker: outcome unknown, not sent again");
                r.status = OutboundStatus::Unknown;
                r.unknown_at = Some(now);
                r.lease_until = None;
                r.due_at = None;
                r.last_error = Some(
                    "the worker stopped while Meta was being called: Meta may or may not have the message"
                        .into(),
                );
                r.updated_at = now;
                match self.records.update(&r).await {
                    Ok(_) => marked += 1,
                    Err(CoreError::VersionConflict { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            if found < 100 {
                return Ok(marked);
            }
        }
    }

    /// Claims and dispatches due messages, up to [`DispatchConfig::concurrency`] at a
    /// time, until none is due; answers how many it handled.
    pub async fn drain(&self) -> Result<usize, CoreError> {
        let slots = self.config.concurrency.max(1);
        let mut in_flight = tokio::task::JoinSet::new();
        let mut handled = 0;
        let mut backlog_left = true;
        let mut first_error = None;
        loop {
            if backlog_left && in_flight.len() <= slots / 2 {
                let now = imix_core::now();
                let wanted = slots - in_flight.len();
                match self
                    .records
                    .claim_due(now, now + chrono_of(self.config.lease), wanted)
                    .await
                {
                    Ok(claimed) => {
                        backlog_left = claimed.len() == wanted;
                        for r in claimed {
                            let me = self.clone();
                            in_flight.spawn(async move { me.dispatch(r).await });
                        }
                    }
                    Err(e) => {
                        backlog_left = false;
                        first_error.get_or_insert(e);
                    }
                }
            }
            match in_flight.join_next().await {
                Some(Ok(Ok(_))) => handled += 1,
                Some(Ok(Err(e))) => {
                    tracing::error!(target: "imix_whatsapp", error = %e, "dispatching a message failed; its lease runs out and it is looked at again");
                    first_error.get_or_insert(e);
                }
                Some(Err(join_error)) => {
                    tracing::error!(target: "imix_whatsapp", error = %join_error, "dispatch task failed");
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

    /// Runs until `stop` completes: sweeps stale `sending` messages and dispatches due
    /// ones, when woken by a new message and at every poll.
    pub async fn run(&self, stop: impl std::future::Future<Output = ()>) {
        if let Some(queue) = self.replicated.queue.clone() {
            return self.run_queue(queue, stop).await;
        }
        let mut stop = std::pin::pin!(stop);
        loop {
            if let Err(e) = self.sweep().await {
                tracing::error!(target: "imix_whatsapp", error = %e, "looking for messages left sending failed");
            }
            if let Err(e) = self.drain().await {
                tracing::error!(target: "imix_whatsapp", error = %e, "dispatching messages failed; retrying");
            }
            tokio::select! {
                () = &mut stop => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(self.config.poll) => {}
            }
        }
    }

    /// Puts a claimed message back in the queue, due at `due` (not an attempt).
    async fn defer(
        &self,
        mut r: OutboundRecord,
        due: Timestamp,
        why: Option<String>,
    ) -> Result<Outcome, CoreError> {
        r.status = OutboundStatus::Queued;
        r.due_at = Some(due);
        r.lease_until = None;
        if why.is_some() {
            r.last_error = why;
        }
        r.updated_at = imix_core::now();
        match self.records.update(&r).await {
            Ok(_) => Ok(Outcome::Deferred),
            Err(CoreError::VersionConflict { .. }) => Ok(Outcome::Dropped),
            Err(e) => Err(e),
        }
    }

    pub(super) async fn dispatch(&self, r: OutboundRecord) -> Result<Outcome, CoreError> {
        let sender = match self.accounts.sender(r.account_id).await {
            Ok(s) => s,
            Err(crate::MessagingError::Store(CoreError::NotFound { .. })) => {
                // The account was deleted: the message can never be sent.
                let failure = SendFailure {
                    code: None,
                    title: Some("account deleted".into()),
                    message: "the WhatsApp account this message was queued on no longer exists"
                        .into(),
                    details: None,
                };
                return self.fail(r, failure).await;
            }
            Err(e) => {
                tracing::warn!(target: "imix_whatsapp", message = %r.id, error = %e, "cannot read the sending account; will retry");
                let due = imix_core::now() + chrono_of(self.config.first_backoff);
                return self.defer(r, due, Some(e.to_string())).await;
            }
        };
        if sender.paused {
            let due = imix_core::now() + chrono_of(self.config.paused_recheck);
            return self.defer(r, due, None).await;
        }
        // Blocked after it was queued: blocking stops what is already queued too. A deleted
        // contact does not stop the message (its number is on the record).
        match self
            .storage
            .contacts
            .get(Scope::Platform, r.contact_id)
            .await
        {
            Ok(c) if c.blocked => {
                let failure = SendFailure {
                    code: None,
                    title: Some("contact blocked".into()),
                    message: "the contact was blocked after this message was queued".into(),
                    details: None,
                };
                return self.fail(r, failure).await;
            }
            Ok(_) | Err(CoreError::NotFound { .. }) => {}
            Err(e) => {
                tracing::warn!(target: "imix_whatsapp", message = %r.id, error = %e, "cannot read the message's contact; will retry");
                let due = imix_core::now() + chrono_of(self.config.first_backoff);
                return self.defer(r, due, Some(e.to_string())).await;
            }
        }
        if let Some(until) =
            self.limits
                .recipient_wait(&sender.phone_number_id, &r.to, imix_core::now())
        {
            return self.defer(r, until, None).await;
        }
        // The number's bucket: this process's, or the one replicas share.
        let rate = effective_rate(sender.max_messages_per_second);
        let slot = self.acquire(&sender.phone_number_id, rate).await;
        // Durably `sending` before Meta hears of it: a crash from here on leaves a trace
        // that the sweeper turns into `unknown`, never a silent second send.
        let now = imix_core::now();
        let mut sending = r.clone();
        sending.status = OutboundStatus::Sending;
        sending.sending_at = Some(now);
        sending.attempts = sending.attempts.saturating_add(1);
        sending.due_at = None;
        sending.lease_until = Some(now + chrono_of(self.config.lease));
        sending.updated_at = now;
        let sending = match self.records.update(&sending).await {
            Ok(stored) => stored,
            // Its lease ran out while waiting and another worker has it.
            Err(CoreError::VersionConflict { .. }) => return Ok(Outcome::Dropped),
            Err(e) => return Err(e),
        };
        let message = match outbound_message(&sending) {
            Ok(m) => m,
            Err(e) => {
                let failure = SendFailure {
                    code: None,
                    title: Some("invalid stored message".into()),
                    message: e.to_string(),
                    details: None,
                };
                return self.fail(sending, failure).await;
            }
        };
        // A file of ours is uploaded (or its cached media id used) before the send.
        let message = match self.upload_media(&sending, &sender, message).await {
            Ok(m) => m,
            Err(outcome) => return outcome,
        };
        // Late for its slot (a slow store write or upload): a fresh one, so the shared
        // rate holds where Meta counts it.
        self.depart(&sender.phone_number_id, rate, slot).await;
        // Spaced again right before the call: Meta counts requests as they arrive.
        self.limits
            .until_call(
                &sender.phone_number_id,
                effective_rate(sender.max_messages_per_second),
            )
            .await;
        let answer = self
            .client
            .send_message(&sender.token, &sender.phone_number_id, &message)
            .await;
        match answer {
            Ok(response) => match response.message_id() {
                Some(wamid) => {
                    self.limits
                        .recipient_ok(&sender.phone_number_id, &sending.to);
                    self.accepted(sending, wamid.to_owned(), &sender).await
                }
                None => {
                    self.unknown(sending, "Meta answered without a message id".into())
                        .await
                }
            },
            Err(e) => self.failed_call(sending, &sender, e).await,
        }
    }

    /// `message` with its files of ours replaced by Meta's media ids; on failure, what
    /// became of the message (an upload failure is classified like a send's, except that an
    /// upload Meta may have received is simply retried: the message itself was not sent).
    async fn upload_media(
        &self,
        r: &OutboundRecord,
        sender: &Sender,
        message: imix_whatsapp::model::OutboundMessage,
    ) -> Result<imix_whatsapp::model::OutboundMessage, Result<Outcome, CoreError>> {
        use super::media_upload::{UploadProblem, BLOB_ID_PREFIX};
        if !r.content.to_string().contains(BLOB_ID_PREFIX) {
            return Ok(message);
        }
        let Some(media) = &self.media else {
            let failure = SendFailure {
                code: None,
                title: Some("media unavailable".into()),
                message: "this server does not upload files to Meta".into(),
                details: None,
            };
            return Err(self.fail(r.clone(), failure).await);
        };
        match media.resolve(r, sender, message).await {
            Ok(m) => Ok(m),
            Err(UploadProblem::Unavailable(failure)) => Err(self.fail(r.clone(), failure).await),
            Err(UploadProblem::Store(e)) => {
                let due = imix_core::now() + chrono_of(self.config.first_backoff);
                Err(self.defer(r.clone(), due, Some(e.to_string())).await)
            }
            Err(UploadProblem::Graph(e))
                if e.class() == ErrorClass::Retryable && may_have_arrived(&e) =>
            {
                if r.attempts >= self.config.max_attempts {
                    return Err(self.fail(r.clone(), SendFailure::from(&e)).await);
                }
                let due = imix_core::now()
                    + chrono_of(retry_delay(
                        r.attempts,
                        self.config.first_backoff,
                        self.config.max_backoff,
                        e.retry_after(),
                    ));
                Err(self.defer(r.clone(), due, Some(e.to_string())).await)
            }
            Err(UploadProblem::Graph(e)) => {
                tracing::info!(target: "imix_whatsapp", message = %r.id, error = %e, "uploading the message's file to Meta failed");
                Err(self.failed_call(r.clone(), sender, e).await)
            }
        }
    }

    async fn failed_call(
        &self,
        r: OutboundRecord,
        sender: &Sender,
        e: imix_whatsapp::Error,
    ) -> Result<Outcome, CoreError> {
        let failure = SendFailure::from(&e);
        match e.class() {
            ErrorClass::Retryable if may_have_arrived(&e) => {
                tracing::warn!(target: "imix_whatsapp", message = %r.id, error = %e, "send outcome unknown (Meta may have the message): not sent again automatically");
                self.unknown(r, e.to_string()).await
            }
            ErrorClass::Retryable if r.attempts >= self.config.max_attempts => {
                tracing::warn!(target: "imix_whatsapp", message = %r.id, error = %e, attempts = r.attempts, "send failed after the last retry");
                self.fail(r, failure).await
            }
            ErrorClass::Retryable => {
                let now = imix_core::now();
                let mut due = now
                    + chrono_of(retry_delay(
                        r.attempts,
                        self.config.first_backoff,
                        self.config.max_backoff,
                        e.retry_after(),
                    ));
                if e.code() == Some(131056) {
                    let until = self.limits.recipient_limited(
                        &sender.phone_number_id,
                        &r.to,
                        self.config.pair_backoff,
                    );
                    due = due.max(until);
                }
                tracing::info!(target: "imix_whatsapp", message = %r.id, error = %e, attempt = r.attempts, retry_at = %due, "send failed with a transient error; will retry");
                self.defer(r, due, Some(e.to_string())).await
            }
            ErrorClass::Authentication => {
                tracing::error!(target: "imix_whatsapp", message = %r.id, account = %r.account_id, error = %e, "Meta refused the account's token: its queue is paused");
                if let Err(flag) = self
                    .accounts
                    .authentication_failed(r.account_id, &failure)
                    .await
                {
                    tracing::error!(target: "imix_whatsapp", account = %r.account_id, error = %flag, "cannot flag the account");
                }
                let mut r = r;
                // Not the message's fault: the attempt does not count.
                r.attempts = r.attempts.saturating_sub(1);
                let due = imix_core::now() + chrono_of(self.config.paused_recheck);
                self.defer(r, due, Some(e.to_string())).await
            }
            ErrorClass::Permanent => {
                tracing::info!(target: "imix_whatsapp", message = %r.id, error = %e, "Meta refused the message");
                self.fail(r, failure).await
            }
        }
    }

    /// `failed` with `failure`; the quota units go back.
    async fn fail(&self, r: OutboundRecord, failure: SendFailure) -> Result<Outcome, CoreError> {
        let mut backoff = ConflictBackoff::new();
        let mut r = r;
        while backoff.next_attempt().await {
            let now = imix_core::now();
            r.status = OutboundStatus::Failed;
            r.failed_at = Some(now);
            r.error = Some(failure.clone());
            r.due_at = None;
            r.lease_until = None;
            r.updated_at = now;
            let give_back = match r.quota.as_mut().filter(|q| !q.returned) {
                Some(q) => {
                    q.returned = true;
                    Some(q.clone())
                }
                None => None,
            };
            match self.records.update(&r).await {
                Ok(_) => {
                    if let Some(taken) = give_back {
                        if let Err(e) = self.quota.give_back(r.tenant_id, &taken).await {
                            tracing::error!(target: "imix_whatsapp", message = %r.id, error = %e, "cannot give back the quota of a failed message");
                        }
                    }
                    return Ok(Outcome::Failed);
                }
                Err(CoreError::VersionConflict { .. }) => {
                    let current = self.records.get(Scope::Platform, r.id).await?;
                    // Only a message still ours (sending, or claimed while queued) is
                    // failed: anything else was settled elsewhere.
                    if !matches!(
                        current.status,
                        OutboundStatus::Sending | OutboundStatus::Queued
                    ) {
                        return Ok(Outcome::Dropped);
                    }
                    r = current;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(Outcome::Dropped)
    }

    async fn unknown(&self, mut r: OutboundRecord, why: String) -> Result<Outcome, CoreError> {
        let now = imix_core::now();
        r.status = OutboundStatus::Unknown;
        r.unknown_at = Some(now);
        r.lease_until = None;
        r.due_at = None;
        r.last_error = Some(why);
        r.updated_at = now;
        match self.records.update(&r).await {
            Ok(_) | Err(CoreError::VersionConflict { .. }) => Ok(Outcome::Unknown),
            Err(e) => Err(e),
        }
    }

    /// Meta accepted the message: its wamid is stored at once, then the message is
    /// written to the conversation and the statuses Meta sent before its answer applied.
    async fn accepted(
        &self,
        r: OutboundRecord,
        wamid: String,
        sender: &Sender,
    ) -> Result<Outcome, CoreError> {
        let mut r = r;
        let mut backoff = ConflictBackoff::new();
        let stored = loop {
            if !backoff.next_attempt().await {
                return Err(CoreError::VersionConflict {
                    entity: "message",
                    id: r.id.to_string(),
                    expected: r.version,
                });
            }
            let now = imix_core::now();
            r.wamid = Some(wamid.clone());
            // Even if the sweeper took it for lost meanwhile: the outcome is known now.
            if matches!(
                r.status,
                OutboundStatus::Sending | OutboundStatus::Unknown | OutboundStatus::Queued
            ) {
                r.status = OutboundStatus::Sent;
            }
            r.sent_at.get_or_insert(now);
            r.unknown_at = None;
            r.lease_until = None;
            r.due_at = None;
            r.last_error = None;
            r.updated_at = now;
            match self.records.update(&r).await {
                Ok(stored) => break stored,
                Err(CoreError::VersionConflict { .. }) => {
                    r = self.records.get(Scope::Platform, r.id).await?;
                }
                Err(e) => return Err(e),
            }
        };
        if let Err(e) = self.write_to_conversation(&stored, &wamid, sender).await {
            // The send is recorded; the conversation's copy is what failed.
            tracing::error!(target: "imix_whatsapp", message = %stored.id, error = %e, "cannot write a sent message to its conversation");
        }
        Ok(Outcome::Sent)
    }

    async fn write_to_conversation(
        &self,
        r: &OutboundRecord,
        wamid: &str,
        sender: &Sender,
    ) -> crate::Result<()> {
        let scope = Scope::Tenant(r.tenant_id);
        let now = imix_core::now();
        let message = match self.storage.messages.get(scope, r.id).await {
            // A retried message: the conversation's copy takes the new wamid.
            Ok(mut m) => {
                m.wamid = wamid.to_owned();
                m.state = DeliveryState::Accepted;
                m.statuses.clear();
                m.timestamp = now;
                self.storage.messages.update(scope, &m).await?
            }
            Err(CoreError::NotFound { .. }) => {
                let m = Message {
                    auto_reply: r.auto_reply,
                    id: r.id,
                    tenant_id: r.tenant_id,
                    account_id: r.account_id,
                    phone_number_id: sender.phone_number_id.clone(),
                    conversation_id: r.conversation_id,
                    contact_id: r.contact_id,
                    wamid: wamid.to_owned(),
                    direction: Direction::Outbound,
                    kind: r.kind.clone(),
                    content: r.content.clone(),
                    timestamp: now,
                    state: DeliveryState::Accepted,
                    statuses: Vec::new(),
                    version: 1,
                    created_at: now,
                };
                self.storage.messages.insert(&m).await?;
                m
            }
            Err(e) => return Err(e.into()),
        };
        // Statuses that raced Meta's answer were held for this wamid.
        self.processor
            .outbound_message_stored(r.tenant_id, &message)
            .await?;
        self.touch_conversation(r, now).await;
        Ok(())
    }

    /// The conversation's newest message time and preview, best effort.
    async fn touch_conversation(&self, r: &OutboundRecord, at: Timestamp) {
        let scope = Scope::Tenant(r.tenant_id);
        let mut backoff = ConflictBackoff::new();
        while backoff.next_attempt().await {
            let mut c = match self
                .storage
                .conversations
                .get(scope, r.conversation_id)
                .await
            {
                Ok(c) => c,
                Err(_) => return,
            };
            // A user's message answers a customer who asked for a human: the flag goes.
            let answers_handoff = !r.auto_reply && c.handoff_requested_at.is_some();
            let newest = c.last_message_at.is_none_or(|t| t < at);
            if !newest && !answers_handoff {
                return;
            }
            if newest {
                c.last_message_at = Some(at);
                c.preview = Some(preview(r));
            }
            if answers_handoff {
                c.handoff_requested_at = None;
            }
            c.updated_at = imix_core::now();
            match self.storage.conversations.update(scope, &c).await {
                Ok(_) => return,
                Err(CoreError::VersionConflict { .. }) => continue,
                Err(e) => {
                    tracing::warn!(target: "imix_whatsapp", conversation = %c.id, error = %e, "cannot update the conversation after a send");
                    return;
                }
            }
        }
    }
}

fn preview(r: &OutboundRecord) -> String {
    let text = match r.kind.as_str() {
        "text" => r.content.pointer("/text/body"),
        "image" | "video" | "document" => r.content.pointer(&format!("/{}/caption", r.kind)),
        "template" => r.content.pointer("/template/name"),
        "reaction" => r.content.pointer("/reaction/emoji"),
        _ => None,
    }
    .and_then(|v| v.as_str());
    let shown = text.map_or_else(
        || format!("[{}]", r.kind),
        |t| t.chars().filter(|c| !c.is_control()).collect(),
    );
    shown.chars().take(120).collect()
}

/// Meta's body for a stored record.
fn outbound_message(
    r: &OutboundRecord,
) -> Result<imix_whatsapp::model::OutboundMessage, serde_json::Error> {
    let mut body = r.content.clone();
    if let Some(obj) = body.as_object_mut() {
        obj.insert("to".into(), serde_json::Value::String(r.to.clone()));
        obj.insert("messaging_product".into(), "whatsapp".into());
    }
    serde_json::from_value(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_default_to_metas_and_are_capped() {
        assert_eq!(effective_rate(None), 80);
        assert_eq!(effective_rate(Some(0)), 1);
        assert_eq!(effective_rate(Some(250)), 250);
        assert_eq!(effective_rate(Some(5000)), 1000);
    }

    #[test]
    fn retry_delays_grow_are_jittered_capped_and_honour_retry_after() {
        let first = Duration::from_secs(2);
        let max = Duration::from_secs(600);
        for attempt in 1..=12 {
            let d = retry_delay(attempt, first, max, None);
            let full = first.saturating_mul(1 << (attempt - 1).min(20)).min(max);
            assert!(d >= full / 2 && d <= full, "{attempt}: {d:?}");
        }
        let d = retry_delay(1, first, max, Some(Duration::from_secs(30)));
        assert!(d >= Duration::from_secs(30));
    }

    #[tokio::test]
    async fn a_bucket_spaces_sends_at_the_rate() {
        let limits = RateLimits::default();
        let start = std::time::Instant::now();
        for _ in 0..21 {
            limits.until_ready("p", 100).await;
        }
        // 21 sends at 100/s take at least 200 ms (no burst).
        assert!(
            start.elapsed() >= Duration::from_millis(190),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn a_recipient_backs_off_longer_each_time_and_alone() {
        let limits = RateLimits::default();
        let now = imix_core::now();
        let first = limits.recipient_limited("p", "a", Duration::from_secs(6));
        let second = limits.recipient_limited("p", "a", Duration::from_secs(6));
        assert!(second > first);
        assert!(limits.recipient_wait("p", "a", now).is_some());
        assert!(limits.recipient_wait("p", "b", now).is_none());
        limits.recipient_ok("p", "a");
        assert!(limits.recipient_wait("p", "a", now).is_none());
    }
}

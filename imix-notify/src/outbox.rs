//! The mail outbox: every email is persisted before it is sent, and a background worker
//! sends what is due, retrying with exponential backoff while the mail server is
//! unreachable, until the email is delivered or its retry budget is spent.
//!
//! - **Nothing is lost**: the email is in the store before `enqueue` returns; a restart (or
//!   a crash mid-send) leaves it pending, or sending with a lease that expires, and a worker
//!   picks it up again.
//! - **Several replicas**: each email is claimed with an atomic, leased claim
//!   ([`crate::storage::MailOutboxRepository::claim_due`]), so an email is never handed to
//!   two workers at once.
//! - **No head-of-line blocking**: a worker sends up to [`OutboxConfig::concurrency`] emails
//!   at the same time (4 by default), each under its own claim, and an SMTP attempt lasts
//!   15 s at most ([`crate::smtp::MAX_SEND_TIME`]), so one tenant's slow or silent server
//!   cannot hold up everyone else's mail.
//! - **Deactivated tenants**: nothing is sent on behalf of a deactivated tenant. Its emails
//!   — also those queued before it was deactivated — are held (put back for
//!   [`OutboxConfig::hold_delay`], no attempt counted, never failed) and go out once it is
//!   active again. (A worker that dies after the server accepted the email
//!   but before recording it may cause one duplicate after the lease expires: at-least-once.)
//! - **Secrets**: bodies are sealed with the at-rest cipher (set-password links); listings
//!   show metadata and a redacted text only.
//! - **Per-email mailer**: the worker asks a [`MailerResolver`] for each email, so the
//!   tenant's SMTP settings (or the platform's) as they are *now* are used.
//! - **One bad email never stops the queue**: whatever goes wrong with one email — a mail
//!   error, an unreadable body, even a panic inside the mail library — ends that email
//!   (retried or `failed`, with the reason in `last_error` and in the log) and the worker
//!   goes on with the next. [`OutboxWorker::run_supervised`] restarts the worker if it dies
//!   anyway, and [`OutboxMonitor`] tells `/health` and `/metrics` whether it is alive, how
//!   long the most overdue email has waited, how many emails failed and how often the worker
//!   was restarted.

use std::{
    fmt,
    future::Future,
    panic::AssertUnwindSafe,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use async_trait::async_trait;
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use futures::{stream::FuturesUnordered, FutureExt, StreamExt};
use imix_core::{
    crypto::Cipher,
    directory::TenantDirectory,
    id::TenantId,
    store::{Page, PageRequest, Scope},
    Error as CoreError, Language, Timestamp,
};
use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch, Notify};

use crate::{
    storage::MailOutboxRepository,
    templates::{redact, EmailContent, RenderedEmail, Templates},
    Email, MailError, Mailbox, Mailer, NotifyError, OutboxEmail, OutboxId, OutboxStatus,
    SendReceipt,
};

/// A mailer chosen for one email, and a description of where it sends (for messages).
#[derive(Clone)]
pub struct ResolvedMailer {
    /// The mailer.
    pub mailer: Arc<dyn Mailer>,
    /// Where it sends, e.g. `smtp.example.com:587`.
    pub server: String,
}

impl fmt::Debug for ResolvedMailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResolvedMailer")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

/// Chooses the mailer for an email: the tenant's SMTP settings, else the platform's.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait MailerResolver: Send + Sync {
    /// The mailer for email sent on behalf of `tenant` (`None` = platform email).
    /// [`MailError::NotConfigured`] when there is none.
    async fn mailer_for(&self, tenant: Option<TenantId>) -> Result<ResolvedMailer, MailError>;
}

/// The same mailer for every email (a [`crate::RecordingMailer`], or a fixed SMTP server
/// when embedding).
#[derive(Clone)]
pub struct FixedMailer(pub ResolvedMailer);

impl FixedMailer {
    /// Always `mailer`.
    pub fn new(mailer: Arc<dyn Mailer>, server: impl Into<String>) -> Self {
        Self(ResolvedMailer {
            mailer,
            server: server.into(),
        })
    }
}

#[async_trait]
impl MailerResolver for FixedMailer {
    async fn mailer_for(&self, _tenant: Option<TenantId>) -> Result<ResolvedMailer, MailError> {
        Ok(self.0.clone())
    }
}

/// Retry and scheduling policy.
#[derive(Debug, Clone)]
pub struct OutboxConfig {
    /// Attempts before an email is marked failed (default 8: about 2 hours with the
    /// default delays).
    pub max_attempts: u32,
    /// Delay before the first retry; doubled after each failure (default 30 s).
    pub base_delay: Duration,
    /// The longest delay between two attempts (default 1 hour).
    pub max_delay: Duration,
    /// How long a claim lasts before another worker may take the email over (default
    /// 2 minutes; must exceed the mailer's own timeouts).
    pub lease: Duration,
    /// How often an idle worker looks for emails enqueued by other replicas (default 5 s).
    pub poll_interval: Duration,
    /// How many emails one worker sends at the same time, each under its own claim
    /// (default 4; at least 1), so one slow or silent mail server cannot hold up the rest.
    pub concurrency: usize,
    /// How long an email of a deactivated tenant is put back before it is looked at again
    /// (default 30 s). Holding it counts no attempt; it goes out once the tenant is active.
    pub hold_delay: Duration,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            base_delay: Duration::from_secs(30),
            max_delay: Duration::from_secs(3600),
            lease: Duration::from_secs(120),
            poll_interval: Duration::from_secs(5),
            concurrency: 4,
            hold_delay: Duration::from_secs(30),
        }
    }
}

impl OutboxConfig {
    /// The delay after the `attempt`-th failed attempt: `base × 2^(attempt-1)`, capped,
    /// plus up to 10 % random jitter so replicas do not retry in lockstep.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(20);
        let delay = self
            .base_delay
            .saturating_mul(1u32 << exp)
            .min(self.max_delay);
        let jitter_ms = (delay.as_millis() / 10) as u64;
        let jitter = if jitter_ms > 0 {
            rand::thread_rng().gen_range(0..=jitter_ms)
        } else {
            0
        };
        delay + Duration::from_millis(jitter)
    }
}

fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// An outbox email as the API lists it: metadata and the redacted text, never the bodies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutboxEntryView {
    /// The email's id.
    pub id: OutboxId,
    /// The tenant it was sent for, `None` for platform email.
    pub tenant_id: Option<TenantId>,
    /// Recipient address.
    pub to: String,
    /// Subject.
    pub subject: String,
    /// Template name, e.g. `invitation`.
    pub template: String,
    /// Language.
    pub language: Language,
    /// `pending`, `sending`, `sent` or `failed`.
    pub status: OutboxStatus,
    /// Attempts made.
    pub attempts: u32,
    /// The retry budget.
    pub max_attempts: u32,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// The server's reply when it accepted the email.
    pub server_reply: Option<String>,
    /// The next attempt, while pending.
    pub next_attempt_at: Option<Timestamp>,
    /// Enqueued at.
    pub created_at: Timestamp,
    /// Last changed at.
    pub updated_at: Timestamp,
    /// Accepted by the server at.
    pub sent_at: Option<Timestamp>,
    /// The plain-text body with set-password links redacted.
    pub redacted_body: String,
}

impl From<OutboxEmail> for OutboxEntryView {
    fn from(e: OutboxEmail) -> Self {
        Self {
            id: e.id,
            tenant_id: e.tenant_id,
            to: e.to_email,
            subject: e.subject,
            template: e.template,
            language: e.language,
            status: e.status,
            attempts: e.attempts,
            max_attempts: e.max_attempts,
            last_error: e.last_error,
            server_reply: e.server_reply,
            next_attempt_at: (e.status == OutboxStatus::Pending).then_some(e.next_attempt_at),
            created_at: e.created_at,
            updated_at: e.updated_at,
            sent_at: e.sent_at,
            redacted_body: e.redacted_text,
        }
    }
}

/// The sealed part of an outbox email.
#[derive(Serialize, Deserialize)]
struct SealedBody {
    text: String,
    html: Option<String>,
}

fn body_associated_data(id: OutboxId) -> Vec<u8> {
    format!("outbox:{id}:body").into_bytes()
}

/// Enqueues emails and lists the outbox. Cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    repo: Arc<dyn MailOutboxRepository>,
    cipher: Cipher,
    templates: Arc<Templates>,
    config: OutboxConfig,
    wake: Arc<Notify>,
    monitor: OutboxMonitor,
}

impl fmt::Debug for Outbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outbox")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Outbox {
    /// An outbox over `repo`, sealing bodies with `cipher`.
    pub fn new(
        repo: Arc<dyn MailOutboxRepository>,
        cipher: Cipher,
        templates: Arc<Templates>,
        config: OutboxConfig,
    ) -> Self {
        Self {
            repo,
            cipher,
            templates,
            config,
            wake: Arc::new(Notify::new()),
            monitor: OutboxMonitor::default(),
        }
    }

    /// The worker's state, shared with every worker this outbox builds.
    pub fn monitor(&self) -> &OutboxMonitor {
        &self.monitor
    }

    /// How long the most overdue email (pending, or sending with an expired lease) has been
    /// waiting past the time it was due; zero when none is overdue. Read from the store, so
    /// it covers every replica's emails.
    pub async fn oldest_pending_age(&self) -> Result<Duration, NotifyError> {
        let age = overdue(self.repo.next_due_at().await?);
        self.monitor.set_oldest_pending(age);
        Ok(age)
    }

    /// The templates emails are rendered with.
    pub fn templates(&self) -> &Arc<Templates> {
        &self.templates
    }

    /// Renders `content` in `language` and enqueues it for `to`, on behalf of `tenant`
    /// (`None` = platform email). Returns once the email is stored.
    pub async fn enqueue(
        &self,
        tenant: Option<TenantId>,
        to: Mailbox,
        language: Language,
        content: &EmailContent,
    ) -> Result<OutboxId, NotifyError> {
        let rendered = self.templates.render(content, language)?;
        self.enqueue_rendered(tenant, to, content.template_name(), rendered)
            .await
    }

    /// Enqueues an email rendered elsewhere.
    pub async fn enqueue_rendered(
        &self,
        tenant: Option<TenantId>,
        to: Mailbox,
        template: &str,
        rendered: RenderedEmail,
    ) -> Result<OutboxId, NotifyError> {
        if !crate::settings::is_valid_email(to.email.trim()) {
            return Err(NotifyError::invalid("to", "is not a valid email address"));
        }
        let id = OutboxId::new();
        let body = serde_json::to_vec(&SealedBody {
            text: rendered.text,
            html: Some(rendered.html),
        })
        .map_err(|e| CoreError::Corrupt {
            entity: "outbox email",
            source: e.into(),
        })?;
        let sealed = self
            .cipher
            .encrypt(&body, &body_associated_data(id))
            .map_err(CoreError::from)?;
        let now = imix_core::now();
        let email = OutboxEmail {
            id,
            tenant_id: tenant,
            to_email: to.email.trim().to_owned(),
            to_name: to.name,
            subject: rendered.subject,
            template: template.to_owned(),
            language: rendered.language,
            sealed_body: base64_encode(&sealed),
            redacted_text: redact(&rendered.redacted_text),
            status: OutboxStatus::Pending,
            attempts: 0,
            max_attempts: self.config.max_attempts.max(1),
            next_attempt_at: now,
            lease_until: None,
            last_error: None,
            server_reply: None,
            created_at: now,
            updated_at: now,
            sent_at: None,
            version: 1,
        };
        self.repo.insert(&email).await?;
        self.wake.notify_one();
        Ok(id)
    }

    /// One email's metadata, if visible in `scope`.
    pub async fn get(&self, scope: Scope, id: OutboxId) -> Result<OutboxEntryView, NotifyError> {
        Ok(self.repo.get(scope, id).await?.into())
    }

    /// Recent emails visible in `scope`, newest first: metadata and redacted text only.
    pub async fn list(
        &self,
        scope: Scope,
        page: PageRequest,
    ) -> Result<Page<OutboxEntryView>, NotifyError> {
        let page = self.repo.list(scope, page).await?;
        Ok(Page {
            items: page.items.into_iter().map(Into::into).collect(),
            next_cursor: page.next_cursor,
        })
    }

    /// The background worker that sends what this outbox (and any replica's) holds.
    pub fn worker(&self, resolver: Arc<dyn MailerResolver>) -> OutboxWorker {
        let (events, _) = broadcast::channel(256);
        OutboxWorker {
            repo: self.repo.clone(),
            cipher: self.cipher.clone(),
            resolver,
            config: self.config.clone(),
            wake: self.wake.clone(),
            events,
            monitor: self.monitor.clone(),
            tenants: None,
        }
    }
}

fn overdue(next_due: Option<Timestamp>) -> Duration {
    next_due
        .and_then(|due| (imix_core::now() - due).to_std().ok())
        .unwrap_or(Duration::ZERO)
}

/// The outbox worker's state for `/health` and `/metrics`. Cheap to clone; clones share it.
#[derive(Debug, Clone, Default)]
pub struct OutboxMonitor {
    inner: Arc<MonitorInner>,
}

#[derive(Debug, Default)]
struct MonitorInner {
    alive: AtomicBool,
    failures: AtomicU64,
    restarts: AtomicU64,
    oldest_pending_ms: AtomicU64,
}

/// A snapshot of [`OutboxMonitor`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxWorkerState {
    /// Whether the worker is running (false while it is being restarted, or stopped).
    pub alive: bool,
    /// Emails that ended `failed` in this process since it started.
    pub failures: u64,
    /// How often the supervisor restarted the worker since the process started.
    pub restarts: u64,
    /// How long the most overdue email had waited past its due time when last checked
    /// (every poll interval by the supervisor, and by [`Outbox::oldest_pending_age`]).
    pub oldest_pending: Duration,
}

impl OutboxMonitor {
    /// The current state.
    pub fn state(&self) -> OutboxWorkerState {
        let i = &self.inner;
        OutboxWorkerState {
            alive: i.alive.load(Ordering::Relaxed),
            failures: i.failures.load(Ordering::Relaxed),
            restarts: i.restarts.load(Ordering::Relaxed),
            oldest_pending: Duration::from_millis(i.oldest_pending_ms.load(Ordering::Relaxed)),
        }
    }

    fn set_alive(&self, alive: bool) {
        self.inner.alive.store(alive, Ordering::Relaxed);
    }

    fn set_oldest_pending(&self, age: Duration) {
        let ms = u64::try_from(age.as_millis()).unwrap_or(u64::MAX);
        self.inner.oldest_pending_ms.store(ms, Ordering::Relaxed);
    }

    fn add_failure(&self) {
        self.inner.failures.fetch_add(1, Ordering::Relaxed);
    }

    fn add_restart(&self) {
        self.inner.restarts.fetch_add(1, Ordering::Relaxed);
    }
}

/// Marks the worker alive while it lives; dropped on return and on a panic alike.
struct AliveGuard(OutboxMonitor);

impl AliveGuard {
    fn new(monitor: &OutboxMonitor) -> Self {
        monitor.set_alive(true);
        Self(monitor.clone())
    }
}

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.set_alive(false);
    }
}

/// Why one attempt failed: the mailer said so, or the attempt panicked.
enum Failure {
    Mail(MailError),
    Panic(String),
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

fn base64_encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

/// What happened to an email, as the worker reports it to subscribers (tests, metrics).
#[derive(Debug, Clone)]
pub struct OutboxEvent {
    /// The email.
    pub id: OutboxId,
    /// Its status after the attempt: `sent`, `pending` (will retry) or `failed`.
    pub status: OutboxStatus,
    /// Attempts made so far.
    pub attempts: u32,
    /// The attempt's error, if it failed.
    pub error: Option<MailError>,
}

/// Sends due emails until shut down. Build it with [`Outbox::worker`], run it with
/// [`OutboxWorker::run_supervised`] (or [`OutboxWorker::run`]) on a task of its own.
#[derive(Clone)]
pub struct OutboxWorker {
    repo: Arc<dyn MailOutboxRepository>,
    cipher: Cipher,
    resolver: Arc<dyn MailerResolver>,
    config: OutboxConfig,
    wake: Arc<Notify>,
    events: broadcast::Sender<OutboxEvent>,
    monitor: OutboxMonitor,
    tenants: Option<Arc<dyn TenantDirectory>>,
}

impl fmt::Debug for OutboxWorker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboxWorker")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Whether the outbox tries an email again after `error`: everything but a refused
/// recipient or an invalid address, since the others (server down, bad credentials, TLS
/// misconfiguration, sender refused) are fixed by the operator while the email waits.
pub fn should_retry(error: &MailError) -> bool {
    !matches!(
        error,
        MailError::RecipientRejected { .. } | MailError::Invalid { .. }
    )
}

/// Whether an email's tenant lets it go out now.
enum TenantCheck {
    /// Platform email, an active tenant, or no tenant check configured.
    Send,
    /// The tenant is deactivated (or could not be read): put the email back for `delay`.
    Hold { delay: Duration, reason: String },
}

impl OutboxWorker {
    /// Checks the tenant of every email before it is sent: nothing goes out on behalf of a
    /// deactivated tenant. Its emails are held — put back, no attempt counted — and go out
    /// once the tenant is active again. (An email whose tenant no longer exists is sent as
    /// before, through the settings the resolver finds.)
    pub fn with_tenants(mut self, tenants: Arc<dyn TenantDirectory>) -> Self {
        self.tenants = Some(tenants);
        self
    }

    /// Events for every attempt from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<OutboxEvent> {
        self.events.subscribe()
    }

    /// Runs until `shutdown` completes. An email being sent when the signal comes is
    /// finished first (bounded by the mailer's timeouts); anything else waits in the store.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) {
        let _alive = AliveGuard::new(&self.monitor);
        tokio::pin!(shutdown);
        loop {
            let idle = match self.run_once().await {
                Ok(_) => self.idle_time().await,
                Err(e) => {
                    tracing::warn!(error = %e, "mail outbox: cannot read the outbox; retrying");
                    self.config.poll_interval
                }
            };
            tokio::select! {
                () = &mut shutdown => break,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(idle) => {}
            }
        }
        tracing::info!("mail outbox worker stopped");
    }

    /// [`OutboxWorker::run`] on a task of its own, restarted (after a pause that doubles up
    /// to a minute) whenever it dies, until `shutdown` completes. Meanwhile it refreshes
    /// the monitor's oldest-pending age every poll interval, so a worker that is alive but
    /// stuck shows too.
    ///
    /// The monitor shows the worker alive from the moment this is called (not only once the
    /// spawned task first runs), so a fresh server's `/health` is not briefly degraded.
    pub fn run_supervised(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> impl Future<Output = ()> + Send {
        self.monitor.set_alive(true);
        self.supervise(shutdown)
    }

    async fn supervise(self, shutdown: impl Future<Output = ()> + Send) {
        const MAX_PAUSE: Duration = Duration::from_secs(60);
        let (stop, stopped) = watch::channel(false);
        tokio::pin!(shutdown);
        let mut refresh = tokio::time::interval(self.config.poll_interval);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pause = Duration::from_secs(1);
        loop {
            let worker = self.clone();
            let mut stopped = stopped.clone();
            let mut task = tokio::spawn(worker.run(async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            }));
            let started = tokio::time::Instant::now();
            let ended = loop {
                tokio::select! {
                    () = &mut shutdown => {
                        let _ = stop.send(true);
                        if let Err(e) = (&mut task).await {
                            tracing::error!(error = %e, "mail outbox worker failed while stopping");
                        }
                        return;
                    }
                    ended = &mut task => break ended,
                    _ = refresh.tick() => self.refresh_oldest().await,
                }
            };
            let reason = match ended {
                Ok(()) => "it stopped unexpectedly".to_owned(),
                Err(e) if e.is_panic() => {
                    format!("it panicked: {}", panic_message(&*e.into_panic()))
                }
                Err(e) => format!("it was cancelled: {e}"),
            };
            if started.elapsed() > MAX_PAUSE {
                pause = Duration::from_secs(1);
            }
            self.monitor.add_restart();
            tracing::error!(reason = %reason, restart_in_ms = pause.as_millis() as u64,
                "mail outbox worker died; restarting it");
            let resume = tokio::time::sleep(pause);
            tokio::pin!(resume);
            loop {
                tokio::select! {
                    () = &mut shutdown => return,
                    () = &mut resume => break,
                    _ = refresh.tick() => self.refresh_oldest().await,
                }
            }
            pause = (pause * 2).min(MAX_PAUSE);
        }
    }

    async fn refresh_oldest(&self) {
        match tokio::time::timeout(self.config.poll_interval, self.repo.next_due_at()).await {
            Ok(Ok(next)) => self.monitor.set_oldest_pending(overdue(next)),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "mail outbox: cannot read the oldest due email")
            }
            Err(_) => tracing::warn!("mail outbox: reading the oldest due email timed out"),
        }
    }

    /// The worker's state (shared with the outbox's monitor).
    pub fn monitor(&self) -> &OutboxMonitor {
        &self.monitor
    }

    async fn idle_time(&self) -> Duration {
        let poll = self.config.poll_interval;
        match self.repo.next_due_at().await {
            Ok(Some(due)) => (due - imix_core::now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(poll),
            _ => poll,
        }
    }

    /// Sends every email due now, up to [`OutboxConfig::concurrency`] at a time, each
    /// under its own leased claim; returns how many were claimed. A store error stops the
    /// claiming, lets the emails in flight finish and is then returned.
    pub async fn run_once(&self) -> Result<usize, NotifyError> {
        let limit = self.config.concurrency.max(1);
        let mut attempted = 0;
        let mut in_flight = FuturesUnordered::new();
        let mut first_error: Option<NotifyError> = None;
        let mut drained = false;
        loop {
            while !drained && first_error.is_none() && in_flight.len() < limit {
                let now = imix_core::now();
                let lease_until = now + chrono_duration(self.config.lease);
                match self.repo.claim_due(now, lease_until).await {
                    Ok(Some(email)) => {
                        attempted += 1;
                        in_flight.push(self.process(email));
                    }
                    Ok(None) => drained = true,
                    Err(e) => first_error = Some(e.into()),
                }
            }
            match in_flight.next().await {
                Some(Ok(())) => {}
                Some(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                None => break,
            }
            // A slot is free: look again for emails that became due meanwhile.
            drained = false;
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(attempted),
        }
    }

    /// One claimed email: held if its tenant is deactivated, else attempted and recorded.
    async fn process(&self, email: OutboxEmail) -> Result<(), NotifyError> {
        if let TenantCheck::Hold { delay, reason } = self.check_tenant(&email).await {
            return self.hold(email, delay, reason).await;
        }
        // A panic anywhere in the attempt (the mail library, a mailer) ends this email, not
        // the worker.
        let outcome = match AssertUnwindSafe(self.attempt(&email)).catch_unwind().await {
            Ok(result) => result.map_err(Failure::Mail),
            Err(panic) => Err(Failure::Panic(panic_message(&*panic))),
        };
        self.record(email, outcome).await
    }

    async fn check_tenant(&self, email: &OutboxEmail) -> TenantCheck {
        let (Some(tenants), Some(tenant)) = (&self.tenants, email.tenant_id) else {
            return TenantCheck::Send;
        };
        match tenants.profile(tenant).await {
            Ok(t) if !t.is_active() => TenantCheck::Hold {
                delay: self.config.hold_delay,
                reason: "held: the tenant is deactivated; it is sent once the tenant is \
                         active again"
                    .to_owned(),
            },
            Ok(_) | Err(CoreError::NotFound { .. }) => TenantCheck::Send,
            Err(e) => {
                tracing::warn!(id = %email.id, error = %e,
                    "cannot read the email's tenant; trying again later");
                TenantCheck::Hold {
                    delay: self.config.poll_interval,
                    reason: "held: the tenant's status could not be read".to_owned(),
                }
            }
        }
    }

    /// Puts a claimed email back without counting the claim as an attempt.
    async fn hold(
        &self,
        mut email: OutboxEmail,
        delay: Duration,
        reason: String,
    ) -> Result<(), NotifyError> {
        let now = imix_core::now();
        email.attempts = email.attempts.saturating_sub(1);
        email.status = OutboxStatus::Pending;
        email.lease_until = None;
        email.next_attempt_at = now + chrono_duration(delay);
        email.updated_at = now;
        email.last_error = Some(reason);
        tracing::info!(id = %email.id, template = %email.template,
            next_attempt_at = %email.next_attempt_at, "email held: its tenant is deactivated");
        match self.repo.update(&email).await {
            Ok(stored) => {
                let _ = self.events.send(OutboxEvent {
                    id: stored.id,
                    status: stored.status,
                    attempts: stored.attempts,
                    error: None,
                });
                Ok(())
            }
            Err(CoreError::VersionConflict { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn attempt(&self, stored: &OutboxEmail) -> Result<SendReceipt, MailError> {
        let email = self.open(stored)?;
        let resolved = self.resolver.mailer_for(stored.tenant_id).await?;
        resolved.mailer.send(&email).await
    }

    fn open(&self, stored: &OutboxEmail) -> Result<Email, MailError> {
        let unreadable = |what: &str| {
            MailError::invalid("body", format!("the stored body cannot be read ({what})"))
        };
        let sealed = base64_decode(&stored.sealed_body).ok_or_else(|| unreadable("encoding"))?;
        let plain = self
            .cipher
            .decrypt(&sealed, &body_associated_data(stored.id))
            .map_err(|e| unreadable(&e.to_string()).caused_by(e))?;
        let body: SealedBody =
            serde_json::from_slice(&plain).map_err(|e| unreadable("format").caused_by(e))?;
        Ok(Email {
            to: Mailbox {
                name: stored.to_name.clone(),
                email: stored.to_email.clone(),
            },
            subject: stored.subject.clone(),
            text: body.text,
            html: body.html,
            language: stored.language,
        })
    }

    async fn record(
        &self,
        mut email: OutboxEmail,
        outcome: Result<SendReceipt, Failure>,
    ) -> Result<(), NotifyError> {
        let now = imix_core::now();
        email.updated_at = now;
        email.lease_until = None;
        let error = match outcome {
            Ok(receipt) => {
                email.status = OutboxStatus::Sent;
                email.sent_at = Some(now);
                email.server_reply = Some(receipt.server_reply);
                email.last_error = None;
                tracing::info!(id = %email.id, template = %email.template, "email sent");
                None
            }
            Err(Failure::Panic(message)) => {
                // Trying again would fail the same way: give up on this email at once.
                let reason = format!("internal error while sending this email: {message}");
                email.last_error = Some(reason.clone());
                email.status = OutboxStatus::Failed;
                self.monitor.add_failure();
                tracing::error!(id = %email.id, template = %email.template, attempts = email.attempts,
                    error = %reason, "email not sent: the attempt panicked; giving up on it");
                Some(MailError::other(reason))
            }
            Err(Failure::Mail(error)) => {
                email.last_error = Some(error.to_string());
                if should_retry(&error) && email.attempts < email.max_attempts {
                    email.status = OutboxStatus::Pending;
                    email.next_attempt_at =
                        now + chrono_duration(self.config.backoff(email.attempts));
                    tracing::warn!(id = %email.id, attempts = email.attempts, error = %error,
                        next_attempt_at = %email.next_attempt_at, "email not sent; will retry");
                } else {
                    email.status = OutboxStatus::Failed;
                    self.monitor.add_failure();
                    tracing::error!(id = %email.id, template = %email.template,
                        attempts = email.attempts, error = %error, "email not sent; giving up");
                }
                Some(error)
            }
        };
        match self.repo.update(&email).await {
            Ok(stored) => {
                let _ = self.events.send(OutboxEvent {
                    id: stored.id,
                    status: stored.status,
                    attempts: stored.attempts,
                    error,
                });
                Ok(())
            }
            Err(CoreError::VersionConflict { .. }) => {
                // The lease expired and another worker took the email over: its outcome
                // is the one that counts.
                tracing::warn!(id = %email.id, "outbox lease lost before the outcome was recorded");
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let c = OutboxConfig {
            base_delay: Duration::from_secs(10),
            max_delay: Duration::from_secs(60),
            ..OutboxConfig::default()
        };
        let within = |d: Duration, base: u64| {
            d >= Duration::from_secs(base) && d <= Duration::from_secs(base) * 11 / 10
        };
        assert!(within(c.backoff(1), 10));
        assert!(within(c.backoff(2), 20));
        assert!(within(c.backoff(3), 40));
        assert!(within(c.backoff(4), 60));
        assert!(within(c.backoff(40), 60));
    }

    #[test]
    fn only_recipient_and_address_errors_are_final() {
        assert!(should_retry(&MailError::connection("refused")));
        assert!(should_retry(&MailError::authentication("535")));
        assert!(should_retry(&MailError::Timeout));
        assert!(!should_retry(&MailError::recipient_rejected("550")));
    }
}

//! Issue 8: one bad email never stops the queue (panics included; the worker is supervised),
//! tenants' SMTP hosts must be public, and test emails are throttled per tenant.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use async_trait::async_trait;
use imix_core::{
    model::SettingsScope,
    store::{Page, PageRequest, Scope},
    Language, Timestamp,
};
use imix_notify::{
    outbox::{FixedMailer, Outbox, OutboxConfig},
    settings::{SmtpSecurity, SmtpSettingsService},
    storage::MailOutboxRepository,
    templates::{EmailContent, Templates},
    Email, MailError, Mailbox, Mailer, Notifier, NotifyError, OutboxEmail, OutboxId, OutboxStatus,
    RecordingMailer, SendReceipt, SmtpOptions, TEST_EMAILS_PER_WINDOW,
};

use crate::{
    settings::input,
    support::{cipher, store_in, unique_address, SmtpEnv},
};

fn fast() -> OutboxConfig {
    OutboxConfig {
        max_attempts: 5,
        base_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(100),
        lease: Duration::from_secs(30),
        poll_interval: Duration::from_millis(50),
        concurrency: 4,
        hold_delay: Duration::from_millis(100),
    }
}

fn test_content() -> EmailContent {
    EmailContent::SmtpTest { host: "x".into() }
}

/// Panics when asked to send to `poison@…`, records everything else.
#[derive(Clone, Default)]
struct PanickingMailer(RecordingMailer);

#[async_trait]
impl Mailer for PanickingMailer {
    async fn send(&self, email: &Email) -> Result<SendReceipt, MailError> {
        if email.to.email.starts_with("poison@") {
            panic!("a bug deep inside the mail library");
        }
        self.0.send(email).await
    }

    async fn ping(&self) -> Result<(), MailError> {
        Ok(())
    }
}

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_panic_while_sending_fails_that_email_and_the_worker_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path()).await;
    let templates = Arc::new(Templates::new("http://localhost:8000").unwrap());
    let mailer = PanickingMailer::default();
    let notifier = Notifier::new(
        &store.core,
        store.outbox.clone(),
        store.directory(),
        cipher(),
        templates,
        Arc::new(FixedMailer::new(Arc::new(mailer.clone()), "memory")),
        fast(),
    );
    let poison = notifier
        .send(
            None,
            Mailbox::new("poison@example.com"),
            Language::En,
            &test_content(),
        )
        .await
        .unwrap();
    let next = notifier
        .send(
            None,
            Mailbox::new("next@example.com"),
            Language::En,
            &test_content(),
        )
        .await
        .unwrap();

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(notifier.worker().run_supervised(async move {
        let _ = stopped.await;
    }));
    wait_for("the next email to be sent", || mailer.0.sent().len() == 1).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while notifier
        .outbox()
        .get(Scope::Platform, poison)
        .await
        .unwrap()
        .status
        != OutboxStatus::Failed
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the poisoned email never failed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let failed = notifier
        .outbox()
        .get(Scope::Platform, poison)
        .await
        .unwrap();
    assert_eq!(failed.status, OutboxStatus::Failed);
    assert_eq!(failed.attempts, 1, "never retried: it would panic again");
    assert!(
        failed
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("a bug deep inside the mail library")),
        "{failed:?}"
    );
    // The outcome is recorded right after the mailer returns (emails go out concurrently,
    // so the poisoned one may be recorded after it).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let sent = notifier.outbox().get(Scope::Platform, next).await.unwrap();
        if sent.status == OutboxStatus::Sent {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{sent:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let state = notifier.outbox().monitor().state();
    assert!(state.alive);
    assert_eq!(state.failures, 1);
    assert_eq!(
        state.restarts, 0,
        "a panicking email does not kill the worker"
    );
    assert_eq!(
        notifier.outbox().oldest_pending_age().await.unwrap(),
        Duration::ZERO
    );
    stop.send(()).unwrap();
    task.await.unwrap();
    assert!(!notifier.outbox().monitor().state().alive);
}

/// The store's outbox, except that the first claim panics (a worker bug outside any one
/// email's attempt).
struct PanicsOnce {
    inner: Arc<dyn MailOutboxRepository>,
    panicked: AtomicBool,
}

#[async_trait]
impl MailOutboxRepository for PanicsOnce {
    async fn insert(&self, email: &OutboxEmail) -> imix_core::Result<()> {
        self.inner.insert(email).await
    }
    async fn get(&self, scope: Scope, id: OutboxId) -> imix_core::Result<OutboxEmail> {
        self.inner.get(scope, id).await
    }
    async fn claim_due(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> imix_core::Result<Option<OutboxEmail>> {
        if !self.panicked.swap(true, Ordering::SeqCst) {
            panic!("the worker itself failed");
        }
        self.inner.claim_due(now, lease_until).await
    }
    async fn update(&self, email: &OutboxEmail) -> imix_core::Result<OutboxEmail> {
        self.inner.update(email).await
    }
    async fn next_due_at(&self) -> imix_core::Result<Option<Timestamp>> {
        self.inner.next_due_at().await
    }
    async fn list(&self, scope: Scope, page: PageRequest) -> imix_core::Result<Page<OutboxEmail>> {
        self.inner.list(scope, page).await
    }
}

#[tokio::test]
async fn a_worker_that_dies_is_restarted_and_sends_what_waited() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path()).await;
    let templates = Arc::new(Templates::new("http://localhost:8000").unwrap());
    let repo = Arc::new(PanicsOnce {
        inner: store.outbox.clone(),
        panicked: AtomicBool::new(false),
    });
    let outbox = Outbox::new(repo, cipher(), templates, fast());
    let recording = RecordingMailer::default();
    let worker = outbox.worker(Arc::new(FixedMailer::new(
        Arc::new(recording.clone()),
        "memory",
    )));
    let id = outbox
        .enqueue(
            None,
            Mailbox::new("waited@example.com"),
            Language::En,
            &test_content(),
        )
        .await
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(worker.run_supervised(async move {
        let _ = stopped.await;
    }));
    wait_for("the email to be sent after the restart", || {
        recording.sent().len() == 1
    })
    .await;
    let state = outbox.monitor().state();
    assert_eq!(state.restarts, 1);
    assert!(state.alive);
    // The mailer has the email; the worker records it as sent right after.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let status = outbox.get(Scope::Platform, id).await.unwrap().status;
        if status == OutboxStatus::Sent {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still {status:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.send(()).unwrap();
    task.await.unwrap();
}

fn strict_notifier(
    store: &crate::support::Stores,
    env: &SmtpEnv,
    cipher: imix_core::crypto::Cipher,
) -> Notifier {
    Notifier::with_smtp(
        &store.core,
        store.outbox.clone(),
        store.directory(),
        cipher,
        "https://crm.example.com",
        SmtpOptions {
            timeout: Duration::from_secs(5),
            extra_root_pem: Some(env.ca_pem.clone()),
            allow_private_hosts: false,
        },
        OutboxConfig::default(),
    )
    .unwrap()
}

#[tokio::test]
async fn tenant_hosts_must_be_public_unless_the_operator_allows_private_ones() {
    let env = SmtpEnv::get();
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path()).await;
    let key = cipher();
    let notifier = strict_notifier(&store, &env, key.clone());
    let tenant = SettingsScope::Tenant(crate::support::new_tenant(&store).await);

    // A name that does not resolve is refused in the same words as a private one, so the
    // answers do not tell which names exist inside the server's network.
    let mut reasons = std::collections::HashSet::new();
    for host in [
        "127.0.0.1",
        "localhost",
        "169.254.169.254",
        "10.0.0.8",
        "[::1]",
        "::ffff:0:127.0.0.1",
        "2002:7f00:1::1",
        "imix-no-such-host.invalid",
    ] {
        let mut settings = input(&env, SmtpSecurity::None, "support@acme.example");
        settings.host = host.trim_matches(['[', ']']).to_owned();
        let err = notifier
            .put_smtp_settings(&crate::support::platform_admin(), tenant, settings)
            .await
            .unwrap_err();
        match err {
            NotifyError::Invalid(errors) => {
                assert_eq!(errors.len(), 1, "{errors:?}");
                assert_eq!(errors[0].field, "host", "{host}");
                reasons.insert(errors[0].message.clone());
            }
            other => panic!("{host}: {other:?}"),
        }
    }
    assert_eq!(
        reasons.len(),
        1,
        "one answer for every refused host: {reasons:?}"
    );
    // The platform's own settings may use them.
    notifier
        .put_smtp_settings(
            &crate::support::platform_admin(),
            SettingsScope::Platform,
            input(&env, SmtpSecurity::None, "platform@imix.example"),
        )
        .await
        .unwrap();

    // Settings saved while allowed (or DNS changed since): refused at connect time, with
    // the same answer whether the port is open (the sink's) or closed.
    let lenient =
        SmtpSettingsService::new(store.core.settings.clone(), key).allow_private_hosts(true);
    let closed = crate::support::closed_port();
    let mut answers = Vec::new();
    for port in [env.port, closed] {
        let mut settings = input(&env, SmtpSecurity::None, "support@acme.example");
        settings.port = i64::from(port);
        lenient.put(tenant, settings).await.unwrap();
        let err = notifier
            .send_test_email(
                &crate::support::platform_admin(),
                tenant,
                &unique_address(),
                Language::En,
            )
            .await
            .unwrap_err();
        match err {
            NotifyError::Mail(e @ MailError::HostNotAllowed) => answers.push(e.to_string()),
            other => panic!("port {port}: {other:?}"),
        }
    }
    assert_eq!(
        answers[0], answers[1],
        "the answer does not depend on the port"
    );
    assert!(!answers[0].contains(&env.port.to_string()));
}

#[tokio::test]
async fn test_emails_are_throttled_per_tenant() {
    let env = SmtpEnv::get();
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path()).await;
    let notifier = crate::settings::notifier(&store, &env);
    let (busy, other) = (
        crate::support::new_tenant(&store).await,
        crate::support::new_tenant(&store).await,
    );
    notifier
        .put_smtp_settings(
            &crate::support::platform_admin(),
            SettingsScope::Platform,
            input(&env, SmtpSecurity::None, "platform@imix.example"),
        )
        .await
        .unwrap();
    for _ in 0..TEST_EMAILS_PER_WINDOW {
        notifier
            .send_test_email(
                &crate::support::platform_admin(),
                SettingsScope::Tenant(busy),
                &unique_address(),
                Language::En,
            )
            .await
            .unwrap();
    }
    let to = unique_address();
    match notifier
        .send_test_email(
            &crate::support::platform_admin(),
            SettingsScope::Tenant(busy),
            &to,
            Language::En,
        )
        .await
    {
        Err(NotifyError::Throttled { retry_after_secs }) => {
            assert!((1..=600).contains(&retry_after_secs), "{retry_after_secs}");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        crate::support::received_for(&env.maildir, &to).is_empty(),
        "nothing was sent"
    );
    // Another tenant, and the platform, are not affected.
    notifier
        .send_test_email(
            &crate::support::platform_admin(),
            SettingsScope::Tenant(other),
            &unique_address(),
            Language::En,
        )
        .await
        .unwrap();
    notifier
        .send_test_email(
            &crate::support::platform_admin(),
            SettingsScope::Platform,
            &unique_address(),
            Language::En,
        )
        .await
        .unwrap();
}

/// A mail server that accepts TCP connections and never says a word.
async fn blackhole() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (port, task)
}

#[tokio::test]
async fn a_silent_tenant_smtp_server_does_not_hold_up_platform_email() {
    const STEP: Duration = Duration::from_secs(2);
    const SILENT_EMAILS: usize = 6;
    let env = SmtpEnv::get();
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path()).await;
    let notifier = Notifier::with_smtp(
        &store.core,
        store.outbox.clone(),
        store.directory(),
        cipher(),
        "https://crm.example.com",
        SmtpOptions {
            timeout: STEP,
            extra_root_pem: Some(env.ca_pem.clone()),
            allow_private_hosts: true,
        },
        fast(),
    )
    .unwrap();
    let admin = crate::support::platform_admin();
    notifier
        .put_smtp_settings(
            &admin,
            SettingsScope::Platform,
            input(&env, SmtpSecurity::None, "noreply@imix.example"),
        )
        .await
        .unwrap();
    let (port, silent) = blackhole().await;
    let tenant = crate::support::new_tenant(&store).await;
    let mut settings = input(&env, SmtpSecurity::None, "support@acme.example");
    settings.port = i64::from(port);
    settings.username = None;
    settings.password = None;
    notifier
        .put_smtp_settings(&admin, SettingsScope::Tenant(tenant), settings)
        .await
        .unwrap();
    for _ in 0..SILENT_EMAILS {
        notifier
            .send(
                Some(tenant),
                Mailbox::new(unique_address()),
                Language::En,
                &test_content(),
            )
            .await
            .unwrap();
    }
    let reset = unique_address();
    notifier
        .send(None, Mailbox::new(&reset), Language::En, &test_content())
        .await
        .unwrap();

    let started = std::time::Instant::now();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(notifier.worker().run(async move {
        let _ = stopped.await;
    }));
    let deadline = started + Duration::from_secs(60);
    while crate::support::received_for(&env.maildir, &reset).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the platform email never arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let waited = started.elapsed();
    // The worker would go on retrying the silent server's emails: no need to wait for it.
    drop(stop);
    task.abort();
    silent.abort();
    // One silent server costs each of its emails a whole attempt (3 steps × 2 s); sent one
    // at a time, the platform email would wait for all six of them (36 s).
    assert!(
        waited < STEP * 6,
        "the platform email waited {waited:?} behind a silent tenant server"
    );
}

//! The outbox against the real server: delivery, redaction, retry while the server is down
//! (across a restart of the worker and the store), the retry budget, permanent failures.

use std::{sync::Arc, time::Duration};

use imix_core::{
    id::TenantId,
    model::SettingsScope,
    store::{PageRequest, Scope},
    Language,
};
use imix_notify::{
    outbox::{FixedMailer, OutboxConfig, OutboxEvent},
    settings::SmtpSecurity,
    templates::{EmailContent, Templates, UsageThreshold},
    MailError, Mailbox, Notifier, OutboxStatus, RecordingMailer, SmtpOptions,
};
use secrecy::SecretString;
use tokio::sync::{broadcast, oneshot};

use crate::{
    settings::input,
    support::{
        cipher, closed_port, received_for, store_in, the_message_for, unique_address, OwnSink,
        SmtpEnv,
    },
};

fn fast() -> OutboxConfig {
    OutboxConfig {
        max_attempts: 50,
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_millis(400),
        lease: Duration::from_secs(30),
        poll_interval: Duration::from_millis(200),
        concurrency: 4,
        hold_delay: Duration::from_millis(300),
    }
}

fn notifier_with(
    store: &crate::support::Stores,
    cipher: imix_core::crypto::Cipher,
    env: &SmtpEnv,
    config: OutboxConfig,
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
            // The test server listens on 127.0.0.1, and tenants use it too.
            allow_private_hosts: true,
        },
        config,
    )
    .unwrap()
}

/// Runs the worker on a task; dropping the returned sender stops it.
fn spawn_worker(
    notifier: &Notifier,
) -> (
    broadcast::Receiver<OutboxEvent>,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let worker = notifier.worker();
    let events = worker.subscribe();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));
    (events, stop, task)
}

/// The next event about `id` (bounded: 60 s).
async fn next_event(
    events: &mut broadcast::Receiver<OutboxEvent>,
    id: imix_notify::OutboxId,
) -> OutboxEvent {
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let event = events.recv().await.unwrap();
            if event.id == id {
                return event;
            }
        }
    })
    .await
    .expect("no outbox event within 60 s")
}

fn invitation(templates: &Templates, token: &str) -> EmailContent {
    EmailContent::Invitation {
        recipient_name: "Aïcha".into(),
        organization: "Acme".into(),
        link: templates.set_password_link(&SecretString::from(token.to_owned())),
        valid_hours: Some(72),
    }
}

#[tokio::test]
async fn emails_are_stored_sealed_then_delivered_and_listed_redacted() {
    let env = SmtpEnv::get();
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path()).await;
    let notifier = notifier_with(&store, cipher(), &env, fast());
    let tenant = crate::support::new_tenant(&store).await;
    notifier
        .put_smtp_settings(
            &crate::support::platform_admin(),
            SettingsScope::Tenant(tenant),
            input(&env, SmtpSecurity::Starttls, "support@acme.example"),
        )
        .await
        .unwrap();
    let (mut events, stop, task) = spawn_worker(&notifier);

    let to = unique_address();
    let token = format!("secret-{}", uuid::Uuid::now_v7().simple());
    let content = invitation(notifier.templates(), &token);
    let id = notifier
        .send(
            Some(tenant),
            Mailbox::named("Aïcha", &to),
            Language::Ar,
            &content,
        )
        .await
        .unwrap();
    let event = next_event(&mut events, id).await;
    assert_eq!(event.status, OutboxStatus::Sent, "{event:?}");

    let m = the_message_for(&env.maildir, &to);
    assert_eq!(m.mail_from, "support@acme.example");
    assert!(m.part("text/plain").contains(&token));
    assert!(m.part("text/html").contains(r#"dir="rtl""#));

    // The store never holds the token in clear; the listing shows metadata, redacted.
    let stored = store.outbox.get(Scope::Platform, id).await.unwrap();
    assert!(!serde_json::to_string(&stored).unwrap().contains(&token));
    let operator = imix_core::access::AccessContext::new(
        imix_core::access::Principal::new(imix_core::id::UserId::new(), "ops@imix.example"),
        None,
        true,
        [imix_core::access::Permission::PlatformSystem].into(),
        None,
    );
    let page = notifier
        .list_outbox(&operator, Some(tenant), PageRequest::default())
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    let entry = &page.items[0];
    assert_eq!(entry.status, OutboxStatus::Sent);
    assert_eq!(entry.template, "invitation");
    assert_eq!(entry.to, to);
    assert_eq!(entry.attempts, 1);
    assert!(entry.server_reply.as_deref().unwrap().starts_with("250"));
    assert!(entry.sent_at.is_some());
    let listed = serde_json::to_string(&page.items).unwrap();
    assert!(!listed.contains(&token), "{listed}");
    assert!(
        entry.redacted_body.contains("token=[redacted]"),
        "{}",
        entry.redacted_body
    );
    assert!(notifier
        .list_outbox(&operator, Some(TenantId::new()), PageRequest::default())
        .await
        .unwrap()
        .items
        .is_empty());

    drop(stop);
    task.await.unwrap();
}

#[tokio::test]
async fn nothing_is_lost_while_smtp_is_down_even_across_a_restart() {
    let env = SmtpEnv::get();
    let dir = tempfile::tempdir().unwrap();
    let maildir = tempfile::tempdir().unwrap();
    let key = cipher();
    let port = closed_port();
    let mut settings = input(&env, SmtpSecurity::None, "platform@imix.example");
    settings.port = i64::from(port);

    // First life: the server is down; the worker tries, fails, schedules a retry.
    let to = unique_address();
    let id = {
        let store = store_in(dir.path()).await;
        let notifier = notifier_with(&store, key.clone(), &env, fast());
        notifier
            .put_smtp_settings(
                &crate::support::platform_admin(),
                SettingsScope::Platform,
                settings,
            )
            .await
            .unwrap();
        let (mut events, stop, task) = spawn_worker(&notifier);
        let content = EmailContent::UsageWarning {
            tenant_name: "Acme".into(),
            threshold: UsageThreshold::Percent80,
            used: 800,
            limit: 1000,
        };
        let id = notifier
            .send(None, Mailbox::new(&to), Language::Fr, &content)
            .await
            .unwrap();
        for attempt in 1..=2 {
            let event = next_event(&mut events, id).await;
            assert_eq!(event.status, OutboxStatus::Pending, "{event:?}");
            assert_eq!(event.attempts, attempt);
            assert!(
                matches!(event.error, Some(MailError::Connection { .. })),
                "{event:?}"
            );
        }
        drop(stop);
        task.await.unwrap();
        let entry = notifier.outbox().get(Scope::Platform, id).await.unwrap();
        assert_eq!(entry.status, OutboxStatus::Pending);
        assert!(entry.last_error.unwrap().contains("connect"));
        id
    };

    // The server comes back; a new process (new store handle, new worker) delivers.
    let sink = OwnSink::start(port, maildir.path(), &env).await;
    let store = store_in(dir.path()).await;
    let notifier = notifier_with(&store, key, &env, fast());
    let (mut events, stop, task) = spawn_worker(&notifier);
    let event = loop {
        let event = next_event(&mut events, id).await;
        if event.status != OutboxStatus::Pending {
            break event;
        }
    };
    assert_eq!(event.status, OutboxStatus::Sent, "{event:?}");
    assert!(event.attempts >= 3);
    let m = the_message_for(maildir.path(), &to);
    assert!(m.header("Subject").unwrap().contains("80 %"));
    assert_eq!(m.header("Content-Language"), Some("fr"));

    // Stop the server again: a new email waits, then goes once it is back.
    sink.stop().await;
    let to2 = unique_address();
    let id2 = notifier
        .send(
            None,
            Mailbox::new(&to2),
            Language::En,
            &EmailContent::SmtpTest { host: "x".into() },
        )
        .await
        .unwrap();
    let event = next_event(&mut events, id2).await;
    assert_eq!(event.status, OutboxStatus::Pending);
    let sink = OwnSink::start(port, maildir.path(), &env).await;
    let event = loop {
        let event = next_event(&mut events, id2).await;
        if event.status != OutboxStatus::Pending {
            break event;
        }
    };
    assert_eq!(event.status, OutboxStatus::Sent);
    assert_eq!(received_for(maildir.path(), &to2).len(), 1);
    drop(stop);
    task.await.unwrap();
    sink.stop().await;
}

#[tokio::test]
async fn the_retry_budget_ends_in_failed_with_the_reason() {
    let env = SmtpEnv::get();
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path()).await;
    let notifier = notifier_with(
        &store,
        cipher(),
        &env,
        OutboxConfig {
            max_attempts: 2,
            ..fast()
        },
    );
    let mut settings = input(&env, SmtpSecurity::None, "platform@imix.example");
    settings.port = i64::from(closed_port());
    notifier
        .put_smtp_settings(
            &crate::support::platform_admin(),
            SettingsScope::Platform,
            settings,
        )
        .await
        .unwrap();
    let (mut events, stop, task) = spawn_worker(&notifier);
    let id = notifier
        .send(
            None,
            Mailbox::new(unique_address()),
            Language::En,
            &EmailContent::SmtpTest { host: "x".into() },
        )
        .await
        .unwrap();
    assert_eq!(
        next_event(&mut events, id).await.status,
        OutboxStatus::Pending
    );
    let last = next_event(&mut events, id).await;
    assert_eq!(last.status, OutboxStatus::Failed);
    assert_eq!(last.attempts, 2);
    let entry = notifier.outbox().get(Scope::Platform, id).await.unwrap();
    assert_eq!(entry.status, OutboxStatus::Failed);
    assert!(entry.last_error.unwrap().contains("cannot connect"));
    assert_eq!(entry.next_attempt_at, None);
    drop(stop);
    task.await.unwrap();
}

#[tokio::test]
async fn a_rejected_recipient_fails_at_once() {
    let env = SmtpEnv::get();
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path()).await;
    let notifier = notifier_with(&store, cipher(), &env, fast());
    notifier
        .put_smtp_settings(
            &crate::support::platform_admin(),
            SettingsScope::Platform,
            input(&env, SmtpSecurity::Starttls, "platform@imix.example"),
        )
        .await
        .unwrap();
    let (mut events, stop, task) = spawn_worker(&notifier);
    let id = notifier
        .send(
            None,
            Mailbox::new("reject@example.com"),
            Language::En,
            &EmailContent::SmtpTest { host: "x".into() },
        )
        .await
        .unwrap();
    let event = next_event(&mut events, id).await;
    assert_eq!(event.status, OutboxStatus::Failed);
    assert_eq!(event.attempts, 1);
    assert!(matches!(
        event.error,
        Some(MailError::RecipientRejected { .. })
    ));
    drop(stop);
    task.await.unwrap();
}

#[tokio::test]
async fn without_settings_emails_wait_and_any_mailer_can_be_plugged_in() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path()).await;
    let templates = Arc::new(Templates::new("http://localhost:8000").unwrap());
    let recording = RecordingMailer::default();
    let notifier = Notifier::new(
        &store.core,
        store.outbox.clone(),
        store.directory(),
        cipher(),
        templates.clone(),
        Arc::new(FixedMailer::new(Arc::new(recording.clone()), "memory")),
        fast(),
    );
    let id = notifier
        .send(
            None,
            Mailbox::new("a@example.com"),
            Language::Fr,
            &invitation(&templates, "tok-9"),
        )
        .await
        .unwrap();
    assert_eq!(notifier.worker().run_once().await.unwrap(), 1);
    let sent = recording.sent();
    assert_eq!(sent.len(), 1);
    assert!(sent[0]
        .text
        .contains("http://localhost:8000/set-password?token=tok-9"));
    assert_eq!(sent[0].language, Language::Fr);
    assert_eq!(
        notifier
            .outbox()
            .get(Scope::Platform, id)
            .await
            .unwrap()
            .status,
        OutboxStatus::Sent
    );
    assert!(matches!(
        notifier
            .send(
                None,
                Mailbox::new("nope"),
                Language::En,
                &EmailContent::SmtpTest { host: "x".into() }
            )
            .await,
        Err(imix_notify::NotifyError::Invalid(_))
    ));

    // With stored-settings resolution and nothing configured, the email waits (retryable).
    let env_free = notifier_without_smtp_env(&store);
    let id = env_free
        .send(
            None,
            Mailbox::new("b@example.com"),
            Language::En,
            &EmailContent::SmtpTest { host: "x".into() },
        )
        .await
        .unwrap();
    assert_eq!(env_free.worker().run_once().await.unwrap(), 1);
    let entry = env_free.outbox().get(Scope::Platform, id).await.unwrap();
    assert_eq!(entry.status, OutboxStatus::Pending);
    assert_eq!(
        entry.last_error.as_deref(),
        Some(MailError::NotConfigured.to_string().as_str())
    );
}

fn notifier_without_smtp_env(store: &crate::support::Stores) -> Notifier {
    Notifier::with_smtp(
        &store.core,
        store.outbox.clone(),
        store.directory(),
        cipher(),
        "http://localhost:8000",
        SmtpOptions::default(),
        fast(),
    )
    .unwrap()
}

#[tokio::test]
async fn transient_errors_are_retried_with_a_mocked_mailer() {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use imix_notify::{MockMailer, SendReceipt};

    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path()).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let mut mock = MockMailer::new();
    let counter = calls.clone();
    mock.expect_send().returning(move |email| {
        assert_eq!(email.language, Language::Ar);
        match counter.fetch_add(1, Ordering::SeqCst) {
            0 => Err(MailError::Timeout),
            1 => Err(MailError::connection("refused")),
            _ => Ok(SendReceipt {
                server_reply: "250 accepted".into(),
            }),
        }
    });
    let templates = Arc::new(Templates::new("http://localhost:8000").unwrap());
    let notifier = Notifier::new(
        &store.core,
        store.outbox.clone(),
        store.directory(),
        cipher(),
        templates,
        Arc::new(FixedMailer::new(Arc::new(mock), "mock")),
        OutboxConfig {
            base_delay: Duration::ZERO,
            ..fast()
        },
    );
    let id = notifier
        .send(
            Some(TenantId::new()),
            Mailbox::new("a@example.com"),
            Language::Ar,
            &EmailContent::SmtpTest { host: "x".into() },
        )
        .await
        .unwrap();
    // With no delay every retry is due at once: one pass makes all three attempts.
    assert_eq!(notifier.worker().run_once().await.unwrap(), 3);
    let entry = notifier.outbox().get(Scope::Platform, id).await.unwrap();
    assert_eq!(entry.status, OutboxStatus::Sent);
    assert_eq!(entry.attempts, 3);
    assert_eq!(entry.server_reply.as_deref(), Some("250 accepted"));
    assert_eq!(entry.last_error, None);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn emails_of_a_deactivated_tenant_are_held_until_it_is_activated() {
    use imix_core::directory::TenantStatus;
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path()).await;
    let templates = Arc::new(Templates::new("http://localhost:8000").unwrap());
    let recording = RecordingMailer::default();
    let notifier = Notifier::new(
        &store.core,
        store.outbox.clone(),
        store.directory(),
        cipher(),
        templates.clone(),
        Arc::new(FixedMailer::new(Arc::new(recording.clone()), "memory")),
        fast(),
    );
    let tenant = crate::support::new_tenant(&store).await;
    // Queued while the tenant was active; deactivated before the worker got to it.
    let held = notifier
        .send(
            Some(tenant),
            Mailbox::new("invitee@acme.example"),
            Language::En,
            &invitation(&templates, "tok-held"),
        )
        .await
        .unwrap();
    store.tenants.set_status(tenant, TenantStatus::Deactivated);
    let platform = notifier
        .send(
            None,
            Mailbox::new("admin@imix.example"),
            Language::En,
            &EmailContent::SmtpTest { host: "x".into() },
        )
        .await
        .unwrap();

    let worker = notifier.worker();
    assert_eq!(worker.run_once().await.unwrap(), 2);
    let sent: Vec<String> = recording
        .sent()
        .iter()
        .map(|e| e.to.email.clone())
        .collect();
    assert_eq!(
        sent,
        ["admin@imix.example"],
        "only the platform email goes out"
    );
    let entry = notifier.outbox().get(Scope::Platform, held).await.unwrap();
    assert_eq!(entry.status, OutboxStatus::Pending, "{entry:?}");
    assert_eq!(entry.attempts, 0, "holding is not an attempt: {entry:?}");
    assert!(entry
        .last_error
        .as_deref()
        .unwrap_or("")
        .contains("deactivated"));
    assert_eq!(
        notifier
            .outbox()
            .get(Scope::Platform, platform)
            .await
            .unwrap()
            .status,
        OutboxStatus::Sent
    );

    // Held again as long as the tenant stays deactivated, never failed.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(350)).await;
        worker.run_once().await.unwrap();
    }
    assert_eq!(recording.sent().len(), 1);
    let entry = notifier.outbox().get(Scope::Platform, held).await.unwrap();
    assert_eq!((entry.status, entry.attempts), (OutboxStatus::Pending, 0));

    // Activated: it goes out with the next look at it.
    store.tenants.set_status(tenant, TenantStatus::Active);
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(worker.run_once().await.unwrap(), 1);
    let sent = recording.sent();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[1].to.email, "invitee@acme.example");
    assert!(sent[1].text.contains("tok-held"));
    let entry = notifier.outbox().get(Scope::Platform, held).await.unwrap();
    assert_eq!((entry.status, entry.attempts), (OutboxStatus::Sent, 1));
    assert_eq!(entry.last_error, None);
}

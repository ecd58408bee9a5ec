//! SMTP settings: validation, the write-only password, tenant fallback, live changes and the
//! test email.

use imix_core::{model::SettingsScope, Language};
use imix_notify::{
    outbox::OutboxConfig,
    settings::{SmtpSecurity, SmtpSettingsInput, SmtpSettingsService},
    MailError, Notifier, NotifyError, SmtpOptions,
};
use secrecy::{ExposeSecret, SecretString};

use crate::support::{cipher, store_in, the_message_for, unique_address, SmtpEnv};

pub fn input(env: &SmtpEnv, security: SmtpSecurity, from: &str) -> SmtpSettingsInput {
    let port = match security {
        SmtpSecurity::Starttls => env.starttls_port,
        SmtpSecurity::Tls => env.tls_port,
        SmtpSecurity::None => env.port,
    };
    SmtpSettingsInput {
        host: env.host.clone(),
        port: i64::from(port),
        username: Some(env.user.clone()),
        password: Some(SecretString::from(env.password.clone())),
        from_email: from.to_owned(),
        from_name: Some("Acme Support".into()),
        security: security.as_str().to_owned(),
    }
}

pub fn notifier(store: &crate::support::Stores, env: &SmtpEnv) -> Notifier {
    Notifier::with_smtp(
        &store.core,
        store.outbox.clone(),
        store.directory(),
        cipher(),
        "https://crm.example.com",
        SmtpOptions {
            timeout: std::time::Duration::from_secs(5),
            extra_root_pem: Some(env.ca_pem.clone()),
            // The test server listens on 127.0.0.1, and tenants use it too.
            allow_private_hosts: true,
        },
        OutboxConfig::default(),
    )
    .unwrap()
}

#[tokio::test]
async fn invalid_settings_name_every_bad_field() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path()).await;
    let service = SmtpSettingsService::new(store.core.settings.clone(), cipher());
    let bad = SmtpSettingsInput {
        host: "bad host!".into(),
        port: 70_000,
        username: None,
        password: None,
        from_email: "not-an-email".into(),
        from_name: None,
        security: "ssl3".into(),
    };
    let Err(NotifyError::Invalid(errors)) = service.put(SettingsScope::Platform, bad).await else {
        panic!("expected field errors");
    };
    let fields: Vec<_> = errors.iter().map(|e| e.field).collect();
    assert_eq!(fields, ["host", "port", "from_email", "security"]);
    let mut zero = SmtpSettingsInput {
        host: "smtp.example.com".into(),
        port: 0,
        from_email: "a@example.com".into(),
        security: "tls".into(),
        ..SmtpSettingsInput::default()
    };
    assert!(matches!(
        service.put(SettingsScope::Platform, zero.clone()).await,
        Err(NotifyError::Invalid(ref e)) if e[0].field == "port"
    ));
    // A username needs a password.
    zero.port = 465;
    zero.username = Some("user".into());
    assert!(matches!(
        service.put(SettingsScope::Platform, zero).await,
        Err(NotifyError::Invalid(ref e)) if e[0].field == "password"
    ));
    assert!(service
        .get_view(SettingsScope::Platform)
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn the_password_is_sealed_write_only_and_kept_when_omitted() {
    let env = SmtpEnv::get();
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path()).await;
    let service = SmtpSettingsService::new(store.core.settings.clone(), cipher());
    let scope = SettingsScope::Platform;
    let view = service
        .put(scope, input(&env, SmtpSecurity::None, "ops@imix.example"))
        .await
        .unwrap();
    assert!(view.password_set);
    assert!(view.insecure, "security none must be flagged");
    assert_eq!(view.security, SmtpSecurity::None);
    assert_eq!(view.version, 1);
    let shown = serde_json::to_string(&view).unwrap();
    assert!(!shown.contains(&env.password), "{shown}");

    // At rest: sealed, not in clear.
    let doc = store
        .core
        .settings
        .get(scope, "smtp")
        .await
        .unwrap()
        .unwrap();
    assert!(!doc.value.to_string().contains(&env.password));

    // Omitted password: kept. Empty password: removed (then the username needs one).
    let mut again = input(&env, SmtpSecurity::Starttls, "ops@imix.example");
    again.password = None;
    let view = service.put(scope, again.clone()).await.unwrap();
    assert!(view.password_set && !view.insecure && view.version == 2);
    let (loaded, version) = service.load(scope).await.unwrap().unwrap();
    assert_eq!(version, 2);
    assert_eq!(loaded.password.unwrap().expose_secret(), env.password);
    again.password = Some(SecretString::from(String::new()));
    again.username = None;
    let view = service.put(scope, again).await.unwrap();
    assert!(!view.password_set);

    // A ciphertext copied to another scope does not open there.
    let tenant = SettingsScope::Tenant(crate::support::new_tenant(&store).await);
    let mut copied = doc.clone();
    copied.scope = tenant;
    copied.version = 1;
    store.core.settings.insert(&copied).await.unwrap();
    assert!(service.load(tenant).await.is_err());
}

#[tokio::test]
async fn tenants_use_their_own_settings_else_the_platform_and_changes_apply_at_once() {
    let env = SmtpEnv::get();
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path()).await;
    let notifier = notifier(&store, &env);
    let (with_own, without) = (
        crate::support::new_tenant(&store).await,
        crate::support::new_tenant(&store).await,
    );

    // Nothing configured yet: a classified "not configured".
    let err = notifier
        .send_test_email(
            &crate::support::platform_admin(),
            SettingsScope::Platform,
            &unique_address(),
            Language::En,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, NotifyError::Mail(MailError::NotConfigured)),
        "{err:?}"
    );

    notifier
        .put_smtp_settings(
            &crate::support::platform_admin(),
            SettingsScope::Platform,
            input(&env, SmtpSecurity::Starttls, "platform@imix.example"),
        )
        .await
        .unwrap();
    notifier
        .put_smtp_settings(
            &crate::support::platform_admin(),
            SettingsScope::Tenant(with_own),
            input(&env, SmtpSecurity::Tls, "support@acme.example"),
        )
        .await
        .unwrap();

    let to = unique_address();
    let receipt = notifier
        .send_test_email(
            &crate::support::platform_admin(),
            SettingsScope::Tenant(with_own),
            &to,
            Language::Fr,
        )
        .await
        .unwrap();
    assert!(receipt.server_reply.starts_with("250"));
    let m = the_message_for(&env.maildir, &to);
    assert_eq!(m.mail_from, "support@acme.example");
    assert_eq!(
        m.header("From"),
        Some("Acme Support <support@acme.example>")
    );
    assert!(m.header("Subject").unwrap().contains("Test SMTP"));
    assert!(m
        .part("text/plain")
        .contains(&format!("{}:{}", env.host, env.tls_port)));

    let to = unique_address();
    notifier
        .send_test_email(
            &crate::support::platform_admin(),
            SettingsScope::Tenant(without),
            &to,
            Language::En,
        )
        .await
        .unwrap();
    assert_eq!(
        the_message_for(&env.maildir, &to).mail_from,
        "platform@imix.example"
    );

    // A change applies to the very next email, without a restart.
    notifier
        .put_smtp_settings(
            &crate::support::platform_admin(),
            SettingsScope::Platform,
            input(&env, SmtpSecurity::Starttls, "changed@imix.example"),
        )
        .await
        .unwrap();
    let to = unique_address();
    notifier
        .send_test_email(
            &crate::support::platform_admin(),
            SettingsScope::Platform,
            &to,
            Language::Ar,
        )
        .await
        .unwrap();
    let m = the_message_for(&env.maildir, &to);
    assert_eq!(m.mail_from, "changed@imix.example");
    assert!(m.part("text/html").contains(r#"dir="rtl""#));

    // A bad password surfaces as a classified error within the bound.
    let mut wrong = input(&env, SmtpSecurity::Starttls, "platform@imix.example");
    wrong.password = Some(SecretString::from("wrong".to_owned()));
    notifier
        .put_smtp_settings(
            &crate::support::platform_admin(),
            SettingsScope::Platform,
            wrong,
        )
        .await
        .unwrap();
    let err = notifier
        .send_test_email(
            &crate::support::platform_admin(),
            SettingsScope::Platform,
            &unique_address(),
            Language::En,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, NotifyError::Mail(MailError::Authentication { .. })),
        "{err:?}"
    );
    assert!(matches!(
        notifier
            .send_test_email(
                &crate::support::platform_admin(),
                SettingsScope::Platform,
                "nope",
                Language::En
            )
            .await,
        Err(NotifyError::Invalid(_))
    ));
}

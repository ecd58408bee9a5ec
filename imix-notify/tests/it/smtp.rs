//! The SMTP adapter against the real server: what arrives, and every classified error.

use imix_core::Language;
use imix_notify::{
    smtp::SmtpSecurity,
    templates::{EmailContent, Templates},
    Email, MailError, Mailbox, Mailer, SmtpMailer,
};
use secrecy::SecretString;

use crate::support::{closed_port, the_message_for, unique_address, SmtpEnv};

fn templates() -> Templates {
    Templates::new("https://crm.example.com").unwrap()
}

fn email(to: &str, content: &EmailContent, language: Language) -> Email {
    let rendered = templates().render(content, language).unwrap();
    Email {
        to: Mailbox::named("Aïcha Ould Ahmed", to),
        subject: rendered.subject,
        text: rendered.text,
        html: Some(rendered.html),
        language,
    }
}

fn invitation() -> (EmailContent, String) {
    let link = templates().set_password_link(&SecretString::from("invite-token-42"));
    let content = EmailContent::Invitation {
        recipient_name: "Aïcha".into(),
        organization: "Acme".into(),
        link: link.clone(),
        valid_hours: Some(72),
    };
    use secrecy::ExposeSecret;
    (content, link.expose_secret().to_owned())
}

#[tokio::test]
async fn starttls_delivers_an_arabic_multipart_email_with_the_link() {
    let env = SmtpEnv::get();
    let mailer = SmtpMailer::new(env.config(SmtpSecurity::Starttls)).unwrap();
    let to = unique_address();
    let (content, link) = invitation();
    let receipt = mailer
        .send(&email(&to, &content, Language::Ar))
        .await
        .unwrap();
    assert!(receipt.server_reply.starts_with("250"), "{receipt:?}");

    let m = the_message_for(&env.maildir, &to);
    assert!(m.tls, "STARTTLS was not used");
    assert_eq!(m.auth_login.as_deref(), Some(env.user.as_str()));
    assert_eq!(m.mail_from, "noreply@imix.example");
    assert_eq!(m.header("From"), Some("iMix Tests <noreply@imix.example>"));
    assert_eq!(
        m.header("To"),
        Some(format!("Aïcha Ould Ahmed <{to}>").as_str())
    );
    assert_eq!(m.header("Content-Language"), Some("ar"));
    assert!(m.header("Subject").unwrap().contains("Acme"));
    assert!(m.header("Message-ID").is_some() && m.header("Date").is_some());
    assert_eq!(m.content_type, "multipart/alternative");
    assert_eq!(m.parts.len(), 2);
    assert_eq!(m.parts[0].content_type, "text/plain");
    assert_eq!(m.parts[1].content_type, "text/html");
    let text = m.part("text/plain");
    let html = m.part("text/html");
    assert!(text.contains(&link), "{text}");
    assert!(text.contains("مرحبًا"), "{text}");
    assert!(html.contains(r#"<html lang="ar" dir="rtl">"#), "{html}");
    assert!(html.contains(&format!(r#"href="{link}""#)), "{html}");
}

#[tokio::test]
async fn implicit_tls_delivers_a_french_email() {
    let env = SmtpEnv::get();
    let mailer = SmtpMailer::new(env.config(SmtpSecurity::Tls)).unwrap();
    let to = unique_address();
    let content = EmailContent::PasswordReset {
        recipient_name: "Omar".into(),
        link: templates().set_password_link(&SecretString::from("reset-1")),
        valid_hours: Some(1),
    };
    mailer
        .send(&email(&to, &content, Language::Fr))
        .await
        .unwrap();
    let m = the_message_for(&env.maildir, &to);
    assert!(m.tls);
    assert_eq!(m.header("Content-Language"), Some("fr"));
    assert!(m.header("Subject").unwrap().starts_with("Réinitialisez"));
    assert!(m
        .part("text/plain")
        .contains("https://crm.example.com/set-password?token=reset-1"));
    assert!(m.part("text/plain").contains("une heure"));
    assert!(m.part("text/html").contains(r#"lang="fr" dir="ltr""#));
}

#[tokio::test]
async fn plain_smtp_with_auth_and_a_text_only_email() {
    let env = SmtpEnv::get();
    let mailer = SmtpMailer::new(env.config(SmtpSecurity::None)).unwrap();
    mailer.ping().await.unwrap();
    let to = unique_address();
    let mut plain = Email::new(Mailbox::new(&to), "Plain", "Only text.");
    plain.language = Language::Fr;
    mailer.send(&plain).await.unwrap();
    let m = the_message_for(&env.maildir, &to);
    assert!(!m.tls);
    assert_eq!(m.content_type, "text/plain");
    assert_eq!(m.header("Content-Language"), Some("fr"));
    assert!(m.part("text/plain").contains("Only text."));
}

async fn send_error(config: imix_notify::SmtpConfig, to: &str) -> MailError {
    let mailer = SmtpMailer::new(config).unwrap();
    mailer
        .send(&Email::new(Mailbox::new(to), "x", "x"))
        .await
        .unwrap_err()
}

#[tokio::test]
async fn a_wrong_port_is_a_connection_error() {
    let env = SmtpEnv::get();
    let mut config = env.config(SmtpSecurity::None);
    config.port = closed_port();
    let err = send_error(config.clone(), &unique_address()).await;
    assert!(matches!(err, MailError::Connection { .. }), "{err:?}");
    assert!(err.is_transient());
    let ping = SmtpMailer::new(config).unwrap().ping().await.unwrap_err();
    assert!(matches!(ping, MailError::Connection { .. }), "{ping:?}");
}

#[tokio::test]
async fn a_classified_failure_keeps_the_smtp_error_as_its_source() {
    use std::error::Error as _;
    let env = SmtpEnv::get();
    let mut config = env.config(SmtpSecurity::None);
    config.port = closed_port();
    let err = send_error(config, &unique_address()).await;
    let source = err.source().expect("the lettre error is kept");
    assert!(
        source.is::<lettre::transport::smtp::Error>(),
        "source is lettre's SMTP error: {source:?}"
    );
    // Its own chain goes on down to the refused connection.
    let mut chain = source.source();
    let mut refused = false;
    while let Some(e) = chain {
        refused |= e
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused);
        chain = e.source();
    }
    assert!(refused, "the chain reaches the I/O error: {err:?}");
    // A clone (the outbox sends clones to its subscribers) keeps it too.
    assert!(err.clone().source().is_some());
}

#[tokio::test]
async fn an_unknown_host_is_a_connection_error() {
    let env = SmtpEnv::get();
    let mut config = env.config(SmtpSecurity::None);
    config.host = "no-such-host.invalid".into();
    let err = send_error(config, &unique_address()).await;
    assert!(matches!(err, MailError::Connection { .. }), "{err:?}");
}

#[tokio::test]
async fn a_wrong_password_is_an_authentication_error() {
    let env = SmtpEnv::get();
    for security in [SmtpSecurity::None, SmtpSecurity::Starttls] {
        let mut config = env.config(security);
        config.credentials = Some((env.user.clone(), SecretString::from("wrong".to_owned())));
        let err = send_error(config.clone(), &unique_address()).await;
        assert!(matches!(err, MailError::Authentication { .. }), "{err:?}");
        assert!(err.to_string().contains("535"), "{err}");
        let ping = SmtpMailer::new(config).unwrap().ping().await.unwrap_err();
        assert!(matches!(ping, MailError::Authentication { .. }), "{ping:?}");
    }
    // No credentials where the server requires them.
    let mut config = env.config(SmtpSecurity::None);
    config.credentials = None;
    let err = send_error(config, &unique_address()).await;
    assert!(matches!(err, MailError::Authentication { .. }), "{err:?}");
}

#[tokio::test]
async fn rejected_recipient_and_sender_are_told_apart() {
    let env = SmtpEnv::get();
    let err = send_error(env.config(SmtpSecurity::Starttls), "reject@example.com").await;
    assert!(
        matches!(err, MailError::RecipientRejected { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("550"), "{err}");
    assert!(!err.is_transient());

    let mut config = env.config(SmtpSecurity::None);
    config.from = Mailbox::new("rejected-sender@example.com");
    let err = send_error(config, &unique_address()).await;
    assert!(matches!(err, MailError::SenderRejected { .. }), "{err:?}");
}

#[tokio::test]
async fn tls_problems_are_tls_errors() {
    let env = SmtpEnv::get();
    // Implicit TLS spoken to a plain SMTP port: the handshake fails.
    let mut config = env.config(SmtpSecurity::Tls);
    config.port = env.port;
    let err = send_error(config, &unique_address()).await;
    assert!(matches!(err, MailError::Tls { .. }), "{err:?}");

    // The throwaway CA is not trusted unless configured: the certificate is refused.
    let mut config = env.config(SmtpSecurity::Starttls);
    config.extra_root_pem = None;
    let err = send_error(config, &unique_address()).await;
    assert!(matches!(err, MailError::Tls { .. }), "{err:?}");

    // STARTTLS required but the server does not offer it.
    let mut config = env.config(SmtpSecurity::Starttls);
    config.port = env.port;
    let err = send_error(config, &unique_address()).await;
    assert!(matches!(err, MailError::Tls { .. }), "{err:?}");
}

#[tokio::test]
async fn invalid_addresses_are_refused_before_connecting() {
    let env = SmtpEnv::get();
    let err = send_error(env.config(SmtpSecurity::None), "not an address").await;
    assert!(
        matches!(err, MailError::Invalid { ref field, .. } if field == "to"),
        "{err:?}"
    );
    let mut config = env.config(SmtpSecurity::None);
    config.from = Mailbox::new("nope");
    assert!(matches!(
        SmtpMailer::new(config),
        Err(MailError::Invalid { .. })
    ));
}

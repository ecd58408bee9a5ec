//! The `Mailer` port: send one email, or check that the mail server answers.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use imix_core::Language;

/// An address with an optional display name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    /// Display name, e.g. `Aïcha Ould Ahmed`.
    pub name: Option<String>,
    /// The address, e.g. `aicha@example.com`.
    pub email: String,
}

impl Mailbox {
    /// An address without a display name.
    pub fn new(email: impl Into<String>) -> Self {
        Self {
            name: None,
            email: email.into(),
        }
    }

    /// An address with a display name.
    pub fn named(name: impl Into<String>, email: impl Into<String>) -> Self {
        Self {
            name: Some(name.into()),
            email: email.into(),
        }
    }
}

/// One email, ready to send. The sender (`From`) is the mailer's configured identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    /// Recipient.
    pub to: Mailbox,
    /// Subject line.
    pub subject: String,
    /// Plain-text body (always present: the alternative for clients without HTML).
    pub text: String,
    /// HTML body, if any.
    pub html: Option<String>,
    /// The language the email is written in (sets `Content-Language`; Arabic is laid out
    /// right to left in the HTML part).
    pub language: Language,
}

impl Email {
    /// A plain-text email in English.
    pub fn new(to: Mailbox, subject: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            to,
            subject: subject.into(),
            text: text.into(),
            html: None,
            language: Language::En,
        }
    }
}

/// What the mail server said when it accepted a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendReceipt {
    /// The server's final reply, e.g. `250 OK queued as 1234`.
    pub server_reply: String,
}

/// Why an email could not be sent, classified so an operator knows what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MailError {
    /// No connection: refused, DNS failure, unreachable.
    #[error("cannot connect to the mail server: {0}")]
    Connection(String),
    /// The TLS handshake failed (wrong security mode for the port, bad certificate).
    #[error("TLS handshake with the mail server failed: {0}")]
    Tls(String),
    /// The server rejected the username or password.
    #[error("the mail server rejected the credentials: {0}")]
    Authentication(String),
    /// The server refused the sender address.
    #[error("the mail server rejected the sender address: {0}")]
    SenderRejected(String),
    /// The server refused the recipient address.
    #[error("the mail server rejected the recipient address: {0}")]
    RecipientRejected(String),
    /// The server did not answer in time.
    #[error("the mail server did not answer in time")]
    Timeout,
    /// An address or header is not valid.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// Which field, e.g. `to` or `from_email`.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// No mail server is configured.
    #[error("no SMTP server is configured")]
    NotConfigured,
    /// The SMTP host of a tenant's settings resolves to a loopback, private, link-local or
    /// otherwise non-public address, which tenants may not use (unless the operator allows
    /// it with `IMIX_ALLOW_PRIVATE_SMTP_HOSTS`). Nothing was contacted.
    #[error(
        "the SMTP host is not allowed: tenant SMTP servers must have public addresses \
         (not loopback, private or link-local)"
    )]
    HostNotAllowed,
    /// Anything else the server said.
    #[error("the mail server refused the message: {0}")]
    Other(String),
}

impl MailError {
    /// A stable snake_case code for API error bodies: `connection`, `tls`,
    /// `authentication`, `sender_rejected`, `recipient_rejected`, `timeout`, `invalid`,
    /// `not_configured`, `host_not_allowed`, `other`.
    pub fn code(&self) -> &'static str {
        match self {
            MailError::Connection(_) => "connection",
            MailError::Tls(_) => "tls",
            MailError::Authentication(_) => "authentication",
            MailError::SenderRejected(_) => "sender_rejected",
            MailError::RecipientRejected(_) => "recipient_rejected",
            MailError::Timeout => "timeout",
            MailError::Invalid { .. } => "invalid",
            MailError::NotConfigured => "not_configured",
            MailError::HostNotAllowed => "host_not_allowed",
            MailError::Other(_) => "other",
        }
    }

    /// Whether trying again later may succeed (the outbox retries these).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            MailError::Connection(_)
                | MailError::Timeout
                | MailError::Other(_)
                | MailError::NotConfigured
        )
    }
}

/// Sends email. Implemented by the SMTP adapter and by [`RecordingMailer`].
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait Mailer: Send + Sync {
    /// Sends one email.
    async fn send(&self, email: &Email) -> Result<SendReceipt, MailError>;
    /// Checks that the mail server answers (and accepts the credentials).
    async fn ping(&self) -> Result<(), MailError>;
}

/// A mailer that keeps every email in memory instead of sending it: for tests and for
/// development without a mail server.
#[derive(Debug, Clone, Default)]
pub struct RecordingMailer {
    sent: Arc<Mutex<Vec<Email>>>,
}

impl RecordingMailer {
    /// Every email "sent" so far, oldest first.
    pub fn sent(&self) -> Vec<Email> {
        self.sent.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

#[async_trait]
impl Mailer for RecordingMailer {
    async fn send(&self, email: &Email) -> Result<SendReceipt, MailError> {
        self.sent
            .lock()
            .map_err(|_| MailError::Other("recording mailer lock poisoned".into()))?
            .push(email.clone());
        Ok(SendReceipt {
            server_reply: "250 recorded".into(),
        })
    }

    async fn ping(&self) -> Result<(), MailError> {
        Ok(())
    }
}

//! The `Mailer` port: send one email, or check that the mail server answers.

use std::{
    fmt,
    sync::{Arc, Mutex},
};

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

/// The error a [`MailError`] came from: the mail library's, the resolver's, the store's.
/// Shared (an `Arc`), so that a [`MailError`] stays cloneable for the outbox's event
/// subscribers; it dereferences to the original error, which can be downcast.
#[derive(Clone)]
pub struct MailCause(Arc<dyn std::error::Error + Send + Sync + 'static>);

impl MailCause {
    /// Wraps `error`.
    pub fn new(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Arc::new(error))
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for MailCause {
    fn from(error: E) -> Self {
        Self::new(error)
    }
}

impl std::ops::Deref for MailCause {
    type Target = dyn std::error::Error + Send + Sync + 'static;

    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

impl fmt::Debug for MailCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for MailCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
    }
}

/// Why an email could not be sent, classified so an operator knows what to fix.
///
/// `detail` is what happened in words (with the server's reply when there is one); it is
/// part of the message. `source`, when present, is the underlying error itself
/// ([`std::error::Error::source`] answers it), e.g. lettre's SMTP error with its chain down
/// to the I/O or TLS error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MailError {
    /// No connection: refused, DNS failure, unreachable.
    #[error("cannot connect to the mail server: {detail}")]
    Connection {
        /// What happened.
        detail: String,
        /// The underlying error.
        #[source]
        source: Option<MailCause>,
    },
    /// The TLS handshake failed (wrong security mode for the port, bad certificate).
    #[error("TLS handshake with the mail server failed: {detail}")]
    Tls {
        /// What happened.
        detail: String,
        /// The underlying error.
        #[source]
        source: Option<MailCause>,
    },
    /// The server rejected the username or password.
    #[error("the mail server rejected the credentials: {detail}")]
    Authentication {
        /// The server's reply.
        detail: String,
        /// The underlying error.
        #[source]
        source: Option<MailCause>,
    },
    /// The server refused the sender address.
    #[error("the mail server rejected the sender address: {detail}")]
    SenderRejected {
        /// The server's reply.
        detail: String,
        /// The underlying error.
        #[source]
        source: Option<MailCause>,
    },
    /// The server refused the recipient address.
    #[error("the mail server rejected the recipient address: {detail}")]
    RecipientRejected {
        /// The server's reply.
        detail: String,
        /// The underlying error.
        #[source]
        source: Option<MailCause>,
    },
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
        /// The underlying error (e.g. the address parser's).
        #[source]
        source: Option<MailCause>,
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
    /// Anything else the server (or the way to it) said.
    #[error("the mail server refused the message: {detail}")]
    Other {
        /// What happened.
        detail: String,
        /// The underlying error.
        #[source]
        source: Option<MailCause>,
    },
}

impl MailError {
    /// A [`MailError::Connection`] without an underlying error (add one with
    /// [`MailError::caused_by`]).
    pub fn connection(detail: impl Into<String>) -> Self {
        MailError::Connection {
            detail: detail.into(),
            source: None,
        }
    }

    /// A [`MailError::Tls`] without an underlying error.
    pub fn tls(detail: impl Into<String>) -> Self {
        MailError::Tls {
            detail: detail.into(),
            source: None,
        }
    }

    /// A [`MailError::Authentication`] without an underlying error.
    pub fn authentication(detail: impl Into<String>) -> Self {
        MailError::Authentication {
            detail: detail.into(),
            source: None,
        }
    }

    /// A [`MailError::SenderRejected`] without an underlying error.
    pub fn sender_rejected(detail: impl Into<String>) -> Self {
        MailError::SenderRejected {
            detail: detail.into(),
            source: None,
        }
    }

    /// A [`MailError::RecipientRejected`] without an underlying error.
    pub fn recipient_rejected(detail: impl Into<String>) -> Self {
        MailError::RecipientRejected {
            detail: detail.into(),
            source: None,
        }
    }

    /// A [`MailError::Invalid`] without an underlying error.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        MailError::Invalid {
            field: field.into(),
            reason: reason.into(),
            source: None,
        }
    }

    /// A [`MailError::Other`] without an underlying error.
    pub fn other(detail: impl Into<String>) -> Self {
        MailError::Other {
            detail: detail.into(),
            source: None,
        }
    }

    /// This error with `cause` as its [`std::error::Error::source`] (variants without a
    /// source, such as [`MailError::Timeout`], are returned unchanged).
    #[must_use]
    pub fn caused_by(mut self, cause: impl Into<MailCause>) -> Self {
        match &mut self {
            MailError::Connection { source, .. }
            | MailError::Tls { source, .. }
            | MailError::Authentication { source, .. }
            | MailError::SenderRejected { source, .. }
            | MailError::RecipientRejected { source, .. }
            | MailError::Invalid { source, .. }
            | MailError::Other { source, .. } => *source = Some(cause.into()),
            MailError::Timeout | MailError::NotConfigured | MailError::HostNotAllowed => {}
        }
        self
    }

    /// A stable snake_case code for API error bodies: `connection`, `tls`,
    /// `authentication`, `sender_rejected`, `recipient_rejected`, `timeout`, `invalid`,
    /// `not_configured`, `host_not_allowed`, `other`.
    pub fn code(&self) -> &'static str {
        match self {
            MailError::Connection { .. } => "connection",
            MailError::Tls { .. } => "tls",
            MailError::Authentication { .. } => "authentication",
            MailError::SenderRejected { .. } => "sender_rejected",
            MailError::RecipientRejected { .. } => "recipient_rejected",
            MailError::Timeout => "timeout",
            MailError::Invalid { .. } => "invalid",
            MailError::NotConfigured => "not_configured",
            MailError::HostNotAllowed => "host_not_allowed",
            MailError::Other { .. } => "other",
        }
    }

    /// Whether trying again later may succeed (the outbox retries these).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            MailError::Connection { .. }
                | MailError::Timeout
                | MailError::Other { .. }
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
            .map_err(|_| MailError::other("recording mailer lock poisoned"))?
            .push(email.clone());
        Ok(SendReceipt {
            server_reply: "250 recorded".into(),
        })
    }

    async fn ping(&self) -> Result<(), MailError> {
        Ok(())
    }
}

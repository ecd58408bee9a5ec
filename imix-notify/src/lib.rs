//! # imix-notify
//!
//! Owns outgoing email: the [`Mailer`] trait and its SMTP adapter, localized email templates
//! (English, French, Arabic) and the mail outbox that persists every email before sending and
//! retries until it is delivered or its retry budget is spent.
//!
//! - [`Mailer`], [`Email`], [`MailError`]: the port other crates depend on;
//!   [`RecordingMailer`] keeps emails in memory for tests.
//! - [`smtp`] (feature `smtp`): lettre on Tokio with rustls; STARTTLS, implicit TLS or none;
//!   errors classified so an operator knows what to fix.
//! - [`settings`]: SMTP settings per platform or tenant, validated, password sealed.
//! - [`templates`]: invitation, password reset, SMTP test, usage warnings, in three
//!   languages (Fluent strings, minijinja layout; see that module for why).
//! - [`outbox`]: persisted emails, a leased claim per email, exponential backoff.
//! - [`OutboxEmail`] (with [`OutboxId`], [`OutboxStatus`]): the outbox's record;
//!   [`storage`]: its port [`storage::MailOutboxRepository`], the SQLite and MongoDB
//!   adapters on the shared [`imix_core::store::Backend`] ([`storage::open`]) and the
//!   capability's migrations ([`storage::migrate`]). The outbox is not part of backups.
//! - [`Notifier`]: the service the HTTP layer calls.
//!
//! Other crates (invitations in `imix-tenancy`, for example) may depend only on the trait:
//!
//! ```
//! use imix_notify::{Email, Mailbox, Mailer, RecordingMailer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let mailer = RecordingMailer::default();
//! let email = Email::new(Mailbox::new("agent@example.com"), "Welcome", "Set your password: …");
//! mailer.send(&email).await.unwrap();
//! assert_eq!(mailer.sent()[0].subject, "Welcome");
//! # }
//! ```
//!
//! Feature flags: `sqlite` (default) and `mongodb` (the outbox adapters), `smtp` (the SMTP
//! adapter and [`SettingsMailerResolver`]; off by default so crates that only need the
//! trait stay lean), `mock` (mockall mocks of [`Mailer`], [`outbox::MailerResolver`] and
//! [`storage::MailOutboxRepository`]), `testkit` (the outbox storage conformance suite).
#![forbid(unsafe_code)]

mod error;
pub mod host;
mod mailer;
pub mod outbox;
mod outbox_record;
#[cfg(feature = "smtp")]
mod resolver;
mod service;
pub mod settings;
#[cfg(feature = "smtp")]
pub mod smtp;
pub mod storage;
pub mod templates;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod text;
pub mod throttle;

pub use error::{FieldError, NotifyError};
#[cfg(feature = "mock")]
pub use mailer::MockMailer;
pub use mailer::{Email, MailCause, MailError, Mailbox, Mailer, RecordingMailer, SendReceipt};
pub use outbox_record::{OutboxEmail, OutboxId, OutboxStatus};
#[cfg(feature = "smtp")]
pub use resolver::{SettingsMailerResolver, SmtpOptions};
pub use service::{Notifier, TEST_EMAILS_PER_WINDOW, TEST_EMAIL_TIMEOUT, TEST_EMAIL_WINDOW};
#[cfg(feature = "smtp")]
pub use smtp::{SmtpConfig, SmtpMailer};

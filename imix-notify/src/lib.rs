//! # imix-notify
//!
//! Owns outgoing email: the [`Mailer`] trait and its SMTP adapter, localized email templates
//! (English, French, Arabic) and the mail outbox that persists every email before sending and
//! retries until it is delivered or its retry budget is spent.
//!
//! Other crates (invitations in `imix-tenancy`, for example) depend only on the trait:
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
#![forbid(unsafe_code)]

mod mailer;

#[cfg(feature = "mock")]
pub use mailer::MockMailer;
pub use mailer::{Email, MailError, Mailbox, Mailer, RecordingMailer, SendReceipt};

//! # imix-notify
//!
//! Owns outgoing email: the `Mailer` trait and its SMTP adapter, localized email templates
//! (English, French, Arabic) and the mail outbox that persists every email before sending and
//! retries until it is delivered or its retry budget is spent.
#![forbid(unsafe_code)]

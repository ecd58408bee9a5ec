//! Integration tests of imix-notify against a real SMTP server.
//!
//! The test command (`scripts/test.sh`) starts `scripts/smtp_sink.py` (aiosmtpd) and sets
//! `IMIX_TEST_SMTP_*`; without them these tests fail with instructions, never skip. Tests
//! that stop and restart a server start their own copy of the sink on a port they control.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod access;
mod outbox;
mod robustness;
mod settings;
mod smtp;
mod storage;
mod support;

//! The mail outbox's record: every email is persisted as an [`OutboxEmail`] before it is
//! sent, and stays until it is delivered or its retry budget is spent.
//!
//! Outbox rows are operational state, not business data: they are **not** part of
//! export/import (a restored backup starts with an empty outbox).

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use imix_core::{id::TenantId, Error, Language, Timestamp};

/// Identifies an outbox email (UUIDv7: sortable by creation time).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OutboxId(Uuid);

impl OutboxId {
    /// A fresh id.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// The underlying UUID.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl Default for OutboxId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for OutboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl fmt::Debug for OutboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OutboxId({})", self.0)
    }
}

impl FromStr for OutboxId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s)
            .map(Self)
            .map_err(|_| Error::invalid("outbox_id", "not a valid UUID"))
    }
}

// Always a hyphenated string, whatever the format (BSON included).
impl Serialize for OutboxId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0.hyphenated())
    }
}

impl<'de> Deserialize<'de> for OutboxId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Uuid::parse_str(&text)
            .map(Self)
            .map_err(serde::de::Error::custom)
    }
}

/// Where an outbox email stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboxStatus {
    /// Waiting for its (next) attempt at `next_attempt_at`.
    Pending,
    /// Claimed by a worker until `lease_until`; if that worker dies, the email becomes due
    /// again when the lease expires.
    Sending,
    /// Accepted by the mail server.
    Sent,
    /// Given up: a permanent error, or the retry budget is spent. `last_error` says why.
    Failed,
}

impl OutboxStatus {
    /// The name stored and shown: `pending`, `sending`, `sent`, `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxStatus::Pending => "pending",
            OutboxStatus::Sending => "sending",
            OutboxStatus::Sent => "sent",
            OutboxStatus::Failed => "failed",
        }
    }
}

/// One email in the outbox.
///
/// The body is stored *sealed* (`sealed_body`, encrypted by the sender with the at-rest
/// cipher) because it may carry a set-password link; `redacted_text` is the same text with
/// such secrets replaced, safe to show in listings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxEmail {
    /// The email's id.
    pub id: OutboxId,
    /// The tenant it is sent for (its SMTP settings are used), `None` for platform email.
    pub tenant_id: Option<TenantId>,
    /// Recipient address.
    pub to_email: String,
    /// Recipient display name.
    pub to_name: Option<String>,
    /// Subject line (never contains secrets).
    pub subject: String,
    /// Which template produced it, e.g. `invitation`.
    pub template: String,
    /// The language it is written in.
    pub language: Language,
    /// The bodies, sealed by the sender; opaque to the store.
    pub sealed_body: String,
    /// The plain-text body with secrets (links carrying tokens) redacted.
    pub redacted_text: String,
    /// Where it stands.
    pub status: OutboxStatus,
    /// Attempts made so far (a claim counts as an attempt).
    pub attempts: u32,
    /// The retry budget: after this many attempts it is marked failed.
    pub max_attempts: u32,
    /// When the next attempt is due (meaningful while pending).
    pub next_attempt_at: Timestamp,
    /// While sending: when the claim expires and another worker may take it over.
    pub lease_until: Option<Timestamp>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// The mail server's reply when it accepted the email.
    pub server_reply: Option<String>,
    /// When it was enqueued.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
    /// When the mail server accepted it.
    pub sent_at: Option<Timestamp>,
    /// Optimistic-concurrency version (1 on creation, raised by every claim and update).
    pub version: u64,
}

impl OutboxEmail {
    /// When a worker may claim this email: `next_attempt_at` while pending, the end of the
    /// lease while sending, never once sent or failed. The stores index this instant.
    pub fn due_at(&self) -> Option<Timestamp> {
        match self.status {
            OutboxStatus::Pending => Some(self.next_attempt_at),
            OutboxStatus::Sending => Some(self.lease_until.unwrap_or(self.next_attempt_at)),
            OutboxStatus::Sent | OutboxStatus::Failed => None,
        }
    }

    /// What a claim does to the record: every store applies exactly this change, in one
    /// atomic step, to the due email it picks.
    pub fn apply_claim(&mut self, now: Timestamp, lease_until: Timestamp) {
        self.status = OutboxStatus::Sending;
        self.lease_until = Some(lease_until);
        self.attempts = self.attempts.saturating_add(1);
        self.updated_at = now;
        self.version += 1;
    }
}

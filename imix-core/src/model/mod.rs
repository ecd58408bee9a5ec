//! The entities the store persists.
//!
//! Every persisted entity carries a `version`, starting at 1 and raised by one on each
//! update; the stores use it for optimistic concurrency (an update naming a stale version is
//! rejected with [`crate::Error::VersionConflict`]).

mod audit;
mod auth_token;
mod outbox;
mod settings;
mod tenant;
mod user;
mod whatsapp;

pub use crate::directory::{TenantStatus, UsageLimits};
pub use audit::AuditEntry;
pub use auth_token::{AuthToken, TokenPurpose};
pub use outbox::{OutboxEmail, OutboxId, OutboxStatus};
pub use settings::{SettingsDoc, SettingsScope};
pub use tenant::{Tenant, TenantDocument};
pub use user::{normalize_email, PasswordHash, Role, User, UserStatus};
pub use whatsapp::{MessageTemplate, Verification, VerificationStatus, WhatsAppAccount};

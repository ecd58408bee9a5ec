//! The records of the shared primitives: settings documents and audit entries. Each
//! capability keeps its own records in its own crate (tenants and users in `imix-tenancy`,
//! WhatsApp accounts in `imix-whatsapp`, the mail outbox in `imix-notify`).
//!
//! Every versioned record carries a `version`, starting at 1 and raised by one on each
//! update; the stores use it for optimistic concurrency (an update naming a stale version is
//! rejected with [`crate::Error::VersionConflict`]).

mod audit;
mod settings;

pub use audit::AuditEntry;
pub use settings::{SettingsDoc, SettingsScope};

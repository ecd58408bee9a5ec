use serde::{Deserialize, Serialize};

use crate::{
    id::{AuditId, TenantId, UserId},
    Timestamp,
};

/// One audit-log entry: who did what to what, when, from where.
///
/// Entries are append-only. `action` is a dotted name such as `user.create`,
/// `tenant.deactivate` or `auth.sign_in_failed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// The entry's id (UUIDv7: ordered by time).
    pub id: AuditId,
    /// The tenant the action concerns; `None` for platform-level actions.
    pub tenant_id: Option<TenantId>,
    /// Who acted; `None` when unknown (e.g. a failed sign-in for an unknown email).
    pub actor_id: Option<UserId>,
    /// The actor's email as given (for failed sign-ins: the email that was tried).
    pub actor_email: Option<String>,
    /// What was done, e.g. `user.deactivate`.
    pub action: String,
    /// The kind of thing acted on, e.g. `user`.
    pub target_type: String,
    /// Its id.
    pub target_id: Option<String>,
    /// The client's address as the server saw it.
    pub client_addr: Option<String>,
    /// When.
    pub at: Timestamp,
}

impl AuditEntry {
    /// A new entry stamped now.
    pub fn new(action: impl Into<String>, target_type: impl Into<String>) -> Self {
        Self {
            id: AuditId::new(),
            tenant_id: None,
            actor_id: None,
            actor_email: None,
            action: action.into(),
            target_type: target_type.into(),
            target_id: None,
            client_addr: None,
            at: crate::now(),
        }
    }
}

//! Changes about an account rather than its conversations (`message_template_status_update`,
//! `phone_number_quality_update`, `account_update`, …): handed to whoever keeps accounts
//! and templates (the server wires `imix-whatsapp`'s storage).

use async_trait::async_trait;
use imix_core::id::WhatsAppAccountId;
use serde_json::Value;

use crate::error::Result;

/// Applies a webhook change of `field` about `account` (its `value` as Meta sent it).
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait AccountEvents: Send + Sync {
    /// Records the change; a field it does not know is ignored (and logged).
    async fn apply(&self, account: WhatsAppAccountId, field: &str, value: &Value) -> Result<()>;
}

/// Ignores account changes (logged): for integrators without accounts of their own.
#[derive(Debug, Clone, Copy, Default)]
pub struct IgnoreAccountEvents;

#[async_trait]
impl AccountEvents for IgnoreAccountEvents {
    async fn apply(&self, account: WhatsAppAccountId, field: &str, _value: &Value) -> Result<()> {
        tracing::info!(target: "imix_whatsapp", %account, %field, "account change not recorded");
        Ok(())
    }
}

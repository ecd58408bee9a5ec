//! Receiving a delivery: attribute its entries to accounts by their signature, store it
//! durably, and only then let the caller answer Meta.

use std::{collections::BTreeSet, sync::Arc};

use async_trait::async_trait;
use imix_core::id::{TenantId, WhatsAppAccountId};
use secrecy::SecretString;
use tokio::sync::Notify;

use crate::{
    error::{MessagingError, Result},
    records::{Delivery, DeliveryId},
    storage::DeliveryRepository,
};

/// What ingest needs to know of the account owning a phone number.
#[derive(Debug, Clone)]
pub struct AccountKey {
    /// The account.
    pub account_id: WhatsAppAccountId,
    /// Its tenant.
    pub tenant_id: TenantId,
    /// Its phone number id.
    pub phone_number_id: String,
    /// The app secret that signs its webhooks.
    pub app_secret: SecretString,
}

/// Finds the account of a phone number, platform-wide (a delivery names only numbers).
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait AccountDirectory: Send + Sync {
    /// The account of `phone_number_id` with its app secret, if any account has it.
    async fn by_phone_number_id(&self, phone_number_id: &str) -> Result<Option<AccountKey>>;
    /// The accounts (numbers) of WhatsApp Business Account `waba_id`, with their app
    /// secrets: for changes about the WABA itself, which name no phone number.
    async fn by_waba_id(&self, waba_id: &str) -> Result<Vec<AccountKey>> {
        let _ = waba_id;
        Ok(Vec::new())
    }
}

/// What an (untrusted) delivery names, for attributing its entries to accounts: the
/// phone number ids of `entry[].changes[].value.metadata` and the WABA ids (`entry[].id`)
/// of entries with a change that names no phone number (template status, account updates),
/// each once, in order of appearance. A body that is not such JSON names nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamedIds {
    /// Phone number ids.
    pub phone_number_ids: Vec<String>,
    /// WABA ids of WABA-level changes.
    pub waba_ids: Vec<String>,
}

impl NamedIds {
    /// Reads them from `body` (parsed once).
    pub fn of(body: &[u8]) -> Self {
        let mut named = Self::default();
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
            return named;
        };
        // Nothing Meta sends nests this deep: name nothing, so it is refused unstored.
        if nesting_depth(&value) > MAX_DELIVERY_DEPTH {
            return named;
        }
        let mut seen = BTreeSet::new();
        let entries = value.get("entry").and_then(|e| e.as_array());
        for entry in entries.into_iter().flatten() {
            let mut waba_level = false;
            let changes = entry.get("changes").and_then(|c| c.as_array());
            for change in changes.into_iter().flatten() {
                match change
                    .pointer("/value/metadata/phone_number_id")
                    .and_then(|v| v.as_str())
                {
                    Some(id) => {
                        if seen.insert(id.to_owned()) {
                            named.phone_number_ids.push(id.to_owned());
                        }
                    }
                    None => waba_level = true,
                }
            }
            if let Some(id) = entry.get("id").and_then(|v| v.as_str()) {
                if waba_level && !named.waba_ids.iter().any(|known| known == id) {
                    named.waba_ids.push(id.to_owned());
                }
            }
        }
        named
    }
}

/// The deepest nesting a delivery may have. Meta's payloads nest about ten levels; stores
/// refuse (MongoDB) or recurse on (BSON conversion) much deeper documents, so a deeper
/// delivery is refused before it is stored, rather than crashing its processing.
pub const MAX_DELIVERY_DEPTH: usize = 32;

/// How deeply `value` nests (a scalar is 0), counted without recursion so that no input
/// can exhaust the stack.
pub fn nesting_depth(value: &serde_json::Value) -> usize {
    let mut deepest = 0;
    let mut pending = vec![(value, 0usize)];
    while let Some((v, depth)) = pending.pop() {
        deepest = deepest.max(depth);
        match v {
            serde_json::Value::Array(items) => {
                pending.extend(items.iter().map(|i| (i, depth + 1)));
            }
            serde_json::Value::Object(fields) => {
                pending.extend(fields.values().map(|f| (f, depth + 1)));
            }
            _ => {}
        }
    }
    deepest
}

/// The phone number ids a delivery names (see [`NamedIds`]).
pub fn named_phone_number_ids(body: &[u8]) -> Vec<String> {
    NamedIds::of(body).phone_number_ids
}

/// A stored delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// Its id.
    pub delivery: DeliveryId,
    /// The accounts its entries are filed under.
    pub accounts: Vec<WhatsAppAccountId>,
}

/// Takes deliveries in: checks signatures per account, stores what verifies, wakes the
/// worker. Cheap to clone.
#[derive(Clone)]
pub struct Receiver {
    accounts: Arc<dyn AccountDirectory>,
    deliveries: Arc<dyn DeliveryRepository>,
    wake: Arc<Notify>,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver").finish_non_exhaustive()
    }
}

impl Receiver {
    /// A receiver storing into `deliveries`; `wake` is notified after each stored delivery
    /// (give the same one to the [`crate::ingest::IngestWorker`]).
    pub fn new(
        accounts: Arc<dyn AccountDirectory>,
        deliveries: Arc<dyn DeliveryRepository>,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            accounts,
            deliveries,
            wake,
        }
    }

    /// Checks `body` against the `X-Hub-Signature-256` header `signature` with the app
    /// secret of each account whose phone number the body names, and stores the delivery
    /// (durably, before returning) if at least one does. Entries of numbers no account
    /// has, or whose account's secret does not verify, are not filed under any tenant.
    /// Nothing verifies → [`MessagingError::Unverified`], nothing stored.
    pub async fn receive(&self, body: &[u8], signature: Option<&str>) -> Result<Receipt> {
        let Ok(text) = std::str::from_utf8(body) else {
            tracing::warn!(target: "imix_whatsapp", bytes = body.len(), "webhook refused: the body is not UTF-8");
            return Err(MessagingError::Unverified);
        };
        let mut verified = Vec::new();
        let named = NamedIds::of(body);
        for phone_number_id in named.phone_number_ids {
            match self.accounts.by_phone_number_id(&phone_number_id).await? {
                None => tracing::warn!(
                    target: "imix_whatsapp",
                    %phone_number_id,
                    "webhook entry for a phone number no account has: not filed under any tenant"
                ),
                Some(key) => {
                    match imix_whatsapp::webhook::verify_signature(&key.app_secret, body, signature)
                    {
                        Ok(()) => verified.push(key.account_id),
                        Err(_) => tracing::warn!(
                            target: "imix_whatsapp",
                            %phone_number_id,
                            account = %key.account_id,
                            "webhook entry whose signature does not verify with its account's app secret: not filed"
                        ),
                    }
                }
            }
        }
        for waba_id in named.waba_ids {
            for key in self.accounts.by_waba_id(&waba_id).await? {
                let verifies =
                    imix_whatsapp::webhook::verify_signature(&key.app_secret, body, signature)
                        .is_ok();
                if verifies && !verified.contains(&key.account_id) {
                    verified.push(key.account_id);
                }
            }
        }
        if verified.is_empty() {
            tracing::warn!(target: "imix_whatsapp", bytes = body.len(), "webhook refused: no entry verifies");
            return Err(MessagingError::Unverified);
        }
        let delivery = Delivery::new(text.to_owned(), verified.clone());
        self.deliveries.insert(&delivery).await?;
        self.wake.notify_one();
        Ok(Receipt {
            delivery: delivery.id,
            accounts: verified,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_number_ids_are_read_from_every_entry_and_change_once() {
        let body = serde_json::json!({
            "object": "whatsapp_business_account",
            "entry": [
                {"id": "1", "changes": [
                    {"field": "messages", "value": {"metadata": {"phone_number_id": "A"}}},
                    {"field": "messages", "value": {"metadata": {"phone_number_id": "B"}}}
                ]},
                {"id": "2", "changes": [
                    {"field": "messages", "value": {"metadata": {"phone_number_id": "A"}}},
                    {"field": "messages", "value": {"metadata": {"phone_number_id": 7}}}
                ]}
            ]
        });
        let ids = named_phone_number_ids(body.to_string().as_bytes());
        assert_eq!(ids, ["A", "B"]);
        assert!(named_phone_number_ids(b"not json").is_empty());
        let waba = serde_json::json!({"entry": [
            {"id": "W1", "changes": [{"field": "message_template_status_update", "value": {"event": "APPROVED"}}]},
            {"id": "W2", "changes": [{"field": "messages", "value": {"metadata": {"phone_number_id": "C"}}}]}
        ]});
        let named = NamedIds::of(waba.to_string().as_bytes());
        assert_eq!(named.waba_ids, ["W1"]);
        assert_eq!(named.phone_number_ids, ["C"]);
        let mut deep = serde_json::json!(1);
        for _ in 0..MAX_DELIVERY_DEPTH {
            deep = serde_json::json!({ "a": deep });
        }
        let body = serde_json::json!({"entry": [{"id": "W", "changes": [
            {"field": "messages", "value": {"metadata": {"phone_number_id": "C"}, "x": deep}}
        ]}]});
        assert!(nesting_depth(&body) > MAX_DELIVERY_DEPTH);
        assert_eq!(
            NamedIds::of(body.to_string().as_bytes()),
            NamedIds::default()
        );
        assert!(named_phone_number_ids(b"{\"entry\": 3}").is_empty());
    }
}

//! WhatsApp Business accounts and their message templates, as persisted (see
//! [`crate::storage`] for the ports that store them).
//!
//! An account's Meta access token and app secret are stored **only** sealed with
//! [`imix_core::crypto::Cipher`], bound to the account id and the field name
//! ([`WhatsAppAccount::secret_aad`]), so a ciphertext copied onto another account or field
//! does not open. The plaintext `*_hint` fields (`"****1234"`) let people recognise them.

use serde::{Deserialize, Serialize};

use imix_core::{
    id::{TemplateId, TenantId, WhatsAppAccountId},
    Timestamp,
};

/// The outcome of the last verification of an account against the Graph API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerificationStatus {
    /// Never checked.
    #[default]
    Unverified,
    /// The token works and the ids belong together.
    Verified,
    /// The last check failed; see [`Verification::last_error`].
    Failed,
}

/// What the last check of the phone number with Meta found.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Verification {
    /// The outcome.
    pub status: VerificationStatus,
    /// The business name Meta approved for the number.
    #[serde(default)]
    pub verified_name: Option<String>,
    /// `VERIFIED`, `NOT_VERIFIED`, `EXPIRED`… as Meta reports it.
    #[serde(default)]
    pub code_verification_status: Option<String>,
    /// `GREEN`, `YELLOW`, `RED` or `UNKNOWN`.
    #[serde(default)]
    pub quality_rating: Option<String>,
    /// The messaging limit tier, e.g. `TIER_1K`.
    #[serde(default)]
    pub messaging_limit: Option<String>,
    /// The display name's review status, e.g. `APPROVED`.
    #[serde(default)]
    pub name_status: Option<String>,
    /// When the check ran.
    #[serde(default)]
    pub checked_at: Option<Timestamp>,
    /// Meta's message when the check failed.
    #[serde(default)]
    pub last_error: Option<String>,
}

/// One WhatsApp Business phone number of a tenant: every field of the admin guide's
/// "Adding a WhatsApp Account", plus the app secret webhook signatures need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhatsAppAccount {
    /// The account's id (also the last segment of its webhook URI).
    pub id: WhatsAppAccountId,
    /// The owning tenant.
    pub tenant_id: TenantId,
    /// The WhatsApp Business Account (WABA) id.
    pub waba_id: String,
    /// The Meta Business (portfolio) account id.
    pub business_account_id: String,
    /// The phone number id: unique platform-wide.
    pub phone_number_id: String,
    /// The Meta app id.
    pub app_id: String,
    /// The number as people dial it, e.g. `+1 555-010-0001`.
    pub display_phone_number: String,
    /// The business name shown to people.
    pub business_name: String,
    /// The Meta access token, sealed with the at-rest cipher.
    pub access_token_enc: String,
    /// `"****1234"`: the token's last characters, to recognise it.
    pub access_token_hint: String,
    /// The Meta app secret, sealed with the at-rest cipher.
    pub app_secret_enc: String,
    /// `"****1234"`: the secret's last characters.
    pub app_secret_hint: String,
    /// The token Meta echoes when it verifies the webhook callback.
    pub webhook_verify_token: String,
    /// The last verification with Meta.
    #[serde(default)]
    pub verification: Verification,
    /// How many messages per second the outbound dispatcher sends from this number
    /// (`None`: Meta's default throughput, 80; at most 1,000, Meta's highest tier).
    #[serde(default)]
    pub max_messages_per_second: Option<u32>,
    /// What Meta last reported about the number and its WABA by webhook.
    #[serde(default)]
    pub health: AccountHealth,
    /// Optimistic-concurrency version, 1 on creation.
    pub version: u64,
    /// When it was added.
    pub created_at: Timestamp,
    /// When it was last changed.
    pub updated_at: Timestamp,
}

/// What Meta reported about an account by webhook (`phone_number_quality_update`,
/// `account_update`, …), newest first kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountHealth {
    /// The number's quality rating (`GREEN`, `YELLOW`, `RED`, …) from
    /// `phone_number_quality_update`.
    pub quality_rating: Option<String>,
    /// The messaging limit tier (`TIER_1K`, …) from `phone_number_quality_update`.
    pub messaging_limit: Option<String>,
    /// The last `account_update` event (`event`, and ban or restriction details), as Meta
    /// sent it.
    pub last_account_update: Option<serde_json::Value>,
    /// When the last of these arrived.
    pub updated_at: Option<Timestamp>,
}

impl WhatsAppAccount {
    /// The associated data a secret `field` (`"access_token"`, `"app_secret"`) of account
    /// `id` is sealed with.
    pub fn secret_aad(id: WhatsAppAccountId, field: &str) -> Vec<u8> {
        format!("whatsapp_account:{id}:{field}").into_bytes()
    }
}

/// A message template of a WhatsApp account, mirroring Meta's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageTemplate {
    /// The template's id in imix.
    pub id: TemplateId,
    /// The owning tenant.
    pub tenant_id: TenantId,
    /// The account (WABA) it belongs to.
    pub account_id: WhatsAppAccountId,
    /// Meta's template id.
    pub meta_id: String,
    /// Its name: with `language`, unique per account.
    pub name: String,
    /// Its language code, e.g. `en_US`.
    pub language: String,
    /// `MARKETING`, `UTILITY` or `AUTHENTICATION`.
    pub category: String,
    /// `PENDING`, `APPROVED`, `REJECTED`… as Meta reports it.
    pub status: String,
    /// Its components, as Meta's JSON.
    pub components: serde_json::Value,
    /// Why Meta rejected it, when it did.
    #[serde(default)]
    pub rejected_reason: Option<String>,
    /// Optimistic-concurrency version, 1 on creation.
    pub version: u64,
    /// When it was created or first synced.
    pub created_at: Timestamp,
    /// When it was last changed.
    pub updated_at: Timestamp,
}

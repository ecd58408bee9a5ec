//! Auto-reply settings of a WhatsApp account (off by default): whether the assistant
//! answers customers by itself, when, and how often per conversation.

use chrono::{DateTime, Utc};
use imix_core::id::{TenantId, WhatsAppAccountId};
use poem_openapi::{param::Path, payload::Json, Object, OpenApi};

use super::{parse_id, ApiTags};
use crate::{
    auth::Auth,
    auto_reply::{SettingsInput, StoredSettings},
    error::ApiError,
    state::AppState,
};

/// Auto-reply routes.
pub struct AutoReplyApi {
    state: AppState,
}

impl AutoReplyApi {
    /// The auto-reply API over `state`.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

/// `PUT .../auto-reply`: the whole settings.
#[derive(Debug, Clone, Object)]
pub struct AutoReplySettingsUpdate {
    /// On or off.
    pub enabled: bool,
    /// `always` (default) or `outside_business_hours` (needs the tenant's business hours
    /// in its AI settings).
    pub mode: Option<String>,
    /// At most this many auto-replies per conversation, 1–20 (default 3).
    pub max_replies_per_conversation: Option<i64>,
}

/// A WhatsApp account's auto-reply settings.
#[derive(Debug, Clone, Object)]
pub struct AutoReplySettingsBody {
    /// The account.
    pub account_id: String,
    /// On or off (off until turned on).
    pub enabled: bool,
    /// `always` or `outside_business_hours`.
    pub mode: String,
    /// At most this many auto-replies per conversation.
    pub max_replies_per_conversation: u32,
    /// Version of the stored settings (0: never saved, the defaults apply).
    pub version: u64,
    /// Last changed.
    pub updated_at: Option<DateTime<Utc>>,
}

fn body(account: WhatsAppAccountId, s: StoredSettings) -> AutoReplySettingsBody {
    AutoReplySettingsBody {
        account_id: account.to_string(),
        enabled: s.settings.enabled,
        mode: s.settings.mode.as_str().to_owned(),
        max_replies_per_conversation: s.settings.max_replies_per_conversation,
        version: s.version,
        updated_at: s.updated_at,
    }
}

fn ids(tenant: &str, account: &str) -> Result<(TenantId, WhatsAppAccountId), ApiError> {
    Ok((
        parse_id::<TenantId>(tenant, "tenant")?,
        parse_id::<WhatsAppAccountId>(account, "whatsapp account")?,
    ))
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Settings")]
impl AutoReplyApi {
    /// A WhatsApp account's auto-reply settings (the defaults, off, when never saved).
    /// The tenant's admins (`settings.manage`) and platform admins; another tenant's
    /// account is 404.
    #[oai(
        path = "/tenants/:tenant_id/whatsapp-accounts/:account_id/auto-reply",
        method = "get",
        operation_id = "get_auto_reply_settings"
    )]
    async fn get(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        account_id: Path<String>,
    ) -> Result<Json<AutoReplySettingsBody>, ApiError> {
        let (tenant, account) = ids(&tenant_id.0, &account_id.0)?;
        let s = self
            .state
            .auto_reply
            .get_settings(&auth.0, tenant, account)
            .await?;
        Ok(Json(body(account, s)))
    }

    /// Saves a WhatsApp account's auto-reply settings: when on, the assistant answers an
    /// inbound text message in a conversation nobody is assigned to, through the normal
    /// sending path (quotas, the 24-hour window, blocked and opted-out contacts apply), at
    /// most `max_replies_per_conversation` times per conversation; a customer asking for a
    /// human stops it and flags the conversation. 422 names a bad field (`mode`
    /// `outside_business_hours` needs the tenant's business hours). Audited
    /// (`settings.auto_reply.update`). The tenant's admins and platform admins.
    #[oai(
        path = "/tenants/:tenant_id/whatsapp-accounts/:account_id/auto-reply",
        method = "put",
        operation_id = "put_auto_reply_settings"
    )]
    async fn put(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        account_id: Path<String>,
        update: Json<AutoReplySettingsUpdate>,
    ) -> Result<Json<AutoReplySettingsBody>, ApiError> {
        let (tenant, account) = ids(&tenant_id.0, &account_id.0)?;
        let u = update.0;
        let s = self
            .state
            .auto_reply
            .put_settings(
                &auth.0,
                tenant,
                account,
                SettingsInput {
                    enabled: u.enabled,
                    mode: u.mode,
                    max_replies_per_conversation: u.max_replies_per_conversation,
                },
            )
            .await?;
        Ok(Json(body(account, s)))
    }
}

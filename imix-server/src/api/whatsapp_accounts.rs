//! WhatsApp accounts: the admin guide's "Adding a WhatsApp Account", verification with
//! Meta, and Meta's phone number verification walk. The access token and the app secret are
//! write-only: responses carry `access_token_set` / `access_token_hint` (`"****1234"`) only.

use chrono::{DateTime, Utc};
use imix_core::id::{TenantId, WhatsAppAccountId};
use imix_whatsapp::{
    accounts::{AccountPatch, NewAccount},
    model::CodeMethod,
    VerificationStatus, WhatsAppAccount,
};
use poem_openapi::{
    param::{Path, Query},
    payload::Json,
    ApiResponse, Enum, Object, OpenApi,
};
use secrecy::SecretString;

use super::{
    dto::{page, Done},
    parse_id, ApiTags,
};
use crate::{auth::Auth, error::ApiError, state::AppState};

/// WhatsApp account operations.
pub struct WhatsAppAccountsApi {
    state: AppState,
}

impl WhatsAppAccountsApi {
    /// The WhatsApp accounts API over `state`.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

/// The outcome of the last check with Meta.
#[derive(Debug, Clone, Copy, Enum)]
#[oai(rename_all = "snake_case")]
pub enum VerificationStatusDto {
    /// Never checked.
    Unverified,
    /// The token works and the ids belong together.
    Verified,
    /// The last check failed (see `last_error`).
    Failed,
}

/// What the last verification with Meta found.
#[derive(Debug, Clone, Object)]
pub struct VerificationView {
    /// `unverified`, `verified` or `failed`.
    pub status: VerificationStatusDto,
    /// The business name Meta approved for the number.
    pub verified_name: Option<String>,
    /// Meta's `code_verification_status` (`VERIFIED`, `NOT_VERIFIED`, `EXPIRED`).
    pub code_verification_status: Option<String>,
    /// `GREEN`, `YELLOW`, `RED` or `UNKNOWN`.
    pub quality_rating: Option<String>,
    /// Meta's messaging limit tier, e.g. `TIER_1K`.
    pub messaging_limit: Option<String>,
    /// The display name's review status.
    pub name_status: Option<String>,
    /// When the check ran.
    pub checked_at: Option<DateTime<Utc>>,
    /// Meta's message when the check failed.
    pub last_error: Option<String>,
}

/// A WhatsApp account as the API shows it: never the token or the secret.
#[derive(Debug, Clone, Object)]
pub struct WhatsAppAccountView {
    /// Id.
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// WhatsApp Business Account ID.
    pub waba_id: String,
    /// Business Account ID.
    pub business_account_id: String,
    /// WhatsApp phone ID (unique platform-wide).
    pub phone_number_id: String,
    /// App ID.
    pub app_id: String,
    /// Display phone number.
    pub display_phone_number: String,
    /// Business name.
    pub business_name: String,
    /// Whether an access token is stored (always, once created).
    pub access_token_set: bool,
    /// `"****1234"`: the stored token's last characters.
    pub access_token_hint: String,
    /// Whether an app secret is stored.
    pub app_secret_set: bool,
    /// `"****1234"`: the stored secret's last characters.
    pub app_secret_hint: String,
    /// The callback URL to paste into Meta's app dashboard.
    pub webhook_uri: String,
    /// The verify token to paste next to it.
    pub webhook_verify_token: String,
    /// The last verification with Meta.
    pub verification: VerificationView,
    /// The number's outbound rate in messages per second (80, Meta's default, until set;
    /// at most 1,000).
    pub max_messages_per_second: u32,
    /// The number's quality event as Meta last reported it by webhook (`FLAGGED`,
    /// `UNFLAGGED`, `DOWNGRADE`, `UPGRADE`, …).
    pub quality_rating: Option<String>,
    /// The messaging limit tier Meta last reported (`TIER_1K`, …).
    pub messaging_limit: Option<String>,
    /// The last `account_update` event, as Meta sent it.
    pub last_account_update: Option<serde_json::Value>,
    /// Version (optimistic concurrency).
    pub version: u64,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

impl WhatsAppAccountView {
    fn of(state: &AppState, a: WhatsAppAccount) -> Self {
        let v = a.verification;
        let health = a.health;
        Self {
            quality_rating: health.quality_rating,
            messaging_limit: health.messaging_limit,
            last_account_update: health.last_account_update,
            webhook_uri: state.whatsapp_accounts.webhook_uri(a.id),
            id: a.id.to_string(),
            tenant_id: a.tenant_id.to_string(),
            waba_id: a.waba_id,
            business_account_id: a.business_account_id,
            phone_number_id: a.phone_number_id,
            app_id: a.app_id,
            display_phone_number: a.display_phone_number,
            business_name: a.business_name,
            access_token_set: !a.access_token_enc.is_empty(),
            access_token_hint: a.access_token_hint,
            app_secret_set: !a.app_secret_enc.is_empty(),
            app_secret_hint: a.app_secret_hint,
            webhook_verify_token: a.webhook_verify_token,
            max_messages_per_second: imix_messaging::outbound::effective_rate(
                a.max_messages_per_second,
            ),
            verification: VerificationView {
                status: match v.status {
                    VerificationStatus::Unverified => VerificationStatusDto::Unverified,
                    VerificationStatus::Verified => VerificationStatusDto::Verified,
                    VerificationStatus::Failed => VerificationStatusDto::Failed,
                },
                verified_name: v.verified_name,
                code_verification_status: v.code_verification_status,
                quality_rating: v.quality_rating,
                messaging_limit: v.messaging_limit,
                name_status: v.name_status,
                checked_at: v.checked_at,
                last_error: v.last_error,
            },
            version: a.version,
            created_at: a.created_at,
            updated_at: a.updated_at,
        }
    }
}

/// One page of accounts.
#[derive(Debug, Clone, Object)]
pub struct WhatsAppAccountList {
    /// The accounts, oldest first.
    pub items: Vec<WhatsAppAccountView>,
    /// Cursor of the next page, `null` on the last.
    pub next_cursor: Option<String>,
}

/// `POST /api/v1/tenants/{tenant_id}/whatsapp-accounts`: the admin guide's form.
#[derive(Object)]
pub struct CreateWhatsAppAccount {
    /// WhatsApp Business Account ID (Meta: WhatsApp Manager → Account tools).
    pub waba_id: String,
    /// Business Account ID (Meta Business Suite → Business settings → Business info).
    pub business_account_id: String,
    /// WhatsApp phone ID ("Phone number ID" in the app's WhatsApp → API Setup).
    pub phone_number_id: String,
    /// App ID (the app's dashboard).
    pub app_id: String,
    /// Display phone number.
    pub display_phone_number: String,
    /// Business name.
    pub business_name: String,
    /// Meta access token (a system user's permanent token). Write-only.
    #[oai(write_only)]
    pub access_token: String,
    /// App secret (App settings → Basic), which signs webhooks. Write-only.
    #[oai(write_only)]
    pub app_secret: String,
    /// Webhook token; left blank, 40 random URL-safe characters are generated.
    pub webhook_verify_token: Option<String>,
}

/// `PATCH /api/v1/whatsapp-accounts/{account_id}`: omitted fields stay as they are; a
/// token or secret given replaces the stored one.
#[derive(Object)]
pub struct UpdateWhatsAppAccount {
    /// WhatsApp Business Account ID.
    pub waba_id: Option<String>,
    /// Business Account ID.
    pub business_account_id: Option<String>,
    /// WhatsApp phone ID.
    pub phone_number_id: Option<String>,
    /// App ID.
    pub app_id: Option<String>,
    /// Display phone number.
    pub display_phone_number: Option<String>,
    /// Business name.
    pub business_name: Option<String>,
    /// A new access token. Write-only.
    #[oai(write_only)]
    pub access_token: Option<String>,
    /// A new app secret. Write-only.
    #[oai(write_only)]
    pub app_secret: Option<String>,
    /// A new webhook token; blank generates a new one.
    pub webhook_verify_token: Option<String>,
    /// The number's outbound rate: 1 to 1,000 messages per second (Meta's default
    /// throughput is 80, used while unset).
    pub max_messages_per_second: Option<u32>,
}

/// How Meta sends the verification code.
#[derive(Debug, Clone, Copy, Enum)]
pub enum CodeMethodDto {
    /// By text message.
    #[oai(rename = "SMS")]
    Sms,
    /// By voice call.
    #[oai(rename = "VOICE")]
    Voice,
}

/// `POST .../request-code`.
#[derive(Object)]
pub struct RequestCode {
    /// `SMS` or `VOICE`.
    pub code_method: CodeMethodDto,
    /// The language of the message or call, e.g. `en_US`; `en_US` when omitted.
    pub language: Option<String>,
}

/// `POST .../verify-code`.
#[derive(Object)]
pub struct VerifyCode {
    /// The code Meta sent.
    pub code: String,
}

/// `POST .../register`.
#[derive(Object)]
pub struct Register {
    /// The number's six-digit two-step verification PIN. Write-only.
    #[oai(write_only)]
    pub pin: String,
}

#[derive(ApiResponse)]
enum Created {
    /// Added.
    #[oai(status = 201)]
    Account(Json<WhatsAppAccountView>),
}

fn optional_secret(value: Option<String>) -> Option<SecretString> {
    value.map(SecretString::from)
}

impl WhatsAppAccountsApi {
    fn view(&self, a: WhatsAppAccount) -> WhatsAppAccountView {
        WhatsAppAccountView::of(&self.state, a)
    }
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::WhatsApp")]
impl WhatsAppAccountsApi {
    /// The tenant's WhatsApp accounts, oldest first.
    #[oai(
        path = "/tenants/:tenant_id/whatsapp-accounts",
        method = "get",
        operation_id = "list_whatsapp_accounts"
    )]
    async fn list(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        cursor: Query<Option<String>>,
        limit: Query<Option<u32>>,
    ) -> Result<Json<WhatsAppAccountList>, ApiError> {
        let tenant = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        let p = self
            .state
            .whatsapp_accounts
            .list(auth.0.access(), tenant, page(cursor.0, limit.0))
            .await?;
        Ok(Json(WhatsAppAccountList {
            items: p.items.into_iter().map(|a| self.view(a)).collect(),
            next_cursor: p.next_cursor,
        }))
    }

    /// Adds a WhatsApp account to the tenant. The phone number id must not be used by any
    /// other account (409 `phone_number_id_taken`).
    #[oai(
        path = "/tenants/:tenant_id/whatsapp-accounts",
        method = "post",
        operation_id = "create_whatsapp_account"
    )]
    async fn create(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        body: Json<CreateWhatsAppAccount>,
    ) -> Result<Created, ApiError> {
        let tenant = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        let b = body.0;
        let account = self
            .state
            .whatsapp_accounts
            .add(
                auth.0.access(),
                tenant,
                NewAccount {
                    waba_id: b.waba_id,
                    business_account_id: b.business_account_id,
                    phone_number_id: b.phone_number_id,
                    app_id: b.app_id,
                    display_phone_number: b.display_phone_number,
                    business_name: b.business_name,
                    access_token: SecretString::from(b.access_token),
                    app_secret: SecretString::from(b.app_secret),
                    webhook_verify_token: b.webhook_verify_token,
                },
            )
            .await?;
        Ok(Created::Account(Json(self.view(account))))
    }

    /// One WhatsApp account.
    #[oai(
        path = "/whatsapp-accounts/:account_id",
        method = "get",
        operation_id = "get_whatsapp_account"
    )]
    async fn get(
        &self,
        auth: Auth,
        account_id: Path<String>,
    ) -> Result<Json<WhatsAppAccountView>, ApiError> {
        let id = parse_id::<WhatsAppAccountId>(&account_id.0, "whatsapp account")?;
        let a = self
            .state
            .whatsapp_accounts
            .get(auth.0.access(), id)
            .await?;
        Ok(Json(self.view(a)))
    }

    /// Edits a WhatsApp account. Secrets are optional: omitted, the stored ones stay.
    #[oai(
        path = "/whatsapp-accounts/:account_id",
        method = "patch",
        operation_id = "update_whatsapp_account"
    )]
    async fn update(
        &self,
        auth: Auth,
        account_id: Path<String>,
        body: Json<UpdateWhatsAppAccount>,
    ) -> Result<Json<WhatsAppAccountView>, ApiError> {
        let id = parse_id::<WhatsAppAccountId>(&account_id.0, "whatsapp account")?;
        let b = body.0;
        let patch = AccountPatch {
            waba_id: b.waba_id,
            business_account_id: b.business_account_id,
            phone_number_id: b.phone_number_id,
            app_id: b.app_id,
            display_phone_number: b.display_phone_number,
            business_name: b.business_name,
            access_token: optional_secret(b.access_token),
            app_secret: optional_secret(b.app_secret),
            webhook_verify_token: b.webhook_verify_token,
            max_messages_per_second: b.max_messages_per_second,
        };
        let a = self
            .state
            .whatsapp_accounts
            .edit(auth.0.access(), id, patch)
            .await?;
        Ok(Json(self.view(a)))
    }

    /// Deletes a WhatsApp account and its templates in imix (Meta keeps them).
    #[oai(
        path = "/whatsapp-accounts/:account_id",
        method = "delete",
        operation_id = "delete_whatsapp_account"
    )]
    async fn delete(&self, auth: Auth, account_id: Path<String>) -> Result<Json<Done>, ApiError> {
        let id = parse_id::<WhatsAppAccountId>(&account_id.0, "whatsapp account")?;
        self.state
            .whatsapp_accounts
            .delete(auth.0.access(), id)
            .await?;
        Ok(Json(Done::ok()))
    }

    /// Checks the account with Meta's Graph API (the phone number with the stored token,
    /// and that the token reaches the WABA) and stores the result with the check time. A
    /// token Meta refuses: 422 `whatsapp_token_invalid` with Meta's message.
    #[oai(
        path = "/whatsapp-accounts/:account_id/verify",
        method = "post",
        operation_id = "verify_whatsapp_account"
    )]
    async fn verify(
        &self,
        auth: Auth,
        account_id: Path<String>,
    ) -> Result<Json<WhatsAppAccountView>, ApiError> {
        let id = parse_id::<WhatsAppAccountId>(&account_id.0, "whatsapp account")?;
        let a = self
            .state
            .whatsapp_accounts
            .verify(auth.0.access(), id)
            .await?;
        Ok(Json(self.view(a)))
    }

    /// Asks Meta to send the number a verification code by SMS or voice call.
    #[oai(
        path = "/whatsapp-accounts/:account_id/request-code",
        method = "post",
        operation_id = "request_whatsapp_code"
    )]
    async fn request_code(
        &self,
        auth: Auth,
        account_id: Path<String>,
        body: Json<RequestCode>,
    ) -> Result<Json<Done>, ApiError> {
        let id = parse_id::<WhatsAppAccountId>(&account_id.0, "whatsapp account")?;
        let method = match body.0.code_method {
            CodeMethodDto::Sms => CodeMethod::Sms,
            CodeMethodDto::Voice => CodeMethod::Voice,
        };
        let language = body.0.language.unwrap_or_else(|| "en_US".to_owned());
        self.state
            .whatsapp_accounts
            .request_code(auth.0.access(), id, method, &language)
            .await?;
        Ok(Json(Done::ok()))
    }

    /// Submits the verification code the number received.
    #[oai(
        path = "/whatsapp-accounts/:account_id/verify-code",
        method = "post",
        operation_id = "verify_whatsapp_code"
    )]
    async fn verify_code(
        &self,
        auth: Auth,
        account_id: Path<String>,
        body: Json<VerifyCode>,
    ) -> Result<Json<Done>, ApiError> {
        let id = parse_id::<WhatsAppAccountId>(&account_id.0, "whatsapp account")?;
        self.state
            .whatsapp_accounts
            .verify_code(auth.0.access(), id, &body.0.code)
            .await?;
        Ok(Json(Done::ok()))
    }

    /// Registers the number for Cloud API use with its two-step verification PIN.
    #[oai(
        path = "/whatsapp-accounts/:account_id/register",
        method = "post",
        operation_id = "register_whatsapp_number"
    )]
    async fn register(
        &self,
        auth: Auth,
        account_id: Path<String>,
        body: Json<Register>,
    ) -> Result<Json<Done>, ApiError> {
        let id = parse_id::<WhatsAppAccountId>(&account_id.0, "whatsapp account")?;
        let pin = SecretString::from(body.0.pin);
        self.state
            .whatsapp_accounts
            .register(auth.0.access(), id, &pin)
            .await?;
        Ok(Json(Done::ok()))
    }
}

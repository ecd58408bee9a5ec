//! SMTP settings (the admin guide's Configuration > SMTP Configuration) of the platform and
//! of each tenant, and the test email.
//!
//! The password is write-only: sealed at rest, never returned (`password_set` instead).
//! Changes apply to the next email on every replica, without a restart.

use chrono::{DateTime, Utc};
use imix_core::{id::TenantId, model::SettingsScope};
use imix_notify::{
    settings::{SmtpSecurity, SmtpSettingsInput, SmtpSettingsView},
    NotifyError,
};
use imix_tenancy::AuthContext;
use poem::http::StatusCode;
use poem_openapi::{param::Path, payload::Json, ApiResponse, Enum, Object, OpenApi};
use secrecy::SecretString;

use super::{dto::LanguageDto, parse_id, ApiTags};
use crate::{
    auth::Auth,
    error::{mail_failure, ApiError, ErrorBody},
    state::AppState,
};

/// SMTP settings operations.
pub struct SmtpApi {
    state: AppState,
}

impl SmtpApi {
    /// The SMTP settings API over `state`.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

/// How the connection to the SMTP server is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum SmtpSecurityDto {
    /// Plain connection upgraded with `STARTTLS` (required), usually port 587.
    Starttls,
    /// TLS from the first byte ("SMTPS"), usually port 465.
    Tls,
    /// No encryption: credentials and emails travel in clear. Local development only.
    None,
}

impl From<SmtpSecurity> for SmtpSecurityDto {
    fn from(s: SmtpSecurity) -> Self {
        match s {
            SmtpSecurity::Starttls => SmtpSecurityDto::Starttls,
            SmtpSecurity::Tls => SmtpSecurityDto::Tls,
            SmtpSecurity::None => SmtpSecurityDto::None,
        }
    }
}

/// `PUT .../settings/smtp`: the whole settings. Every invalid field is reported at once
/// (422, `details.field` names the first, `details.errors` lists all).
#[derive(Object)]
pub struct SmtpSettingsUpdate {
    /// SMTP server host name or IP address.
    pub host: String,
    /// Port, 1–65535 (usually 587 for `starttls`, 465 for `tls`).
    pub port: i64,
    /// Login; omit or leave empty for no authentication.
    pub username: Option<String>,
    /// Password (write-only, never returned). Omit to keep the stored one; an empty string
    /// removes it. Required when a username is set and none is stored.
    #[oai(write_only)]
    pub password: Option<String>,
    /// The sender address (`From`).
    pub from_email: String,
    /// The sender's display name.
    pub from_name: Option<String>,
    /// `starttls`, `tls` or `none` (`none`: no encryption, local development only).
    pub security: String,
}

/// Stored SMTP settings. The password is never returned.
#[derive(Debug, Clone, Object)]
pub struct SmtpSettingsBody {
    /// Whose settings: `platform` or `tenant`.
    pub scope: String,
    /// The tenant, for tenant settings.
    pub tenant_id: Option<String>,
    /// SMTP server host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Login, if authentication is configured.
    pub username: Option<String>,
    /// Whether a password is stored.
    pub password_set: bool,
    /// The sender address.
    pub from_email: String,
    /// The sender's display name.
    pub from_name: Option<String>,
    /// Security mode.
    pub security: SmtpSecurityDto,
    /// `true` when `security` is `none`: emails and credentials travel in clear.
    pub insecure: bool,
    /// Version, raised by every change.
    pub version: u64,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<SmtpSettingsView> for SmtpSettingsBody {
    fn from(v: SmtpSettingsView) -> Self {
        let (scope, tenant_id) = match v.scope {
            SettingsScope::Platform => ("platform", None),
            SettingsScope::Tenant(t) => ("tenant", Some(t.to_string())),
        };
        Self {
            scope: scope.to_owned(),
            tenant_id,
            host: v.host,
            port: v.port,
            username: v.username,
            password_set: v.password_set,
            from_email: v.from_email,
            from_name: v.from_name,
            security: v.security.into(),
            insecure: v.insecure,
            version: v.version,
            updated_at: v.updated_at,
        }
    }
}

/// `POST .../settings/smtp/test`.
#[derive(Object)]
pub struct SmtpTestRequest {
    /// Where to send the test email.
    pub to: String,
    /// The email's language; default: the caller's.
    pub language: Option<LanguageDto>,
}

/// The mail server accepted the test email.
#[derive(Debug, Clone, Object)]
pub struct SmtpTestResult {
    /// Always `true`.
    pub ok: bool,
    /// The server's final reply, e.g. `250 2.0.0 OK queued as …`.
    pub server_reply: String,
}

#[derive(ApiResponse)]
enum TestAnswer {
    /// The mail server accepted the test email.
    #[oai(status = 200)]
    Sent(Json<SmtpTestResult>),
    /// Sending failed. `error.code` says why: `connection`, `tls`, `authentication`,
    /// `sender_rejected`, `recipient_rejected`, `timeout`, `not_configured`, `invalid`,
    /// `host_not_allowed`, `other`; `error.message` says it in words, with the server's
    /// reply.
    #[oai(status = 502)]
    MailFailed(Json<ErrorBody>),
}

fn not_configured(scope: SettingsScope) -> ApiError {
    match scope {
        SettingsScope::Platform => ApiError::new(
            StatusCode::NOT_FOUND,
            "not_configured",
            "no platform SMTP settings are saved; emails wait in the outbox until they are",
        ),
        SettingsScope::Tenant(_) => ApiError::new(
            StatusCode::NOT_FOUND,
            "not_configured",
            "this tenant has no SMTP settings of its own; its emails use the platform's",
        )
        .with_details(serde_json::json!({ "fallback": "platform" })),
    }
}

fn input(body: SmtpSettingsUpdate) -> SmtpSettingsInput {
    SmtpSettingsInput {
        host: body.host,
        port: body.port,
        username: body.username,
        password: body.password.map(SecretString::from),
        from_email: body.from_email,
        from_name: body.from_name,
        security: body.security,
    }
}

impl SmtpApi {
    /// A tenant's settings scope from the path (a malformed id is "not found").
    fn tenant_scope(raw: &str) -> Result<SettingsScope, ApiError> {
        Ok(SettingsScope::Tenant(parse_id::<TenantId>(raw, "tenant")?))
    }

    async fn get_settings(
        &self,
        ctx: &AuthContext,
        scope: SettingsScope,
    ) -> Result<SmtpSettingsBody, ApiError> {
        self.state
            .notifier
            .smtp_settings(ctx.access(), scope)
            .await?
            .map(Into::into)
            .ok_or_else(|| not_configured(scope))
    }

    async fn put_settings(
        &self,
        ctx: &AuthContext,
        scope: SettingsScope,
        body: SmtpSettingsUpdate,
    ) -> Result<SmtpSettingsBody, ApiError> {
        let view = self
            .state
            .notifier
            .put_smtp_settings(ctx.access(), scope, input(body))
            .await?;
        Ok(view.into())
    }

    async fn test(
        &self,
        ctx: &AuthContext,
        scope: SettingsScope,
        body: SmtpTestRequest,
    ) -> Result<TestAnswer, ApiError> {
        let language = body
            .language
            .map(Into::into)
            .unwrap_or(ctx.user().default_language);
        match self
            .state
            .notifier
            .send_test_email(ctx.access(), scope, &body.to, language)
            .await
        {
            Ok(receipt) => Ok(TestAnswer::Sent(Json(SmtpTestResult {
                ok: true,
                server_reply: receipt.server_reply,
            }))),
            Err(NotifyError::Mail(e)) => Ok(TestAnswer::MailFailed(Json(mail_failure(&e).body()))),
            Err(e) => Err(e.into()),
        }
    }
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Settings")]
impl SmtpApi {
    /// The platform's SMTP settings (password never returned). 404 `not_configured` when
    /// none are saved. Platform admins.
    #[oai(
        path = "/settings/smtp",
        method = "get",
        operation_id = "get_smtp_settings"
    )]
    async fn get_platform(&self, auth: Auth) -> Result<Json<SmtpSettingsBody>, ApiError> {
        Ok(Json(
            self.get_settings(&auth.0, SettingsScope::Platform).await?,
        ))
    }

    /// Saves the platform's SMTP settings; they apply to the next email, on every replica.
    /// Platform admins.
    #[oai(
        path = "/settings/smtp",
        method = "put",
        operation_id = "put_smtp_settings"
    )]
    async fn put_platform(
        &self,
        auth: Auth,
        body: Json<SmtpSettingsUpdate>,
    ) -> Result<Json<SmtpSettingsBody>, ApiError> {
        Ok(Json(
            self.put_settings(&auth.0, SettingsScope::Platform, body.0)
                .await?,
        ))
    }

    /// Sends a test email now through the platform's settings; answers within 15 seconds
    /// with the server's reply, or 502 with the classified error. Platform admins.
    #[oai(
        path = "/settings/smtp/test",
        method = "post",
        operation_id = "test_smtp_settings"
    )]
    async fn test_platform(
        &self,
        auth: Auth,
        body: Json<SmtpTestRequest>,
    ) -> Result<TestAnswer, ApiError> {
        self.test(&auth.0, SettingsScope::Platform, body.0).await
    }

    /// The tenant's own SMTP settings (password never returned). 404 `not_configured` when
    /// it has none: its emails then use the platform's. The tenant's admins and platform
    /// admins.
    #[oai(
        path = "/tenants/:tenant_id/settings/smtp",
        method = "get",
        operation_id = "get_tenant_smtp_settings"
    )]
    async fn get_tenant(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
    ) -> Result<Json<SmtpSettingsBody>, ApiError> {
        let scope = Self::tenant_scope(&tenant_id.0)?;
        Ok(Json(self.get_settings(&auth.0, scope).await?))
    }

    /// Saves the tenant's own SMTP settings: its emails (invitations, resets, warnings) go
    /// out through them from the next email on. The host must resolve to public addresses
    /// only (422 `invalid_field` naming `host` for loopback, private or link-local ones)
    /// unless the operator sets `IMIX_ALLOW_PRIVATE_SMTP_HOSTS=true`. The tenant's admins and
    /// platform admins.
    #[oai(
        path = "/tenants/:tenant_id/settings/smtp",
        method = "put",
        operation_id = "put_tenant_smtp_settings"
    )]
    async fn put_tenant(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        body: Json<SmtpSettingsUpdate>,
    ) -> Result<Json<SmtpSettingsBody>, ApiError> {
        let scope = Self::tenant_scope(&tenant_id.0)?;
        Ok(Json(self.put_settings(&auth.0, scope, body.0).await?))
    }

    /// Sends a test email now through the settings the tenant's emails use (its own, else
    /// the platform's); answers within 15 seconds with the server's reply, or 502 with the
    /// classified error. At most 5 test emails per tenant in 10 minutes (429 `rate_limited`
    /// with `Retry-After`); none for a deactivated tenant (409 `tenant_deactivated`). A
    /// tenant's own host must have public addresses (502 `host_not_allowed`) unless the
    /// operator allows private ones. The tenant's admins and platform admins.
    #[oai(
        path = "/tenants/:tenant_id/settings/smtp/test",
        method = "post",
        operation_id = "test_tenant_smtp_settings"
    )]
    async fn test_tenant(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        body: Json<SmtpTestRequest>,
    ) -> Result<TestAnswer, ApiError> {
        let scope = Self::tenant_scope(&tenant_id.0)?;
        self.test(&auth.0, scope, body.0).await
    }
}

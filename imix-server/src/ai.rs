//! The AI assistant inside the server: settings with access checks, the connection test,
//! and suggestions and summaries for a conversation read with the caller's tenant scope.
//!
//! `imix-ai` works on plain text; this module turns WhatsApp messages into
//! [`Turn`]s (text bodies and captions; other kinds as a short `[image]`-like marker).

use std::{collections::VecDeque, sync::Arc, time::Duration};

use imix_ai::{
    assistant::{Answer, Assistant, ConversationText, Prepared},
    prompt::{Speaker, Task, Turn},
    settings::{
        AiSettingsInput, AiSettingsService, AiSettingsView, EffectiveAi, SettingsError, Writer,
    },
    usage::{MeterError, TokenMeter},
    AiError, ConnectionReport, ProviderKind, RetryPolicy,
};
use imix_core::{
    access::Permission, directory::TenantDirectory, id::TenantId, model::SettingsScope,
    store::PageRequest, Language,
};
use imix_messaging::{ConversationId, Direction, InboxService, Message};
use imix_tenancy::AuthContext;
use poem::http::StatusCode;

use crate::error::ApiError;

/// How many of a conversation's latest messages are read for a prompt (the prompt keeps at
/// most 20 of them, fewer when the token budget says so).
pub const MESSAGES_READ: usize = 40;

/// Every AI operation of the server. Cheap to clone.
#[derive(Clone)]
pub struct AiService {
    /// Settings documents.
    pub settings: AiSettingsService,
    /// Providers and tasks.
    pub assistant: Assistant,
    /// Token usage and the daily limit.
    pub meter: TokenMeter,
    tenants: Arc<dyn TenantDirectory>,
    /// `IMIX_ALLOW_PRIVATE_AI_URLS`.
    allow_private_urls: bool,
    /// Where settings changes are recorded.
    audit: Arc<dyn imix_core::access::AuditSink>,
}

impl std::fmt::Debug for AiService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AiService").finish_non_exhaustive()
    }
}

/// 422 for invalid settings, naming every field (as every 422 of the API).
pub fn settings_error(err: SettingsError) -> ApiError {
    match err {
        SettingsError::Invalid(errors) => {
            let Some(first) = errors.first() else {
                return ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_field",
                    "invalid values",
                );
            };
            let all: Vec<serde_json::Value> = errors
                .iter()
                .map(|e| serde_json::json!({ "field": e.field, "reason": e.message }))
                .collect();
            let message = errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", message).with_details(
                serde_json::json!({ "field": first.field, "reason": first.message, "errors": all }),
            )
        }
        SettingsError::Store(e) => e.into(),
    }
}

/// A provider failure or a missing configuration, classified (`error.code` is
/// [`AiError::code`]): 502 for what the provider answered, 409 `ai_not_configured`, 422 for a
/// setting that does not work, 504 for a timeout.
pub fn ai_error(err: AiError) -> ApiError {
    let status = match &err {
        AiError::NotConfigured { .. } => StatusCode::CONFLICT,
        AiError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        AiError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        AiError::Store(_) => {
            tracing::error!(error = %err, "AI store failure");
            return ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "an internal error occurred; it has been logged",
            );
        }
        _ => StatusCode::BAD_GATEWAY,
    };
    tracing::warn!(error = %err, code = err.code(), "AI provider failure");
    let mut details = serde_json::json!({ "retryable": err.is_retryable() });
    if let AiError::Invalid { field, .. } = &err {
        details["field"] = field.clone().into();
    }
    ApiError::new(status, err.code(), err.to_string()).with_details(details)
}

/// The daily token limit refused the call: the same answer as the other daily limits (429
/// `limit_reached`, `details.limit_name` = `ai_tokens`, `Retry-After` until the reset).
pub fn meter_error(err: MeterError) -> ApiError {
    match err {
        MeterError::LimitReached(l) => {
            let wait = (l.resets_at - imix_core::now()).num_seconds().max(1) as u64;
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "limit_reached",
                l.to_string(),
            )
            .with_details(serde_json::json!({
                "limit_name": "ai_tokens", "limit": l.limit, "used": l.used,
                "resets_at": l.resets_at.to_rfc3339(),
            }))
            .with_retry_after(wait)
        }
        MeterError::Store(e) => e.into(),
    }
}

fn turn_text(m: &Message) -> String {
    let c = &m.content;
    let body = c
        .get(&m.kind)
        .and_then(|o| o.get("body").or_else(|| o.get("caption")))
        .or_else(|| c.get("body"))
        .or_else(|| c.get("caption"))
        .and_then(|v| v.as_str());
    match body {
        Some(text) => text.to_owned(),
        None => format!("[{}]", m.kind),
    }
}

/// The effective AI settings' scope rule for a caller: platform settings need
/// `platform.settings`, a tenant's need `settings.manage` in that tenant (another tenant's
/// are 404).
fn authorize_settings(ctx: &AuthContext, scope: SettingsScope) -> Result<Writer, ApiError> {
    match scope {
        SettingsScope::Platform => {
            ctx.access().require(Permission::PlatformSettings)?;
            Ok(Writer::PlatformAdmin)
        }
        SettingsScope::Tenant(t) => {
            ctx.access().authorize(Permission::SettingsManage, t)?;
            Ok(if ctx.access().is_platform_admin() {
                Writer::PlatformAdmin
            } else {
                Writer::TenantAdmin
            })
        }
    }
}

/// Resolves host names to their public addresses only: a tenant's provider URL must not
/// lead into the operator's network (SSRF). The rule is the webhook endpoints' one
/// ([`imix_subscriptions::target::is_forbidden`]).
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let all: Vec<std::net::SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<std::net::SocketAddr> = all
                .into_iter()
                .filter(|a| !imix_subscriptions::target::is_forbidden(a.ip()))
                .collect();
            if public.is_empty() {
                return Err(format!(
                    "{host} resolves to no public address (IMIX_ALLOW_PRIVATE_AI_URLS is off)"
                )
                .into());
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Refuses a tenant's provider URL whose host is, or resolves to, a non-public address.
/// The resolver above covers later changes of DNS; an address written in the URL is not
/// resolved, so [`literal_is_private`] checks it again before each call.
async fn check_tenant_url(raw: &str, field: &str) -> Result<(), ApiError> {
    let url = imix_subscriptions::target::parse_url(raw)
        .map_err(|e| ApiError::invalid_field(field, e.to_string()))?;
    imix_subscriptions::target::check(&url, false)
        .await
        .map(|_| ())
        .map_err(|e| ApiError::invalid_field(field, e.to_string()))
}

/// Whether `raw`'s host is an IP address written out that is not public.
fn literal_is_private(raw: &str) -> bool {
    let Ok(url) = url::Url::parse(raw) else {
        return true;
    };
    match url.host() {
        Some(url::Host::Ipv4(ip)) => imix_subscriptions::target::is_forbidden(ip.into()),
        Some(url::Host::Ipv6(ip)) => imix_subscriptions::target::is_forbidden(ip.into()),
        Some(url::Host::Domain(_)) => false,
        None => true,
    }
}

impl AiService {
    /// The service over the server's store: settings sealed with `cipher`, counters on
    /// `counters`, tenant names from `tenants`; provider calls bounded by `timeout`.
    ///
    /// `allow_private_urls` (`IMIX_ALLOW_PRIVATE_AI_URLS`): whether the providers whose key
    /// a tenant set may reach non-public addresses; when not, their calls go through a
    /// client whose resolver drops such addresses (checked at each connection, so DNS
    /// cannot be used to get around it) and which follows no redirect.
    pub fn new(
        settings: AiSettingsService,
        meter: TokenMeter,
        tenants: Arc<dyn TenantDirectory>,
        timeout: Duration,
        allow_private_urls: bool,
        audit: Arc<dyn imix_core::access::AuditSink>,
    ) -> Result<Self, reqwest::Error> {
        // A provider answers where it is asked; a redirect is never expected.
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let tenant_http = if allow_private_urls {
            http.clone()
        } else {
            reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .redirect(reqwest::redirect::Policy::none())
                .dns_resolver(Arc::new(PublicOnly))
                .build()?
        };
        Ok(Self {
            settings,
            assistant: Assistant::new(http, RetryPolicy::default(), timeout)
                .with_tenant_http(tenant_http),
            meter,
            tenants,
            allow_private_urls,
            audit,
        })
    }

    /// A tenant's provider URL naming a non-public address (saved while
    /// `IMIX_ALLOW_PRIVATE_AI_URLS` was on, say) is not called.
    fn refuse_private_literals(&self, effective: &EffectiveAi) -> Result<(), ApiError> {
        if self.allow_private_urls {
            return Ok(());
        }
        for p in &effective.providers {
            if p.key_from != SettingsScope::Platform && literal_is_private(&p.base_url) {
                return Err(ApiError::invalid_field(
                    &format!("providers.{}.url", p.kind),
                    "names a loopback, private or link-local address, which tenant settings \
                     may not (IMIX_ALLOW_PRIVATE_AI_URLS)",
                ));
            }
        }
        Ok(())
    }

    /// Whether `ctx` may manage `scope`'s settings, the tenant existing and being the
    /// caller's: checked before a body is looked at, so another tenant's caller learns
    /// nothing from validation (404 first).
    pub async fn authorize(&self, ctx: &AuthContext, scope: SettingsScope) -> Result<(), ApiError> {
        authorize_settings(ctx, scope)?;
        if let SettingsScope::Tenant(t) = scope {
            self.tenants.profile(t).await?;
        }
        Ok(())
    }

    /// `GET .../settings/ai`.
    pub async fn get_settings(
        &self,
        ctx: &AuthContext,
        scope: SettingsScope,
    ) -> Result<Option<AiSettingsView>, ApiError> {
        authorize_settings(ctx, scope)?;
        if let SettingsScope::Tenant(t) = scope {
            self.tenants.profile(t).await?;
        }
        self.settings.get_view(scope).await.map_err(settings_error)
    }

    /// `PUT .../settings/ai`.
    pub async fn put_settings(
        &self,
        ctx: &AuthContext,
        scope: SettingsScope,
        input: AiSettingsInput,
    ) -> Result<AiSettingsView, ApiError> {
        let writer = authorize_settings(ctx, scope)?;
        if let SettingsScope::Tenant(t) = scope {
            self.tenants.profile(t).await?;
            if !self.allow_private_urls {
                for (name, provider) in &input.providers {
                    if let Some(url) = provider.url.as_deref().filter(|u| !u.trim().is_empty()) {
                        check_tenant_url(url, &format!("providers.{name}.url")).await?;
                    }
                }
            }
        }
        let view = self
            .settings
            .put(scope, input, writer)
            .await
            .map_err(settings_error)?;
        // Keys, URLs and limits change where customer text goes: who did it is kept.
        let tenant = match scope {
            SettingsScope::Platform => None,
            SettingsScope::Tenant(t) => Some(t),
        };
        self.audit
            .record(
                ctx.access(),
                "settings.ai.update",
                "ai_settings",
                scope.to_string(),
                tenant,
            )
            .await;
        Ok(view)
    }

    /// `POST .../settings/ai/test`: a tiny round trip with `provider` as `scope` would use
    /// it (a tenant: its own settings, else the platform's).
    pub async fn test(
        &self,
        ctx: &AuthContext,
        scope: SettingsScope,
        provider: ProviderKind,
    ) -> Result<Result<ConnectionReport, AiError>, ApiError> {
        authorize_settings(ctx, scope)?;
        let tenant = match scope {
            SettingsScope::Platform => None,
            SettingsScope::Tenant(t) => {
                self.tenants.profile(t).await?;
                Some(t)
            }
        };
        let effective = self
            .settings
            .effective(tenant)
            .await
            .map_err(settings_error)?;
        let Some(p) = effective.provider(provider) else {
            return Ok(Err(AiError::NotConfigured {
                message: format!("{provider} has no API key in these settings"),
            }));
        };
        self.refuse_private_literals(&effective)?;
        Ok(self.assistant.test(p).await)
    }

    /// Reads the conversation (the caller's visibility applies: another tenant's or an
    /// invisible conversation is 404), checks the daily token limit, and prepares `task`.
    /// `language`: the answer's language (`None`: the conversation's).
    pub async fn prepare(
        &self,
        ctx: &AuthContext,
        inbox: &InboxService,
        tenant: TenantId,
        conversation: ConversationId,
        task: Task,
        language: Option<Language>,
    ) -> Result<Prepared, ApiError> {
        ctx.access()
            .authorize(Permission::ConversationsReply, tenant)?;
        let conv = inbox
            .conversation(ctx.access(), tenant, conversation)
            .await?;
        let mut latest: VecDeque<Turn> = VecDeque::with_capacity(MESSAGES_READ + 1);
        let mut cursor = None;
        loop {
            let page = inbox
                .messages(
                    ctx.access(),
                    tenant,
                    conversation,
                    PageRequest {
                        cursor,
                        limit: Some(imix_core::store::MAX_PAGE_SIZE),
                    },
                )
                .await?;
            for m in &page.items {
                latest.push_back(Turn {
                    speaker: match m.direction {
                        Direction::Inbound => Speaker::Customer,
                        Direction::Outbound => Speaker::Agent,
                    },
                    text: turn_text(m),
                    at: m.timestamp,
                });
                if latest.len() > MESSAGES_READ {
                    latest.pop_front();
                }
            }
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        let turns: Vec<Turn> = latest.into();
        // The contact's language when known; a caller who may not read contacts still gets
        // a suggestion, in the detected language.
        let contact_language = inbox
            .contact(ctx.access(), tenant, conv.contact_id)
            .await
            .ok()
            .and_then(|c| c.language)
            .and_then(|l| l.get(..2).and_then(|code| code.parse::<Language>().ok()));
        let profile = self.tenants.profile(tenant).await?;
        let effective = self
            .settings
            .effective(Some(tenant))
            .await
            .map_err(settings_error)?;
        self.refuse_private_literals(&effective)?;
        self.meter
            .check(tenant, effective.daily_token_limit, imix_core::now())
            .await
            .map_err(meter_error)?;
        let text = ConversationText {
            business_name: &profile.name,
            contact_language,
            tenant_default: profile.default_language,
            turns: &turns,
        };
        self.assistant
            .prepare(&effective, task, &text, language)
            .map_err(ai_error)
    }

    /// Today's AI tokens of `tenant` and its daily limit: platform users and the tenant's
    /// members with `usage.read` (another tenant's: 404).
    pub async fn usage(
        &self,
        ctx: &AuthContext,
        tenant: TenantId,
    ) -> Result<(imix_ai::usage::DailyTokens, Option<u64>), ApiError> {
        if !ctx.access().is_platform_admin() {
            ctx.access().authorize(Permission::UsageRead, tenant)?;
        }
        self.tenants.profile(tenant).await?;
        let today = self.meter.today(tenant, imix_core::now()).await?;
        let limit = self
            .settings
            .effective(Some(tenant))
            .await
            .map_err(settings_error)?
            .daily_token_limit;
        Ok((today, limit))
    }

    /// Runs a prepared call and counts its tokens for `tenant`.
    pub async fn complete(
        &self,
        tenant: TenantId,
        prepared: &Prepared,
    ) -> Result<Answer, ApiError> {
        let answer = self.assistant.complete(prepared).await.map_err(ai_error)?;
        self.record(tenant, answer.usage).await;
        Ok(answer)
    }

    /// Counts `usage` for `tenant`; a failure is logged (the answer was already paid for).
    pub async fn record(&self, tenant: TenantId, usage: imix_ai::TokenUsage) {
        if let Err(e) = self.meter.record(tenant, usage, imix_core::now()).await {
            tracing::error!(error = %e, tenant = %tenant, "cannot count AI token usage");
        }
    }
}

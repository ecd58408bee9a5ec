//! AI Assistant (the admin guide's Settings > AI Assistant): platform and tenant settings,
//! the connection test, suggested replies and summaries.
//!
//! API keys are write-only: sealed at rest, shown as `api_key_hint` (`sk-…abcd`), never
//! returned or logged.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use futures::{stream::BoxStream, StreamExt};
use imix_ai::{
    hours::{BusinessHoursSpec, OpenInterval},
    prompt::Task,
    settings::{AiSettingsInput, AiSettingsView, ProviderInput},
    ProviderKind, StreamEvent, TokenUsage,
};
use imix_core::{id::TenantId, model::SettingsScope, Language};
use imix_messaging::ConversationId;
use poem::http::StatusCode;
use poem_openapi::{
    param::{Path, Query},
    payload::{EventStream, Json},
    ApiResponse, Object, OpenApi,
};
use secrecy::SecretString;

use super::{parse_id, ApiTags};
use crate::{
    ai::ai_error,
    auth::Auth,
    error::{ApiError, ErrorBody},
    state::AppState,
};

/// AI Assistant operations.
pub struct AiApi {
    state: AppState,
}

impl AiApi {
    /// The AI API over `state`.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

/// One provider's settings in a `PUT`.
#[derive(Object)]
pub struct ProviderSettingsUpdate {
    /// API key (write-only, never returned). Omit to keep the stored one; an empty string
    /// removes it.
    #[oai(write_only)]
    pub api_key: Option<String>,
    /// Model, e.g. `gpt-4o-mini` or `deepseek-reasoner`.
    pub model: Option<String>,
    /// Temperature 0.0–1.0 (not sent to reasoning models, which ignore it).
    pub temperature: Option<f64>,
    /// Max completion tokens, 1–32768.
    pub max_tokens: Option<i64>,
    /// API base URL (http or https). Default: OpenAI's, or `https://deep.ip.mr/api/v1`
    /// for DeepSeek. A tenant sets one only together with its own key.
    pub url: Option<String>,
}

/// One open interval, wall-clock `HH:MM` in the tenant's time zone.
#[derive(Debug, Clone, Object)]
pub struct OpenIntervalBody {
    /// Opening time.
    pub open: String,
    /// Closing time (exclusive; `24:00` = end of day).
    pub close: String,
}

/// Weekly business hours in an IANA time zone.
#[derive(Debug, Clone, Object)]
pub struct BusinessHoursBody {
    /// IANA time zone, e.g. `Africa/Nouakchott`.
    pub time_zone: String,
    /// `monday` … `sunday` → open intervals; a missing day is closed.
    #[oai(default)]
    pub days: BTreeMap<String, Vec<OpenIntervalBody>>,
}

impl From<BusinessHoursBody> for BusinessHoursSpec {
    fn from(b: BusinessHoursBody) -> Self {
        BusinessHoursSpec {
            time_zone: b.time_zone,
            days: b
                .days
                .into_iter()
                .map(|(d, list)| {
                    (
                        d,
                        list.into_iter()
                            .map(|i| OpenInterval {
                                open: i.open,
                                close: i.close,
                            })
                            .collect(),
                    )
                })
                .collect(),
        }
    }
}

impl From<BusinessHoursSpec> for BusinessHoursBody {
    fn from(b: BusinessHoursSpec) -> Self {
        BusinessHoursBody {
            time_zone: b.time_zone,
            days: b
                .days
                .into_iter()
                .map(|(d, list)| {
                    (
                        d,
                        list.into_iter()
                            .map(|i| OpenIntervalBody {
                                open: i.open,
                                close: i.close,
                            })
                            .collect(),
                    )
                })
                .collect(),
        }
    }
}

/// `PUT .../settings/ai`: the whole settings. Every invalid field is reported at once (422,
/// `details.field` names the first, e.g. `providers.chatgpt.temperature`).
#[derive(Object)]
pub struct AiSettingsUpdate {
    /// Per provider (`chatgpt`, `deepseek`). A provider left out loses its settings.
    #[oai(default)]
    pub providers: BTreeMap<String, ProviderSettingsUpdate>,
    /// The provider asked first.
    pub default_provider: Option<String>,
    /// The order providers are tried in after the default; each at most once.
    pub fallback_order: Option<Vec<String>>,
    /// Tenants only: business facts, tone, what never to promise (at most 4000
    /// characters; no control characters but line breaks and tabs).
    pub instructions: Option<String>,
    /// Tenants only: weekly opening hours in the tenant's time zone.
    pub business_hours: Option<BusinessHoursBody>,
    /// AI tokens (prompt + completion) per UTC day; 0 removes the limit; omit to keep it.
    /// On the platform: the default of every tenant. Platform admins only.
    pub daily_token_limit: Option<i64>,
}

/// A provider's stored settings; the key only as a hint.
#[derive(Debug, Clone, Object)]
pub struct ProviderSettingsBody {
    /// Whether a key is stored.
    pub api_key_set: bool,
    /// First and last characters of the key, e.g. `sk-…abcd`.
    pub api_key_hint: Option<String>,
    /// Model.
    pub model: Option<String>,
    /// Temperature (two decimals).
    pub temperature: Option<f64>,
    /// Max completion tokens.
    pub max_tokens: Option<u32>,
    /// API base URL.
    pub url: Option<String>,
}

/// Stored AI settings. API keys are never returned.
#[derive(Debug, Clone, Object)]
pub struct AiSettingsBody {
    /// `platform` or `tenant`.
    pub scope: String,
    /// The tenant, for tenant settings.
    pub tenant_id: Option<String>,
    /// Per provider.
    pub providers: BTreeMap<String, ProviderSettingsBody>,
    /// The provider asked first.
    pub default_provider: Option<String>,
    /// The fallback order.
    pub fallback_order: Vec<String>,
    /// Assistant instructions.
    pub instructions: Option<String>,
    /// Business hours.
    pub business_hours: Option<BusinessHoursBody>,
    /// AI tokens per UTC day, when limited.
    pub daily_token_limit: Option<u64>,
    /// Version, raised by every change.
    pub version: u64,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<AiSettingsView> for AiSettingsBody {
    fn from(v: AiSettingsView) -> Self {
        let (scope, tenant_id) = match v.scope {
            SettingsScope::Platform => ("platform", None),
            SettingsScope::Tenant(t) => ("tenant", Some(t.to_string())),
        };
        Self {
            scope: scope.to_owned(),
            tenant_id,
            providers: v
                .providers
                .into_iter()
                .map(|(k, p)| {
                    (
                        k.as_str().to_owned(),
                        ProviderSettingsBody {
                            api_key_set: p.api_key_set,
                            api_key_hint: p.api_key_hint,
                            model: p.model,
                            // Stored as f32: shown as set (0.3, not 0.30000001).
                            // `+ 0.0`: a -0.0 stored before it was normalised shows as 0.0.
                            temperature: p
                                .temperature
                                .map(|t| (f64::from(t) * 100.0).round() / 100.0 + 0.0),
                            max_tokens: p.max_tokens,
                            url: p.url,
                        },
                    )
                })
                .collect(),
            default_provider: v.default_provider.map(|k| k.as_str().to_owned()),
            fallback_order: v
                .fallback_order
                .into_iter()
                .map(|k| k.as_str().to_owned())
                .collect(),
            instructions: v.instructions,
            business_hours: v.business_hours.map(Into::into),
            daily_token_limit: v.daily_token_limit,
            version: v.version,
            updated_at: v.updated_at,
        }
    }
}

fn input(body: AiSettingsUpdate) -> AiSettingsInput {
    AiSettingsInput {
        providers: body
            .providers
            .into_iter()
            .map(|(k, p)| {
                (
                    k,
                    ProviderInput {
                        api_key: p.api_key.map(SecretString::from),
                        model: p.model,
                        temperature: p.temperature,
                        max_tokens: p.max_tokens,
                        url: p.url,
                    },
                )
            })
            .collect(),
        default_provider: body.default_provider,
        fallback_order: body.fallback_order,
        instructions: body.instructions,
        business_hours: body.business_hours.map(Into::into),
        daily_token_limit: body.daily_token_limit,
    }
}

/// `POST .../settings/ai/test`.
#[derive(Object)]
pub struct AiTestRequest {
    /// `chatgpt` or `deepseek`.
    pub provider: String,
}

/// The provider answered.
#[derive(Debug, Clone, Object)]
pub struct AiTestResult {
    /// The provider.
    pub provider: String,
    /// The model that answered.
    pub model: String,
    /// Round trip, in milliseconds.
    pub latency_ms: u64,
}

#[derive(ApiResponse)]
enum TestAnswer {
    /// The provider answered.
    #[oai(status = 200)]
    Ok(Json<AiTestResult>),
    /// The provider failed. `error.code`: `ai_invalid_key`, `ai_model_not_found`,
    /// `ai_rate_limited`, `ai_quota_exceeded`, `ai_provider_error`, `ai_timeout`,
    /// `ai_network_error`, `ai_bad_response`, …; `error.message` says it in words.
    #[oai(status = 502)]
    Failed(Json<ErrorBody>),
    /// The provider has no API key in these settings (`ai_not_configured`).
    #[oai(status = 409)]
    NotConfigured(Json<ErrorBody>),
}

/// Tokens a call used.
#[derive(Debug, Clone, Object)]
pub struct UsageBody {
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens (reasoning included).
    pub completion_tokens: u64,
    /// Of which reasoning.
    pub reasoning_tokens: u64,
}

impl From<TokenUsage> for UsageBody {
    fn from(u: TokenUsage) -> Self {
        Self {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            reasoning_tokens: u.reasoning_tokens,
        }
    }
}

/// A suggested reply. Nothing is sent.
#[derive(Debug, Clone, Object)]
pub struct SuggestionBody {
    /// The suggested reply (never the model's reasoning).
    pub suggestion: String,
    /// The provider that answered.
    pub provider: String,
    /// Its model.
    pub model: String,
    /// The language asked for: `en`, `fr` or `ar`.
    pub language: String,
    /// Tokens used.
    pub usage: UsageBody,
}

/// A summary of a conversation.
#[derive(Debug, Clone, Object)]
pub struct SummaryBody {
    /// The summary, in the requesting user's language.
    pub summary: String,
    /// The provider that answered.
    pub provider: String,
    /// Its model.
    pub model: String,
    /// The language: `en`, `fr` or `ar`.
    pub language: String,
    /// Tokens used.
    pub usage: UsageBody,
}

/// One server-sent event of a streamed suggestion: `delta` events carry a piece of the
/// reply in `content`; the last event is `done`, with provider, model and usage.
#[derive(Debug, Clone, Object)]
pub struct SuggestionEvent {
    /// `delta`, `done` or `error`.
    #[oai(rename = "type")]
    pub kind: String,
    /// A piece of the reply (`delta`), or the error message (`error`).
    pub content: Option<String>,
    /// The provider (`done`).
    pub provider: Option<String>,
    /// The model (`done`).
    pub model: Option<String>,
    /// The language (`done`).
    pub language: Option<String>,
    /// Tokens used (`done`), when the provider reported them.
    pub usage: Option<UsageBody>,
    /// The classified error code (`error`).
    pub code: Option<String>,
}

/// Today's AI token usage of a tenant.
#[derive(Debug, Clone, Object)]
pub struct AiUsageBody {
    /// The UTC day, `YYYY-MM-DD`.
    pub day: String,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens (reasoning included).
    pub completion_tokens: u64,
    /// Of which reasoning.
    pub reasoning_tokens: u64,
    /// Prompt plus completion: what the daily limit counts.
    pub total_tokens: u64,
    /// Held by suggestions still running (each reserves its maximum, the prompt's estimate
    /// plus max tokens, until it ends): counted against the limit meanwhile.
    pub reserved_tokens: u64,
    /// The daily token limit, when there is one.
    pub daily_token_limit: Option<u64>,
    /// When the counters start again from 0.
    pub resets_at: DateTime<Utc>,
}

impl AiUsageBody {
    /// The body of today's tokens and the limit.
    pub fn of(today: imix_ai::usage::DailyTokens, limit: Option<u64>) -> Self {
        Self {
            day: today.day.to_string(),
            prompt_tokens: today.prompt_tokens,
            completion_tokens: today.completion_tokens,
            reasoning_tokens: today.reasoning_tokens,
            total_tokens: today.total_tokens,
            reserved_tokens: today.reserved_tokens,
            daily_token_limit: limit,
            resets_at: today.resets_at,
        }
    }
}

#[derive(ApiResponse)]
enum SuggestAnswer {
    /// The suggestion (`stream` false).
    #[oai(status = 200)]
    Whole(Json<SuggestionBody>),
    /// The suggestion as server-sent events (`stream=true`).
    #[oai(status = 200)]
    Stream(EventStream<BoxStream<'static, SuggestionEvent>>),
    /// `ai_timeout`: no answer within `IMIX_AI_REQUEST_TIMEOUT_SECS`, retries and fallback
    /// providers included.
    #[oai(status = 504)]
    TimedOut(Json<ErrorBody>),
}

#[derive(ApiResponse)]
enum SummaryAnswer {
    /// The summary.
    #[oai(status = 200)]
    Summary(Json<SummaryBody>),
    /// `ai_timeout`: no answer within `IMIX_AI_REQUEST_TIMEOUT_SECS`, retries and fallback
    /// providers included.
    #[oai(status = 504)]
    TimedOut(Json<ErrorBody>),
}

/// A timeout as the operation's documented 504 answer; any other error as it is.
fn timed_out(e: ApiError) -> Result<Json<ErrorBody>, ApiError> {
    if e.status() == StatusCode::GATEWAY_TIMEOUT {
        Ok(Json(e.body()))
    } else {
        Err(e)
    }
}

fn event(kind: &str) -> SuggestionEvent {
    SuggestionEvent {
        kind: kind.to_owned(),
        content: None,
        provider: None,
        model: None,
        language: None,
        usage: None,
        code: None,
    }
}

fn parse_provider(raw: &str) -> Result<ProviderKind, ApiError> {
    raw.parse::<ProviderKind>()
        .map_err(|_| ApiError::invalid_field("provider", "must be chatgpt or deepseek"))
}

impl AiApi {
    fn tenant_scope(raw: &str) -> Result<SettingsScope, ApiError> {
        Ok(SettingsScope::Tenant(parse_id::<TenantId>(raw, "tenant")?))
    }

    async fn get_settings(
        &self,
        auth: &Auth,
        scope: SettingsScope,
    ) -> Result<Json<AiSettingsBody>, ApiError> {
        let view = self.state.ai.get_settings(&auth.0, scope).await?;
        view.map(|v| Json(v.into())).ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_configured",
                match scope {
                    SettingsScope::Platform => "no platform AI settings are saved",
                    SettingsScope::Tenant(_) => {
                        "this tenant has no AI settings of its own; the platform's apply"
                    }
                },
            )
        })
    }

    async fn put_settings(
        &self,
        auth: &Auth,
        scope: SettingsScope,
        body: AiSettingsUpdate,
    ) -> Result<Json<AiSettingsBody>, ApiError> {
        let view = self
            .state
            .ai
            .put_settings(&auth.0, scope, input(body))
            .await?;
        Ok(Json(view.into()))
    }

    async fn test(
        &self,
        auth: &Auth,
        scope: SettingsScope,
        body: AiTestRequest,
    ) -> Result<TestAnswer, ApiError> {
        self.state.ai.authorize(&auth.0, scope).await?;
        let provider = parse_provider(&body.provider)?;
        match self.state.ai.test(&auth.0, scope, provider).await? {
            Ok(report) => Ok(TestAnswer::Ok(Json(AiTestResult {
                provider: report.provider.as_str().to_owned(),
                model: report.model,
                latency_ms: u64::try_from(report.latency.as_millis()).unwrap_or(u64::MAX),
            }))),
            Err(e @ imix_ai::AiError::NotConfigured { .. }) => {
                Ok(TestAnswer::NotConfigured(Json(ai_error(e).body())))
            }
            Err(e @ (imix_ai::AiError::Store(_) | imix_ai::AiError::Invalid { .. })) => {
                Err(ai_error(e))
            }
            Err(e) => Ok(TestAnswer::Failed(Json(ai_error(e).body()))),
        }
    }
}

fn language_code(l: Language) -> String {
    l.code().to_owned()
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Settings")]
impl AiApi {
    /// The platform's AI settings (keys never returned, only hinted). 404 `not_configured`
    /// when none are saved. Platform admins.
    #[oai(
        path = "/settings/ai",
        method = "get",
        operation_id = "get_ai_settings"
    )]
    async fn get_platform(&self, auth: Auth) -> Result<Json<AiSettingsBody>, ApiError> {
        self.get_settings(&auth, SettingsScope::Platform).await
    }

    /// Saves the platform's AI settings: every tenant uses them unless it has its own.
    /// Platform admins.
    #[oai(
        path = "/settings/ai",
        method = "put",
        operation_id = "put_ai_settings"
    )]
    async fn put_platform(
        &self,
        auth: Auth,
        body: Json<AiSettingsUpdate>,
    ) -> Result<Json<AiSettingsBody>, ApiError> {
        self.put_settings(&auth, SettingsScope::Platform, body.0)
            .await
    }

    /// A tiny round trip with one provider of the platform's settings: its model and
    /// latency, or 502 with the classified error. Platform admins.
    #[oai(
        path = "/settings/ai/test",
        method = "post",
        operation_id = "test_ai_settings"
    )]
    async fn test_platform(
        &self,
        auth: Auth,
        body: Json<AiTestRequest>,
    ) -> Result<TestAnswer, ApiError> {
        self.test(&auth, SettingsScope::Platform, body.0).await
    }

    /// The tenant's own AI settings (keys never returned, only hinted). 404 `not_configured`
    /// when it has none. The tenant's admins and platform admins.
    #[oai(
        path = "/tenants/:tenant_id/settings/ai",
        method = "get",
        operation_id = "get_tenant_ai_settings"
    )]
    async fn get_tenant(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
    ) -> Result<Json<AiSettingsBody>, ApiError> {
        let scope = Self::tenant_scope(&tenant_id.0)?;
        self.get_settings(&auth, scope).await
    }

    /// Saves the tenant's own AI settings: its keys and choices override the platform's;
    /// its instructions and business hours. The tenant's admins and platform admins (only
    /// these change `daily_token_limit`).
    #[oai(
        path = "/tenants/:tenant_id/settings/ai",
        method = "put",
        operation_id = "put_tenant_ai_settings"
    )]
    async fn put_tenant(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        body: Json<AiSettingsUpdate>,
    ) -> Result<Json<AiSettingsBody>, ApiError> {
        let scope = Self::tenant_scope(&tenant_id.0)?;
        self.put_settings(&auth, scope, body.0).await
    }

    /// A tiny round trip with one provider as the tenant uses it (its own settings, else
    /// the platform's): model and latency, or 502 with the classified error. The tenant's
    /// admins and platform admins.
    #[oai(
        path = "/tenants/:tenant_id/settings/ai/test",
        method = "post",
        operation_id = "test_tenant_ai_settings"
    )]
    async fn test_tenant(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        body: Json<AiTestRequest>,
    ) -> Result<TestAnswer, ApiError> {
        let scope = Self::tenant_scope(&tenant_id.0)?;
        self.test(&auth, scope, body.0).await
    }

    /// Today's AI tokens of the tenant (prompt, completion, reasoning) and its daily token
    /// limit. Platform admins and the tenant's members with `usage.read`.
    #[oai(
        path = "/tenants/:tenant_id/usage/ai",
        method = "get",
        operation_id = "get_tenant_ai_usage",
        tag = "ApiTags::Tenants"
    )]
    async fn usage(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
    ) -> Result<Json<AiUsageBody>, ApiError> {
        let tenant = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        let (today, limit) = self.state.ai.usage(&auth.0, tenant).await?;
        Ok(Json(AiUsageBody::of(today, limit)))
    }

    /// Suggests the next reply of a conversation, in the conversation's language (the
    /// contact's, else detected from the customer's last messages, else the tenant's
    /// default). Sends nothing. `?stream=true` answers with server-sent events (`delta`
    /// pieces, then `done` with usage). Needs `conversations.reply` and a visible
    /// conversation; refused (429 `limit_reached`, `limit_name` `ai_tokens`) once the
    /// tenant's daily token limit is used up.
    #[oai(
        path = "/tenants/:tenant_id/conversations/:conversation_id/suggest-reply",
        method = "post",
        operation_id = "suggest_reply",
        tag = "ApiTags::Inbox"
    )]
    async fn suggest_reply(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        conversation_id: Path<String>,
        /// Stream the reply as server-sent events.
        stream: Query<Option<bool>>,
    ) -> Result<SuggestAnswer, ApiError> {
        let tenant = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        let conversation = parse_id::<ConversationId>(&conversation_id.0, "conversation")?;
        let ai = &self.state.ai;
        let prepared = ai
            .prepare(
                &auth.0,
                &self.state.inbox,
                tenant,
                conversation,
                Task::SuggestReply,
                None,
            )
            .await?;
        let language = language_code(prepared.language);
        if !stream.0.unwrap_or(false) {
            let answer = match ai.complete(tenant, &prepared).await {
                Ok(answer) => answer,
                Err(e) => return timed_out(e).map(SuggestAnswer::TimedOut),
            };
            return Ok(SuggestAnswer::Whole(Json(SuggestionBody {
                suggestion: answer.text,
                provider: answer.provider.as_str().to_owned(),
                model: answer.model,
                language,
                usage: answer.usage.into(),
            })));
        }
        // Metered and bounded by the deadline in `AiService::stream`.
        let (provider, model, stream) = match ai.stream(tenant, &prepared).await {
            Ok(metered) => metered,
            Err(e) => return timed_out(e).map(SuggestAnswer::TimedOut),
        };
        let provider = provider.as_str().to_owned();
        let events = stream
            .filter_map(move |item| {
                let (provider, model, language) =
                    (provider.clone(), model.clone(), language.clone());
                async move {
                    match item {
                        Ok(StreamEvent::Content(piece)) => Some(SuggestionEvent {
                            content: Some(piece),
                            ..event("delta")
                        }),
                        // The reasoning is never part of the suggestion.
                        Ok(StreamEvent::Reasoning(_)) => None,
                        Ok(StreamEvent::Done {
                            model: answered,
                            usage,
                            ..
                        }) => Some(SuggestionEvent {
                            provider: Some(provider),
                            model: Some(if answered.is_empty() { model } else { answered }),
                            language: Some(language),
                            usage: usage.map(Into::into),
                            ..event("done")
                        }),
                        Err(e) => {
                            let body = e.body();
                            Some(SuggestionEvent {
                                content: Some(body.error.message),
                                code: Some(body.error.code),
                                ..event("error")
                            })
                        }
                    }
                }
            })
            .boxed();
        // A comment line every 15 s while nothing else is written (DeepSeek R1 reasons for
        // a long time, and its reasoning is not forwarded): the connection's idle timer
        // would otherwise close a stream that is still working.
        Ok(SuggestAnswer::Stream(
            EventStream::new(events).keep_alive(std::time::Duration::from_secs(15)),
        ))
    }

    /// Summarises a conversation for a colleague taking over, in the requesting user's
    /// language. Same rules as `suggest-reply` (permission, visibility, token limit).
    #[oai(
        path = "/tenants/:tenant_id/conversations/:conversation_id/summarize",
        method = "post",
        operation_id = "summarize_conversation",
        tag = "ApiTags::Inbox"
    )]
    async fn summarize(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        conversation_id: Path<String>,
    ) -> Result<SummaryAnswer, ApiError> {
        let tenant = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        let conversation = parse_id::<ConversationId>(&conversation_id.0, "conversation")?;
        let language = auth.0.user().default_language;
        let ai = &self.state.ai;
        let prepared = ai
            .prepare(
                &auth.0,
                &self.state.inbox,
                tenant,
                conversation,
                Task::Summarize,
                Some(language),
            )
            .await?;
        let answer = match ai.complete(tenant, &prepared).await {
            Ok(answer) => answer,
            Err(e) => return timed_out(e).map(SummaryAnswer::TimedOut),
        };
        Ok(SummaryAnswer::Summary(Json(SummaryBody {
            summary: answer.text,
            provider: answer.provider.as_str().to_owned(),
            model: answer.model,
            language: language_code(language),
            usage: answer.usage.into(),
        })))
    }
}

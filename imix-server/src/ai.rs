//! The AI assistant inside the server: settings with access checks, the connection test,
//! and suggestions and summaries for a conversation read with the caller's tenant scope.
//!
//! `imix-ai` works on plain text; this module turns WhatsApp messages into
//! [`Turn`]s (text bodies and captions; other kinds as a short `[image]`-like marker).

use std::{collections::VecDeque, sync::Arc, time::Duration};

use futures::{stream::BoxStream, StreamExt};
use imix_ai::{
    assistant::{Answer, Assistant, ConversationText, Prepared},
    prompt::{Speaker, Task, Turn},
    settings::{
        AiSettingsInput, AiSettingsService, AiSettingsView, EffectiveAi, SettingsError, Writer,
    },
    usage::{MeterError, Reservation, TokenMeter},
    AiError, ConnectionReport, ProviderKind, RetryPolicy, StreamEvent, TokenUsage,
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
    /// `IMIX_AI_REQUEST_TIMEOUT_SECS`: the most one suggestion, summary or test may take,
    /// retries and fallback included.
    deadline: Duration,
}

/// A streamed answer's items: the provider's events, then possibly one failure (a
/// provider error or the request's deadline), already classified.
pub type MeteredStream = BoxStream<'static, Result<StreamEvent, ApiError>>;

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
        MeterError::TooSmall(t) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "ai_limit_too_small",
            t.to_string(),
        )
        .with_details(serde_json::json!({
            "field": "daily_token_limit", "limit": t.limit, "requested": t.requested,
        })),
        MeterError::Store(e) => e.into(),
    }
}

/// 504 `ai_timeout`: the request's whole deadline ran out (retries and fallback included).
pub fn deadline_error(after: Duration) -> ApiError {
    let secs = after.as_secs_f32();
    ApiError::new(
        StatusCode::GATEWAY_TIMEOUT,
        "ai_timeout",
        format!(
            "the AI providers gave no answer within {secs}s (retries and fallback included): \
             try again, or raise IMIX_AI_REQUEST_TIMEOUT_SECS"
        ),
    )
    .with_details(serde_json::json!({ "retryable": true, "timeout_secs": secs }))
}

/// Tokens of a prompt only: what is counted for a call that reached the provider but was
/// cut (a timeout, a client gone), since a provider bills the prompt it read.
fn prompt_only(prepared: &Prepared) -> TokenUsage {
    TokenUsage {
        prompt_tokens: u64::from(prepared.estimated_prompt_tokens),
        ..TokenUsage::default()
    }
}

/// Settles `reservation` to `usage`; a failure is logged (the answer was already paid for).
async fn settle(reservation: Reservation, usage: TokenUsage) {
    if let Err(e) = reservation.settle(usage).await {
        tracing::error!(error = %e, "cannot count AI token usage");
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
    /// `counters`, tenant names from `tenants`; each provider call and each whole
    /// suggestion, summary or test (retries and fallback included) bounded by `timeout`
    /// (`IMIX_AI_REQUEST_TIMEOUT_SECS`).
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
            deadline: timeout,
        })
    }

    /// The deadline of one suggestion, summary or test (see [`AiService::new`]'s
    /// `timeout`, which also bounds each provider call).
    pub fn deadline(&self) -> Duration {
        self.deadline
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
        // A tenant's test spends tokens on its settings' keys: reserved and counted like
        // its suggestions. The platform's test is the operator's.
        let reservation = match tenant {
            Some(t) => Some(
                self.meter
                    .reserve(
                        t,
                        imix_ai::provider::connection_test_budget(),
                        effective.daily_token_limit,
                        imix_core::now(),
                    )
                    .await
                    .map_err(meter_error)?,
            ),
            None => None,
        };
        let outcome = match tokio::time::timeout(self.deadline, self.assistant.test(p)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(AiError::Timeout {
                provider,
                after: self.deadline,
            }),
        };
        if let Some(r) = reservation {
            match &outcome {
                Ok(report) => settle(r, report.usage).await,
                Err(_) => {
                    if let Err(e) = r.release().await {
                        tracing::error!(error = %e, "cannot release an AI token reservation");
                    }
                }
            }
        }
        Ok(outcome)
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
        self.prepare_as(ctx.access(), inbox, tenant, conversation, task, language)
            .await
    }

    /// [`AiService::prepare`] for `access` (the auto-reply worker's own context).
    pub async fn prepare_as(
        &self,
        access: &imix_core::access::AccessContext,
        inbox: &InboxService,
        tenant: TenantId,
        conversation: ConversationId,
        task: Task,
        language: Option<Language>,
    ) -> Result<Prepared, ApiError> {
        access.authorize(Permission::ConversationsReply, tenant)?;
        let conv = inbox.conversation(access, tenant, conversation).await?;
        let mut latest: VecDeque<Turn> = VecDeque::with_capacity(MESSAGES_READ + 1);
        let mut cursor = None;
        loop {
            let page = inbox
                .messages(
                    access,
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
            .contact(access, tenant, conv.contact_id)
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
        self.today(tenant).await
    }

    /// Today's AI tokens of `tenant` and its daily limit, for a caller already allowed to
    /// read the tenant's usage.
    pub async fn today(
        &self,
        tenant: TenantId,
    ) -> Result<(imix_ai::usage::DailyTokens, Option<u64>), ApiError> {
        let today = self.meter.today(tenant, imix_core::now()).await?;
        let limit = self
            .settings
            .effective(Some(tenant))
            .await
            .map_err(settings_error)?
            .daily_token_limit;
        Ok((today, limit))
    }

    /// Reserves a prepared call's maximum against `tenant`'s daily limit (refused: 429
    /// `limit_reached`, or 422 `ai_limit_too_small`); dropped unsettled (the caller gone
    /// after the provider was asked) it counts the prompt's estimate.
    async fn reserve(
        &self,
        tenant: TenantId,
        prepared: &Prepared,
    ) -> Result<Reservation, ApiError> {
        let mut reservation = self
            .meter
            .reserve(
                tenant,
                prepared.budget(),
                prepared.daily_token_limit,
                imix_core::now(),
            )
            .await
            .map_err(meter_error)?;
        reservation.count_on_drop(prompt_only(prepared));
        Ok(reservation)
    }

    /// Runs a prepared call within the deadline, its maximum reserved against the daily
    /// limit before and settled to its real usage after. A call the provider refused or
    /// failed gives its reservation back; one cut by a timeout counts the prompt's
    /// estimate (the provider read it).
    pub async fn complete(
        &self,
        tenant: TenantId,
        prepared: &Prepared,
    ) -> Result<Answer, ApiError> {
        let reservation = self.reserve(tenant, prepared).await?;
        match tokio::time::timeout(self.deadline, self.assistant.complete(prepared)).await {
            Ok(Ok(answer)) => {
                settle(reservation, answer.usage).await;
                Ok(answer)
            }
            Ok(Err(e)) => {
                let usage = match e {
                    AiError::Timeout { .. } => prompt_only(prepared),
                    _ => TokenUsage::default(),
                };
                settle(reservation, usage).await;
                Err(ai_error(e))
            }
            Err(_) => {
                settle(reservation, prompt_only(prepared)).await;
                Err(deadline_error(self.deadline))
            }
        }
    }

    /// Streams a prepared call within the deadline, metered like [`AiService::complete`]:
    /// the reservation is settled to the usage the provider reports at the end; a stream
    /// that breaks, runs out of time or is closed by the client counts what was seen so
    /// far (the prompt's estimate plus the estimate of the text received). Errors before
    /// the first event are the `Err`; later ones are the stream's last item.
    pub async fn stream(
        &self,
        tenant: TenantId,
        prepared: &Prepared,
    ) -> Result<(ProviderKind, String, MeteredStream), ApiError> {
        let deadline = tokio::time::Instant::now() + self.deadline;
        let reservation = self.reserve(tenant, prepared).await?;
        let chain = match tokio::time::timeout_at(deadline, self.assistant.stream(prepared)).await {
            Ok(Ok(chain)) => chain,
            Ok(Err(e)) => {
                let usage = match e {
                    AiError::Timeout { .. } => prompt_only(prepared),
                    _ => TokenUsage::default(),
                };
                settle(reservation, usage).await;
                return Err(ai_error(e));
            }
            Err(_) => {
                settle(reservation, prompt_only(prepared)).await;
                return Err(deadline_error(self.deadline));
            }
        };
        let state = StreamState {
            inner: chain.stream,
            reservation: Some(reservation),
            prompt: prompt_only(prepared),
            seen_bytes: 0,
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
            after: self.deadline,
        };
        let events = futures::stream::unfold(state, |mut s| async move {
            let reservation = s.reservation.take()?;
            let item = tokio::select! {
                item = s.inner.next() => item,
                () = &mut s.deadline => {
                    settle(reservation, s.seen()).await;
                    return Some((Err(deadline_error(s.after)), s));
                }
            };
            match item {
                Some(Ok(StreamEvent::Done {
                    model,
                    usage,
                    finish_reason,
                })) => {
                    settle(reservation, usage.unwrap_or_else(|| s.seen())).await;
                    Some((
                        Ok(StreamEvent::Done {
                            model,
                            usage,
                            finish_reason,
                        }),
                        s,
                    ))
                }
                Some(Ok(event)) => {
                    if let StreamEvent::Content(piece) | StreamEvent::Reasoning(piece) = &event {
                        s.seen_bytes += piece.len();
                    }
                    let mut reservation = reservation;
                    reservation.count_on_drop(s.seen());
                    s.reservation = Some(reservation);
                    Some((Ok(event), s))
                }
                Some(Err(e)) => {
                    settle(reservation, s.seen()).await;
                    Some((Err(ai_error(e)), s))
                }
                None => {
                    // Ended without `Done` (the adapters report a cut as an error, so this
                    // is only a precaution): what was seen is counted.
                    settle(reservation, s.seen()).await;
                    None
                }
            }
        })
        .boxed();
        Ok((chain.provider, chain.model, events))
    }
}

/// What a metered stream carries between items.
struct StreamState {
    inner: imix_ai::provider::ChatStream,
    /// `None` once settled: the stream is over.
    reservation: Option<Reservation>,
    prompt: TokenUsage,
    /// UTF-8 bytes of content and reasoning received.
    seen_bytes: usize,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
    after: Duration,
}

impl StreamState {
    /// The prompt's estimate plus the estimate of the text received so far.
    fn seen(&self) -> TokenUsage {
        TokenUsage {
            completion_tokens: (self.seen_bytes as u64).div_ceil(4),
            ..self.prompt
        }
    }
}

impl AiService {
    /// Counts `usage` for `tenant`; a failure is logged (the answer was already paid for).
    pub async fn record(&self, tenant: TenantId, usage: imix_ai::TokenUsage) {
        if let Err(e) = self.meter.record(tenant, usage, imix_core::now()).await {
            tracing::error!(error = %e, tenant = %tenant, "cannot count AI token usage");
        }
    }
}

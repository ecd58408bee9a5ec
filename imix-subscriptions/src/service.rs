//! Managing endpoints (permission `integrations.manage`), reading their delivery log,
//! replaying a delivery, and turning recorded live events into stored deliveries.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_trait::async_trait;
use imix_core::{
    access::{audit_entry, AccessContext, Permission},
    crypto::Cipher,
    id::TenantId,
    store::{AuditLogRepository, Page, PageRequest, Scope},
};
use imix_messaging::events::{Event, EventObserver};
use secrecy::SecretString;
use serde_json::json;

use crate::{
    records::{
        event_name, DeliveryState, EndpointStatus, WebhookDelivery, WebhookDeliveryId,
        WebhookEndpoint, WebhookEndpointId, EVENT_NAMES,
    },
    sign::SECRET_PREFIX,
    storage::SubscriptionStorage,
    target::{self, TargetError},
    SubscriptionError,
};

/// Most endpoints a tenant may have.
pub const MAX_ENDPOINTS_PER_TENANT: usize = 20;
/// Longest URL accepted.
const MAX_URL_LEN: usize = 2048;
/// Longest description.
const MAX_DESCRIPTION_CHARS: usize = 500;
/// How long a tenant's active endpoints are remembered for new events. Every inbound
/// message records several events; without this each would read the endpoints again.
/// Changes made on this replica apply at once (the entry is dropped); on another replica
/// within this time. Sending re-reads the endpoint, so a disabled or deleted one never
/// receives anything.
pub const ENDPOINT_CACHE_TTL: Duration = Duration::from_secs(1);
/// Tenants remembered at most (the cache is emptied beyond).
const ENDPOINT_CACHE_TENANTS: usize = 10_000;

/// A tenant's active endpoints as last read, and when.
type EndpointCache = HashMap<TenantId, (Instant, Arc<Vec<WebhookEndpoint>>)>;

/// Settings from the server's configuration.
#[derive(Debug, Clone)]
pub struct SubscriptionsConfig {
    /// `IMIX_ALLOW_PRIVATE_WEBHOOK_TARGETS`: deliver to non-public addresses too.
    pub allow_private_targets: bool,
    /// The first retry's delay; each next one doubles it (with jitter), up to
    /// [`SubscriptionsConfig::max_delay`].
    pub retry_base: Duration,
    /// The longest delay between two attempts.
    pub max_delay: Duration,
    /// Attempts before a delivery is given up (and its endpoint disabled).
    pub max_attempts: u32,
    /// How long one attempt may take (connect, send, answer).
    pub request_timeout: Duration,
}

impl Default for SubscriptionsConfig {
    /// 12 attempts, 10 s doubling up to an hour apart: a delivery is retried for about
    /// three and a half hours.
    fn default() -> Self {
        Self {
            allow_private_targets: false,
            retry_base: Duration::from_secs(10),
            max_delay: Duration::from_secs(3600),
            max_attempts: 12,
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// `POST .../webhook-endpoints`.
#[derive(Debug, Clone)]
pub struct NewEndpoint {
    /// Where to POST.
    pub url: String,
    /// Event names ([`EVENT_NAMES`]).
    pub events: Vec<String>,
    /// A note for people.
    pub description: Option<String>,
}

/// `PATCH .../webhook-endpoints/{id}`: `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct EndpointPatch {
    /// New URL.
    pub url: Option<String>,
    /// New event names.
    pub events: Option<Vec<String>>,
    /// New description.
    pub description: Option<String>,
    /// Turn it off, or on again (which clears the reason imix disabled it for).
    pub status: Option<EndpointStatus>,
}

/// Endpoints, their deliveries, and the observer that enqueues deliveries.
#[derive(Clone)]
pub struct SubscriptionService {
    pub(crate) storage: SubscriptionStorage,
    pub(crate) cipher: Cipher,
    pub(crate) config: SubscriptionsConfig,
    pub(crate) audit: Arc<dyn AuditLogRepository>,
    cache: Arc<Mutex<EndpointCache>>,
    /// Told when an endpoint is disabled (the tenant's admins are emailed).
    pub(crate) alerts: Option<Arc<dyn EndpointAlerts>>,
}

/// Tells a tenant's admins that one of their endpoints was disabled after repeated
/// delivery failures (the server emails them through the mail outbox). Called once per
/// disabling.
#[async_trait::async_trait]
pub trait EndpointAlerts: Send + Sync {
    /// Endpoint `url` of `tenant` was disabled for `reason`.
    async fn endpoint_disabled(&self, tenant: imix_core::id::TenantId, url: &str, reason: &str);
}

impl std::fmt::Debug for SubscriptionService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscriptionService")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn url_problem(e: TargetError) -> SubscriptionError {
    SubscriptionError::invalid("url", e.to_string())
}

fn check_events(events: &[String]) -> Result<Vec<String>, SubscriptionError> {
    if events.is_empty() {
        return Err(SubscriptionError::invalid(
            "events",
            format!("must name at least one of {}", EVENT_NAMES.join(", ")),
        ));
    }
    let mut out: Vec<String> = Vec::new();
    for e in events {
        let name = e.trim();
        if !EVENT_NAMES.contains(&name) {
            return Err(SubscriptionError::invalid(
                "events",
                format!(
                    "`{}` is not an event name; known: {}",
                    name.chars().take(64).collect::<String>(),
                    EVENT_NAMES.join(", ")
                ),
            ));
        }
        if !out.iter().any(|o| o == name) {
            out.push(name.to_owned());
        }
    }
    Ok(out)
}

fn check_description(raw: Option<&str>) -> Result<String, SubscriptionError> {
    let d = raw.unwrap_or_default().trim();
    if d.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(SubscriptionError::invalid(
            "description",
            format!("must be at most {MAX_DESCRIPTION_CHARS} characters"),
        ));
    }
    if d.chars().any(char::is_control) {
        return Err(SubscriptionError::invalid(
            "description",
            "must not contain control characters",
        ));
    }
    Ok(d.to_owned())
}

fn new_secret() -> SecretString {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    SecretString::from(format!("{SECRET_PREFIX}{}", hex::encode(bytes)))
}

impl SubscriptionService {
    /// The service over `storage`, sealing secrets with `cipher`, auditing to `audit`.
    pub fn new(
        storage: SubscriptionStorage,
        cipher: Cipher,
        config: SubscriptionsConfig,
        audit: Arc<dyn AuditLogRepository>,
    ) -> Self {
        Self {
            storage,
            cipher,
            config,
            audit,
            cache: Arc::default(),
            alerts: None,
        }
    }

    /// Tells `alerts` when an endpoint is disabled.
    pub fn with_alerts(mut self, alerts: Arc<dyn EndpointAlerts>) -> Self {
        self.alerts = Some(alerts);
        self
    }

    /// Forgets what [`SubscriptionService::enqueue`] remembers of `tenant`'s endpoints.
    pub(crate) fn forget(&self, tenant: TenantId) {
        let mut cache = match self.cache.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        cache.remove(&tenant);
    }

    async fn active_endpoints(
        &self,
        tenant: TenantId,
    ) -> imix_core::Result<Arc<Vec<WebhookEndpoint>>> {
        {
            let cache = match self.cache.lock() {
                Ok(c) => c,
                Err(poisoned) => poisoned.into_inner(),
            };
            if let Some((at, list)) = cache.get(&tenant) {
                if at.elapsed() < ENDPOINT_CACHE_TTL {
                    return Ok(list.clone());
                }
            }
        }
        let read_at = Instant::now();
        let list = Arc::new(self.storage.endpoints.active_for(tenant).await?);
        let mut cache = match self.cache.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        if cache.len() >= ENDPOINT_CACHE_TENANTS {
            cache.clear();
        }
        cache.insert(tenant, (read_at, list.clone()));
        Ok(list)
    }

    /// The settings it runs with.
    pub fn config(&self) -> &SubscriptionsConfig {
        &self.config
    }

    async fn record(&self, ctx: &AccessContext, action: &str, id: String, tenant: TenantId) {
        let e = audit_entry(ctx, action, "webhook_endpoint", id, Some(tenant));
        if let Err(err) = self.audit.append(&e).await {
            tracing::error!(error = %err, action, "cannot write the audit log");
        }
    }

    async fn check_url(&self, raw: &str) -> Result<String, SubscriptionError> {
        if raw.len() > MAX_URL_LEN {
            return Err(SubscriptionError::invalid(
                "url",
                format!("must be at most {MAX_URL_LEN} bytes"),
            ));
        }
        let url = target::parse_url(raw).map_err(url_problem)?;
        target::check(&url, self.config.allow_private_targets)
            .await
            .map_err(url_problem)?;
        Ok(url.to_string())
    }

    /// Creates an endpoint of `tenant`; answers it and its signing secret, which is never
    /// shown again.
    pub async fn create(
        &self,
        ctx: &AccessContext,
        tenant: TenantId,
        new: NewEndpoint,
    ) -> Result<(WebhookEndpoint, SecretString), SubscriptionError> {
        let scope = ctx.authorize(Permission::IntegrationsManage, tenant)?;
        let events = check_events(&new.events)?;
        let description = check_description(new.description.as_deref())?;
        let url = self.check_url(&new.url).await?;
        let existing = self
            .storage
            .endpoints
            .list(
                scope,
                PageRequest::first(MAX_ENDPOINTS_PER_TENANT as u32 + 1),
            )
            .await?;
        if existing.items.len() >= MAX_ENDPOINTS_PER_TENANT {
            return Err(SubscriptionError::invalid(
                "url",
                format!("a tenant has at most {MAX_ENDPOINTS_PER_TENANT} webhook endpoints"),
            ));
        }
        let id = WebhookEndpointId::new();
        let secret = new_secret();
        let secret_enc = self
            .cipher
            .encrypt_secret(&secret, &WebhookEndpoint::secret_aad(id))
            .map_err(|_| SubscriptionError::Crypto { action: "sealed" })?;
        let now = imix_core::now();
        let endpoint = WebhookEndpoint {
            id,
            tenant_id: tenant,
            url,
            events,
            description,
            status: EndpointStatus::Active,
            disabled_reason: None,
            secret_enc,
            version: 1,
            created_at: now,
            updated_at: now,
        };
        self.storage.endpoints.insert(&endpoint).await?;
        self.forget(tenant);
        self.record(ctx, "webhook_endpoint.create", id.to_string(), tenant)
            .await;
        Ok((endpoint, secret))
    }

    /// The endpoints of `tenant`, oldest first.
    pub async fn list(
        &self,
        ctx: &AccessContext,
        tenant: TenantId,
        page: PageRequest,
    ) -> Result<Page<WebhookEndpoint>, SubscriptionError> {
        let scope = ctx.authorize(Permission::IntegrationsManage, tenant)?;
        Ok(self.storage.endpoints.list(scope, page).await?)
    }

    /// One endpoint of `tenant`.
    pub async fn get(
        &self,
        ctx: &AccessContext,
        tenant: TenantId,
        id: WebhookEndpointId,
    ) -> Result<WebhookEndpoint, SubscriptionError> {
        ctx.authorize(Permission::IntegrationsManage, tenant)?;
        Ok(self
            .storage
            .endpoints
            .get(Scope::Tenant(tenant), id)
            .await?)
    }

    /// Changes an endpoint. Bad input changes nothing.
    pub async fn update(
        &self,
        ctx: &AccessContext,
        tenant: TenantId,
        id: WebhookEndpointId,
        patch: EndpointPatch,
    ) -> Result<WebhookEndpoint, SubscriptionError> {
        ctx.authorize(Permission::IntegrationsManage, tenant)?;
        let scope = Scope::Tenant(tenant);
        let events = patch.events.as_deref().map(check_events).transpose()?;
        let description = match &patch.description {
            Some(d) => Some(check_description(Some(d))?),
            None => None,
        };
        let url = match &patch.url {
            Some(u) => Some(self.check_url(u).await?),
            None => None,
        };
        // Retried on a concurrent change (the worker disabling it, say).
        let mut last_conflict = None;
        for _ in 0..5 {
            let mut endpoint = self.storage.endpoints.get(scope, id).await?;
            if let Some(u) = &url {
                endpoint.url = u.clone();
            }
            if let Some(e) = &events {
                endpoint.events = e.clone();
            }
            if let Some(d) = &description {
                endpoint.description = d.clone();
            }
            if let Some(s) = patch.status {
                endpoint.status = s;
                if s == EndpointStatus::Active {
                    endpoint.disabled_reason = None;
                }
            }
            endpoint.updated_at = imix_core::now();
            match self.storage.endpoints.update(scope, &endpoint).await {
                Ok(stored) => {
                    self.forget(tenant);
                    self.record(ctx, "webhook_endpoint.update", id.to_string(), tenant)
                        .await;
                    return Ok(stored);
                }
                Err(e @ imix_core::Error::VersionConflict { .. }) => last_conflict = Some(e),
                Err(e) => return Err(e.into()),
            }
        }
        Err(last_conflict
            .unwrap_or_else(|| imix_core::Error::backend("update a webhook endpoint", "gave up"))
            .into())
    }

    /// Deletes an endpoint; its pending deliveries are dropped when they come due.
    pub async fn delete(
        &self,
        ctx: &AccessContext,
        tenant: TenantId,
        id: WebhookEndpointId,
    ) -> Result<(), SubscriptionError> {
        ctx.authorize(Permission::IntegrationsManage, tenant)?;
        self.storage
            .endpoints
            .delete(Scope::Tenant(tenant), id)
            .await?;
        self.forget(tenant);
        self.record(ctx, "webhook_endpoint.delete", id.to_string(), tenant)
            .await;
        Ok(())
    }

    /// The delivery log of an endpoint, newest first.
    pub async fn deliveries(
        &self,
        ctx: &AccessContext,
        tenant: TenantId,
        endpoint: WebhookEndpointId,
        page: PageRequest,
    ) -> Result<Page<WebhookDelivery>, SubscriptionError> {
        ctx.authorize(Permission::IntegrationsManage, tenant)?;
        let scope = Scope::Tenant(tenant);
        self.storage.endpoints.get(scope, endpoint).await?;
        Ok(self
            .storage
            .deliveries
            .list_for_endpoint(scope, endpoint, page)
            .await?)
    }

    /// Sends a delivery again, as a new delivery of the same event (same event id and
    /// body, freshly signed), due now; answers the new delivery.
    pub async fn replay(
        &self,
        ctx: &AccessContext,
        tenant: TenantId,
        endpoint: WebhookEndpointId,
        delivery: WebhookDeliveryId,
    ) -> Result<WebhookDelivery, SubscriptionError> {
        ctx.authorize(Permission::IntegrationsManage, tenant)?;
        let scope = Scope::Tenant(tenant);
        self.storage.endpoints.get(scope, endpoint).await?;
        let original = self.storage.deliveries.get(scope, delivery).await?;
        if original.endpoint_id != endpoint {
            return Err(imix_core::Error::NotFound {
                entity: "delivery",
                id: delivery.to_string(),
            }
            .into());
        }
        let now = imix_core::now();
        let replay = WebhookDelivery {
            id: WebhookDeliveryId::new(),
            state: DeliveryState::Pending,
            attempts: 0,
            due_at: Some(now),
            lease_until: None,
            last_status: None,
            last_error: None,
            last_attempt_at: None,
            replay_of: Some(original.id),
            version: 1,
            created_at: now,
            ..original
        };
        self.storage.deliveries.insert(&replay).await?;
        self.record(
            ctx,
            "webhook_delivery.replay",
            original.id.to_string(),
            tenant,
        )
        .await;
        Ok(replay)
    }

    /// Stores a delivery of `event` for every active endpoint of its tenant that
    /// subscribed to it.
    pub async fn enqueue(&self, event: &Event) -> imix_core::Result<usize> {
        let name = event_name(event.kind);
        let endpoints = self.active_endpoints(event.tenant_id).await?;
        let wanted: Vec<&WebhookEndpoint> = endpoints
            .iter()
            .filter(|e| e.events.iter().any(|n| n == name))
            .collect();
        if wanted.is_empty() {
            return Ok(0);
        }
        // The event's id: the same for every endpoint, every attempt and every replay.
        let event_id = format!("evt_{}", uuid::Uuid::now_v7().simple());
        let body = json!({
            "id": event_id,
            "type": name,
            "created_at": event.at,
            "tenant_id": event.tenant_id.to_string(),
            "data": event.data,
        })
        .to_string();
        let now = imix_core::now();
        for endpoint in &wanted {
            self.storage
                .deliveries
                .insert(&WebhookDelivery {
                    id: WebhookDeliveryId::new(),
                    tenant_id: event.tenant_id,
                    endpoint_id: endpoint.id,
                    event_id: event_id.clone(),
                    event_type: name.to_owned(),
                    body: body.clone(),
                    state: DeliveryState::Pending,
                    attempts: 0,
                    due_at: Some(now),
                    lease_until: None,
                    last_status: None,
                    last_error: None,
                    last_attempt_at: None,
                    replay_of: None,
                    version: 1,
                    created_at: now,
                })
                .await?;
        }
        Ok(wanted.len())
    }
}

#[async_trait]
impl EventObserver for SubscriptionService {
    async fn recorded(&self, event: &Event) {
        if let Err(e) = self.enqueue(event).await {
            tracing::error!(
                tenant = %event.tenant_id,
                kind = event.kind.as_str(),
                error = %e,
                "webhook deliveries for a live event could not be stored; subscribers miss it"
            );
        }
    }
}

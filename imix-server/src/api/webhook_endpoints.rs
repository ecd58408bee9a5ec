//! Webhook endpoints (event subscriptions) of a tenant: create (the signing secret shown
//! once), list, read, edit, delete; an endpoint's delivery log and replay. Checks are in
//! [`imix_subscriptions::SubscriptionService`]; handlers parse, call and map.

use chrono::{DateTime, Utc};
use imix_core::id::TenantId;
use imix_subscriptions::{
    DeliveryState, EndpointPatch, EndpointStatus, NewEndpoint, WebhookDelivery, WebhookDeliveryId,
    WebhookEndpoint, WebhookEndpointId,
};
use poem_openapi::{
    param::{Path, Query},
    payload::Json,
    ApiResponse, Enum, Object, OpenApi,
};
use secrecy::ExposeSecret;

use super::{
    dto::{page, Done},
    parse_id, ApiTags,
};
use crate::{auth::Auth, error::ApiError, state::AppState};

/// Webhook endpoint operations.
pub struct WebhookEndpointsApi {
    state: AppState,
}

impl WebhookEndpointsApi {
    /// The webhook endpoints API over `state`.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

/// Whether an endpoint receives events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum WebhookEndpointStatus {
    /// Receives events.
    Active,
    /// Receives nothing (turned off, or disabled by imix after failing for hours).
    Disabled,
}

impl From<EndpointStatus> for WebhookEndpointStatus {
    fn from(s: EndpointStatus) -> Self {
        match s {
            EndpointStatus::Active => Self::Active,
            EndpointStatus::Disabled => Self::Disabled,
        }
    }
}

impl From<WebhookEndpointStatus> for EndpointStatus {
    fn from(s: WebhookEndpointStatus) -> Self {
        match s {
            WebhookEndpointStatus::Active => Self::Active,
            WebhookEndpointStatus::Disabled => Self::Disabled,
        }
    }
}

/// A webhook endpoint: never its secret.
#[derive(Debug, Clone, Object)]
pub struct WebhookEndpointView {
    /// Id.
    pub id: String,
    /// Owner.
    pub tenant_id: String,
    /// Where events are POSTed.
    pub url: String,
    /// The event names it receives.
    pub events: Vec<String>,
    /// A note for people.
    pub description: String,
    /// Active or disabled.
    pub status: WebhookEndpointStatus,
    /// Why imix disabled it, when it did.
    pub disabled_reason: Option<String>,
    /// Always `true`: the signing secret was shown once, at creation.
    pub secret_set: bool,
    /// Version.
    pub version: u64,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<WebhookEndpoint> for WebhookEndpointView {
    fn from(e: WebhookEndpoint) -> Self {
        Self {
            id: e.id.to_string(),
            tenant_id: e.tenant_id.to_string(),
            url: e.url,
            events: e.events,
            description: e.description,
            status: e.status.into(),
            disabled_reason: e.disabled_reason,
            secret_set: true,
            version: e.version,
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}

/// An endpoint just created, with its signing secret, this once.
#[derive(Debug, Clone, Object)]
pub struct CreatedWebhookEndpointView {
    /// Id.
    pub id: String,
    /// Where events are POSTed.
    pub url: String,
    /// The event names it receives.
    pub events: Vec<String>,
    /// A note for people.
    pub description: String,
    /// Active.
    pub status: WebhookEndpointStatus,
    /// The signing secret (`whsec_…`): the HMAC-SHA256 key of `Imix-Signature`. Shown now
    /// and never again.
    pub secret: String,
    /// Created.
    pub created_at: DateTime<Utc>,
}

/// One page of endpoints.
#[derive(Debug, Clone, Object)]
pub struct WebhookEndpointList {
    /// The endpoints, oldest first.
    pub items: Vec<WebhookEndpointView>,
    /// Cursor of the next page, `null` on the last.
    pub next_cursor: Option<String>,
}

/// `POST .../webhook-endpoints`.
#[derive(Debug, Object)]
pub struct NewWebhookEndpointBody {
    /// An absolute `https://` (or `http://`) URL whose host resolves to public addresses
    /// only.
    pub url: String,
    /// Event names: `message.received`, `message.status`, `conversation.created`,
    /// `conversation.updated`, `conversation.assigned`, `contact.created`,
    /// `contact.updated`.
    pub events: Vec<String>,
    /// A note for people (up to 500 characters).
    pub description: Option<String>,
}

/// `PATCH .../webhook-endpoints/{endpoint_id}`: omitted fields stay as they are.
#[derive(Debug, Object)]
pub struct WebhookEndpointPatchBody {
    /// New URL (checked as on creation).
    pub url: Option<String>,
    /// New event names.
    pub events: Option<Vec<String>>,
    /// New description.
    pub description: Option<String>,
    /// `disabled` turns it off; `active` turns it on again.
    pub status: Option<WebhookEndpointStatus>,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum WebhookDeliveryState {
    /// Waiting for its (next) attempt.
    Pending,
    /// The endpoint answered 2xx.
    Succeeded,
    /// Given up.
    Failed,
}

/// One delivery of one event to the endpoint.
#[derive(Debug, Clone, Object)]
pub struct WebhookDeliveryView {
    /// Id (`Imix-Delivery-Id`).
    pub id: String,
    /// The endpoint.
    pub endpoint_id: String,
    /// The event's id (`Imix-Event-Id`), shared by retries and replays.
    pub event_id: String,
    /// The event name.
    pub event_type: String,
    /// Pending, succeeded or failed.
    pub state: WebhookDeliveryState,
    /// Attempts made.
    pub attempts: u32,
    /// When the next attempt is due, while pending.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// When the last attempt was made.
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// The HTTP status the endpoint last answered.
    pub last_status: Option<u16>,
    /// What went wrong at the last attempt.
    pub last_error: Option<String>,
    /// The delivery this one replays.
    pub replay_of: Option<String>,
    /// The JSON body, as sent.
    pub body: String,
    /// Created.
    pub created_at: DateTime<Utc>,
}

impl From<WebhookDelivery> for WebhookDeliveryView {
    fn from(d: WebhookDelivery) -> Self {
        Self {
            id: d.id.to_string(),
            endpoint_id: d.endpoint_id.to_string(),
            event_id: d.event_id,
            event_type: d.event_type,
            state: match d.state {
                DeliveryState::Pending => WebhookDeliveryState::Pending,
                DeliveryState::Succeeded => WebhookDeliveryState::Succeeded,
                DeliveryState::Failed => WebhookDeliveryState::Failed,
            },
            attempts: d.attempts,
            next_attempt_at: d.due_at,
            last_attempt_at: d.last_attempt_at,
            last_status: d.last_status,
            last_error: d.last_error,
            replay_of: d.replay_of.map(|r| r.to_string()),
            body: d.body,
            created_at: d.created_at,
        }
    }
}

/// One page of deliveries.
#[derive(Debug, Clone, Object)]
pub struct WebhookDeliveryList {
    /// The deliveries, newest first.
    pub items: Vec<WebhookDeliveryView>,
    /// Cursor of the next page, `null` on the last.
    pub next_cursor: Option<String>,
}

#[derive(ApiResponse)]
enum Created {
    /// Created; `secret` is shown this once.
    #[oai(status = 201)]
    Endpoint(Json<CreatedWebhookEndpointView>),
}

#[derive(ApiResponse)]
enum Replayed {
    /// The new delivery, due now.
    #[oai(status = 202)]
    Delivery(Json<WebhookDeliveryView>),
}

fn ids(tenant: &str, endpoint: &str) -> Result<(TenantId, WebhookEndpointId), ApiError> {
    Ok((
        parse_id::<TenantId>(tenant, "tenant")?,
        parse_id::<WebhookEndpointId>(endpoint, "endpoint")?,
    ))
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Integrations")]
impl WebhookEndpointsApi {
    /// The tenant's webhook endpoints, oldest first (`integrations.manage`).
    #[oai(
        path = "/tenants/:tenant_id/webhook-endpoints",
        method = "get",
        operation_id = "list_webhook_endpoints"
    )]
    async fn list(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        cursor: Query<Option<String>>,
        limit: Query<Option<u32>>,
    ) -> Result<Json<WebhookEndpointList>, ApiError> {
        let tenant = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        let p = self
            .state
            .subscriptions
            .list(auth.0.access(), tenant, page(cursor.0, limit.0))
            .await?;
        Ok(Json(WebhookEndpointList {
            items: p.items.into_iter().map(WebhookEndpointView::from).collect(),
            next_cursor: p.next_cursor,
        }))
    }

    /// Creates a webhook endpoint (`integrations.manage`). The answer carries its signing
    /// secret, once. URLs resolving to non-public addresses are refused (422, `url`).
    #[oai(
        path = "/tenants/:tenant_id/webhook-endpoints",
        method = "post",
        operation_id = "create_webhook_endpoint"
    )]
    async fn create(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        body: Json<NewWebhookEndpointBody>,
    ) -> Result<Created, ApiError> {
        let tenant = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        let b = body.0;
        let (e, secret) = self
            .state
            .subscriptions
            .create(
                auth.0.access(),
                tenant,
                NewEndpoint {
                    url: b.url,
                    events: b.events,
                    description: b.description,
                },
            )
            .await?;
        Ok(Created::Endpoint(Json(CreatedWebhookEndpointView {
            id: e.id.to_string(),
            url: e.url,
            events: e.events,
            description: e.description,
            status: e.status.into(),
            secret: secret.expose_secret().to_owned(),
            created_at: e.created_at,
        })))
    }

    /// One webhook endpoint (`integrations.manage`).
    #[oai(
        path = "/tenants/:tenant_id/webhook-endpoints/:endpoint_id",
        method = "get",
        operation_id = "get_webhook_endpoint"
    )]
    async fn get(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        endpoint_id: Path<String>,
    ) -> Result<Json<WebhookEndpointView>, ApiError> {
        let (tenant, id) = ids(&tenant_id.0, &endpoint_id.0)?;
        let e = self
            .state
            .subscriptions
            .get(auth.0.access(), tenant, id)
            .await?;
        Ok(Json(e.into()))
    }

    /// Edits a webhook endpoint (`integrations.manage`): URL, events, description, or
    /// status (`active` again after imix disabled it).
    #[oai(
        path = "/tenants/:tenant_id/webhook-endpoints/:endpoint_id",
        method = "patch",
        operation_id = "update_webhook_endpoint"
    )]
    async fn update(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        endpoint_id: Path<String>,
        body: Json<WebhookEndpointPatchBody>,
    ) -> Result<Json<WebhookEndpointView>, ApiError> {
        let (tenant, id) = ids(&tenant_id.0, &endpoint_id.0)?;
        let b = body.0;
        let e = self
            .state
            .subscriptions
            .update(
                auth.0.access(),
                tenant,
                id,
                EndpointPatch {
                    url: b.url,
                    events: b.events,
                    description: b.description,
                    status: b.status.map(Into::into),
                },
            )
            .await?;
        Ok(Json(e.into()))
    }

    /// Deletes a webhook endpoint (`integrations.manage`); nothing more is sent to it.
    #[oai(
        path = "/tenants/:tenant_id/webhook-endpoints/:endpoint_id",
        method = "delete",
        operation_id = "delete_webhook_endpoint"
    )]
    async fn delete(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        endpoint_id: Path<String>,
    ) -> Result<Json<Done>, ApiError> {
        let (tenant, id) = ids(&tenant_id.0, &endpoint_id.0)?;
        self.state
            .subscriptions
            .delete(auth.0.access(), tenant, id)
            .await?;
        Ok(Json(Done::ok()))
    }

    /// The endpoint's delivery log, newest first (`integrations.manage`).
    #[oai(
        path = "/tenants/:tenant_id/webhook-endpoints/:endpoint_id/deliveries",
        method = "get",
        operation_id = "list_webhook_deliveries"
    )]
    async fn deliveries(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        endpoint_id: Path<String>,
        cursor: Query<Option<String>>,
        limit: Query<Option<u32>>,
    ) -> Result<Json<WebhookDeliveryList>, ApiError> {
        let (tenant, id) = ids(&tenant_id.0, &endpoint_id.0)?;
        let p = self
            .state
            .subscriptions
            .deliveries(auth.0.access(), tenant, id, page(cursor.0, limit.0))
            .await?;
        Ok(Json(WebhookDeliveryList {
            items: p.items.into_iter().map(WebhookDeliveryView::from).collect(),
            next_cursor: p.next_cursor,
        }))
    }

    /// Sends a delivery again (`integrations.manage`): a new delivery of the same event
    /// (same `Imix-Event-Id` and body, signed afresh), due now.
    #[oai(
        path = "/tenants/:tenant_id/webhook-endpoints/:endpoint_id/deliveries/:delivery_id/replay",
        method = "post",
        operation_id = "replay_webhook_delivery"
    )]
    async fn replay(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        endpoint_id: Path<String>,
        delivery_id: Path<String>,
    ) -> Result<Replayed, ApiError> {
        let (tenant, id) = ids(&tenant_id.0, &endpoint_id.0)?;
        let delivery = parse_id::<WebhookDeliveryId>(&delivery_id.0, "delivery")?;
        let d = self
            .state
            .subscriptions
            .replay(auth.0.access(), tenant, id, delivery)
            .await?;
        Ok(Replayed::Delivery(Json(d.into())))
    }
}

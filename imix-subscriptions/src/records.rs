//! The records of subscriptions: endpoints and their deliveries.

use imix_core::{id::TenantId, Timestamp};
use serde::{Deserialize, Serialize};

imix_core::define_id!(
    /// Identifies a webhook endpoint.
    WebhookEndpointId,
    "endpoint"
);

imix_core::define_id!(
    /// Identifies one delivery of one event to one endpoint.
    WebhookDeliveryId,
    "delivery"
);

/// The event names an endpoint may subscribe to, and the live events they stand for.
pub const EVENT_NAMES: &[&str] = &[
    "message.received",
    "message.status",
    "conversation.created",
    "conversation.updated",
    "conversation.assigned",
    "contact.created",
    "contact.updated",
];

/// The integrator-facing name of a live event kind.
pub fn event_name(kind: imix_messaging::events::EventKind) -> &'static str {
    use imix_messaging::events::EventKind as K;
    match kind {
        K::MessageReceived => "message.received",
        K::MessageStatusChanged => "message.status",
        K::ConversationCreated => "conversation.created",
        K::ConversationUpdated => "conversation.updated",
        K::ConversationAssigned => "conversation.assigned",
        K::ContactCreated => "contact.created",
        K::ContactUpdated => "contact.updated",
    }
}

/// Whether an endpoint receives events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndpointStatus {
    /// Receives events.
    Active,
    /// Receives nothing: turned off by the tenant, or by imix after a delivery failed
    /// for hours ([`WebhookEndpoint::disabled_reason`]). Setting it active again resumes.
    Disabled,
}

/// A URL of a tenant's that receives the events it subscribed to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookEndpoint {
    /// Id.
    pub id: WebhookEndpointId,
    /// Owner.
    pub tenant_id: TenantId,
    /// Where events are POSTed (`https://…`, or `http://…`).
    pub url: String,
    /// The event names it receives ([`EVENT_NAMES`]).
    pub events: Vec<String>,
    /// A note for people.
    #[serde(default)]
    pub description: String,
    /// Active or disabled.
    pub status: EndpointStatus,
    /// Why imix disabled it, when it did.
    #[serde(default)]
    pub disabled_reason: Option<String>,
    /// The signing secret, sealed with the at-rest cipher (bound to the endpoint id).
    pub secret_enc: String,
    /// Optimistic-concurrency version.
    pub version: u64,
    /// Created.
    pub created_at: Timestamp,
    /// Last changed.
    pub updated_at: Timestamp,
}

impl WebhookEndpoint {
    /// The associated data its secret is sealed with.
    pub fn secret_aad(id: WebhookEndpointId) -> Vec<u8> {
        format!("webhook_endpoint:{id}:secret").into_bytes()
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Waiting for its (next) attempt.
    Pending,
    /// The endpoint answered 2xx.
    Succeeded,
    /// Given up after its last attempt (or its endpoint is gone or disabled).
    Failed,
}

/// One event for one endpoint: stored before it is sent, then each attempt's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookDelivery {
    /// Id (`Imix-Delivery-Id`).
    pub id: WebhookDeliveryId,
    /// Owner.
    pub tenant_id: TenantId,
    /// The endpoint.
    pub endpoint_id: WebhookEndpointId,
    /// The event's id (`Imix-Event-Id`), the same for every endpoint and every attempt,
    /// and for a replay: receivers deduplicate by it.
    pub event_id: String,
    /// The event name, e.g. `message.received`.
    pub event_type: String,
    /// The JSON body, exactly as sent (and signed).
    pub body: String,
    /// Pending, succeeded or failed.
    pub state: DeliveryState,
    /// Attempts made.
    pub attempts: u32,
    /// When the next attempt is due (`None` once finished).
    pub due_at: Option<Timestamp>,
    /// Held by a worker until then.
    pub lease_until: Option<Timestamp>,
    /// The HTTP status of the last attempt, if one came back.
    pub last_status: Option<u16>,
    /// What went wrong at the last attempt (no secrets, no response body beyond a short
    /// excerpt).
    pub last_error: Option<String>,
    /// When the last attempt was made.
    pub last_attempt_at: Option<Timestamp>,
    /// The delivery this one replays, if it is a replay.
    #[serde(default)]
    pub replay_of: Option<WebhookDeliveryId>,
    /// Optimistic-concurrency version.
    pub version: u64,
    /// Created (the event's time for a first delivery).
    pub created_at: Timestamp,
}

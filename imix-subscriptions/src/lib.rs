//! # imix-subscriptions
//!
//! Event subscriptions for integrators: a tenant registers webhook endpoints (a URL and the
//! events it wants), and every live event of the tenant (`imix-messaging`'s event bus:
//! messages received, statuses, conversations, contacts) is delivered to the endpoints
//! that asked for it, as a signed HTTP POST.
//!
//! - Deliveries are stored before they are sent ([`storage::DeliveryRepository`]) and sent
//!   by a [`worker::DeliveryWorker`] that claims them with a lease, so several replicas
//!   share the work and a crash loses nothing; failures are retried with exponential
//!   backoff for hours, then the delivery is given up and its endpoint disabled.
//! - Each request carries `Imix-Event-Id`, `Imix-Delivery-Id` and
//!   `Imix-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<event id>.<t>.<body>")>`
//!   ([`sign`]).
//! - Targets are checked against private, loopback, link-local and other internal
//!   addresses when an endpoint is saved and again at every delivery, and the request goes
//!   to the very address that was checked ([`target`]), so DNS cannot be used to reach the
//!   operator's network.
//!
//! Why a crate of its own rather than a module of `imix-messaging`: it has its own records,
//! migrations and worker, and an outbound HTTP client with an SSRF guard that nothing else
//! in messaging needs; it depends on messaging only for the event types it subscribes to.
#![forbid(unsafe_code)]

pub mod error;
pub mod records;
pub mod service;
pub mod sign;
pub mod storage;
pub mod target;
pub mod worker;

pub use error::SubscriptionError;
pub use records::{
    DeliveryState, EndpointStatus, WebhookDelivery, WebhookDeliveryId, WebhookEndpoint,
    WebhookEndpointId, EVENT_NAMES,
};
pub use service::{
    EndpointAlerts, EndpointPatch, NewEndpoint, SubscriptionService, SubscriptionsConfig,
};

//! Where subscriptions keep their records: the ports [`EndpointRepository`] and
//! [`DeliveryRepository`], their SQLite and MongoDB adapters and migrations (capability
//! [`CAPABILITY`]), and the records backups carry.
//!
//! Every read and write of a tenant's record is confined to a [`Scope`]: another tenant's
//! endpoint or delivery is [`imix_core::Error::NotFound`]. Deliveries are claimed with a
//! lease in one atomic step, as webhook ingest and contact imports are, so several replicas
//! share the work and none sends what another holds.

use std::sync::Arc;

use async_trait::async_trait;
use imix_core::{
    id::TenantId,
    store::{
        transfer::{paged, RecordSet},
        Backend, Page, PageRequest, Scope,
    },
    Result, Timestamp,
};

use crate::records::{WebhookDelivery, WebhookDeliveryId, WebhookEndpoint, WebhookEndpointId};

#[cfg(feature = "mongodb")]
pub mod mongo;
#[cfg(feature = "sqlite")]
pub mod sqlite;

/// The capability name the migrations are recorded under.
pub const CAPABILITY: &str = "subscriptions";

/// Webhook endpoints.
#[async_trait]
pub trait EndpointRepository: Send + Sync {
    /// Stores a new endpoint.
    async fn insert(&self, endpoint: &WebhookEndpoint) -> Result<()>;
    /// The endpoint `id`, if visible in `scope`.
    async fn get(&self, scope: Scope, id: WebhookEndpointId) -> Result<WebhookEndpoint>;
    /// Endpoints visible in `scope`, oldest first.
    async fn list(&self, scope: Scope, page: PageRequest) -> Result<Page<WebhookEndpoint>>;
    /// Every active endpoint of `tenant` (a tenant has a handful at most).
    async fn active_for(&self, tenant: TenantId) -> Result<Vec<WebhookEndpoint>>;
    /// Replaces the endpoint if visible in `scope` and stored at `endpoint.version`;
    /// returns it with the version raised.
    async fn update(&self, scope: Scope, endpoint: &WebhookEndpoint) -> Result<WebhookEndpoint>;
    /// Deletes the endpoint if visible in `scope`.
    async fn delete(&self, scope: Scope, id: WebhookEndpointId) -> Result<()>;
}

/// Deliveries of events to endpoints.
#[async_trait]
pub trait DeliveryRepository: Send + Sync {
    /// Stores a new delivery; returns once it is durable.
    async fn insert(&self, delivery: &WebhookDelivery) -> Result<()>;
    /// The delivery `id`, if visible in `scope`.
    async fn get(&self, scope: Scope, id: WebhookDeliveryId) -> Result<WebhookDelivery>;
    /// The deliveries of `endpoint` visible in `scope`, newest first.
    async fn list_for_endpoint(
        &self,
        scope: Scope,
        endpoint: WebhookEndpointId,
        page: PageRequest,
    ) -> Result<Page<WebhookDelivery>>;
    /// Atomically claims the delivery due first at `now` (due, and no lease or a lease
    /// that ran out): sets `lease_until`, raises `version`, returns it.
    async fn claim_due(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Result<Option<WebhookDelivery>>;
    /// Replaces the delivery if stored at `delivery.version`; returns it with the version
    /// raised. A worker whose lease was taken over gets
    /// [`imix_core::Error::VersionConflict`].
    async fn update(&self, delivery: &WebhookDelivery) -> Result<WebhookDelivery>;
}

/// The subscription repositories on one backend.
#[derive(Clone)]
pub struct SubscriptionStorage {
    /// Endpoints.
    pub endpoints: Arc<dyn EndpointRepository>,
    /// Deliveries.
    pub deliveries: Arc<dyn DeliveryRepository>,
}

impl std::fmt::Debug for SubscriptionStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscriptionStorage")
            .finish_non_exhaustive()
    }
}

impl SubscriptionStorage {
    /// Opens the repositories on `backend`; a backend without an adapter is refused.
    pub fn open(backend: &Backend) -> Result<Self> {
        match backend {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(db) => {
                let adapter = Arc::new(sqlite::SqliteSubscriptions::new(db.clone()));
                Ok(Self {
                    endpoints: adapter.clone(),
                    deliveries: adapter,
                })
            }
            #[cfg(feature = "mongodb")]
            Backend::Mongo(db) => {
                let adapter = Arc::new(mongo::MongoSubscriptions::new(db.clone()));
                Ok(Self {
                    endpoints: adapter.clone(),
                    deliveries: adapter,
                })
            }
            other => Err(other.unsupported(CAPABILITY)),
        }
    }

    /// The endpoints, for backups (their secrets stay sealed with the at-rest key).
    /// Deliveries are operational state and not exported.
    pub fn record_sets(&self) -> Vec<Arc<dyn RecordSet>> {
        let (out, into) = (self.endpoints.clone(), self.endpoints.clone());
        vec![paged(
            "webhook_endpoint",
            move |page| {
                let endpoints = out.clone();
                async move { endpoints.list(Scope::Platform, page).await }
            },
            move |endpoint: WebhookEndpoint| {
                let endpoints = into.clone();
                async move { endpoints.insert(&endpoint).await }
            },
        )]
    }
}

/// Creates or upgrades the tables or indexes on `backend`. Idempotent.
pub async fn migrate(backend: &Backend) -> Result<()> {
    match backend {
        #[cfg(feature = "sqlite")]
        Backend::Sqlite(db) => db.migrate(CAPABILITY, sqlite::MIGRATIONS).await.map(drop),
        #[cfg(feature = "mongodb")]
        Backend::Mongo(db) => {
            imix_core::store::mongo::support::migrate(db, CAPABILITY, mongo::MIGRATIONS)
                .await
                .map(drop)
        }
        other => Err(other.unsupported(CAPABILITY)),
    }
}

//! Subscriptions on MongoDB: collections `webhook_endpoints` and `webhook_deliveries`,
//! `_id` the record's id. Deliveries carry `due_ms` and `lease_ms` (Unix milliseconds,
//! absent when `None`) beside their serde shape; a claim is one `findOneAndUpdate`, so two
//! replicas never claim one delivery.

use async_trait::async_trait;
use futures::TryStreamExt;
use imix_core::{
    id::TenantId,
    store::{
        mongo::{
            support::{
                backend_err, from_doc, list_docs, missing_or_stale, scope_filter, to_doc,
                version_bson,
            },
            IndexSpec, MongoMigration,
        },
        Page, PageRequest, Scope,
    },
    Error, Result, Timestamp,
};
use mongodb::{
    bson::{self, doc, Bson, Document},
    options::ReturnDocument,
    Collection, Database,
};

use super::{DeliveryRepository, EndpointRepository};
use crate::records::{
    EndpointStatus, WebhookDelivery, WebhookDeliveryId, WebhookEndpoint, WebhookEndpointId,
};

const ENDPOINTS: &str = "webhook_endpoints";
const DELIVERIES: &str = "webhook_deliveries";
const DUE_MS: &str = "due_ms";
const LEASE_MS: &str = "lease_ms";
const ENDPOINT: &str = "endpoint";
const DELIVERY: &str = "delivery";

/// The schema steps, under capability [`super::CAPABILITY`].
pub const MIGRATIONS: &[MongoMigration] = &[MongoMigration {
    name: "0001_webhook_endpoints_deliveries",
    indexes: &[
        IndexSpec {
            collection: ENDPOINTS,
            name: "by_tenant",
            keys: &[("tenant_id", 1), ("_id", 1)],
            unique_field: None,
            expire_at_field: false,
        },
        IndexSpec {
            collection: DELIVERIES,
            name: "by_endpoint",
            keys: &[("endpoint_id", 1), ("_id", 1)],
            unique_field: None,
            expire_at_field: false,
        },
        IndexSpec {
            collection: DELIVERIES,
            name: "by_due",
            keys: &[(DUE_MS, 1), ("_id", 1)],
            unique_field: None,
            expire_at_field: false,
        },
    ],
}];

/// Both repositories on one MongoDB [`Database`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct MongoSubscriptions {
    db: Database,
}

impl MongoSubscriptions {
    /// The repositories on `db` (migrated with [`super::migrate`]).
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    fn endpoints(&self) -> Collection<Document> {
        self.db.collection(ENDPOINTS)
    }

    fn deliveries(&self) -> Collection<Document> {
        self.db.collection(DELIVERIES)
    }
}

fn delivery_doc(d: &WebhookDelivery) -> Result<Document> {
    let mut doc = to_doc(d, &d.id.to_string(), DELIVERY)?;
    if let Some(due) = d.due_at {
        doc.insert(DUE_MS, due.timestamp_millis());
    }
    if let Some(lease) = d.lease_until {
        doc.insert(LEASE_MS, lease.timestamp_millis());
    }
    Ok(doc)
}

fn decode_delivery(d: Document) -> Result<WebhookDelivery> {
    from_doc(d, DELIVERY, &[DUE_MS, LEASE_MS])
}

#[async_trait]
impl EndpointRepository for MongoSubscriptions {
    async fn insert(&self, endpoint: &WebhookEndpoint) -> Result<()> {
        self.endpoints()
            .insert_one(to_doc(endpoint, &endpoint.id.to_string(), ENDPOINT)?)
            .await
            .map(drop)
            .map_err(backend_err("store a webhook endpoint"))
    }

    async fn get(&self, scope: Scope, id: WebhookEndpointId) -> Result<WebhookEndpoint> {
        let mut filter = doc! { "_id": id.to_string() };
        scope_filter(&mut filter, scope);
        match self
            .endpoints()
            .find_one(filter)
            .await
            .map_err(backend_err("read a webhook endpoint"))?
        {
            Some(d) => from_doc(d, ENDPOINT, &[]),
            None => Err(Error::NotFound {
                entity: ENDPOINT,
                id: id.to_string(),
            }),
        }
    }

    async fn list(&self, scope: Scope, page: PageRequest) -> Result<Page<WebhookEndpoint>> {
        let mut filter = Document::new();
        scope_filter(&mut filter, scope);
        list_docs(
            self.endpoints(),
            filter,
            page,
            ENDPOINT,
            |e: &WebhookEndpoint| e.id.to_string(),
        )
        .await
    }

    async fn active_for(&self, tenant: TenantId) -> Result<Vec<WebhookEndpoint>> {
        let status = bson::to_bson(&EndpointStatus::Active).map_err(|e| Error::Corrupt {
            entity: ENDPOINT,
            source: e.into(),
        })?;
        let docs: Vec<Document> = self
            .endpoints()
            .find(doc! { "tenant_id": tenant.to_string(), "status": status })
            .sort(doc! { "_id": 1 })
            .await
            .map_err(backend_err("read a tenant's webhook endpoints"))?
            .try_collect()
            .await
            .map_err(backend_err("read a tenant's webhook endpoints"))?;
        docs.into_iter()
            .map(|d| from_doc(d, ENDPOINT, &[]))
            .collect()
    }

    async fn update(&self, scope: Scope, endpoint: &WebhookEndpoint) -> Result<WebhookEndpoint> {
        imix_core::store::check_owner_stays_in_scope(scope, Some(endpoint.tenant_id))?;
        let mut next = endpoint.clone();
        next.version += 1;
        let id = endpoint.id.to_string();
        let mut filter = doc! { "_id": &id, "version": version_bson(endpoint.version)? };
        scope_filter(&mut filter, scope);
        let result = self
            .endpoints()
            .replace_one(filter, to_doc(&next, &id, ENDPOINT)?)
            .await
            .map_err(backend_err("update a webhook endpoint"))?;
        if result.matched_count == 1 {
            return Ok(next);
        }
        let mut scoped = Document::new();
        scope_filter(&mut scoped, scope);
        Err(missing_or_stale(self.endpoints(), scoped, ENDPOINT, id, endpoint.version).await)
    }

    async fn delete(&self, scope: Scope, id: WebhookEndpointId) -> Result<()> {
        let mut filter = doc! { "_id": id.to_string() };
        scope_filter(&mut filter, scope);
        let gone = self
            .endpoints()
            .delete_one(filter)
            .await
            .map_err(backend_err("delete a webhook endpoint"))?;
        if gone.deleted_count == 1 {
            Ok(())
        } else {
            Err(Error::NotFound {
                entity: ENDPOINT,
                id: id.to_string(),
            })
        }
    }
}

#[async_trait]
impl DeliveryRepository for MongoSubscriptions {
    async fn insert(&self, delivery: &WebhookDelivery) -> Result<()> {
        self.deliveries()
            .insert_one(delivery_doc(delivery)?)
            .await
            .map(drop)
            .map_err(backend_err("store a webhook delivery"))
    }

    async fn get(&self, scope: Scope, id: WebhookDeliveryId) -> Result<WebhookDelivery> {
        let mut filter = doc! { "_id": id.to_string() };
        scope_filter(&mut filter, scope);
        match self
            .deliveries()
            .find_one(filter)
            .await
            .map_err(backend_err("read a webhook delivery"))?
        {
            Some(d) => decode_delivery(d),
            None => Err(Error::NotFound {
                entity: DELIVERY,
                id: id.to_string(),
            }),
        }
    }

    async fn list_for_endpoint(
        &self,
        scope: Scope,
        endpoint: WebhookEndpointId,
        page: PageRequest,
    ) -> Result<Page<WebhookDelivery>> {
        let limit = page.effective_limit()?;
        let mut filter = doc! { "endpoint_id": endpoint.to_string() };
        scope_filter(&mut filter, scope);
        if let Some(cursor) = page.validated_cursor()? {
            filter.insert("_id", doc! { "$lt": cursor });
        }
        let docs: Vec<Document> = self
            .deliveries()
            .find(filter)
            .sort(doc! { "_id": -1 })
            .limit(i64::from(limit) + 1)
            .await
            .map_err(backend_err("list webhook deliveries"))?
            .try_collect()
            .await
            .map_err(backend_err("list webhook deliveries"))?;
        let items = docs
            .into_iter()
            .map(decode_delivery)
            .collect::<Result<Vec<_>>>()?;
        Ok(Page::from_overfetch(items, limit, |d| d.id.to_string()))
    }

    async fn claim_due(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Result<Option<WebhookDelivery>> {
        let now_ms = now.timestamp_millis();
        let filter = doc! {
            DUE_MS: { "$lte": now_ms },
            "$or": [
                { LEASE_MS: Bson::Null },
                { LEASE_MS: { "$lte": now_ms } },
            ],
        };
        let lease = bson::to_bson(&lease_until).map_err(|e| Error::Corrupt {
            entity: DELIVERY,
            source: e.into(),
        })?;
        let update = doc! {
            "$set": { "lease_until": lease, LEASE_MS: lease_until.timestamp_millis() },
            "$inc": { "version": 1_i64 },
        };
        self.deliveries()
            .find_one_and_update(filter, update)
            .sort(doc! { DUE_MS: 1, "_id": 1 })
            .return_document(ReturnDocument::After)
            .await
            .map_err(backend_err("claim a webhook delivery"))?
            .map(decode_delivery)
            .transpose()
    }

    async fn update(&self, delivery: &WebhookDelivery) -> Result<WebhookDelivery> {
        let mut next = delivery.clone();
        next.version += 1;
        let id = delivery.id.to_string();
        let result = self
            .deliveries()
            .replace_one(
                doc! { "_id": &id, "version": version_bson(delivery.version)? },
                delivery_doc(&next)?,
            )
            .await
            .map_err(backend_err("update a webhook delivery"))?;
        if result.matched_count == 1 {
            return Ok(next);
        }
        Err(missing_or_stale(
            self.deliveries(),
            Document::new(),
            DELIVERY,
            id,
            delivery.version,
        )
        .await)
    }
}

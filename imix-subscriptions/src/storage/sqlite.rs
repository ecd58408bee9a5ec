//! Subscriptions on the embedded SQLite database: tables `webhook_endpoints` and
//! `webhook_deliveries`, each record a JSON document beside the columns that are filtered
//! on. A claim reads and leases in one write closure (the writer's `IMMEDIATE`
//! transaction), so two processes sharing the file never claim one delivery twice.

use async_trait::async_trait;
use imix_core::{
    id::TenantId,
    store::{
        sqlite::{
            support::{
                db_err, exec, from_json, missing_or_stale, scope_param, to_json, version_param,
            },
            Migration, SqliteDb,
        },
        Page, PageRequest, Scope,
    },
    Error, Result, Timestamp,
};
use rusqlite::{params, Connection, OptionalExtension};

use super::{DeliveryRepository, EndpointRepository};
use crate::records::{
    EndpointStatus, WebhookDelivery, WebhookDeliveryId, WebhookEndpoint, WebhookEndpointId,
};

/// The schema steps, under capability [`super::CAPABILITY`].
pub const MIGRATIONS: &[Migration] = &[Migration {
    name: "0001_webhook_endpoints_deliveries",
    sql: "CREATE TABLE IF NOT EXISTS webhook_endpoints (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        active INTEGER NOT NULL,
        version INTEGER NOT NULL,
        doc TEXT NOT NULL
     );
     CREATE INDEX IF NOT EXISTS webhook_endpoints_by_tenant
        ON webhook_endpoints (tenant_id, id);
     CREATE TABLE IF NOT EXISTS webhook_deliveries (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        endpoint_id TEXT NOT NULL,
        due_ms INTEGER,
        lease_ms INTEGER,
        version INTEGER NOT NULL,
        doc TEXT NOT NULL
     );
     CREATE INDEX IF NOT EXISTS webhook_deliveries_by_endpoint
        ON webhook_deliveries (endpoint_id, id);
     CREATE INDEX IF NOT EXISTS webhook_deliveries_due ON webhook_deliveries (due_ms)
        WHERE due_ms IS NOT NULL;",
    unique: &[],
}];

const ENDPOINT: &str = "endpoint";
const DELIVERY: &str = "delivery";

/// Both repositories on one [`SqliteDb`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SqliteSubscriptions {
    db: SqliteDb,
}

impl SqliteSubscriptions {
    /// The repositories on `db` (migrated with [`super::migrate`]).
    pub fn new(db: SqliteDb) -> Self {
        Self { db }
    }
}

fn one<T: serde::de::DeserializeOwned>(
    c: &Connection,
    sql: &str,
    p: impl rusqlite::Params,
    entity: &'static str,
    action: &'static str,
) -> Result<Option<T>> {
    let doc: Option<String> = c
        .prepare_cached(sql)
        .and_then(|mut s| s.query_row(p, |r| r.get(0)).optional())
        .map_err(db_err(action))?;
    doc.map(|d| from_json(&d, entity)).transpose()
}

fn many<T: serde::de::DeserializeOwned>(
    c: &Connection,
    sql: &str,
    p: impl rusqlite::Params,
    entity: &'static str,
    action: &'static str,
) -> Result<Vec<T>> {
    let mut stmt = c.prepare_cached(sql).map_err(db_err(action))?;
    let docs = stmt
        .query_map(p, |r| r.get::<_, String>(0))
        .map_err(db_err(action))?
        .collect::<rusqlite::Result<Vec<String>>>()
        .map_err(db_err(action))?;
    docs.iter().map(|d| from_json(d, entity)).collect()
}

fn not_found(entity: &'static str, id: String) -> Error {
    Error::NotFound { entity, id }
}

#[async_trait]
impl EndpointRepository for SqliteSubscriptions {
    async fn insert(&self, endpoint: &WebhookEndpoint) -> Result<()> {
        const ACTION: &str = "store a webhook endpoint";
        let doc = to_json(endpoint, ENDPOINT)?;
        let (id, tenant) = (endpoint.id.to_string(), endpoint.tenant_id.to_string());
        let active = endpoint.status == EndpointStatus::Active;
        let version = version_param(endpoint.version)?;
        self.db
            .write(ACTION, move |c| {
                exec(
                    c,
                    "INSERT INTO webhook_endpoints (id, tenant_id, active, version, doc)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![id, tenant, active, version, doc],
                )
                .map_err(db_err(ACTION))?;
                Ok(())
            })
            .await
    }

    async fn get(&self, scope: Scope, id: WebhookEndpointId) -> Result<WebhookEndpoint> {
        const ACTION: &str = "read a webhook endpoint";
        self.db
            .read(ACTION, move |c| {
                one(
                    c,
                    "SELECT doc FROM webhook_endpoints
                     WHERE id = ?1 AND (?2 IS NULL OR tenant_id = ?2)",
                    params![id.to_string(), scope_param(scope)],
                    ENDPOINT,
                    ACTION,
                )?
                .ok_or_else(|| not_found(ENDPOINT, id.to_string()))
            })
            .await
    }

    async fn list(&self, scope: Scope, page: PageRequest) -> Result<Page<WebhookEndpoint>> {
        const ACTION: &str = "list webhook endpoints";
        let limit = page.effective_limit()?;
        let cursor = page.validated_cursor()?;
        self.db
            .read(ACTION, move |c| {
                let items: Vec<WebhookEndpoint> = many(
                    c,
                    "SELECT doc FROM webhook_endpoints
                     WHERE (?1 IS NULL OR id > ?1) AND (?2 IS NULL OR tenant_id = ?2)
                     ORDER BY id LIMIT ?3",
                    params![cursor, scope_param(scope), limit + 1],
                    ENDPOINT,
                    ACTION,
                )?;
                Ok(Page::from_overfetch(items, limit, |e| e.id.to_string()))
            })
            .await
    }

    async fn active_for(&self, tenant: TenantId) -> Result<Vec<WebhookEndpoint>> {
        const ACTION: &str = "read a tenant's webhook endpoints";
        self.db
            .read(ACTION, move |c| {
                many(
                    c,
                    "SELECT doc FROM webhook_endpoints
                     WHERE tenant_id = ?1 AND active = 1 ORDER BY id",
                    [tenant.to_string()],
                    ENDPOINT,
                    ACTION,
                )
            })
            .await
    }

    async fn update(&self, scope: Scope, endpoint: &WebhookEndpoint) -> Result<WebhookEndpoint> {
        const ACTION: &str = "update a webhook endpoint";
        imix_core::store::check_owner_stays_in_scope(scope, Some(endpoint.tenant_id))?;
        let mut next = endpoint.clone();
        next.version += 1;
        let doc = to_json(&next, ENDPOINT)?;
        let id = endpoint.id.to_string();
        let active = next.status == EndpointStatus::Active;
        let (expected, new_version) = (
            version_param(endpoint.version)?,
            version_param(next.version)?,
        );
        let only = scope_param(scope);
        self.db
            .write(ACTION, move |c| {
                let changed = exec(
                    c,
                    "UPDATE webhook_endpoints SET active = ?1, version = ?2, doc = ?3
                     WHERE id = ?4 AND version = ?5 AND (?6 IS NULL OR tenant_id = ?6)",
                    params![active, new_version, doc, id, expected, only],
                )
                .map_err(db_err(ACTION))?;
                if changed == 1 {
                    return Ok(next);
                }
                Err(missing_or_stale(
                    c,
                    "webhook_endpoints",
                    ENDPOINT,
                    id,
                    only,
                    expected,
                ))
            })
            .await
    }

    async fn delete(&self, scope: Scope, id: WebhookEndpointId) -> Result<()> {
        const ACTION: &str = "delete a webhook endpoint";
        self.db
            .write(ACTION, move |c| {
                let gone = exec(
                    c,
                    "DELETE FROM webhook_endpoints WHERE id = ?1 AND (?2 IS NULL OR tenant_id = ?2)",
                    params![id.to_string(), scope_param(scope)],
                )
                .map_err(db_err(ACTION))?;
                if gone == 1 {
                    Ok(())
                } else {
                    Err(not_found(ENDPOINT, id.to_string()))
                }
            })
            .await
    }
}

/// The columns a delivery row keeps beside its document.
struct Row {
    id: String,
    due_ms: Option<i64>,
    lease_ms: Option<i64>,
    version: i64,
    doc: String,
}

impl Row {
    fn of(d: &WebhookDelivery) -> Result<Self> {
        Ok(Self {
            id: d.id.to_string(),
            due_ms: d.due_at.map(|t| t.timestamp_millis()),
            lease_ms: d.lease_until.map(|t| t.timestamp_millis()),
            version: version_param(d.version)?,
            doc: to_json(d, DELIVERY)?,
        })
    }

    fn replace(&self, c: &Connection, expected: i64, action: &'static str) -> Result<bool> {
        let changed = exec(
            c,
            "UPDATE webhook_deliveries SET due_ms = ?1, lease_ms = ?2, version = ?3, doc = ?4
             WHERE id = ?5 AND version = ?6",
            params![
                self.due_ms,
                self.lease_ms,
                self.version,
                self.doc,
                self.id,
                expected
            ],
        )
        .map_err(db_err(action))?;
        Ok(changed == 1)
    }
}

#[async_trait]
impl DeliveryRepository for SqliteSubscriptions {
    async fn insert(&self, delivery: &WebhookDelivery) -> Result<()> {
        const ACTION: &str = "store a webhook delivery";
        let row = Row::of(delivery)?;
        let (tenant, endpoint) = (
            delivery.tenant_id.to_string(),
            delivery.endpoint_id.to_string(),
        );
        self.db
            .write(ACTION, move |c| {
                exec(
                    c,
                    "INSERT INTO webhook_deliveries
                       (id, tenant_id, endpoint_id, due_ms, lease_ms, version, doc)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![
                        row.id,
                        tenant,
                        endpoint,
                        row.due_ms,
                        row.lease_ms,
                        row.version,
                        row.doc
                    ],
                )
                .map_err(db_err(ACTION))?;
                Ok(())
            })
            .await
    }

    async fn get(&self, scope: Scope, id: WebhookDeliveryId) -> Result<WebhookDelivery> {
        const ACTION: &str = "read a webhook delivery";
        self.db
            .read(ACTION, move |c| {
                one(
                    c,
                    "SELECT doc FROM webhook_deliveries
                     WHERE id = ?1 AND (?2 IS NULL OR tenant_id = ?2)",
                    params![id.to_string(), scope_param(scope)],
                    DELIVERY,
                    ACTION,
                )?
                .ok_or_else(|| not_found(DELIVERY, id.to_string()))
            })
            .await
    }

    async fn list_for_endpoint(
        &self,
        scope: Scope,
        endpoint: WebhookEndpointId,
        page: PageRequest,
    ) -> Result<Page<WebhookDelivery>> {
        const ACTION: &str = "list webhook deliveries";
        let limit = page.effective_limit()?;
        let cursor = page.validated_cursor()?;
        self.db
            .read(ACTION, move |c| {
                let items: Vec<WebhookDelivery> = many(
                    c,
                    "SELECT doc FROM webhook_deliveries
                     WHERE endpoint_id = ?1 AND (?2 IS NULL OR id < ?2)
                       AND (?3 IS NULL OR tenant_id = ?3)
                     ORDER BY id DESC LIMIT ?4",
                    params![endpoint.to_string(), cursor, scope_param(scope), limit + 1],
                    DELIVERY,
                    ACTION,
                )?;
                Ok(Page::from_overfetch(items, limit, |d| d.id.to_string()))
            })
            .await
    }

    async fn claim_due(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Result<Option<WebhookDelivery>> {
        const ACTION: &str = "claim a webhook delivery";
        self.db
            .write(ACTION, move |c| {
                let Some(mut d) = one::<WebhookDelivery>(
                    c,
                    "SELECT doc FROM webhook_deliveries
                     WHERE due_ms IS NOT NULL AND due_ms <= ?1
                       AND (lease_ms IS NULL OR lease_ms <= ?1)
                     ORDER BY due_ms, id LIMIT 1",
                    [now.timestamp_millis()],
                    DELIVERY,
                    ACTION,
                )?
                else {
                    return Ok(None);
                };
                let expected = version_param(d.version)?;
                d.lease_until = Some(lease_until);
                d.version += 1;
                // The write lock is held since the read: the row cannot have changed.
                let claimed = Row::of(&d)?.replace(c, expected, ACTION)?;
                Ok(claimed.then_some(d))
            })
            .await
    }

    async fn update(&self, delivery: &WebhookDelivery) -> Result<WebhookDelivery> {
        const ACTION: &str = "update a webhook delivery";
        let mut next = delivery.clone();
        next.version += 1;
        let row = Row::of(&next)?;
        let expected = version_param(delivery.version)?;
        self.db
            .write(ACTION, move |c| {
                if row.replace(c, expected, ACTION)? {
                    return Ok(next);
                }
                Err(missing_or_stale(
                    c,
                    "webhook_deliveries",
                    DELIVERY,
                    row.id,
                    None,
                    expected,
                ))
            })
            .await
    }
}

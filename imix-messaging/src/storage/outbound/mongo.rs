//! Outbound records on MongoDB: collection `outbound_messages`, `_id` the message id, the
//! record's own serde shape plus `due_ms` (only while queued) and `lease_ms` (Unix
//! milliseconds, absent when `None`); `dedupe` has a unique index. A claim is one
//! `findOneAndUpdate` per message that sets the lease and raises `version` in the same
//! single-document atomic step, so two replicas never claim one message.

use async_trait::async_trait;
use futures::TryStreamExt;
use imix_core::{
    id::TenantId,
    store::{
        mongo::{
            support::{
                backend_err, from_doc, missing_or_stale, page_filter, scope_filter, to_doc,
                unique_err, version_bson,
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

use super::OutboundRepository;
use crate::{
    outbound::{OutboundRecord, OutboundStatus},
    records::MessageId,
};

/// The outbound records' collection.
pub const OUTBOUND: &str = "outbound_messages";

const DUE_MS: &str = "due_ms";
const LEASE_MS: &str = "lease_ms";
const ENTITY: &str = "message";

/// The outbound records' schema step, recorded under capability
/// [`crate::storage::CAPABILITY`].
pub const MIGRATIONS: &[MongoMigration] = &[MongoMigration {
    name: "0010_outbound",
    indexes: INDEXES,
}];

const INDEXES: &[IndexSpec] = &[
    IndexSpec {
        collection: OUTBOUND,
        name: "dedupe_unique",
        keys: &[("dedupe", 1)],
        unique_field: Some("idempotency_key"),
        expire_at_field: false,
    },
    IndexSpec {
        collection: OUTBOUND,
        name: "by_due",
        keys: &[(DUE_MS, 1), ("_id", 1)],
        unique_field: None,
        expire_at_field: false,
    },
    IndexSpec {
        collection: OUTBOUND,
        name: "by_status",
        keys: &[("tenant_id", 1), ("status", 1), ("_id", 1)],
        unique_field: None,
        expire_at_field: false,
    },
];

/// Outbound records on one MongoDB [`Database`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct MongoOutbound {
    db: Database,
}

impl MongoOutbound {
    /// The records on `db` (migrated with [`MIGRATIONS`], see [`super::migrate`]).
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    fn coll(&self) -> Collection<Document> {
        self.db.collection(OUTBOUND)
    }
}

fn record_doc(r: &OutboundRecord) -> Result<Document> {
    let mut d = to_doc(r, &r.id.to_string(), ENTITY)?;
    if let Some(due) = r.due_at.filter(|_| r.status == OutboundStatus::Queued) {
        d.insert(DUE_MS, due.timestamp_millis());
    }
    if let Some(lease) = r.lease_until {
        d.insert(LEASE_MS, lease.timestamp_millis());
    }
    Ok(d)
}

fn decode(d: Document) -> Result<OutboundRecord> {
    from_doc(d, ENTITY, &[DUE_MS, LEASE_MS])
}

async fn collect(
    coll: Collection<Document>,
    filter: Document,
    sort: Document,
    limit: i64,
    action: &'static str,
) -> Result<Vec<OutboundRecord>> {
    let docs: Vec<Document> = coll
        .find(filter)
        .sort(sort)
        .limit(limit)
        .await
        .map_err(backend_err(action))?
        .try_collect()
        .await
        .map_err(backend_err(action))?;
    docs.into_iter().map(decode).collect()
}

#[async_trait]
impl OutboundRepository for MongoOutbound {
    async fn insert(&self, record: &OutboundRecord) -> Result<()> {
        self.coll()
            .insert_one(record_doc(record)?)
            .await
            .map(drop)
            .map_err(unique_err(INDEXES, ENTITY, "queue a message"))
    }

    async fn get(&self, scope: Scope, id: MessageId) -> Result<OutboundRecord> {
        let mut filter = doc! { "_id": id.to_string() };
        scope_filter(&mut filter, scope);
        match self
            .coll()
            .find_one(filter)
            .await
            .map_err(backend_err("read an outbound message"))?
        {
            Some(d) => decode(d),
            None => Err(Error::NotFound {
                entity: ENTITY,
                id: id.to_string(),
            }),
        }
    }

    async fn find_by_idempotency_key(
        &self,
        tenant: TenantId,
        key: &str,
    ) -> Result<Option<OutboundRecord>> {
        self.coll()
            .find_one(doc! { "dedupe": OutboundRecord::dedupe_of(tenant, key) })
            .await
            .map_err(backend_err("find a message by idempotency key"))?
            .map(decode)
            .transpose()
    }

    async fn claim_due(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
    ) -> Result<Vec<OutboundRecord>> {
        let now_ms = now.timestamp_millis();
        let lease = bson::to_bson(&lease_until).map_err(|e| Error::Corrupt {
            entity: ENTITY,
            source: e.into(),
        })?;
        let mut claimed = Vec::new();
        while claimed.len() < limit {
            let filter = doc! {
                DUE_MS: { "$lte": now_ms },
                "$or": [
                    { LEASE_MS: Bson::Null },
                    { LEASE_MS: { "$lte": now_ms } },
                ],
            };
            // Mirrors SqliteOutbound's claim field by field.
            let update = doc! {
                "$set": { "lease_until": lease.clone(), LEASE_MS: lease_until.timestamp_millis() },
                "$inc": { "version": 1_i64 },
            };
            match self
                .coll()
                .find_one_and_update(filter, update)
                .sort(doc! { DUE_MS: 1, "_id": 1 })
                .return_document(ReturnDocument::After)
                .await
                .map_err(backend_err("claim outbound messages"))?
            {
                Some(d) => claimed.push(decode(d)?),
                None => break,
            }
        }
        Ok(claimed)
    }

    async fn stale_sending(&self, now: Timestamp, limit: usize) -> Result<Vec<OutboundRecord>> {
        let filter = doc! {
            "status": OutboundStatus::Sending.as_str(),
            "$or": [
                { LEASE_MS: Bson::Null },
                { LEASE_MS: { "$lte": now.timestamp_millis() } },
            ],
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        collect(
            self.coll(),
            filter,
            doc! { "_id": 1 },
            limit,
            "find messages left sending",
        )
        .await
    }

    async fn update(&self, record: &OutboundRecord) -> Result<OutboundRecord> {
        let mut next = record.clone();
        next.version += 1;
        let id = record.id.to_string();
        let result = self
            .coll()
            .replace_one(
                doc! { "_id": &id, "version": version_bson(record.version)? },
                record_doc(&next)?,
            )
            .await
            .map_err(backend_err("update an outbound message"))?;
        if result.matched_count == 1 {
            return Ok(next);
        }
        Err(missing_or_stale(self.coll(), Document::new(), ENTITY, id, record.version).await)
    }

    async fn list(
        &self,
        scope: Scope,
        status: Option<OutboundStatus>,
        page: PageRequest,
    ) -> Result<Page<OutboundRecord>> {
        let limit = page.effective_limit()?;
        let mut filter = page_filter(&page)?;
        scope_filter(&mut filter, scope);
        if let Some(s) = status {
            filter.insert("status", s.as_str());
        }
        let items = collect(
            self.coll(),
            filter,
            doc! { "_id": 1 },
            i64::from(limit) + 1,
            "list outbound messages",
        )
        .await?;
        Ok(Page::from_overfetch(items, limit, |x| x.id.to_string()))
    }
}

//! The event log on MongoDB: collection `event_heads` (`_id` = tenant id, `last` = the last
//! number given) and `events` (`_id` = `"{tenant}:{seq}"`, the event's own fields plus
//! `at_ms`; unique on `(tenant_id, seq)`). An append raises the head with one atomic
//! `findOneAndUpdate` and then inserts the event: numbers are unique and dense, but two
//! replicas' appends may become visible out of order for a moment (and a replica dying
//! between the two steps leaves a number unused); streams wait briefly for such a gap and
//! then skip it (see [`crate::events::StreamConfig::gap_grace`]).

use async_trait::async_trait;
use futures::TryStreamExt;
use imix_core::{
    id::TenantId,
    store::mongo::{
        support::{backend_err, from_doc, is_duplicate_key, to_doc, unique_err},
        IndexSpec, MongoMigration,
    },
    Error, Result, Timestamp,
};
use mongodb::{
    bson::{doc, Bson, Document},
    options::ReturnDocument,
    Collection, Database,
};

use crate::events::{Event, EventLog, NewEvent};

/// The heads' collection.
pub const EVENT_HEADS: &str = "event_heads";
/// The events' collection.
pub const EVENTS: &str = "events";

/// The field beside an event's own that holds its time in Unix milliseconds.
const AT_MS: &str = "at_ms";

/// The event log's schema steps, recorded under capability [`crate::storage::CAPABILITY`].
pub const MIGRATIONS: &[MongoMigration] = &[MongoMigration {
    name: "0003_events",
    indexes: INDEXES,
}];

const INDEXES: &[IndexSpec] = &[
    IndexSpec {
        collection: EVENTS,
        name: "tenant_seq_unique",
        keys: &[("tenant_id", 1), ("seq", 1)],
        unique_field: Some("seq"),
        expire_at_field: false,
    },
    IndexSpec {
        collection: EVENTS,
        name: "by_age",
        keys: &[(AT_MS, 1)],
        unique_field: None,
        expire_at_field: false,
    },
];

const EVENT: &str = "event";

/// The event log on one MongoDB [`Database`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct MongoEventLog {
    db: Database,
}

impl MongoEventLog {
    /// The log on `db` (migrated with [`MIGRATIONS`], see [`super::migrate`]).
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    fn heads(&self) -> Collection<Document> {
        self.db.collection(EVENT_HEADS)
    }

    fn events(&self) -> Collection<Document> {
        self.db.collection(EVENTS)
    }

    /// Raises `tenant`'s head; the new value. The head is created first (if missing) by an
    /// upsert that only sets it on insert, then raised by a plain atomic update: concurrent
    /// first appends may race on creating it (one wins, the others' duplicate-key errors
    /// are ignored), never on raising it.
    async fn next_seq(&self, tenant: &str) -> Result<u64> {
        const ACTION: &str = "number a live event";
        for _ in 0..3 {
            let raised = self
                .heads()
                .find_one_and_update(doc! { "_id": tenant }, doc! { "$inc": { "last": 1_i64 } })
                .return_document(ReturnDocument::After)
                .await
                .map_err(backend_err(ACTION))?;
            if let Some(head) = raised {
                return number(head.get("last"));
            }
            let created = self
                .heads()
                .update_one(
                    doc! { "_id": tenant },
                    doc! { "$setOnInsert": { "last": 0_i64 } },
                )
                .upsert(true)
                .await;
            match created {
                Ok(_) => {}
                Err(e) if is_duplicate_key(&e) => {}
                Err(e) => return Err(backend_err(ACTION)(e)),
            }
        }
        Err(Error::backend(
            ACTION,
            "the tenant's event head could not be created",
        ))
    }
}

/// An integer field as stored (drivers and servers differ in the width they keep).
fn number(value: Option<&Bson>) -> Result<u64> {
    match value {
        Some(Bson::Int64(n)) => Ok((*n).max(0) as u64),
        Some(Bson::Int32(n)) => Ok((*n).max(0) as u64),
        Some(Bson::Double(n)) if n.fract() == 0.0 && *n >= 0.0 => Ok(*n as u64),
        _ => Err(Error::Corrupt {
            entity: EVENT,
            source: "an event number is not an integer".into(),
        }),
    }
}

fn seq_bson(seq: u64) -> Result<i64> {
    i64::try_from(seq).map_err(|_| Error::invalid("seq", "is out of range"))
}

#[async_trait]
impl EventLog for MongoEventLog {
    async fn append(&self, event: NewEvent) -> Result<Event> {
        const ACTION: &str = "record a live event";
        let tenant = event.tenant_id.to_string();
        let seq = self.next_seq(&tenant).await?;
        let recorded = Event {
            tenant_id: event.tenant_id,
            seq,
            kind: event.kind,
            data: event.data,
            at: imix_core::now(),
        };
        let mut d = to_doc(&recorded, &format!("{tenant}:{seq:020}"), EVENT)?;
        d.insert(AT_MS, recorded.at.timestamp_millis());
        self.events()
            .insert_one(d)
            .await
            .map_err(unique_err(INDEXES, EVENT, ACTION))?;
        Ok(recorded)
    }

    async fn read_after(&self, tenant: TenantId, after: u64, limit: u32) -> Result<Vec<Event>> {
        const ACTION: &str = "read live events";
        let docs: Vec<Document> = self
            .events()
            .find(doc! { "tenant_id": tenant.to_string(), "seq": { "$gt": seq_bson(after)? } })
            .sort(doc! { "seq": 1 })
            .limit(i64::from(limit))
            .await
            .map_err(backend_err(ACTION))?
            .try_collect()
            .await
            .map_err(backend_err(ACTION))?;
        docs.into_iter()
            .map(|d| from_doc(d, EVENT, &[AT_MS]))
            .collect()
    }

    async fn head(&self, tenant: TenantId) -> Result<u64> {
        const ACTION: &str = "read the live events' head";
        let head = self
            .heads()
            .find_one(doc! { "_id": tenant.to_string() })
            .await
            .map_err(backend_err(ACTION))?;
        match head {
            Some(h) => number(h.get("last")),
            None => Ok(0),
        }
    }

    async fn oldest(&self, tenant: TenantId) -> Result<Option<u64>> {
        const ACTION: &str = "read the oldest live event";
        let first = self
            .events()
            .find_one(doc! { "tenant_id": tenant.to_string() })
            .sort(doc! { "seq": 1 })
            .await
            .map_err(backend_err(ACTION))?;
        first.map(|d| number(d.get("seq"))).transpose()
    }

    async fn prune(&self, keep_per_tenant: u64, before: Timestamp) -> Result<u64> {
        const ACTION: &str = "prune live events";
        let mut removed = self
            .events()
            .delete_many(doc! { AT_MS: { "$lt": before.timestamp_millis() } })
            .await
            .map_err(backend_err(ACTION))?
            .deleted_count;
        let heads: Vec<Document> = self
            .heads()
            .find(doc! {})
            .await
            .map_err(backend_err(ACTION))?
            .try_collect()
            .await
            .map_err(backend_err(ACTION))?;
        for head in heads {
            let (Some(Bson::String(tenant)), Ok(last)) =
                (head.get("_id"), number(head.get("last")))
            else {
                continue;
            };
            if last <= keep_per_tenant {
                continue;
            }
            removed += self
                .events()
                .delete_many(doc! {
                    "tenant_id": tenant.as_str(),
                    "seq": { "$lte": seq_bson(last - keep_per_tenant)? },
                })
                .await
                .map_err(backend_err(ACTION))?
                .deleted_count;
        }
        Ok(removed)
    }
}

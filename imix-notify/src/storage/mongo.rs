//! The mail outbox on MongoDB, in the shared database.
//!
//! Documents are the entity's serde shape plus `due_ms` ([`OutboxEmail::due_at`] in Unix
//! milliseconds, absent once sent or failed), indexed. A claim is one `findOneAndUpdate`
//! on `due_ms <= now`, sorted by `due_ms`, that sets the lease and raises `attempts` and
//! `version` in the same single-document atomic step: two replicas can never claim the same
//! email, and no multi-document transaction is needed.

use async_trait::async_trait;
use futures::TryStreamExt;
use imix_core::{
    store::{
        mongo::{
            support::{
                backend_err, from_doc, missing_or_stale, scope_filter, to_doc, unique_err,
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
use serde::Serialize;

use super::MailOutboxRepository;
use crate::outbox_record::{OutboxEmail, OutboxId, OutboxStatus};

/// The collection the outbox lives in.
pub const MAIL_OUTBOX: &str = "mail_outbox";
const ENTITY: &str = "outbox email";
/// The field beside the entity's own that holds its due instant.
const DUE_MS: &str = "due_ms";

/// The outbox's indexes, recorded under capability [`super::CAPABILITY`]. The names and
/// indexes are those the store created before the outbox moved here, so existing databases
/// see them as applied already.
pub const MIGRATIONS: &[MongoMigration] = &[MongoMigration {
    name: "0001_mail_outbox",
    indexes: &[
        IndexSpec {
            collection: MAIL_OUTBOX,
            name: "by_due",
            keys: &[("due_ms", 1), ("_id", 1)],
            unique_field: None,
            expire_at_field: false,
        },
        IndexSpec {
            collection: MAIL_OUTBOX,
            name: "by_tenant",
            keys: &[("tenant_id", 1), ("_id", -1)],
            unique_field: None,
            expire_at_field: false,
        },
    ],
}];

/// [`MailOutboxRepository`] on the shared MongoDB database. Cheap to clone.
#[derive(Clone, Debug)]
pub struct MongoOutbox {
    db: Database,
}

impl MongoOutbox {
    /// The outbox in `db` (apply [`MIGRATIONS`] first, see [`super::migrate`]).
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    fn outbox(&self) -> Collection<Document> {
        self.db.collection(MAIL_OUTBOX)
    }
}

fn outbox_doc(email: &OutboxEmail) -> Result<Document> {
    let mut d = to_doc(email, &email.id.to_string(), ENTITY)?;
    if let Some(due) = email.due_at() {
        d.insert(DUE_MS, due.timestamp_millis());
    }
    Ok(d)
}

fn decode(d: Document) -> Result<OutboxEmail> {
    from_doc(d, ENTITY, &[DUE_MS])
}

fn bson_of<T: Serialize>(value: &T) -> Result<Bson> {
    bson::to_bson(value).map_err(|e| Error::Corrupt {
        entity: ENTITY,
        source: e.into(),
    })
}

#[async_trait]
impl MailOutboxRepository for MongoOutbox {
    async fn insert(&self, email: &OutboxEmail) -> Result<()> {
        const ACTION: &str = "insert an outbox email";
        self.outbox()
            .insert_one(outbox_doc(email)?)
            .await
            .map_err(unique_err(MIGRATIONS[0].indexes, ENTITY, ACTION))?;
        Ok(())
    }

    async fn get(&self, scope: Scope, id: OutboxId) -> Result<OutboxEmail> {
        let mut filter = doc! { "_id": id.to_string() };
        scope_filter(&mut filter, scope);
        match self
            .outbox()
            .find_one(filter)
            .await
            .map_err(backend_err("read an outbox email"))?
        {
            Some(d) => decode(d),
            None => Err(Error::NotFound {
                entity: ENTITY,
                id: id.to_string(),
            }),
        }
    }

    async fn claim_due(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Result<Option<OutboxEmail>> {
        // Mirrors OutboxEmail::apply_claim field by field.
        let update = doc! {
            "$set": {
                "status": bson_of(&OutboxStatus::Sending)?,
                "lease_until": bson_of(&lease_until)?,
                "updated_at": bson_of(&now)?,
                DUE_MS: lease_until.timestamp_millis(),
            },
            "$inc": { "attempts": 1_i64, "version": 1_i64 },
        };
        self.outbox()
            .find_one_and_update(doc! { DUE_MS: { "$lte": now.timestamp_millis() } }, update)
            .sort(doc! { DUE_MS: 1, "_id": 1 })
            .return_document(ReturnDocument::After)
            .await
            .map_err(backend_err("claim an outbox email"))?
            .map(decode)
            .transpose()
    }

    async fn update(&self, email: &OutboxEmail) -> Result<OutboxEmail> {
        let mut next = email.clone();
        next.version += 1;
        let id = email.id.to_string();
        let result = self
            .outbox()
            .replace_one(
                doc! { "_id": &id, "version": version_bson(email.version)? },
                outbox_doc(&next)?,
            )
            .await
            .map_err(backend_err("update an outbox email"))?;
        if result.matched_count == 1 {
            return Ok(next);
        }
        Err(missing_or_stale(self.outbox(), Document::new(), ENTITY, id, email.version).await)
    }

    async fn next_due_at(&self) -> Result<Option<Timestamp>> {
        let first = self
            .outbox()
            .find_one(doc! { DUE_MS: { "$exists": true } })
            .sort(doc! { DUE_MS: 1 })
            .projection(doc! { DUE_MS: 1 })
            .await
            .map_err(backend_err("read the next outbox due time"))?;
        let Some(d) = first else {
            return Ok(None);
        };
        // Written as an i64; a server or tool may hand small numbers back as i32.
        let ms = d
            .get_i64(DUE_MS)
            .or_else(|_| d.get_i32(DUE_MS).map(i64::from))
            .map_err(|e| Error::Corrupt {
                entity: ENTITY,
                source: e.into(),
            })?;
        chrono::DateTime::from_timestamp_millis(ms)
            .map(Some)
            .ok_or_else(|| Error::Corrupt {
                entity: ENTITY,
                source: "due instant out of range".into(),
            })
    }

    async fn list(&self, scope: Scope, page: PageRequest) -> Result<Page<OutboxEmail>> {
        const ACTION: &str = "list outbox emails";
        let limit = page.effective_limit()?;
        let mut filter = Document::new();
        scope_filter(&mut filter, scope);
        if let Some(cursor) = page.validated_cursor()? {
            filter.insert("_id", doc! { "$lt": cursor });
        }
        // Newest first: ids are UUIDv7 strings, so they sort by creation time.
        let docs: Vec<Document> = self
            .outbox()
            .find(filter)
            .sort(doc! { "_id": -1 })
            .limit(i64::from(limit) + 1)
            .await
            .map_err(backend_err(ACTION))?
            .try_collect()
            .await
            .map_err(backend_err(ACTION))?;
        let items = docs.into_iter().map(decode).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_overfetch(items, limit, |e| e.id.to_string()))
    }
}

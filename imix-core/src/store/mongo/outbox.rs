//! The mail outbox on MongoDB.
//!
//! Documents are the entity's serde shape plus `due_ms` ([`OutboxEmail::due_at`] in Unix
//! milliseconds, absent once sent or failed), indexed. A claim is one `findOneAndUpdate`
//! on `due_ms <= now`, sorted by `due_ms`, that sets the lease and raises `attempts` and
//! `version` in the same single-document atomic step: two replicas can never claim the same
//! email, and no multi-document transaction is needed.

#[allow(clippy::wildcard_imports)]
use super::*;
use crate::{
    model::{OutboxEmail, OutboxId, OutboxStatus},
    store::MailOutboxRepository,
    Timestamp,
};
use mongodb::options::ReturnDocument;

pub(super) const MAIL_OUTBOX: &str = "mail_outbox";
const ENTITY: &str = "outbox email";

impl MongoStore {
    fn outbox(&self) -> Collection<Document> {
        self.db.collection(MAIL_OUTBOX)
    }
}

fn outbox_doc(email: &OutboxEmail) -> Result<Document> {
    let mut d = to_doc(email, &email.id.to_string(), ENTITY)?;
    if let Some(due) = email.due_at() {
        d.insert("due_ms", due.timestamp_millis());
    }
    Ok(d)
}

fn decode(mut d: Document) -> Result<OutboxEmail> {
    d.remove("due_ms");
    from_doc(d, ENTITY)
}

fn bson_of<T: Serialize>(value: &T) -> Result<Bson> {
    bson::to_bson(value).map_err(|e| Error::Corrupt {
        entity: ENTITY,
        source: e.into(),
    })
}

#[async_trait]
impl MailOutboxRepository for MongoStore {
    async fn insert(&self, email: &OutboxEmail) -> Result<()> {
        self.outbox()
            .insert_one(outbox_doc(email)?)
            .await
            .map_err(unique_err(ENTITY, "insert an outbox email"))?;
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
                "due_ms": lease_until.timestamp_millis(),
            },
            "$inc": { "attempts": 1_i64, "version": 1_i64 },
        };
        self.outbox()
            .find_one_and_update(
                doc! { "due_ms": { "$lte": now.timestamp_millis() } },
                update,
            )
            .sort(doc! { "due_ms": 1, "_id": 1 })
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
        Err(self
            .missing_or_stale(self.outbox(), Document::new(), ENTITY, id, email.version)
            .await)
    }

    async fn next_due_at(&self) -> Result<Option<Timestamp>> {
        let first = self
            .outbox()
            .find_one(doc! { "due_ms": { "$exists": true } })
            .sort(doc! { "due_ms": 1 })
            .projection(doc! { "due_ms": 1 })
            .await
            .map_err(backend_err("read the next outbox due time"))?;
        let Some(d) = first else {
            return Ok(None);
        };
        let ms = d
            .get_i64("due_ms")
            .or_else(|_| d.get_i32("due_ms").map(i64::from))
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
        let limit = page.effective_limit()?;
        let mut filter = Document::new();
        scope_filter(&mut filter, scope);
        if let Some(cursor) = page.validated_cursor()? {
            filter.insert("_id", doc! { "$lt": cursor });
        }
        let docs: Vec<Document> = self
            .outbox()
            .find(filter)
            .sort(doc! { "_id": -1 })
            .limit(i64::from(limit) + 1)
            .await
            .map_err(backend_err("list outbox emails"))?
            .try_collect()
            .await
            .map_err(backend_err("list outbox emails"))?;
        let items = docs.into_iter().map(decode).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_overfetch(items, limit, |e| e.id.to_string()))
    }
}

//! The search index on MongoDB: collection `search_tokens`, one document per record and
//! distinct token (`tenant_id`, `kind`, `token`, `record_id`, `conversation_id`, `at_ms`),
//! indexed on `(tenant_id, kind, token)` for queries and unique on `(record_id, token)` so
//! writing an entry twice (a retried write, the backfill racing ingest) keeps one document.
//! MongoDB-wire servers such as SecantusDB have no text indexes; this is the portable
//! equivalent. A query finds each exact term's records, then the prefix term's with an
//! anchored regular expression (which walks the index's range), and intersects them.
//!
//! Writes happen around the record's own write (no transactions): [`put`] before the
//! record is inserted or replaced, [`prune`] after a replacement, [`remove`] after a
//! delete. Interrupted, they leave extra entries, never missing ones (see
//! [`super`]).

use std::collections::HashMap;

use async_trait::async_trait;
use futures::TryStreamExt;
use imix_core::{
    id::TenantId,
    store::mongo::{
        support::{backend_err, from_doc},
        IndexSpec, MongoMigration,
    },
    Error, Result, Timestamp,
};
use mongodb::{
    bson::{doc, Bson, Document},
    error::ErrorKind,
    Collection, Database,
};

use super::{SearchEntry, SearchHit, SearchIndex, SearchKind};
use crate::{
    records::{Contact, Message},
    search::Terms,
};

/// The tokens' collection.
pub const SEARCH_TOKENS: &str = "search_tokens";
/// The collection recording the backfill as done.
pub const SEARCH_STATE: &str = "search_state";
/// How many entries of one term a query reads at most: bounds a query whose term matches a
/// large share of a tenant (such as a one-letter prefix).
const MAX_PER_TERM: i64 = 50_000;

/// The index's schema step, recorded under capability [`crate::storage::CAPABILITY`].
pub const MIGRATIONS: &[MongoMigration] = &[MongoMigration {
    name: super::MIGRATION,
    indexes: INDEXES,
}];

const INDEXES: &[IndexSpec] = &[
    IndexSpec {
        collection: SEARCH_TOKENS,
        name: "tenant_kind_token",
        keys: &[("tenant_id", 1), ("kind", 1), ("token", 1)],
        unique_field: None,
        expire_at_field: false,
    },
    IndexSpec {
        collection: SEARCH_TOKENS,
        name: "record_token_unique",
        keys: &[("record_id", 1), ("token", 1)],
        unique_field: Some("token"),
        expire_at_field: false,
    },
];

fn tokens_of(db: &Database) -> Collection<Document> {
    db.collection(SEARCH_TOKENS)
}

/// Whether every failure of an unordered insert is a duplicate key (the entry was there).
fn only_duplicates(e: &mongodb::error::Error) -> bool {
    match e.kind.as_ref() {
        ErrorKind::InsertMany(m) => {
            m.write_concern_error.is_none()
                && m.write_errors
                    .as_ref()
                    .is_some_and(|errs| errs.iter().all(|w| w.code == 11000))
        }
        _ => imix_core::store::mongo::support::is_duplicate_key(e),
    }
}

/// Adds `entry`'s tokens not stored yet and sets the order time of all of them. Call before
/// the record's insert or replacement.
pub async fn put(db: &Database, entry: &SearchEntry) -> Result<()> {
    const ACTION: &str = "index a record for search";
    if entry.tokens.is_empty() {
        return Ok(());
    }
    let conversation = entry
        .conversation_id
        .as_ref()
        .map_or(Bson::Null, |c| Bson::String(c.clone()));
    let docs: Vec<Document> = entry
        .tokens
        .iter()
        .map(|t| {
            doc! {
                "tenant_id": entry.tenant_id.to_string(),
                "kind": entry.kind.as_str(),
                "token": t,
                "record_id": &entry.record_id,
                "conversation_id": conversation.clone(),
                "at_ms": entry.at_ms,
            }
        })
        .collect();
    match tokens_of(db).insert_many(docs).ordered(false).await {
        Ok(_) => {}
        Err(e) if only_duplicates(&e) => {
            // Some were there already: a contact's change keeps most of its tokens. Their
            // order time follows the record's.
            tokens_of(db)
                .update_many(
                    doc! { "record_id": &entry.record_id },
                    doc! { "$set": { "at_ms": entry.at_ms } },
                )
                .await
                .map_err(backend_err(ACTION))?;
        }
        Err(e) => return Err(Error::backend(ACTION, e)),
    }
    Ok(())
}

/// Removes the tokens of `entry.record_id` that `entry` no longer has. Call after the
/// record's replacement succeeded.
pub async fn prune(db: &Database, entry: &SearchEntry) -> Result<()> {
    tokens_of(db)
        .delete_many(doc! { "record_id": &entry.record_id, "token": { "$nin": &entry.tokens } })
        .await
        .map_err(backend_err("prune a record's search tokens"))?;
    Ok(())
}

/// Removes every token of `record_id`. Call after the record's delete.
pub async fn remove(db: &Database, record_id: &str) -> Result<()> {
    tokens_of(db)
        .delete_many(doc! { "record_id": record_id })
        .await
        .map_err(backend_err("remove a record's search tokens"))?;
    Ok(())
}

/// A regular expression matching strings that begin with `prefix`.
fn anchored(prefix: &str) -> String {
    let mut re = String::from("^");
    for c in prefix.chars() {
        if !c.is_alphanumeric() {
            re.push('\\');
        }
        re.push(c);
    }
    re
}

/// The search index on one MongoDB [`Database`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct MongoSearch {
    db: Database,
}

impl MongoSearch {
    /// The index on `db` (migrated with [`MIGRATIONS`], see [`super::migrate`]).
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Fills the index from the stored records unless a completed backfill is recorded.
    /// Entries are added, never removed, so one racing a running replica's writes loses
    /// none of them; an interrupted backfill runs again in full.
    pub async fn backfill(&self) -> Result<()> {
        const ACTION: &str = "backfill the search index";
        let state: Collection<Document> = self.db.collection(SEARCH_STATE);
        if state
            .find_one(doc! { "_id": "backfill" })
            .await
            .map_err(backend_err(ACTION))?
            .is_some()
        {
            return Ok(());
        }
        let n = self.index_all().await?;
        state
            .update_one(
                doc! { "_id": "backfill" },
                doc! { "$set": { "done_at": imix_core::now().to_rfc3339() } },
            )
            .upsert(true)
            .await
            .map_err(backend_err(ACTION))?;
        tracing::info!(records = n, "search index backfilled");
        Ok(())
    }

    /// Indexes every stored message and contact; returns how many.
    async fn index_all(&self) -> Result<u64> {
        const ACTION: &str = "index every record for search";
        let mut count = 0;
        let mut messages = self
            .db
            .collection::<Document>(crate::storage::mongo::MESSAGES)
            .find(doc! {})
            .await
            .map_err(backend_err(ACTION))?;
        while let Some(d) = messages.try_next().await.map_err(backend_err(ACTION))? {
            match from_doc::<Message>(d, "message", &[]) {
                Ok(m) => {
                    put(&self.db, &SearchEntry::of_message(&m)).await?;
                    count += 1;
                }
                Err(e) => tracing::warn!(error = %e, "search backfill: unreadable message skipped"),
            }
        }
        let mut contacts = self
            .db
            .collection::<Document>(crate::storage::mongo::CONTACTS)
            .find(doc! {})
            .await
            .map_err(backend_err(ACTION))?;
        while let Some(d) = contacts.try_next().await.map_err(backend_err(ACTION))? {
            match from_doc::<Contact>(d, "contact", &[]) {
                Ok(c) => {
                    put(&self.db, &SearchEntry::of_contact(&c)).await?;
                    count += 1;
                }
                Err(e) => tracing::warn!(error = %e, "search backfill: unreadable contact skipped"),
            }
        }
        Ok(count)
    }

    /// `(record id → (conversation id, at_ms))` of one term's entries.
    async fn term(
        &self,
        tenant: TenantId,
        kind: SearchKind,
        token: Bson,
        within: Option<Vec<String>>,
    ) -> Result<HashMap<String, (Option<String>, i64)>> {
        const ACTION: &str = "search";
        let mut filter =
            doc! { "tenant_id": tenant.to_string(), "kind": kind.as_str(), "token": token };
        if let Some(records) = within {
            filter.insert("record_id", doc! { "$in": records });
        }
        let mut cursor = tokens_of(&self.db)
            .find(filter)
            .projection(doc! { "_id": 0, "record_id": 1, "conversation_id": 1, "at_ms": 1 })
            .limit(MAX_PER_TERM)
            .await
            .map_err(backend_err(ACTION))?;
        let mut found = HashMap::new();
        while let Some(d) = cursor.try_next().await.map_err(backend_err(ACTION))? {
            let Ok(record) = d.get_str("record_id") else {
                continue;
            };
            let conversation = d.get_str("conversation_id").ok().map(str::to_owned);
            let at_ms = d
                .get_i64("at_ms")
                .or_else(|_| d.get_i32("at_ms").map(i64::from))
                .unwrap_or(0);
            found.insert(record.to_owned(), (conversation, at_ms));
        }
        Ok(found)
    }
}

#[async_trait]
impl SearchIndex for MongoSearch {
    async fn search(
        &self,
        tenant: TenantId,
        kind: SearchKind,
        terms: &Terms,
        max: usize,
    ) -> Result<Vec<SearchHit>> {
        // Exact terms first (usually the more selective), then the prefix, which may be
        // as broad as one letter, within the records they left when those are few.
        let mut found: Option<HashMap<String, (Option<String>, i64)>> = None;
        for t in &terms.exact {
            let with = self
                .term(tenant, kind, Bson::String(t.clone()), None)
                .await?;
            found = Some(match found {
                None => with,
                Some(mut so_far) => {
                    so_far.retain(|record, _| with.contains_key(record));
                    so_far
                }
            });
            if found.as_ref().is_some_and(HashMap::is_empty) {
                return Ok(Vec::new());
            }
        }
        let prefix = Bson::Document(doc! { "$regex": anchored(&terms.prefix) });
        let found = match found {
            None => self.term(tenant, kind, prefix, None).await?,
            Some(mut so_far) => {
                let within: Option<Vec<String>> =
                    (so_far.len() <= 1_000).then(|| so_far.keys().cloned().collect());
                let with = self.term(tenant, kind, prefix, within).await?;
                so_far.retain(|record, _| with.contains_key(record));
                so_far
            }
        };
        let mut hits: Vec<(String, Option<String>, i64)> = found
            .into_iter()
            .map(|(record, (conversation, at))| (record, conversation, at))
            .collect();
        hits.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| b.0.cmp(&a.0)));
        hits.truncate(max);
        Ok(hits
            .into_iter()
            .map(|(record_id, conversation_id, at_ms)| SearchHit {
                record_id,
                conversation_id,
                at: Timestamp::from_timestamp_millis(at_ms).unwrap_or_default(),
            })
            .collect())
    }

    async fn rebuild(&self) -> Result<u64> {
        tokens_of(&self.db)
            .delete_many(doc! {})
            .await
            .map_err(backend_err("rebuild the search index"))?;
        self.index_all().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_anchored_and_escaped() {
        assert_eq!(anchored("cout"), "^cout");
        assert_eq!(anchored("a.b"), "^a\\.b");
    }
}

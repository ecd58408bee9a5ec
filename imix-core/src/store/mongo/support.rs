//! What a capability needs to keep its own collections in the shared MongoDB database:
//! named migrations declaring the indexes they create (a unique index names the field its
//! violation is reported under), and the helpers every MongoDB repository uses.
//!
//! ```
//! use imix_core::store::mongo::{IndexSpec, MongoMigration};
//!
//! const MIGRATIONS: &[MongoMigration] = &[MongoMigration {
//!     name: "0001_notes",
//!     indexes: &[IndexSpec {
//!         collection: "notes",
//!         name: "tenant_title_unique",
//!         keys: &[("tenant_id", 1), ("title", 1)],
//!         unique_field: Some("title"),
//!         expire_at_field: false,
//!     }],
//! }];
//! // imix_core::store::mongo::support::migrate(&database, "notes", MIGRATIONS).await?;
//! ```

use std::time::Duration;

use futures::TryStreamExt;
use mongodb::{
    bson::{self, doc, Document},
    error::{ErrorKind, WriteFailure},
    options::IndexOptions,
    Collection, Database, IndexModel,
};
use serde::{de::DeserializeOwned, Serialize};

use crate::{
    store::{Page, PageRequest, Scope},
    Error, Result,
};

/// The collection that records applied migrations.
const MIGRATIONS: &str = "_migrations";

/// One named schema step of a capability: the indexes it creates. Applied once per
/// database, recorded by `(capability, name)`.
#[derive(Debug, Clone, Copy)]
pub struct MongoMigration {
    /// A name unique within the capability, such as `0001_accounts`.
    pub name: &'static str,
    /// The indexes to create (creating an existing index is a no-op).
    pub indexes: &'static [IndexSpec],
}

/// An index of a capability's collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexSpec {
    /// The collection.
    pub collection: &'static str,
    /// The index name: a duplicate-key error names it, which is how a violation is told
    /// apart.
    pub name: &'static str,
    /// Keys and directions (`1` or `-1`).
    pub keys: &'static [(&'static str, i32)],
    /// `Some(field)` for a unique index: the field [`Error::Duplicate`] names.
    pub unique_field: Option<&'static str>,
    /// A TTL index removing a document once the date in its (single) key has passed.
    pub expire_at_field: bool,
}

/// Applies those of `capability`'s `migrations` not applied yet, in order; returns how many
/// were applied now. Several replicas may run it at once: index creation is idempotent and
/// the second record of a step is ignored.
pub async fn migrate(
    db: &Database,
    capability: &str,
    migrations: &[MongoMigration],
) -> Result<usize> {
    const ACTION: &str = "migrate the schema";
    let records: Collection<Document> = db.collection(MIGRATIONS);
    let applied: std::collections::HashSet<String> = records
        .find(doc! { "capability": capability })
        .await
        .map_err(backend_err(ACTION))?
        .try_collect::<Vec<Document>>()
        .await
        .map_err(backend_err(ACTION))?
        .iter()
        .filter_map(|d| d.get_str("name").ok().map(str::to_owned))
        .collect();
    let mut count = 0;
    for m in migrations.iter().filter(|m| !applied.contains(m.name)) {
        for index in m.indexes {
            create_index(db, index).await.map_err(|e| {
                Error::backend(
                    ACTION,
                    format!(
                        "migration {capability}/{} failed creating index {} on {}: {e}",
                        m.name, index.name, index.collection
                    ),
                )
            })?;
        }
        let record = doc! {
            "_id": format!("{capability}/{}", m.name),
            "capability": capability,
            "name": m.name,
            "applied_at": bson::DateTime::now(),
        };
        if let Err(e) = records.insert_one(record).await {
            if !is_duplicate_key(&e) {
                return Err(Error::backend(ACTION, e));
            }
        }
        count += 1;
    }
    Ok(count)
}

async fn create_index(db: &Database, spec: &IndexSpec) -> Result<()> {
    let mut keys = Document::new();
    for (field, direction) in spec.keys {
        keys.insert(*field, *direction);
    }
    let options = IndexOptions::builder()
        .name(spec.name.to_owned())
        .unique(spec.unique_field.is_some())
        .expire_after(spec.expire_at_field.then_some(Duration::ZERO))
        .build();
    db.collection::<Document>(spec.collection)
        .create_index(IndexModel::builder().keys(keys).options(options).build())
        .await
        .map_err(backend_err("migrate the schema"))?;
    Ok(())
}

/// Maps any driver error to [`Error::Backend`] with `action`.
pub fn backend_err(action: &'static str) -> impl Fn(mongodb::error::Error) -> Error {
    move |e| Error::backend(action, e)
}

/// Whether the error is a duplicate-key error (code 11000).
pub fn is_duplicate_key(e: &mongodb::error::Error) -> bool {
    duplicate_key_message(e).is_some()
}

fn duplicate_key_message(e: &mongodb::error::Error) -> Option<String> {
    match e.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(w)) if w.code == 11000 => Some(w.message.clone()),
        ErrorKind::Command(c) if c.code == 11000 => Some(c.message.clone()),
        ErrorKind::InsertMany(m) => m
            .write_errors
            .as_ref()
            .and_then(|errs| errs.iter().find(|w| w.code == 11000))
            .map(|w| w.message.clone()),
        _ => None,
    }
}

/// The index a duplicate-key message names: `E11000 duplicate key error collection: db.c
/// index: NAME dup key: …`.
fn violated_index(message: &str) -> Option<(&str, &str)> {
    let after_collection = message.split_once("collection: ")?.1;
    let (namespace, rest) = after_collection.split_once(" index: ")?;
    let collection = namespace.split_once('.').map_or(namespace, |(_, c)| c);
    let index = rest.split_whitespace().next()?;
    Some((collection, index))
}

/// Maps a duplicate-key error to [`Error::Duplicate`] naming the field of the declared
/// unique index it violated (`_id_` → `id`); any other error to [`Error::Backend`]. A
/// violation of an undeclared index is a backend error.
pub fn unique_err(
    indexes: &'static [IndexSpec],
    entity: &'static str,
    action: &'static str,
) -> impl Fn(mongodb::error::Error) -> Error {
    move |e| {
        let Some(message) = duplicate_key_message(&e) else {
            return Error::backend(action, e);
        };
        let field = violated_index(&message).and_then(|(collection, index)| {
            if index == "_id_" {
                return Some("id");
            }
            indexes
                .iter()
                .find(|i| i.name == index && i.collection == collection)
                .and_then(|i| i.unique_field)
        });
        match field {
            Some(field) => Error::Duplicate { entity, field },
            None => Error::backend(action, e),
        }
    }
}

/// Serializes an entity as a document with `_id` = `id`.
pub fn to_doc<T: Serialize>(value: &T, id: &str, entity: &'static str) -> Result<Document> {
    let mut doc = bson::to_document(value).map_err(|e| Error::Corrupt {
        entity,
        source: e.into(),
    })?;
    doc.insert("_id", id);
    Ok(doc)
}

/// Reads an entity back from a document, dropping `_id` and the extra fields named.
pub fn from_doc<T: DeserializeOwned>(
    mut doc: Document,
    entity: &'static str,
    extra_fields: &[&str],
) -> Result<T> {
    doc.remove("_id");
    for field in extra_fields {
        doc.remove(field);
    }
    bson::from_document(doc).map_err(|e| Error::Corrupt {
        entity,
        source: e.into(),
    })
}

/// A record version as stored.
pub fn version_bson(version: u64) -> Result<i64> {
    i64::try_from(version).map_err(|_| Error::invalid("version", "is out of range"))
}

/// Limits `filter` to `scope` (field `tenant_id`).
pub fn scope_filter(filter: &mut Document, scope: Scope) {
    if let Scope::Tenant(t) = scope {
        filter.insert("tenant_id", t.to_string());
    }
}

/// The filter for the page after `page`'s cursor (ids ascending).
pub fn page_filter(page: &PageRequest) -> Result<Document> {
    Ok(match page.validated_cursor()? {
        Some(cursor) => doc! { "_id": { "$gt": cursor } },
        None => Document::new(),
    })
}

/// One page of `coll` matching `filter`, ordered by `_id` ascending.
pub async fn list_docs<T: DeserializeOwned>(
    coll: Collection<Document>,
    mut filter: Document,
    page: PageRequest,
    entity: &'static str,
    id_of: impl Fn(&T) -> String,
) -> Result<Page<T>> {
    let limit = page.effective_limit()?;
    filter.extend(page_filter(&page)?);
    let docs: Vec<Document> = coll
        .find(filter)
        .sort(doc! { "_id": 1 })
        .limit(i64::from(limit) + 1)
        .await
        .map_err(backend_err("list records"))?
        .try_collect()
        .await
        .map_err(backend_err("list records"))?;
    let items = docs
        .into_iter()
        .map(|d| from_doc(d, entity, &[]))
        .collect::<Result<Vec<T>>>()?;
    Ok(Page::from_overfetch(items, limit, id_of))
}

/// Replaces the tenant-owned document `id` if it is visible in `scope` and at version
/// `expected`; tells a stale version from a missing record otherwise.
#[allow(clippy::too_many_arguments)]
pub async fn replace_scoped(
    coll: Collection<Document>,
    scope: Scope,
    id: String,
    expected: u64,
    replacement: Document,
    unique: &'static [IndexSpec],
    entity: &'static str,
    action: &'static str,
) -> Result<()> {
    let mut filter = doc! { "_id": &id, "version": version_bson(expected)? };
    scope_filter(&mut filter, scope);
    let result = coll
        .replace_one(filter, replacement)
        .await
        .map_err(unique_err(unique, entity, action))?;
    if result.matched_count == 1 {
        return Ok(());
    }
    let mut scope_only = Document::new();
    scope_filter(&mut scope_only, scope);
    Err(missing_or_stale(coll, scope_only, entity, id, expected).await)
}

/// After a conditional write matched nothing: [`Error::NotFound`] when no document `id`
/// matches `filter`, else [`Error::VersionConflict`].
pub async fn missing_or_stale(
    coll: Collection<Document>,
    mut filter: Document,
    entity: &'static str,
    id: String,
    expected: u64,
) -> Error {
    filter.insert("_id", id.clone());
    match coll.count_documents(filter).await {
        Ok(0) => Error::NotFound { entity, id },
        Ok(_) => Error::VersionConflict {
            entity,
            id,
            expected,
        },
        Err(e) => Error::backend("update a record", e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_violated_index_is_read_from_the_message() {
        let m = "E11000 duplicate key error collection: imix.notes index: title_unique dup key: { title: \"a\" }";
        assert_eq!(violated_index(m), Some(("notes", "title_unique")));
        assert_eq!(violated_index("E11000 something else"), None);
    }
}

//! Annotations on MongoDB: collections `conversation_notes`, `labels` (unique on
//! `(tenant_id, name_key)`, the lower-cased name the adapter adds to each document) and
//! `canned_responses` (unique on `(tenant_id, shortcut)`). Deleting a label is one
//! `findOneAndDelete`, then one `updateMany` pulling it off its tenant's conversations
//! (raising their versions).

use async_trait::async_trait;
use imix_core::{
    store::{
        check_owner_stays_in_scope,
        mongo::{
            support::{
                backend_err, from_doc, list_docs, replace_scoped, scope_filter, to_doc, unique_err,
            },
            IndexSpec, MongoMigration,
        },
        Page, PageRequest, Scope,
    },
    Error, Result,
};
use mongodb::{
    bson::{doc, Bson, Document},
    Collection, Database,
};
use serde::de::DeserializeOwned;

use super::{CannedResponseRepository, LabelRepository, NoteRepository};
use crate::{
    annotations::{CannedResponse, CannedResponseId, Label, LabelId, Note, NoteId},
    records::ConversationId,
};

/// The notes' collection.
pub const NOTES: &str = "conversation_notes";
/// The labels' collection.
pub const LABELS: &str = "labels";
/// The canned responses' collection.
pub const CANNED_RESPONSES: &str = "canned_responses";
/// The conversations' collection (the inbox's).
const CONVERSATIONS: &str = "conversations";

/// The steps of this module, recorded under capability [`crate::storage::CAPABILITY`].
pub const MIGRATIONS: &[MongoMigration] = &[MongoMigration {
    name: "0006_annotations",
    indexes: INDEXES,
}];

const INDEXES: &[IndexSpec] = &[
    IndexSpec {
        collection: NOTES,
        name: "by_conversation",
        keys: &[("conversation_id", 1), ("_id", 1)],
        unique_field: None,
        expire_at_field: false,
    },
    IndexSpec {
        collection: NOTES,
        name: "by_tenant",
        keys: &[("tenant_id", 1), ("_id", 1)],
        unique_field: None,
        expire_at_field: false,
    },
    IndexSpec {
        collection: LABELS,
        name: "tenant_name_key_unique",
        keys: &[("tenant_id", 1), ("name_key", 1)],
        unique_field: Some("name"),
        expire_at_field: false,
    },
    IndexSpec {
        collection: LABELS,
        name: "by_tenant",
        keys: &[("tenant_id", 1), ("_id", 1)],
        unique_field: None,
        expire_at_field: false,
    },
    IndexSpec {
        collection: CANNED_RESPONSES,
        name: "tenant_shortcut_unique",
        keys: &[("tenant_id", 1), ("shortcut", 1)],
        unique_field: Some("shortcut"),
        expire_at_field: false,
    },
    IndexSpec {
        collection: CANNED_RESPONSES,
        name: "by_tenant",
        keys: &[("tenant_id", 1), ("_id", 1)],
        unique_field: None,
        expire_at_field: false,
    },
    IndexSpec {
        collection: CONVERSATIONS,
        name: "by_labels",
        keys: &[("labels", 1)],
        unique_field: None,
        expire_at_field: false,
    },
];

const NOTE: &str = "note";
const LABEL: &str = "label";
const CANNED: &str = "canned response";
/// The field the adapter adds to label documents for case-insensitive uniqueness.
const NAME_KEY: &str = "name_key";

/// The repositories of [`super`] on one MongoDB [`Database`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct MongoAnnotations {
    db: Database,
}

impl MongoAnnotations {
    /// The repositories on `db` (migrated with [`MIGRATIONS`], see [`super::migrate`]).
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    fn coll(&self, name: &str) -> Collection<Document> {
        self.db.collection(name)
    }

    async fn get_doc<T: DeserializeOwned>(
        &self,
        coll: &str,
        entity: &'static str,
        id: String,
        scope: Scope,
    ) -> Result<T> {
        match self
            .coll(coll)
            .find_one(scoped_id(id.clone(), scope))
            .await
            .map_err(backend_err("read an annotation"))?
        {
            Some(d) => from_doc(d, entity, &[NAME_KEY]),
            None => Err(not_found(entity, id)),
        }
    }

    async fn delete_doc<T: DeserializeOwned>(
        &self,
        coll: &str,
        entity: &'static str,
        id: String,
        scope: Scope,
    ) -> Result<T> {
        let found = self
            .coll(coll)
            .find_one_and_delete(scoped_id(id.clone(), scope))
            .await
            .map_err(backend_err("delete an annotation"))?
            .ok_or_else(|| not_found(entity, id))?;
        from_doc(found, entity, &[NAME_KEY])
    }
}

fn not_found(entity: &'static str, id: impl ToString) -> Error {
    Error::NotFound {
        entity,
        id: id.to_string(),
    }
}

fn scoped_id(id: String, scope: Scope) -> Document {
    let mut filter = doc! { "_id": id };
    scope_filter(&mut filter, scope);
    filter
}

/// Escapes regular-expression metacharacters so `text` matches literally.
fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        if "\\^$.|?*+()[]{}-/".contains(ch) {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

fn label_doc(label: &Label) -> Result<Document> {
    let mut d = to_doc(label, &label.id.to_string(), LABEL)?;
    d.insert(NAME_KEY, label.name_key());
    Ok(d)
}

#[async_trait]
impl NoteRepository for MongoAnnotations {
    async fn insert(&self, note: &Note) -> Result<()> {
        let d = to_doc(note, &note.id.to_string(), NOTE)?;
        self.coll(NOTES)
            .insert_one(d)
            .await
            .map_err(unique_err(INDEXES, NOTE, "insert a note"))?;
        Ok(())
    }

    async fn get(&self, scope: Scope, id: NoteId) -> Result<Note> {
        self.get_doc(NOTES, NOTE, id.to_string(), scope).await
    }

    async fn update(&self, scope: Scope, note: &Note) -> Result<Note> {
        check_owner_stays_in_scope(scope, Some(note.tenant_id))?;
        let mut next = note.clone();
        next.version += 1;
        let id = note.id.to_string();
        let replacement = to_doc(&next, &id, NOTE)?;
        replace_scoped(
            self.coll(NOTES),
            scope,
            id,
            note.version,
            replacement,
            INDEXES,
            NOTE,
            "update a note",
        )
        .await?;
        Ok(next)
    }

    async fn delete(&self, scope: Scope, id: NoteId) -> Result<Note> {
        self.delete_doc(NOTES, NOTE, id.to_string(), scope).await
    }

    async fn list_for_conversation(
        &self,
        scope: Scope,
        conversation: ConversationId,
        page: PageRequest,
    ) -> Result<Page<Note>> {
        let mut filter = doc! { "conversation_id": conversation.to_string() };
        scope_filter(&mut filter, scope);
        list_docs(self.coll(NOTES), filter, page, NOTE, |n: &Note| {
            n.id.to_string()
        })
        .await
    }

    async fn list(&self, scope: Scope, page: PageRequest) -> Result<Page<Note>> {
        let mut filter = Document::new();
        scope_filter(&mut filter, scope);
        list_docs(self.coll(NOTES), filter, page, NOTE, |n: &Note| {
            n.id.to_string()
        })
        .await
    }
}

#[async_trait]
impl LabelRepository for MongoAnnotations {
    async fn insert(&self, label: &Label) -> Result<()> {
        self.coll(LABELS)
            .insert_one(label_doc(label)?)
            .await
            .map_err(unique_err(INDEXES, LABEL, "insert a label"))?;
        Ok(())
    }

    async fn get(&self, scope: Scope, id: LabelId) -> Result<Label> {
        self.get_doc(LABELS, LABEL, id.to_string(), scope).await
    }

    async fn update(&self, scope: Scope, label: &Label) -> Result<Label> {
        check_owner_stays_in_scope(scope, Some(label.tenant_id))?;
        let mut next = label.clone();
        next.version += 1;
        replace_scoped(
            self.coll(LABELS),
            scope,
            label.id.to_string(),
            label.version,
            label_doc(&next)?,
            INDEXES,
            LABEL,
            "update a label",
        )
        .await?;
        Ok(next)
    }

    async fn delete(&self, scope: Scope, id: LabelId) -> Result<Label> {
        let label: Label = self
            .delete_doc(LABELS, LABEL, id.to_string(), scope)
            .await?;
        // Off every conversation of its tenant carrying it, versions raised so a writer
        // holding the old one retries.
        self.coll(CONVERSATIONS)
            .update_many(
                doc! { "tenant_id": label.tenant_id.to_string(), "labels": id.to_string() },
                doc! { "$pull": { "labels": id.to_string() }, "$inc": { "version": 1_i64 } },
            )
            .await
            .map_err(backend_err("remove a label from conversations"))?;
        Ok(label)
    }

    async fn list(&self, scope: Scope, page: PageRequest) -> Result<Page<Label>> {
        let mut filter = Document::new();
        scope_filter(&mut filter, scope);
        // The added `name_key` is not a field of `Label`; serde skips it.
        list_docs(self.coll(LABELS), filter, page, LABEL, |l: &Label| {
            l.id.to_string()
        })
        .await
    }
}

#[async_trait]
impl CannedResponseRepository for MongoAnnotations {
    async fn insert(&self, canned: &CannedResponse) -> Result<()> {
        let d = to_doc(canned, &canned.id.to_string(), CANNED)?;
        self.coll(CANNED_RESPONSES)
            .insert_one(d)
            .await
            .map_err(unique_err(INDEXES, CANNED, "insert a canned response"))?;
        Ok(())
    }

    async fn get(&self, scope: Scope, id: CannedResponseId) -> Result<CannedResponse> {
        self.get_doc(CANNED_RESPONSES, CANNED, id.to_string(), scope)
            .await
    }

    async fn update(&self, scope: Scope, canned: &CannedResponse) -> Result<CannedResponse> {
        check_owner_stays_in_scope(scope, Some(canned.tenant_id))?;
        let mut next = canned.clone();
        next.version += 1;
        let id = canned.id.to_string();
        let replacement = to_doc(&next, &id, CANNED)?;
        replace_scoped(
            self.coll(CANNED_RESPONSES),
            scope,
            id,
            canned.version,
            replacement,
            INDEXES,
            CANNED,
            "update a canned response",
        )
        .await?;
        Ok(next)
    }

    async fn delete(&self, scope: Scope, id: CannedResponseId) -> Result<CannedResponse> {
        self.delete_doc(CANNED_RESPONSES, CANNED, id.to_string(), scope)
            .await
    }

    async fn list(
        &self,
        scope: Scope,
        query: Option<String>,
        page: PageRequest,
    ) -> Result<Page<CannedResponse>> {
        let mut filter = Document::new();
        scope_filter(&mut filter, scope);
        if let Some(q) = query {
            let q = regex_escape(&q);
            filter.insert(
                "$or",
                vec![
                    Bson::Document(doc! { "shortcut": { "$regex": format!("^{q}") } }),
                    Bson::Document(doc! { "title": { "$regex": q, "$options": "i" } }),
                ],
            );
        }
        list_docs(
            self.coll(CANNED_RESPONSES),
            filter,
            page,
            CANNED,
            |c: &CannedResponse| c.id.to_string(),
        )
        .await
    }

    async fn find_by_shortcut(
        &self,
        scope: Scope,
        shortcut: &str,
    ) -> Result<Option<CannedResponse>> {
        let mut filter = doc! { "shortcut": shortcut };
        scope_filter(&mut filter, scope);
        self.coll(CANNED_RESPONSES)
            .find_one(filter)
            .sort(doc! { "_id": 1 })
            .await
            .map_err(backend_err("find a canned response"))?
            .map(|d| from_doc(d, CANNED, &[]))
            .transpose()
    }
}

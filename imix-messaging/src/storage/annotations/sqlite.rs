//! Annotations on the embedded SQLite database: tables `conversation_notes`, `labels`
//! (`(tenant_id, name_key)` UNIQUE, the lower-cased name) and `canned_responses`
//! (`(tenant_id, shortcut)` UNIQUE). Each row keeps the record as a JSON document beside the
//! columns queries filter on. Deleting a label removes it from its tenant's conversations
//! in the same write closure (one transaction).

use async_trait::async_trait;
use imix_core::{
    store::{
        check_owner_stays_in_scope,
        sqlite::{
            support::{
                db_err, exec, missing_or_stale, scope_param, to_json, unique_err, version_param,
            },
            Migration, SqliteDb, UniqueKey,
        },
        Page, PageRequest, Scope,
    },
    Error, Result,
};
use rusqlite::{params, Connection};
use serde::de::DeserializeOwned;

use super::{CannedResponseRepository, LabelRepository, NoteRepository};
use crate::{
    annotations::{CannedResponse, CannedResponseId, Label, LabelId, Note, NoteId},
    records::ConversationId,
};

/// The steps of this module, recorded under capability [`crate::storage::CAPABILITY`].
pub const MIGRATIONS: &[Migration] = &[Migration {
    name: "0006_annotations",
    sql: "CREATE TABLE IF NOT EXISTS conversation_notes (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        conversation_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        doc TEXT NOT NULL
     );
     CREATE INDEX IF NOT EXISTS conversation_notes_by_conversation
        ON conversation_notes (conversation_id, id);
     CREATE INDEX IF NOT EXISTS conversation_notes_by_tenant ON conversation_notes (tenant_id, id);
     CREATE TABLE IF NOT EXISTS labels (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        name_key TEXT NOT NULL,
        version INTEGER NOT NULL,
        doc TEXT NOT NULL,
        UNIQUE (tenant_id, name_key)
     );
     CREATE INDEX IF NOT EXISTS labels_by_tenant ON labels (tenant_id, id);
     CREATE TABLE IF NOT EXISTS canned_responses (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        shortcut TEXT NOT NULL,
        version INTEGER NOT NULL,
        doc TEXT NOT NULL,
        UNIQUE (tenant_id, shortcut)
     );
     CREATE INDEX IF NOT EXISTS canned_responses_by_tenant ON canned_responses (tenant_id, id);",
    unique: UNIQUE,
}];

/// The unique constraints of [`MIGRATIONS`] and the fields their violations name.
const UNIQUE: &[UniqueKey] = &[
    UniqueKey {
        table: "labels",
        columns: &["tenant_id", "name_key"],
        field: "name",
    },
    UniqueKey {
        table: "canned_responses",
        columns: &["tenant_id", "shortcut"],
        field: "shortcut",
    },
];

const NOTE: &str = "note";
const LABEL: &str = "label";
const CANNED: &str = "canned response";

/// The repositories of [`super`] on one [`SqliteDb`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SqliteAnnotations {
    db: SqliteDb,
}

impl SqliteAnnotations {
    /// The repositories on `db` (migrated with [`MIGRATIONS`], see [`super::migrate`]).
    pub fn new(db: SqliteDb) -> Self {
        Self { db }
    }

    /// The row `id` of `table` if visible in `scope`.
    async fn get_doc<T: DeserializeOwned + Send + 'static>(
        &self,
        table: &'static str,
        entity: &'static str,
        id: String,
        scope: Scope,
    ) -> Result<T> {
        let only = scope_param(scope);
        self.db
            .read("read an annotation", move |c| {
                query_doc(
                    c,
                    &format!(
                        "SELECT doc FROM {table} WHERE id = ?1 AND (?2 IS NULL OR tenant_id = ?2)"
                    ),
                    params![id, only],
                    entity,
                    "read an annotation",
                )?
                .ok_or_else(|| not_found(entity, &id))
            })
            .await
    }

    /// Deletes the row `id` of `table` if visible in `scope`, then runs `after` in the same
    /// transaction; returns the record.
    async fn delete_doc<T: DeserializeOwned + Send + 'static>(
        &self,
        table: &'static str,
        entity: &'static str,
        id: String,
        scope: Scope,
        after: impl FnOnce(&Connection, &str) -> Result<()> + Send + 'static,
    ) -> Result<T> {
        const ACTION: &str = "delete an annotation";
        let only = scope_param(scope);
        self.db
            .write(ACTION, move |c| {
                let found: T = query_doc(
                    c,
                    &format!(
                        "SELECT doc FROM {table} WHERE id = ?1 AND (?2 IS NULL OR tenant_id = ?2)"
                    ),
                    params![id, only],
                    entity,
                    ACTION,
                )?
                .ok_or_else(|| not_found(entity, &id))?;
                exec(c, &format!("DELETE FROM {table} WHERE id = ?1"), [&id])
                    .map_err(db_err(ACTION))?;
                after(c, &id)?;
                Ok(found)
            })
            .await
    }
}

fn not_found(entity: &'static str, id: impl ToString) -> Error {
    Error::NotFound {
        entity,
        id: id.to_string(),
    }
}

use crate::storage::sqlite::{query_doc, query_docs};

/// Escapes `%`, `_` and `\` for a `LIKE … ESCAPE '\'` pattern.
fn like_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        if matches!(ch, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

#[async_trait]
impl NoteRepository for SqliteAnnotations {
    async fn insert(&self, note: &Note) -> Result<()> {
        const ACTION: &str = "insert a note";
        let doc = to_json(note, NOTE)?;
        let (id, tenant, conversation) = (
            note.id.to_string(),
            note.tenant_id.to_string(),
            note.conversation_id.to_string(),
        );
        let version = version_param(note.version)?;
        self.db
            .write(ACTION, move |c| {
                exec(
                    c,
                    "INSERT INTO conversation_notes (id, tenant_id, conversation_id, version, doc)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![id, tenant, conversation, version, doc],
                )
                .map_err(unique_err(UNIQUE, NOTE, ACTION))?;
                Ok(())
            })
            .await
    }

    async fn get(&self, scope: Scope, id: NoteId) -> Result<Note> {
        self.get_doc("conversation_notes", NOTE, id.to_string(), scope)
            .await
    }

    async fn update(&self, scope: Scope, note: &Note) -> Result<Note> {
        const ACTION: &str = "update a note";
        check_owner_stays_in_scope(scope, Some(note.tenant_id))?;
        let mut next = note.clone();
        next.version += 1;
        let doc = to_json(&next, NOTE)?;
        let id = note.id.to_string();
        let (expected, new_version) = (version_param(note.version)?, version_param(next.version)?);
        let only = scope_param(scope);
        self.db
            .write(ACTION, move |c| {
                let changed = exec(
                    c,
                    "UPDATE conversation_notes SET version = ?1, doc = ?2
                     WHERE id = ?3 AND version = ?4 AND (?5 IS NULL OR tenant_id = ?5)",
                    params![new_version, doc, id, expected, only],
                )
                .map_err(db_err(ACTION))?;
                if changed == 1 {
                    return Ok(next);
                }
                Err(missing_or_stale(
                    c,
                    "conversation_notes",
                    NOTE,
                    id,
                    only,
                    expected,
                ))
            })
            .await
    }

    async fn delete(&self, scope: Scope, id: NoteId) -> Result<Note> {
        self.delete_doc("conversation_notes", NOTE, id.to_string(), scope, |_, _| {
            Ok(())
        })
        .await
    }

    async fn list_for_conversation(
        &self,
        scope: Scope,
        conversation: ConversationId,
        page: PageRequest,
    ) -> Result<Page<Note>> {
        const ACTION: &str = "list notes";
        let limit = page.effective_limit()?;
        let cursor = page.validated_cursor()?;
        let only = scope_param(scope);
        self.db
            .read(ACTION, move |c| {
                let items: Vec<Note> = query_docs(
                    c,
                    "SELECT doc FROM conversation_notes
                     WHERE conversation_id = ?1 AND (?2 IS NULL OR id > ?2)
                       AND (?3 IS NULL OR tenant_id = ?3)
                     ORDER BY id LIMIT ?4",
                    params![conversation.to_string(), cursor, only, limit + 1],
                    NOTE,
                    ACTION,
                )?;
                Ok(Page::from_overfetch(items, limit, |x| x.id.to_string()))
            })
            .await
    }

    async fn list(&self, scope: Scope, page: PageRequest) -> Result<Page<Note>> {
        const ACTION: &str = "list notes";
        let limit = page.effective_limit()?;
        let cursor = page.validated_cursor()?;
        let only = scope_param(scope);
        self.db
            .read(ACTION, move |c| {
                let items: Vec<Note> = query_docs(
                    c,
                    "SELECT doc FROM conversation_notes
                     WHERE (?1 IS NULL OR id > ?1) AND (?2 IS NULL OR tenant_id = ?2)
                     ORDER BY id LIMIT ?3",
                    params![cursor, only, limit + 1],
                    NOTE,
                    ACTION,
                )?;
                Ok(Page::from_overfetch(items, limit, |x| x.id.to_string()))
            })
            .await
    }
}

#[async_trait]
impl LabelRepository for SqliteAnnotations {
    async fn insert(&self, label: &Label) -> Result<()> {
        const ACTION: &str = "insert a label";
        let doc = to_json(label, LABEL)?;
        let (id, tenant, key) = (
            label.id.to_string(),
            label.tenant_id.to_string(),
            label.name_key(),
        );
        let version = version_param(label.version)?;
        self.db
            .write(ACTION, move |c| {
                exec(
                    c,
                    "INSERT INTO labels (id, tenant_id, name_key, version, doc)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![id, tenant, key, version, doc],
                )
                .map_err(unique_err(UNIQUE, LABEL, ACTION))?;
                Ok(())
            })
            .await
    }

    async fn get(&self, scope: Scope, id: LabelId) -> Result<Label> {
        self.get_doc("labels", LABEL, id.to_string(), scope).await
    }

    async fn update(&self, scope: Scope, label: &Label) -> Result<Label> {
        const ACTION: &str = "update a label";
        check_owner_stays_in_scope(scope, Some(label.tenant_id))?;
        let mut next = label.clone();
        next.version += 1;
        let doc = to_json(&next, LABEL)?;
        let (id, key) = (label.id.to_string(), label.name_key());
        let (expected, new_version) = (version_param(label.version)?, version_param(next.version)?);
        let only = scope_param(scope);
        self.db
            .write(ACTION, move |c| {
                let changed = exec(
                    c,
                    "UPDATE labels SET version = ?1, doc = ?2, name_key = ?3
                     WHERE id = ?4 AND version = ?5 AND (?6 IS NULL OR tenant_id = ?6)",
                    params![new_version, doc, key, id, expected, only],
                )
                .map_err(unique_err(UNIQUE, LABEL, ACTION))?;
                if changed == 1 {
                    return Ok(next);
                }
                Err(missing_or_stale(c, "labels", LABEL, id, only, expected))
            })
            .await
    }

    async fn delete(&self, scope: Scope, id: LabelId) -> Result<Label> {
        const ACTION: &str = "delete a label";
        self.delete_doc("labels", LABEL, id.to_string(), scope, |c, id| {
            // Off every conversation carrying it, each conversation's version raised (in
            // the column and the document) so a writer holding the old one retries.
            exec(
                c,
                "UPDATE conversations
                 SET version = version + 1,
                     doc = json_set(doc,
                        '$.labels', json((SELECT json_group_array(l.value)
                                          FROM json_each(conversations.doc, '$.labels') AS l
                                          WHERE l.value <> ?1)),
                        '$.version', version + 1)
                 WHERE EXISTS (SELECT 1 FROM json_each(conversations.doc, '$.labels') AS l
                               WHERE l.value = ?1)",
                [id],
            )
            .map_err(db_err(ACTION))?;
            Ok(())
        })
        .await
    }

    async fn list(&self, scope: Scope, page: PageRequest) -> Result<Page<Label>> {
        const ACTION: &str = "list labels";
        let limit = page.effective_limit()?;
        let cursor = page.validated_cursor()?;
        let only = scope_param(scope);
        self.db
            .read(ACTION, move |c| {
                let items: Vec<Label> = query_docs(
                    c,
                    "SELECT doc FROM labels
                     WHERE (?1 IS NULL OR id > ?1) AND (?2 IS NULL OR tenant_id = ?2)
                     ORDER BY id LIMIT ?3",
                    params![cursor, only, limit + 1],
                    LABEL,
                    ACTION,
                )?;
                Ok(Page::from_overfetch(items, limit, |x| x.id.to_string()))
            })
            .await
    }
}

#[async_trait]
impl CannedResponseRepository for SqliteAnnotations {
    async fn insert(&self, canned: &CannedResponse) -> Result<()> {
        const ACTION: &str = "insert a canned response";
        let doc = to_json(canned, CANNED)?;
        let (id, tenant, shortcut) = (
            canned.id.to_string(),
            canned.tenant_id.to_string(),
            canned.shortcut.clone(),
        );
        let version = version_param(canned.version)?;
        self.db
            .write(ACTION, move |c| {
                exec(
                    c,
                    "INSERT INTO canned_responses (id, tenant_id, shortcut, version, doc)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![id, tenant, shortcut, version, doc],
                )
                .map_err(unique_err(UNIQUE, CANNED, ACTION))?;
                Ok(())
            })
            .await
    }

    async fn get(&self, scope: Scope, id: CannedResponseId) -> Result<CannedResponse> {
        self.get_doc("canned_responses", CANNED, id.to_string(), scope)
            .await
    }

    async fn update(&self, scope: Scope, canned: &CannedResponse) -> Result<CannedResponse> {
        const ACTION: &str = "update a canned response";
        check_owner_stays_in_scope(scope, Some(canned.tenant_id))?;
        let mut next = canned.clone();
        next.version += 1;
        let doc = to_json(&next, CANNED)?;
        let (id, shortcut) = (canned.id.to_string(), canned.shortcut.clone());
        let (expected, new_version) =
            (version_param(canned.version)?, version_param(next.version)?);
        let only = scope_param(scope);
        self.db
            .write(ACTION, move |c| {
                let changed = exec(
                    c,
                    "UPDATE canned_responses SET version = ?1, doc = ?2, shortcut = ?3
                     WHERE id = ?4 AND version = ?5 AND (?6 IS NULL OR tenant_id = ?6)",
                    params![new_version, doc, shortcut, id, expected, only],
                )
                .map_err(unique_err(UNIQUE, CANNED, ACTION))?;
                if changed == 1 {
                    return Ok(next);
                }
                Err(missing_or_stale(
                    c,
                    "canned_responses",
                    CANNED,
                    id,
                    only,
                    expected,
                ))
            })
            .await
    }

    async fn delete(&self, scope: Scope, id: CannedResponseId) -> Result<CannedResponse> {
        self.delete_doc("canned_responses", CANNED, id.to_string(), scope, |_, _| {
            Ok(())
        })
        .await
    }

    async fn list(
        &self,
        scope: Scope,
        query: Option<String>,
        page: PageRequest,
    ) -> Result<Page<CannedResponse>> {
        const ACTION: &str = "list canned responses";
        let limit = page.effective_limit()?;
        let cursor = page.validated_cursor()?;
        let only = scope_param(scope);
        let pattern = query.map(|q| like_escape(&q));
        self.db
            .read(ACTION, move |c| {
                // LIKE on the shortcut column is a prefix match (case-sensitive shortcuts
                // are lower case anyway); on the title it is a substring match, ASCII
                // letters in any case.
                let items: Vec<CannedResponse> = query_docs(
                    c,
                    "SELECT doc FROM canned_responses
                     WHERE (?1 IS NULL OR id > ?1) AND (?2 IS NULL OR tenant_id = ?2)
                       AND (?4 IS NULL
                            OR shortcut LIKE ?4 || '%' ESCAPE '\\'
                            OR json_extract(doc, '$.title') LIKE '%' || ?4 || '%' ESCAPE '\\')
                     ORDER BY id LIMIT ?3",
                    params![cursor, only, limit + 1, pattern],
                    CANNED,
                    ACTION,
                )?;
                Ok(Page::from_overfetch(items, limit, |x| x.id.to_string()))
            })
            .await
    }

    async fn find_by_shortcut(
        &self,
        scope: Scope,
        shortcut: &str,
    ) -> Result<Option<CannedResponse>> {
        const ACTION: &str = "find a canned response";
        let only = scope_param(scope);
        let shortcut = shortcut.to_owned();
        self.db
            .read(ACTION, move |c| {
                query_doc(
                    c,
                    "SELECT doc FROM canned_responses
                     WHERE shortcut = ?1 AND (?2 IS NULL OR tenant_id = ?2)
                     ORDER BY id LIMIT 1",
                    params![shortcut, only],
                    CANNED,
                    ACTION,
                )
            })
            .await
    }
}

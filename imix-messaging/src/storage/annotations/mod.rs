//! Storage of the team's annotations ([`crate::annotations`]): private notes on
//! conversations, label definitions and canned responses. Ports here, adapters in
//! [`sqlite`] and [`mongo`], recorded under the capability [`super::CAPABILITY`] as
//! migration `0006_annotations`.
//!
//! The labels set on a conversation live on the conversation itself
//! ([`crate::Conversation::labels`]), so lists filter on them in one query; deleting a
//! label removes it from its tenant's conversations (raising their versions).

use std::sync::Arc;

use async_trait::async_trait;
use imix_core::{
    store::{
        transfer::{paged, RecordSet},
        Backend, Page, PageRequest, Scope,
    },
    Result,
};

use crate::{
    annotations::{CannedResponse, CannedResponseId, Label, LabelId, Note, NoteId},
    records::ConversationId,
};

#[cfg(feature = "mongodb")]
pub mod mongo;
#[cfg(feature = "sqlite")]
pub mod sqlite;

/// Private notes on conversations.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait NoteRepository: Send + Sync {
    /// Stores a new note.
    async fn insert(&self, note: &Note) -> Result<()>;
    /// The note `id`, if visible in `scope`.
    async fn get(&self, scope: Scope, id: NoteId) -> Result<Note>;
    /// Replaces the note if visible in `scope` and at version `note.version`.
    async fn update(&self, scope: Scope, note: &Note) -> Result<Note>;
    /// Deletes the note `id` if visible in `scope`; returns it.
    async fn delete(&self, scope: Scope, id: NoteId) -> Result<Note>;
    /// The notes of `conversation` visible in `scope`, oldest first.
    async fn list_for_conversation(
        &self,
        scope: Scope,
        conversation: ConversationId,
        page: PageRequest,
    ) -> Result<Page<Note>>;
    /// Every note visible in `scope`, oldest first (for backups).
    async fn list(&self, scope: Scope, page: PageRequest) -> Result<Page<Note>>;
}

/// Label definitions. A name is unique per tenant whatever its case
/// ([`imix_core::Error::Duplicate`] with field `name`).
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait LabelRepository: Send + Sync {
    /// Stores a new label.
    async fn insert(&self, label: &Label) -> Result<()>;
    /// The label `id`, if visible in `scope`.
    async fn get(&self, scope: Scope, id: LabelId) -> Result<Label>;
    /// Replaces the label if visible in `scope` and at version `label.version`.
    async fn update(&self, scope: Scope, label: &Label) -> Result<Label>;
    /// Deletes the label `id` if visible in `scope` and removes it from every conversation
    /// of its tenant carrying it; returns it.
    async fn delete(&self, scope: Scope, id: LabelId) -> Result<Label>;
    /// Labels visible in `scope`, oldest first.
    async fn list(&self, scope: Scope, page: PageRequest) -> Result<Page<Label>>;
}

/// Canned responses. A shortcut is unique per tenant ([`imix_core::Error::Duplicate`]
/// with field `shortcut`).
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait CannedResponseRepository: Send + Sync {
    /// Stores a new canned response.
    async fn insert(&self, canned: &CannedResponse) -> Result<()>;
    /// The canned response `id`, if visible in `scope`.
    async fn get(&self, scope: Scope, id: CannedResponseId) -> Result<CannedResponse>;
    /// Replaces it if visible in `scope` and at version `canned.version`.
    async fn update(&self, scope: Scope, canned: &CannedResponse) -> Result<CannedResponse>;
    /// Deletes the canned response `id` if visible in `scope`; returns it.
    async fn delete(&self, scope: Scope, id: CannedResponseId) -> Result<CannedResponse>;
    /// Canned responses visible in `scope`, oldest first; with `query`, only those whose
    /// shortcut starts with it or whose title contains it (ASCII letters in any case).
    async fn list(
        &self,
        scope: Scope,
        query: Option<String>,
        page: PageRequest,
    ) -> Result<Page<CannedResponse>>;
    /// The canned response with exactly this shortcut, if visible in `scope`.
    async fn find_by_shortcut(
        &self,
        scope: Scope,
        shortcut: &str,
    ) -> Result<Option<CannedResponse>>;
}

/// The repositories of this module on one backend.
#[derive(Clone)]
pub struct AnnotationStorage {
    /// Notes.
    pub notes: Arc<dyn NoteRepository>,
    /// Label definitions.
    pub labels: Arc<dyn LabelRepository>,
    /// Canned responses.
    pub canned: Arc<dyn CannedResponseRepository>,
}

impl std::fmt::Debug for AnnotationStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnnotationStorage").finish_non_exhaustive()
    }
}

impl AnnotationStorage {
    /// Opens the repositories on `backend`.
    pub fn open(backend: &Backend) -> Result<Self> {
        match backend {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(db) => {
                let a = Arc::new(sqlite::SqliteAnnotations::new(db.clone()));
                Ok(Self {
                    notes: a.clone(),
                    labels: a.clone(),
                    canned: a,
                })
            }
            #[cfg(feature = "mongodb")]
            Backend::Mongo(db) => {
                let a = Arc::new(mongo::MongoAnnotations::new(db.clone()));
                Ok(Self {
                    notes: a.clone(),
                    labels: a.clone(),
                    canned: a,
                })
            }
            other => Err(other.unsupported(super::CAPABILITY)),
        }
    }

    /// Labels, notes and canned responses for backups (after conversations, which notes
    /// and labels refer to).
    pub fn record_sets(&self) -> Vec<Arc<dyn RecordSet>> {
        let (labels, labels_in) = (self.labels.clone(), self.labels.clone());
        let (notes, notes_in) = (self.notes.clone(), self.notes.clone());
        let (canned, canned_in) = (self.canned.clone(), self.canned.clone());
        vec![
            paged(
                "label",
                move |page| {
                    let repo = labels.clone();
                    async move { repo.list(Scope::Platform, page).await }
                },
                move |label: Label| {
                    let repo = labels_in.clone();
                    async move { repo.insert(&label).await }
                },
            ),
            paged(
                "conversation_note",
                move |page| {
                    let repo = notes.clone();
                    async move { repo.list(Scope::Platform, page).await }
                },
                move |note: Note| {
                    let repo = notes_in.clone();
                    async move { repo.insert(&note).await }
                },
            ),
            paged(
                "canned_response",
                move |page| {
                    let repo = canned.clone();
                    async move { repo.list(Scope::Platform, None, page).await }
                },
                move |canned: CannedResponse| {
                    let repo = canned_in.clone();
                    async move { repo.insert(&canned).await }
                },
            ),
        ]
    }
}

/// Creates or upgrades the annotations' tables or indexes on `backend`. Idempotent.
pub async fn migrate(backend: &Backend) -> Result<()> {
    match backend {
        #[cfg(feature = "sqlite")]
        Backend::Sqlite(db) => db
            .migrate(super::CAPABILITY, sqlite::MIGRATIONS)
            .await
            .map(drop),
        #[cfg(feature = "mongodb")]
        Backend::Mongo(db) => {
            imix_core::store::mongo::support::migrate(db, super::CAPABILITY, mongo::MIGRATIONS)
                .await
                .map(drop)
        }
        other => Err(other.unsupported(super::CAPABILITY)),
    }
}

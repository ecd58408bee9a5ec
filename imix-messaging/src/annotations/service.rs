//! The annotations as users work with them. Every operation takes the caller's
//! [`AccessContext`] and checks the permission, the tenant and, for notes and a
//! conversation's labels, that the caller sees the conversation ([`InboxService`]'s rules:
//! without `conversations.read_all` only their own and unassigned ones). Another tenant's
//! records are "not found".
//!
//! | operation | permission |
//! |---|---|
//! | read notes, labels, canned responses | `conversations.read` |
//! | write a note, edit or delete one's own, set a conversation's labels | `conversations.reply` |
//! | delete anyone's note, manage labels and canned responses | `inbox.manage` |

use std::sync::Arc;

use imix_core::{
    access::{AccessContext, AccessDenied, Permission},
    id::TenantId,
    store::{ConflictBackoff, Page, PageRequest, Scope},
    Error as CoreError,
};

use super::{
    check_canned_body, check_canned_title, check_color, check_label_name, check_language,
    check_note_body, check_shortcut, CannedResponse, CannedResponseId, Label, LabelId, Note,
    NoteId, MAX_LABELS_PER_CONVERSATION,
};
use crate::{
    error::{MessagingError, Result},
    events::{EventSink, NewEvent},
    inbox::InboxService,
    records::{Conversation, ConversationId},
    storage::MessagingStorage,
};

/// A change to a label; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelPatch {
    /// The new name.
    pub name: Option<String>,
    /// The new colour, `#rrggbb`.
    pub color: Option<String>,
    /// The version the caller read; `None` to apply to the latest.
    pub expected_version: Option<u64>,
}

/// A new canned response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewCannedResponse {
    /// Its shortcut, `^[a-z0-9_-]{1,32}$`, unique per tenant.
    pub shortcut: String,
    /// Its title.
    pub title: String,
    /// Its text, 1 to 4096 characters.
    pub body: String,
    /// Its language code, if any.
    pub language: Option<String>,
}

/// A change to a canned response; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CannedResponsePatch {
    /// The new shortcut.
    pub shortcut: Option<String>,
    /// The new title.
    pub title: Option<String>,
    /// The new text.
    pub body: Option<String>,
    /// The new language, `Some(None)` to clear it.
    pub language: Option<Option<String>>,
    /// The version the caller read; `None` to apply to the latest.
    pub expected_version: Option<u64>,
}

/// Notes, labels and canned responses.
#[derive(Clone)]
pub struct AnnotationService {
    storage: MessagingStorage,
    inbox: InboxService,
    events: Arc<dyn EventSink>,
}

impl std::fmt::Debug for AnnotationService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnnotationService").finish_non_exhaustive()
    }
}

fn stale(entity: &'static str, id: impl ToString, expected: u64) -> MessagingError {
    CoreError::VersionConflict {
        entity,
        id: id.to_string(),
        expected,
    }
    .into()
}

fn check_version(
    entity: &'static str,
    id: impl ToString,
    expected: Option<u64>,
    actual: u64,
) -> Result<()> {
    match expected {
        Some(e) if e != actual => Err(stale(entity, id, e)),
        _ => Ok(()),
    }
}

impl AnnotationService {
    /// The service over `storage`; conversation visibility follows `inbox`, label changes
    /// are reported to `events` as `conversation_updated`.
    pub fn new(storage: MessagingStorage, inbox: InboxService, events: Arc<dyn EventSink>) -> Self {
        Self {
            storage,
            inbox,
            events,
        }
    }

    /// The conversation `id` if the caller may read it (tenant, permission, visibility).
    async fn readable_conversation(
        &self,
        ctx: &AccessContext,
        tenant: TenantId,
        id: ConversationId,
    ) -> Result<Conversation> {
        self.inbox.conversation(ctx, tenant, id).await
    }

    /// The note `id` of `conversation`, if the caller sees the conversation.
    async fn note_of(
        &self,
        ctx: &AccessContext,
        tenant: TenantId,
        conversation: ConversationId,
        id: NoteId,
    ) -> Result<(Scope, Note)> {
        let scope = ctx.authorize(Permission::ConversationsRead, tenant)?;
        self.readable_conversation(ctx, tenant, conversation)
            .await?;
        let note = self.storage.annotations.notes.get(scope, id).await?;
        if note.conversation_id != conversation {
            return Err(CoreError::NotFound {
                entity: "note",
                id: id.to_string(),
            }
            .into());
        }
        Ok((scope, note))
    }

    // --- notes ---

    /// The notes of a conversation the caller sees, oldest first.
    pub async fn notes(
        &self,
        ctx: &AccessContext,
        tenant: TenantId,
        conversation: ConversationId,
        page: PageRequest,
    ) -> Result<Page<Note>> {
        let scope = ctx.authorize(Permission::ConversationsRead, tenant)?;
        self.readable_conversation(ctx, tenant, conversation)
            .await?;
        Ok(self
            .storage
            .annotations
            .notes
            .list_for_conversation(scope, conversation, page)
            .await?)
    }

    /// Writes a note on a conversation the caller sees, signed with their id and
    /// `author_name`.
    pub async fn add_note(
        &self,
        ctx: &AccessContext,
        tenant: TenantId,
        conversation: ConversationId,
        author_name: &str,
        body: String,
    ) -> Result<Note> {
        ctx.authorize(Permission::ConversationsReply, tenant)?;
        check_note_body(&body)?;
        let c = self
            .readable_conversation(ctx, tenant, conversation)
            .await?;
        let now = imix_core::now();
        let note = Note {
            id: NoteId::new(),
            tenant_id: c.tenant_id,
            conversation_id: c.id,
            author_id: ctx.user_id(),
            author_name: author_name.to_owned(),
            body,
            version: 1,
            created_at: now,
            updated_at: now,
        };
        self.storage.annotations.notes.insert(&note).await?;
        Ok(note)
    }

    /// Edits the caller's own note ([`MessagingError::NotAuthor`] for anyone else's).
    pub async fn update_note(
        &self,
        ctx: &AccessContext,
        tenant: TenantId,
        conversation: ConversationId,
        id: NoteId,
        body: String,
        expected_version: Option<u64>,
    ) -> Result<Note> {
        ctx.authorize(Permission::ConversationsReply, tenant)?;
        check_note_body(&body)?;
        let (scope, mut note) = self.note_of(ctx, tenant, conversation, id).await?;
        if note.author_id != ctx.user_id() {
            return Err(MessagingError::NotAuthor);
        }
        check_version("note", id, expected_version, note.version)?;
        note.body = body;
        note.updated_at = imix_core::now();
        Ok(self.storage.annotations.notes.update(scope, &note).await?)
    }

    /// Deletes a note: the caller's own (`conversations.reply`), or anyone's with
    /// `inbox.manage`.
    pub async fn delete_note(
        &self,
        ctx: &AccessContext,
        tenant: TenantId,
        conversation: ConversationId,
        id: NoteId,
    ) -> Result<Note> {
        ctx.authorize(Permission::ConversationsReply, tenant)?;
        let (scope, note) = self.note_of(ctx, tenant, conversation, id).await?;
        if note.author_id != ctx.user_id() && !ctx.has(Permission::InboxManage) {
            return Err(AccessDenied::Forbidden {
                permission: Permission::InboxManage,
            }
            .into());
        }
        Ok(self.storage.annotations.notes.delete(scope, id).await?)
    }

    // --- labels ---

    /// The tenant's labels, oldest first.
    pub async fn labels(
        &self,
        ctx: &AccessContext,
        tenant: TenantId,
        page: PageRequest,
    ) -> Result<Page<Label>> {
        let scope = ctx.authorize(Permission::ConversationsRead, tenant)?;
        Ok(self.storage.annotations.labels.list(scope, page).await?)
    }

    /// One of the tenant's labels.
    pub async fn label(&self, ctx: &AccessContext, tenant: TenantId, id: LabelId) -> Result<Label> {
        let scope = ctx.authorize(Permission::ConversationsRead, tenant)?;
        Ok(self.storage.annotations.labels.get(scope, id).await?)
    }

    /// Creates a label (`inbox.manage`); a name the tenant already uses, in any case, is
    /// a duplicate naming `name`.
    pub async fn create_label(
        &self,
        ctx: &AccessContext,
        tenant: TenantId,
        name: &str,
        color: &str,
    ) -> Result<Label> {
        ctx.authorize(Permission::InboxManage, tenant)?;
        let name = check_label_name(name)?;
        let color = check_color(color)?;
        let now = imix_core::now();
        let label = Label {
            id: LabelId::new(),
            tenant_id: tenant,
            name,
            color,
            version: 1,
            created_at: now,
            updated_at: now,
        };
        self.storage.annotations.labels.insert(&label).await?;
        Ok(label)
    }

    /// Renames or recolours a label (`inbox.manage`).
    pub async fn update_label(
        &self,
        ctx: &AccessContext,
        tenant: TenantId,
        id: LabelId,
        patch: LabelPatch,
    ) -> Result<Label> {
        let scope = ctx.authorize(Permission::InboxManage, tenant)?;
        let name = patch.name.as_deref().map(check_label_name).transpose()?;
        let color = patch.color.as_deref().map(check_color).transpose()?;
        let mut label = self.storage.annotations.labels.get(scope, id).await?;
        check_version("label", id, patch.expected_version, label.version)?;
        if let Some(name) = name {
            label.name = name;
        }
        if let Some(color) = color {
            label.color = color;
        }
        label.updated_at = imix_core::now();
        Ok(self
            .storage
            .annotations
            .labels
            .update(scope, &label)
            .await?)
    }

    /// Deletes a label (`inbox.manage`); it is removed from every conversation carrying it.
    pub async fn delete_label(
        &self,
        ctx: &AccessContext,
        tenant: TenantId,
        id: LabelId,
    ) -> Result<Label> {
        let scope = ctx.authorize(Permission::InboxManage, tenant)?;
        Ok(self.storage.annotations.labels.delete(scope, id).await?)
    }

    /// Replaces the labels of a conversation the caller sees (`conversations.reply`). Every
    /// id must be one of the tenant's labels (invalid naming `label_ids` otherwise; nothing
    /// changes); repeated ids count once. Reports `conversation_updated`.
    pub async fn set_conversation_labels(
        &self,
        ctx: &AccessContext,
        tenant: TenantId,
        conversation: ConversationId,
        label_ids: Vec<LabelId>,
    ) -> Result<Conversation> {
        let scope = ctx.authorize(Permission::ConversationsReply, tenant)?;
        let mut wanted: Vec<LabelId> = Vec::with_capacity(label_ids.len());
        for id in label_ids {
            if !wanted.contains(&id) {
                wanted.push(id);
            }
        }
        if wanted.len() > MAX_LABELS_PER_CONVERSATION {
            return Err(CoreError::invalid(
                "label_ids",
                format!("at most {MAX_LABELS_PER_CONVERSATION} labels per conversation"),
            )
            .into());
        }
        // Visible first, so an agent learns nothing about labels through someone else's
        // conversation.
        self.readable_conversation(ctx, tenant, conversation)
            .await?;
        for id in &wanted {
            match self.storage.annotations.labels.get(scope, *id).await {
                Ok(_) => {}
                Err(CoreError::NotFound { .. }) => {
                    return Err(CoreError::invalid(
                        "label_ids",
                        format!("`{id}` is not a label of this tenant"),
                    )
                    .into())
                }
                Err(e) => return Err(e.into()),
            }
        }
        let mut backoff = ConflictBackoff::new();
        while backoff.next_attempt().await {
            let mut c = self
                .readable_conversation(ctx, tenant, conversation)
                .await?;
            if c.labels == wanted {
                return Ok(c);
            }
            c.labels = wanted.clone();
            c.updated_at = imix_core::now();
            match self.storage.conversations.update(scope, &c).await {
                Ok(stored) => {
                    self.events
                        .publish(NewEvent::conversation(&stored, false))
                        .await;
                    return Ok(stored);
                }
                // Ingest or a teammate changed it meanwhile: set the labels on the new
                // version.
                Err(CoreError::VersionConflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(stale("conversation", conversation, 0))
    }

    // --- canned responses ---

    /// The tenant's canned responses, oldest first; with `query`, those whose shortcut
    /// starts with it or whose title contains it.
    pub async fn canned_responses(
        &self,
        ctx: &AccessContext,
        tenant: TenantId,
        query: Option<String>,
        page: PageRequest,
    ) -> Result<Page<CannedResponse>> {
        let scope = ctx.authorize(Permission::ConversationsRead, tenant)?;
        let query = query.map(|q| q.trim().to_owned()).filter(|q| !q.is_empty());
        if query.as_ref().is_some_and(|q| q.chars().count() > 200) {
            return Err(CoreError::invalid("q", "must be at most 200 characters").into());
        }
        Ok(self
            .storage
            .annotations
            .canned
            .list(scope, query, page)
            .await?)
    }

    /// One of the tenant's canned responses.
    pub async fn canned_response(
        &self,
        ctx: &AccessContext,
        tenant: TenantId,
        id: CannedResponseId,
    ) -> Result<CannedResponse> {
        let scope = ctx.authorize(Permission::ConversationsRead, tenant)?;
        Ok(self.storage.annotations.canned.get(scope, id).await?)
    }

    /// The tenant's canned response with exactly this shortcut (for composing a reply);
    /// `None` when there is none.
    pub async fn canned_by_shortcut(
        &self,
        ctx: &AccessContext,
        tenant: TenantId,
        shortcut: &str,
    ) -> Result<Option<CannedResponse>> {
        let scope = ctx.authorize(Permission::ConversationsRead, tenant)?;
        Ok(self
            .storage
            .annotations
            .canned
            .find_by_shortcut(scope, shortcut)
            .await?)
    }

    /// Creates a canned response (`inbox.manage`); a shortcut the tenant already uses is
    /// a duplicate naming `shortcut`.
    pub async fn create_canned_response(
        &self,
        ctx: &AccessContext,
        tenant: TenantId,
        new: NewCannedResponse,
    ) -> Result<CannedResponse> {
        ctx.authorize(Permission::InboxManage, tenant)?;
        check_shortcut(&new.shortcut)?;
        let title = check_canned_title(&new.title)?;
        check_canned_body(&new.body)?;
        if let Some(language) = &new.language {
            check_language(language)?;
        }
        let now = imix_core::now();
        let canned = CannedResponse {
            id: CannedResponseId::new(),
            tenant_id: tenant,
            shortcut: new.shortcut,
            title,
            body: new.body,
            language: new.language,
            version: 1,
            created_at: now,
            updated_at: now,
        };
        self.storage.annotations.canned.insert(&canned).await?;
        Ok(canned)
    }

    /// Changes a canned response (`inbox.manage`).
    pub async fn update_canned_response(
        &self,
        ctx: &AccessContext,
        tenant: TenantId,
        id: CannedResponseId,
        patch: CannedResponsePatch,
    ) -> Result<CannedResponse> {
        let scope = ctx.authorize(Permission::InboxManage, tenant)?;
        if let Some(shortcut) = &patch.shortcut {
            check_shortcut(shortcut)?;
        }
        let title = patch.title.as_deref().map(check_canned_title).transpose()?;
        if let Some(body) = &patch.body {
            check_canned_body(body)?;
        }
        if let Some(Some(language)) = &patch.language {
            check_language(language)?;
        }
        let mut canned = self.storage.annotations.canned.get(scope, id).await?;
        check_version(
            "canned response",
            id,
            patch.expected_version,
            canned.version,
        )?;
        if let Some(shortcut) = patch.shortcut {
            canned.shortcut = shortcut;
        }
        if let Some(title) = title {
            canned.title = title;
        }
        if let Some(body) = patch.body {
            canned.body = body;
        }
        if let Some(language) = patch.language {
            canned.language = language;
        }
        canned.updated_at = imix_core::now();
        Ok(self
            .storage
            .annotations
            .canned
            .update(scope, &canned)
            .await?)
    }

    /// Deletes a canned response (`inbox.manage`).
    pub async fn delete_canned_response(
        &self,
        ctx: &AccessContext,
        tenant: TenantId,
        id: CannedResponseId,
    ) -> Result<CannedResponse> {
        let scope = ctx.authorize(Permission::InboxManage, tenant)?;
        Ok(self.storage.annotations.canned.delete(scope, id).await?)
    }
}

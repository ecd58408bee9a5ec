//! What the team adds to the inbox for itself: private notes on conversations, the
//! tenant's labels and a conversation's labels, and canned responses. Checks are in
//! [`imix_messaging::AnnotationService`]; handlers parse, call and map.

use chrono::{DateTime, Utc};
use imix_core::id::TenantId;
use imix_messaging::{
    annotations::{
        CannedResponse, CannedResponseId, CannedResponsePatch, Label, LabelId, LabelPatch,
        NewCannedResponse, Note, NoteId,
    },
    ConversationId,
};
use poem_openapi::{
    param::{Path, Query},
    payload::Json,
    types::MaybeUndefined,
    ApiResponse, Object, OpenApi,
};

use super::{
    dto::{page, Done},
    inbox::ConversationView,
    parse_id, ApiTags,
};
use crate::{auth::Auth, error::ApiError, state::AppState};

/// Notes, labels and canned responses.
pub struct AnnotationsApi {
    state: AppState,
}

impl AnnotationsApi {
    /// The annotations API over `state`.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

/// A private note on a conversation (never sent to the customer).
#[derive(Debug, Clone, Object)]
pub struct NoteView {
    /// Id.
    pub id: String,
    /// The conversation.
    pub conversation_id: String,
    /// Who wrote it.
    pub author_id: String,
    /// Their name when they wrote it.
    pub author_name: String,
    /// The text.
    pub body: String,
    /// Version.
    pub version: u64,
    /// Written.
    pub created_at: DateTime<Utc>,
    /// Last edited.
    pub updated_at: DateTime<Utc>,
}

impl From<Note> for NoteView {
    fn from(n: Note) -> Self {
        Self {
            id: n.id.to_string(),
            conversation_id: n.conversation_id.to_string(),
            author_id: n.author_id.to_string(),
            author_name: n.author_name,
            body: n.body,
            version: n.version,
            created_at: n.created_at,
            updated_at: n.updated_at,
        }
    }
}

/// One page of notes.
#[derive(Debug, Clone, Object)]
pub struct NoteList {
    /// The notes, oldest first.
    pub items: Vec<NoteView>,
    /// Cursor of the next page, `null` on the last.
    pub next_cursor: Option<String>,
}

/// `POST .../notes`.
#[derive(Debug, Object)]
pub struct NewNoteBody {
    /// The text: 1 to 4000 characters; newlines and tabs allowed, no other control
    /// characters.
    pub body: String,
}

/// `PATCH .../notes/{note_id}`.
#[derive(Debug, Object)]
pub struct NotePatchBody {
    /// The new text.
    pub body: String,
    /// The version you read; a stale one is 409 `version_conflict`.
    pub version: Option<u64>,
}

/// A label of the tenant.
#[derive(Debug, Clone, Object)]
pub struct LabelView {
    /// Id.
    pub id: String,
    /// Name, unique per tenant whatever its case.
    pub name: String,
    /// Colour, `#rrggbb`.
    pub color: String,
    /// Version.
    pub version: u64,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<Label> for LabelView {
    fn from(l: Label) -> Self {
        Self {
            id: l.id.to_string(),
            name: l.name,
            color: l.color,
            version: l.version,
            created_at: l.created_at,
            updated_at: l.updated_at,
        }
    }
}

/// One page of labels.
#[derive(Debug, Clone, Object)]
pub struct LabelList {
    /// The labels, oldest first.
    pub items: Vec<LabelView>,
    /// Cursor of the next page, `null` on the last.
    pub next_cursor: Option<String>,
}

/// `POST .../labels`.
#[derive(Debug, Object)]
pub struct NewLabelBody {
    /// 1 to 64 characters, unique per tenant whatever its case (409 `name_taken`).
    pub name: String,
    /// `#rrggbb`.
    pub color: String,
}

/// `PATCH .../labels/{label_id}`: absent fields stay.
#[derive(Debug, Object)]
pub struct LabelPatchBody {
    /// New name.
    pub name: Option<String>,
    /// New colour, `#rrggbb`.
    pub color: Option<String>,
    /// The version you read; a stale one is 409 `version_conflict`.
    pub version: Option<u64>,
}

/// `PUT .../conversations/{conversation_id}/labels`.
#[derive(Debug, Object)]
pub struct ConversationLabelsBody {
    /// Every label the conversation should carry (replaces the current ones); each one
    /// of the tenant's labels, else 422 naming `label_ids`.
    pub label_ids: Vec<String>,
}

/// A canned response.
#[derive(Debug, Clone, Object)]
pub struct CannedResponseView {
    /// Id.
    pub id: String,
    /// Shortcut, unique per tenant.
    pub shortcut: String,
    /// Title.
    pub title: String,
    /// The text.
    pub body: String,
    /// Language code, if given.
    pub language: Option<String>,
    /// Version.
    pub version: u64,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<CannedResponse> for CannedResponseView {
    fn from(c: CannedResponse) -> Self {
        Self {
            id: c.id.to_string(),
            shortcut: c.shortcut,
            title: c.title,
            body: c.body,
            language: c.language,
            version: c.version,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

/// One page of canned responses.
#[derive(Debug, Clone, Object)]
pub struct CannedResponseList {
    /// The canned responses, oldest first.
    pub items: Vec<CannedResponseView>,
    /// Cursor of the next page, `null` on the last.
    pub next_cursor: Option<String>,
}

/// `POST .../canned-responses`.
#[derive(Debug, Object)]
pub struct NewCannedResponseBody {
    /// `^[a-z0-9_-]{1,32}$`, unique per tenant (409 `shortcut_taken`).
    pub shortcut: String,
    /// 1 to 200 characters.
    pub title: String,
    /// 1 to 4096 characters.
    pub body: String,
    /// Language code (`fr`, `en_US`, …).
    pub language: Option<String>,
}

/// `PATCH .../canned-responses/{id}`: absent fields stay.
#[derive(Debug, Object)]
pub struct CannedResponsePatchBody {
    /// New shortcut.
    pub shortcut: Option<String>,
    /// New title.
    pub title: Option<String>,
    /// New text.
    pub body: Option<String>,
    /// New language, `null` to clear it.
    pub language: MaybeUndefined<String>,
    /// The version you read; a stale one is 409 `version_conflict`.
    pub version: Option<u64>,
}

#[derive(ApiResponse)]
enum NoteCreated {
    /// Written.
    #[oai(status = 201)]
    Note(Json<NoteView>),
}

#[derive(ApiResponse)]
enum LabelCreated {
    /// Created.
    #[oai(status = 201)]
    Label(Json<LabelView>),
}

#[derive(ApiResponse)]
enum CannedCreated {
    /// Created.
    #[oai(status = 201)]
    Canned(Json<CannedResponseView>),
}

/// The caller's name as notes show it: first and last name, or the email without them.
fn author_name(auth: &Auth) -> String {
    let user = auth.0.user();
    let name = format!("{} {}", user.first_name.trim(), user.last_name.trim());
    let name = name.trim();
    if name.is_empty() {
        user.email.clone()
    } else {
        name.to_owned()
    }
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Inbox")]
impl AnnotationsApi {
    /// The private notes of a conversation, oldest first (`conversations.read`; agents
    /// only on conversations they see).
    #[oai(
        path = "/tenants/:tenant_id/conversations/:conversation_id/notes",
        method = "get",
        operation_id = "list_conversation_notes"
    )]
    async fn notes(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        conversation_id: Path<String>,
        cursor: Query<Option<String>>,
        limit: Query<Option<u32>>,
    ) -> Result<Json<NoteList>, ApiError> {
        let tenant = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        let id = parse_id::<ConversationId>(&conversation_id.0, "conversation")?;
        let p = self
            .state
            .annotations
            .notes(auth.0.access(), tenant, id, page(cursor.0, limit.0))
            .await?;
        Ok(Json(NoteList {
            items: p.items.into_iter().map(Into::into).collect(),
            next_cursor: p.next_cursor,
        }))
    }

    /// Writes a private note on a conversation (`conversations.reply`); never sent to the
    /// customer.
    #[oai(
        path = "/tenants/:tenant_id/conversations/:conversation_id/notes",
        method = "post",
        operation_id = "create_conversation_note"
    )]
    async fn create_note(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        conversation_id: Path<String>,
        body: Json<NewNoteBody>,
    ) -> Result<NoteCreated, ApiError> {
        let tenant = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        let id = parse_id::<ConversationId>(&conversation_id.0, "conversation")?;
        let name = author_name(&auth);
        let n = self
            .state
            .annotations
            .add_note(auth.0.access(), tenant, id, &name, body.0.body)
            .await?;
        Ok(NoteCreated::Note(Json(n.into())))
    }

    /// Edits one's own note (403 `not_author` for anyone else's).
    #[oai(
        path = "/tenants/:tenant_id/conversations/:conversation_id/notes/:note_id",
        method = "patch",
        operation_id = "update_conversation_note"
    )]
    async fn update_note(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        conversation_id: Path<String>,
        note_id: Path<String>,
        body: Json<NotePatchBody>,
    ) -> Result<Json<NoteView>, ApiError> {
        let tenant = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        let conversation = parse_id::<ConversationId>(&conversation_id.0, "conversation")?;
        let id = parse_id::<NoteId>(&note_id.0, "note")?;
        let n = self
            .state
            .annotations
            .update_note(
                auth.0.access(),
                tenant,
                conversation,
                id,
                body.0.body,
                body.0.version,
            )
            .await?;
        Ok(Json(n.into()))
    }

    /// Deletes a note: one's own, or anyone's with `inbox.manage` (admins, managers,
    /// supervisors).
    #[oai(
        path = "/tenants/:tenant_id/conversations/:conversation_id/notes/:note_id",
        method = "delete",
        operation_id = "delete_conversation_note"
    )]
    async fn delete_note(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        conversation_id: Path<String>,
        note_id: Path<String>,
    ) -> Result<Json<Done>, ApiError> {
        let tenant = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        let conversation = parse_id::<ConversationId>(&conversation_id.0, "conversation")?;
        let id = parse_id::<NoteId>(&note_id.0, "note")?;
        self.state
            .annotations
            .delete_note(auth.0.access(), tenant, conversation, id)
            .await?;
        Ok(Json(Done::ok()))
    }

    /// Replaces the labels of a conversation (`conversations.reply`); answers the
    /// conversation. 422 naming `label_ids` for an id that is not one of the tenant's
    /// labels (nothing changes).
    #[oai(
        path = "/tenants/:tenant_id/conversations/:conversation_id/labels",
        method = "put",
        operation_id = "set_conversation_labels"
    )]
    async fn set_conversation_labels(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        conversation_id: Path<String>,
        body: Json<ConversationLabelsBody>,
    ) -> Result<Json<ConversationView>, ApiError> {
        let tenant = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        let id = parse_id::<ConversationId>(&conversation_id.0, "conversation")?;
        let mut ids = Vec::with_capacity(body.0.label_ids.len());
        for raw in &body.0.label_ids {
            ids.push(raw.trim().parse::<LabelId>().map_err(|_| {
                ApiError::invalid_field("label_ids", format!("`{raw}` is not a label id"))
            })?);
        }
        let c = self
            .state
            .annotations
            .set_conversation_labels(auth.0.access(), tenant, id, ids)
            .await?;
        Ok(Json(c.into()))
    }

    /// The tenant's labels, oldest first (`conversations.read`).
    #[oai(
        path = "/tenants/:tenant_id/labels",
        method = "get",
        operation_id = "list_labels"
    )]
    async fn labels(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        cursor: Query<Option<String>>,
        limit: Query<Option<u32>>,
    ) -> Result<Json<LabelList>, ApiError> {
        let tenant = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        let p = self
            .state
            .annotations
            .labels(auth.0.access(), tenant, page(cursor.0, limit.0))
            .await?;
        Ok(Json(LabelList {
            items: p.items.into_iter().map(Into::into).collect(),
            next_cursor: p.next_cursor,
        }))
    }

    /// Creates a label (`inbox.manage`): 409 `name_taken` when the tenant has one of that
    /// name in any case.
    #[oai(
        path = "/tenants/:tenant_id/labels",
        method = "post",
        operation_id = "create_label"
    )]
    async fn create_label(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        body: Json<NewLabelBody>,
    ) -> Result<LabelCreated, ApiError> {
        let tenant = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        let l = self
            .state
            .annotations
            .create_label(auth.0.access(), tenant, &body.0.name, &body.0.color)
            .await?;
        Ok(LabelCreated::Label(Json(l.into())))
    }

    /// Renames or recolours a label (`inbox.manage`).
    #[oai(
        path = "/tenants/:tenant_id/labels/:label_id",
        method = "patch",
        operation_id = "update_label"
    )]
    async fn update_label(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        label_id: Path<String>,
        body: Json<LabelPatchBody>,
    ) -> Result<Json<LabelView>, ApiError> {
        let tenant = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        let id = parse_id::<LabelId>(&label_id.0, "label")?;
        let b = body.0;
        let l = self
            .state
            .annotations
            .update_label(
                auth.0.access(),
                tenant,
                id,
                LabelPatch {
                    name: b.name,
                    color: b.color,
                    expected_version: b.version,
                },
            )
            .await?;
        Ok(Json(l.into()))
    }

    /// Deletes a label (`inbox.manage`) and removes it from every conversation.
    #[oai(
        path = "/tenants/:tenant_id/labels/:label_id",
        method = "delete",
        operation_id = "delete_label"
    )]
    async fn delete_label(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        label_id: Path<String>,
    ) -> Result<Json<Done>, ApiError> {
        let tenant = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        let id = parse_id::<LabelId>(&label_id.0, "label")?;
        self.state
            .annotations
            .delete_label(auth.0.access(), tenant, id)
            .await?;
        Ok(Json(Done::ok()))
    }

    /// The tenant's canned responses, oldest first (`conversations.read`); `q` keeps those
    /// whose shortcut starts with it or whose title contains it.
    #[oai(
        path = "/tenants/:tenant_id/canned-responses",
        method = "get",
        operation_id = "list_canned_responses"
    )]
    async fn canned_responses(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        q: Query<Option<String>>,
        cursor: Query<Option<String>>,
        limit: Query<Option<u32>>,
    ) -> Result<Json<CannedResponseList>, ApiError> {
        let tenant = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        let p = self
            .state
            .annotations
            .canned_responses(auth.0.access(), tenant, q.0, page(cursor.0, limit.0))
            .await?;
        Ok(Json(CannedResponseList {
            items: p.items.into_iter().map(Into::into).collect(),
            next_cursor: p.next_cursor,
        }))
    }

    /// Creates a canned response (`inbox.manage`): 409 `shortcut_taken` for a shortcut the
    /// tenant already uses.
    #[oai(
        path = "/tenants/:tenant_id/canned-responses",
        method = "post",
        operation_id = "create_canned_response"
    )]
    async fn create_canned(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        body: Json<NewCannedResponseBody>,
    ) -> Result<CannedCreated, ApiError> {
        let tenant = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        let b = body.0;
        let c = self
            .state
            .annotations
            .create_canned_response(
                auth.0.access(),
                tenant,
                NewCannedResponse {
                    shortcut: b.shortcut,
                    title: b.title,
                    body: b.body,
                    language: b.language,
                },
            )
            .await?;
        Ok(CannedCreated::Canned(Json(c.into())))
    }

    /// One canned response (`conversations.read`).
    #[oai(
        path = "/tenants/:tenant_id/canned-responses/:canned_response_id",
        method = "get",
        operation_id = "get_canned_response"
    )]
    async fn canned(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        canned_response_id: Path<String>,
    ) -> Result<Json<CannedResponseView>, ApiError> {
        let tenant = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        let id = parse_id::<CannedResponseId>(&canned_response_id.0, "canned response")?;
        let c = self
            .state
            .annotations
            .canned_response(auth.0.access(), tenant, id)
            .await?;
        Ok(Json(c.into()))
    }

    /// Changes a canned response (`inbox.manage`).
    #[oai(
        path = "/tenants/:tenant_id/canned-responses/:canned_response_id",
        method = "patch",
        operation_id = "update_canned_response"
    )]
    async fn update_canned(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        canned_response_id: Path<String>,
        body: Json<CannedResponsePatchBody>,
    ) -> Result<Json<CannedResponseView>, ApiError> {
        let tenant = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        let id = parse_id::<CannedResponseId>(&canned_response_id.0, "canned response")?;
        let b = body.0;
        let language = match b.language {
            MaybeUndefined::Undefined => None,
            MaybeUndefined::Null => Some(None),
            MaybeUndefined::Value(l) => Some(Some(l)),
        };
        let c = self
            .state
            .annotations
            .update_canned_response(
                auth.0.access(),
                tenant,
                id,
                CannedResponsePatch {
                    shortcut: b.shortcut,
                    title: b.title,
                    body: b.body,
                    language,
                    expected_version: b.version,
                },
            )
            .await?;
        Ok(Json(c.into()))
    }

    /// Deletes a canned response (`inbox.manage`).
    #[oai(
        path = "/tenants/:tenant_id/canned-responses/:canned_response_id",
        method = "delete",
        operation_id = "delete_canned_response"
    )]
    async fn delete_canned(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        canned_response_id: Path<String>,
    ) -> Result<Json<Done>, ApiError> {
        let tenant = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        let id = parse_id::<CannedResponseId>(&canned_response_id.0, "canned response")?;
        self.state
            .annotations
            .delete_canned_response(auth.0.access(), tenant, id)
            .await?;
        Ok(Json(Done::ok()))
    }
}

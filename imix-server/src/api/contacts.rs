//! Contact management: create, edit and delete contacts (reads are in the inbox API),
//! import and export them as CSV, and contact groups with their members.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use imix_core::id::TenantId;
use imix_messaging::{
    contacts::{
        groups::{ContactGroup, ContactGroupId, GroupMember},
        imports::{ContactImport, ContactImportId, ImportStatus},
        ContactPatch, GroupPatch, NewContact,
    },
    AttributeValue, ContactId,
};
use poem_openapi::{
    param::{Path, Query},
    payload::{Binary, Json},
    types::{multipart::Upload, MaybeUndefined},
    ApiResponse, Enum, Multipart, Object, OpenApi,
};

use super::{
    dto::{page, Done},
    inbox::{ContactList, ContactView},
    parse_id, ApiTags,
};
use crate::{auth::Auth, error::ApiError, state::AppState};

/// Contact management operations.
pub struct ContactsApi {
    state: AppState,
}

impl ContactsApi {
    /// The contacts API over `state`.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

/// The type of a custom attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum AttributeType {
    /// Text.
    Text,
    /// A number.
    Number,
    /// `true` or `false`.
    Boolean,
    /// A date, `YYYY-MM-DD`.
    Date,
}

/// A custom attribute's typed value, e.g. `{"type": "number", "value": 42}`.
#[derive(Debug, Clone, Object)]
pub struct AttributeDto {
    /// The type.
    #[oai(rename = "type")]
    pub kind: AttributeType,
    /// The value: a string for `text` and `date` (`YYYY-MM-DD`), a number, or a boolean.
    pub value: serde_json::Value,
}

impl From<AttributeValue> for AttributeDto {
    fn from(v: AttributeValue) -> Self {
        match v {
            AttributeValue::Text(t) => Self {
                kind: AttributeType::Text,
                value: t.into(),
            },
            AttributeValue::Number(n) => Self {
                kind: AttributeType::Number,
                value: serde_json::Value::Number(n),
            },
            AttributeValue::Boolean(b) => Self {
                kind: AttributeType::Boolean,
                value: b.into(),
            },
            AttributeValue::Date(d) => Self {
                kind: AttributeType::Date,
                value: d.format("%Y-%m-%d").to_string().into(),
            },
        }
    }
}

/// The typed values of `attributes`; 422 naming `attributes.<key>` for a value that is not
/// of its type.
fn typed(
    attributes: BTreeMap<String, AttributeDto>,
) -> Result<BTreeMap<String, AttributeValue>, ApiError> {
    attributes
        .into_iter()
        .map(|(key, a)| {
            let value = match (a.kind, a.value) {
                (AttributeType::Text, serde_json::Value::String(s)) => Some(AttributeValue::Text(s)),
                (AttributeType::Number, serde_json::Value::Number(n)) => {
                    Some(AttributeValue::Number(n))
                }
                (AttributeType::Boolean, serde_json::Value::Bool(b)) => {
                    Some(AttributeValue::Boolean(b))
                }
                (AttributeType::Date, serde_json::Value::String(s)) => {
                    NaiveDate::parse_from_str(&s, "%Y-%m-%d")
                        .ok()
                        .map(AttributeValue::Date)
                }
                _ => None,
            };
            match value {
                Some(v) => Ok((key, v)),
                None => Err(ApiError::invalid_field(
                    &format!("attributes.{key}"),
                    "the value is not of its type (text and date: a string, date as YYYY-MM-DD; number; boolean)",
                )),
            }
        })
        .collect()
}

/// A contact to create.
#[derive(Debug, Clone, Object)]
pub struct NewContactBody {
    /// The phone number in international form (`+33 6 12 34 56 78`); stored in E.164.
    pub phone: String,
    /// Meta's WhatsApp id when it differs from the number's digits (derived otherwise).
    pub wa_id: Option<String>,
    /// The name.
    pub name: Option<String>,
    /// Language code (`fr`, `en_US`).
    pub language: Option<String>,
    /// Tags.
    #[oai(default)]
    pub tags: Vec<String>,
    /// Custom attributes by key, each typed.
    #[oai(default)]
    pub attributes: BTreeMap<String, AttributeDto>,
    /// Notes.
    pub notes: Option<String>,
    /// Opted out of marketing.
    pub opted_out: Option<bool>,
}

/// Changes to a contact: an absent field is left as it is, `null` clears it.
#[derive(Debug, Clone, Object)]
pub struct ContactPatchBody {
    /// The name.
    pub name: MaybeUndefined<String>,
    /// Replaces every tag.
    pub tags: Option<Vec<String>>,
    /// Replaces every custom attribute.
    pub attributes: Option<BTreeMap<String, AttributeDto>>,
    /// The notes.
    pub notes: MaybeUndefined<String>,
    /// The language.
    pub language: MaybeUndefined<String>,
    /// Opts out of marketing (`true`) or back in (`false`), recorded with the time and
    /// source `api`.
    pub opted_out: Option<bool>,
    /// Blocks the contact (`true`: the send API refuses messages to it) or unblocks it.
    pub blocked: Option<bool>,
}

fn maybe(value: MaybeUndefined<String>) -> Option<Option<String>> {
    match value {
        MaybeUndefined::Undefined => None,
        MaybeUndefined::Null => Some(None),
        MaybeUndefined::Value(v) => Some(Some(v)),
    }
}

/// Where an import stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum ImportStatusDto {
    /// Stored, waiting for a worker.
    Queued,
    /// Being imported (or resumed after a restart).
    Running,
    /// Every row was imported or rejected.
    Done,
    /// Could not go on; `error` says why (rows imported before stay).
    Failed,
}

impl From<ImportStatus> for ImportStatusDto {
    fn from(s: ImportStatus) -> Self {
        match s {
            ImportStatus::Queued => Self::Queued,
            ImportStatus::Running => Self::Running,
            ImportStatus::Done => Self::Done,
            ImportStatus::Failed => Self::Failed,
        }
    }
}

/// A rejected row of an import.
#[derive(Debug, Clone, Object)]
pub struct ImportRejectionView {
    /// The row's line in the file (the header is line 1).
    pub row: u64,
    /// Why: `invalid_field`, `limit_reached`, `phone_taken`, `wa_id_taken`, `not_found`.
    pub code: String,
    /// The field at fault (`phone`, `attr:score`, …), when one is.
    pub field: Option<String>,
    /// Why, for people.
    pub reason: String,
}

/// A contact import job: its progress and report.
#[derive(Debug, Clone, Object)]
pub struct ImportView {
    /// Id.
    pub id: String,
    /// `queued`, `running`, `done` or `failed`.
    pub status: ImportStatusDto,
    /// The uploaded file's name.
    pub file_name: Option<String>,
    /// The file's data rows.
    pub total_rows: Option<u64>,
    /// Rows imported or rejected so far.
    pub processed_rows: u64,
    /// Contacts created.
    pub created: u64,
    /// Contacts updated (same phone number or WhatsApp id).
    pub updated: u64,
    /// Rows rejected.
    pub rejected: u64,
    /// The rejected rows so far, in file order: the first 1,000 (`rejections_truncated`
    /// says when there were more). Absent from lists.
    pub rejections: Option<Vec<ImportRejectionView>>,
    /// More rows were rejected than `rejections` shows.
    pub rejections_truncated: bool,
    /// Why the job failed (or why its last attempt did, while it is retried).
    pub error: Option<String>,
    /// Uploaded.
    pub created_at: DateTime<Utc>,
    /// When a worker first took it.
    pub started_at: Option<DateTime<Utc>>,
    /// When it finished.
    pub finished_at: Option<DateTime<Utc>>,
    /// Last progress saved.
    pub updated_at: DateTime<Utc>,
}

impl ImportView {
    fn of(j: ContactImport, with_rejections: bool) -> Self {
        Self {
            id: j.id.to_string(),
            status: j.status.into(),
            file_name: j.file_name,
            total_rows: j.total_rows,
            processed_rows: j.processed_rows,
            created: j.created,
            updated: j.updated,
            rejected: j.rejected,
            rejections: with_rejections.then(|| {
                j.rejections
                    .into_iter()
                    .map(|r| ImportRejectionView {
                        row: r.row,
                        code: r.code,
                        field: r.field,
                        reason: r.reason,
                    })
                    .collect()
            }),
            rejections_truncated: j.rejections_truncated,
            error: j.error,
            created_at: j.created_at,
            started_at: j.started_at,
            finished_at: j.finished_at,
            updated_at: j.updated_at,
        }
    }
}

/// One page of imports.
#[derive(Debug, Clone, Object)]
pub struct ImportList {
    /// The imports, newest first (without their rejected rows).
    pub items: Vec<ImportView>,
    /// Cursor of the next page, `null` on the last.
    pub next_cursor: Option<String>,
}

/// How long `?wait=true` waits for an import to finish.
pub const IMPORT_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(ApiResponse)]
enum ImportStarted {
    /// Finished within the wait (`?wait=true`): the report.
    #[oai(status = 200)]
    Finished(Json<ImportView>, #[oai(header = "Location")] String),
    /// Queued (or still running when the wait ran out): follow `Location` for progress.
    #[oai(status = 202)]
    Accepted(Json<ImportView>, #[oai(header = "Location")] String),
}

/// A CSV file of contacts.
#[derive(Debug, Multipart)]
pub struct ContactsUpload {
    /// The CSV file.
    pub file: Upload,
}

/// A contact group.
#[derive(Debug, Clone, Object)]
pub struct GroupView {
    /// Id.
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// Name, unique within the tenant.
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// Version.
    pub version: u64,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<ContactGroup> for GroupView {
    fn from(g: ContactGroup) -> Self {
        Self {
            id: g.id.to_string(),
            tenant_id: g.tenant_id.to_string(),
            name: g.name,
            description: g.description,
            version: g.version,
            created_at: g.created_at,
            updated_at: g.updated_at,
        }
    }
}

/// One page of groups.
#[derive(Debug, Clone, Object)]
pub struct GroupList {
    /// The groups, oldest first.
    pub items: Vec<GroupView>,
    /// Cursor of the next page, `null` on the last.
    pub next_cursor: Option<String>,
}

/// A group to create.
#[derive(Debug, Clone, Object)]
pub struct NewGroupBody {
    /// Name, unique within the tenant.
    pub name: String,
    /// Description.
    pub description: Option<String>,
}

/// Changes to a group.
#[derive(Debug, Clone, Object)]
pub struct GroupPatchBody {
    /// The name.
    pub name: Option<String>,
    /// The description (`null` clears it).
    pub description: MaybeUndefined<String>,
}

/// A member of a group.
#[derive(Debug, Clone, Object)]
pub struct MemberView {
    /// The contact.
    pub contact_id: String,
    /// When it was added.
    pub added_at: DateTime<Utc>,
}

impl From<GroupMember> for MemberView {
    fn from(m: GroupMember) -> Self {
        Self {
            contact_id: m.contact_id.to_string(),
            added_at: m.added_at,
        }
    }
}

/// One page of members.
#[derive(Debug, Clone, Object)]
pub struct MemberList {
    /// The members, in the order added.
    pub items: Vec<MemberView>,
    /// Cursor of the next page, `null` on the last.
    pub next_cursor: Option<String>,
}

#[derive(ApiResponse)]
enum ContactCreated {
    /// Created.
    #[oai(status = 201)]
    Contact(Json<ContactView>),
}

#[derive(ApiResponse)]
enum GroupCreated {
    /// Created.
    #[oai(status = 201)]
    Group(Json<GroupView>),
}

#[derive(ApiResponse)]
enum CsvExport {
    /// The tenant's contacts as CSV.
    #[oai(status = 200, content_type = "text/csv; charset=utf-8")]
    Csv(
        Binary<Vec<u8>>,
        #[oai(header = "Content-Disposition")] String,
    ),
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Inbox")]
impl ContactsApi {
    /// The tenant's contacts, oldest first (`contacts.read`). Declared beside the writes:
    /// one path's operations must come from one API for the OpenAPI document to list them
    /// all.
    #[oai(
        path = "/tenants/:tenant_id/contacts",
        method = "get",
        operation_id = "list_contacts"
    )]
    async fn contacts(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        cursor: Query<Option<String>>,
        limit: Query<Option<u32>>,
    ) -> Result<Json<ContactList>, ApiError> {
        let tenant = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        let p = self
            .state
            .inbox
            .contacts(auth.0.access(), tenant, page(cursor.0, limit.0))
            .await?;
        Ok(Json(ContactList {
            items: p.items.into_iter().map(Into::into).collect(),
            next_cursor: p.next_cursor,
        }))
    }

    /// One contact (`contacts.read`).
    #[oai(
        path = "/tenants/:tenant_id/contacts/:contact_id",
        method = "get",
        operation_id = "get_contact"
    )]
    async fn contact(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        contact_id: Path<String>,
    ) -> Result<Json<ContactView>, ApiError> {
        let tenant = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        let id = parse_id::<ContactId>(&contact_id.0, "contact")?;
        let c = self
            .state
            .inbox
            .contact(auth.0.access(), tenant, id)
            .await?;
        Ok(Json(c.into()))
    }

    /// Creates a contact (`contacts.manage`): 422 naming `phone` for a number that is not
    /// valid, 409 `phone_taken` / `wa_id_taken` for one the tenant has, 429
    /// `limit_reached` past Max Contacts.
    #[oai(
        path = "/tenants/:tenant_id/contacts",
        method = "post",
        operation_id = "create_contact"
    )]
    async fn create(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        body: Json<NewContactBody>,
    ) -> Result<ContactCreated, ApiError> {
        let tenant = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        let b = body.0;
        let req = NewContact {
            phone: b.phone,
            wa_id: b.wa_id,
            name: b.name,
            language: b.language,
            tags: b.tags,
            attributes: typed(b.attributes)?,
            notes: b.notes,
            opted_out: b.opted_out,
        };
        let c = self
            .state
            .contacts
            .create(auth.0.access(), tenant, req)
            .await?;
        Ok(ContactCreated::Contact(Json(c.into())))
    }

    /// Changes a contact (`contacts.manage`).
    #[oai(
        path = "/tenants/:tenant_id/contacts/:contact_id",
        method = "patch",
        operation_id = "update_contact"
    )]
    async fn update(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        contact_id: Path<String>,
        body: Json<ContactPatchBody>,
    ) -> Result<Json<ContactView>, ApiError> {
        let tenant = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        let id = parse_id::<ContactId>(&contact_id.0, "contact")?;
        let b = body.0;
        let patch = ContactPatch {
            name: maybe(b.name),
            tags: b.tags,
            attributes: b.attributes.map(typed).transpose()?,
            notes: maybe(b.notes),
            language: maybe(b.language),
            opted_out: b.opted_out,
            blocked: b.blocked,
        };
        let c = self
            .state
            .contacts
            .update(auth.0.access(), tenant, id, patch)
            .await?;
        Ok(Json(c.into()))
    }

    /// Deletes a contact and its group memberships (`contacts.manage`); its conversations
    /// and messages stay. Gives its Max Contacts slot back.
    #[oai(
        path = "/tenants/:tenant_id/contacts/:contact_id",
        method = "delete",
        operation_id = "delete_contact"
    )]
    async fn delete(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        contact_id: Path<String>,
    ) -> Result<Json<Done>, ApiError> {
        let tenant = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        let id = parse_id::<ContactId>(&contact_id.0, "contact")?;
        self.state
            .contacts
            .delete(auth.0.access(), tenant, id)
            .await?;
        Ok(Json(Done::ok()))
    }

    /// Imports contacts from a CSV file (multipart field `file`; `contacts.manage`) as a
    /// background job. The file is checked whole first: one that is not CSV, has no
    /// `phone` column, or has more than 100,000 rows or 16 MiB is refused (422 naming
    /// `file`) and nothing is stored. Otherwise the answer is 202 with the queued job and
    /// a `Location` to follow its progress; rows are then imported in file order: created,
    /// updated (same phone or WhatsApp id) or rejected with the reason (rows past Max
    /// Contacts: `limit_reached`). With `?wait=true` the request waits up to 5 seconds and
    /// answers 200 with the finished job if it finished by then (202 otherwise). Columns:
    /// see the contacts documentation.
    #[oai(
        path = "/tenants/:tenant_id/contacts/import",
        method = "post",
        operation_id = "import_contacts"
    )]
    async fn import(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        wait: Query<Option<bool>>,
        form: ContactsUpload,
    ) -> Result<ImportStarted, ApiError> {
        let tenant = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        let file_name = form.file.file_name().map(str::to_owned);
        let data = form.file.into_vec().await.map_err(|e| {
            ApiError::new(
                poem::http::StatusCode::BAD_REQUEST,
                "malformed_multipart",
                format!("cannot read the upload: {e}"),
            )
            .with_details(serde_json::json!({ "field": "file" }))
        })?;
        let imports = &self.state.contact_imports;
        let mut job = imports
            .start(auth.0.access(), tenant, file_name, data)
            .await?;
        if wait.0 == Some(true) {
            job = imports
                .wait(auth.0.access(), tenant, job.id, IMPORT_WAIT)
                .await?;
        }
        let location = format!("/api/v1/tenants/{tenant}/contacts/imports/{}", job.id);
        Ok(if job.status.is_finished() {
            ImportStarted::Finished(Json(ImportView::of(job, true)), location)
        } else {
            ImportStarted::Accepted(Json(ImportView::of(job, true)), location)
        })
    }

    /// The tenant's contact imports, newest first, without their rejected rows
    /// (`contacts.read`).
    #[oai(
        path = "/tenants/:tenant_id/contacts/imports",
        method = "get",
        operation_id = "list_contact_imports"
    )]
    async fn imports(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        cursor: Query<Option<String>>,
        limit: Query<Option<u32>>,
    ) -> Result<Json<ImportList>, ApiError> {
        let tenant = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        let p = self
            .state
            .contact_imports
            .list(auth.0.access(), tenant, page(cursor.0, limit.0))
            .await?;
        Ok(Json(ImportList {
            items: p
                .items
                .into_iter()
                .map(|j| ImportView::of(j, false))
                .collect(),
            next_cursor: p.next_cursor,
        }))
    }

    /// One contact import: its progress and, as rows are done, its report (the first
    /// 1,000 rejected rows with row, code, field and reason) (`contacts.read`). Another
    /// tenant's import is 404.
    #[oai(
        path = "/tenants/:tenant_id/contacts/imports/:import_id",
        method = "get",
        operation_id = "get_contact_import"
    )]
    async fn import_job(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        import_id: Path<String>,
    ) -> Result<Json<ImportView>, ApiError> {
        let tenant = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        let id = parse_id::<ContactImportId>(&import_id.0, "contact import")?;
        let job = self
            .state
            .contact_imports
            .get(auth.0.access(), tenant, id)
            .await?;
        Ok(Json(ImportView::of(job, true)))
    }

    /// The tenant's contacts as CSV (`contacts.read`), in the columns the import reads.
    #[oai(
        path = "/tenants/:tenant_id/contacts/export",
        method = "get",
        operation_id = "export_contacts"
    )]
    async fn export(&self, auth: Auth, tenant_id: Path<String>) -> Result<CsvExport, ApiError> {
        let tenant = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        let data = self
            .state
            .contacts
            .export_csv(auth.0.access(), tenant)
            .await?;
        Ok(CsvExport::Csv(
            Binary(data),
            "attachment; filename=\"contacts.csv\"".to_owned(),
        ))
    }

    /// The tenant's contact groups, oldest first (`contacts.read`).
    #[oai(
        path = "/tenants/:tenant_id/contact-groups",
        method = "get",
        operation_id = "list_contact_groups"
    )]
    async fn groups(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        cursor: Query<Option<String>>,
        limit: Query<Option<u32>>,
    ) -> Result<Json<GroupList>, ApiError> {
        let tenant = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        let p = self
            .state
            .contacts
            .groups(auth.0.access(), tenant, page(cursor.0, limit.0))
            .await?;
        Ok(Json(GroupList {
            items: p.items.into_iter().map(Into::into).collect(),
            next_cursor: p.next_cursor,
        }))
    }

    /// Creates a contact group (`contacts.manage`): 409 `name_taken`, 429 `limit_reached`
    /// past Max Contact Groups.
    #[oai(
        path = "/tenants/:tenant_id/contact-groups",
        method = "post",
        operation_id = "create_contact_group"
    )]
    async fn create_group(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        body: Json<NewGroupBody>,
    ) -> Result<GroupCreated, ApiError> {
        let tenant = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        let g = self
            .state
            .contacts
            .create_group(auth.0.access(), tenant, &body.0.name, body.0.description)
            .await?;
        Ok(GroupCreated::Group(Json(g.into())))
    }

    /// One contact group (`contacts.read`).
    #[oai(
        path = "/tenants/:tenant_id/contact-groups/:group_id",
        method = "get",
        operation_id = "get_contact_group"
    )]
    async fn group(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        group_id: Path<String>,
    ) -> Result<Json<GroupView>, ApiError> {
        let tenant = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        let id = parse_id::<ContactGroupId>(&group_id.0, "contact group")?;
        let g = self
            .state
            .contacts
            .group(auth.0.access(), tenant, id)
            .await?;
        Ok(Json(g.into()))
    }

    /// Renames or redescribes a contact group (`contacts.manage`).
    #[oai(
        path = "/tenants/:tenant_id/contact-groups/:group_id",
        method = "patch",
        operation_id = "update_contact_group"
    )]
    async fn update_group(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        group_id: Path<String>,
        body: Json<GroupPatchBody>,
    ) -> Result<Json<GroupView>, ApiError> {
        let tenant = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        let id = parse_id::<ContactGroupId>(&group_id.0, "contact group")?;
        let patch = GroupPatch {
            name: body.0.name,
            description: maybe(body.0.description),
        };
        let g = self
            .state
            .contacts
            .update_group(auth.0.access(), tenant, id, patch)
            .await?;
        Ok(Json(g.into()))
    }

    /// Deletes a contact group and its memberships, not its contacts (`contacts.manage`);
    /// gives its Max Contact Groups slot back.
    #[oai(
        path = "/tenants/:tenant_id/contact-groups/:group_id",
        method = "delete",
        operation_id = "delete_contact_group"
    )]
    async fn delete_group(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        group_id: Path<String>,
    ) -> Result<Json<Done>, ApiError> {
        let tenant = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        let id = parse_id::<ContactGroupId>(&group_id.0, "contact group")?;
        self.state
            .contacts
            .delete_group(auth.0.access(), tenant, id)
            .await?;
        Ok(Json(Done::ok()))
    }

    /// The members of a contact group, in the order added (`contacts.read`).
    #[oai(
        path = "/tenants/:tenant_id/contact-groups/:group_id/members",
        method = "get",
        operation_id = "list_contact_group_members"
    )]
    async fn members(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        group_id: Path<String>,
        cursor: Query<Option<String>>,
        limit: Query<Option<u32>>,
    ) -> Result<Json<MemberList>, ApiError> {
        let tenant = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        let id = parse_id::<ContactGroupId>(&group_id.0, "contact group")?;
        let p = self
            .state
            .contacts
            .members(auth.0.access(), tenant, id, page(cursor.0, limit.0))
            .await?;
        Ok(Json(MemberList {
            items: p.items.into_iter().map(Into::into).collect(),
            next_cursor: p.next_cursor,
        }))
    }

    /// Adds a contact to a group (`contacts.manage`); adding a member again changes
    /// nothing.
    #[oai(
        path = "/tenants/:tenant_id/contact-groups/:group_id/members/:contact_id",
        method = "put",
        operation_id = "add_contact_group_member"
    )]
    async fn add_member(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        group_id: Path<String>,
        contact_id: Path<String>,
    ) -> Result<Json<Done>, ApiError> {
        let tenant = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        let group = parse_id::<ContactGroupId>(&group_id.0, "contact group")?;
        let contact = parse_id::<ContactId>(&contact_id.0, "contact")?;
        self.state
            .contacts
            .add_member(auth.0.access(), tenant, group, contact)
            .await?;
        Ok(Json(Done::ok()))
    }

    /// Removes a contact from a group (`contacts.manage`); 404 when it is not a member.
    #[oai(
        path = "/tenants/:tenant_id/contact-groups/:group_id/members/:contact_id",
        method = "delete",
        operation_id = "remove_contact_group_member"
    )]
    async fn remove_member(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        group_id: Path<String>,
        contact_id: Path<String>,
    ) -> Result<Json<Done>, ApiError> {
        let tenant = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        let group = parse_id::<ContactGroupId>(&group_id.0, "contact group")?;
        let contact = parse_id::<ContactId>(&contact_id.0, "contact")?;
        self.state
            .contacts
            .remove_member(auth.0.access(), tenant, group, contact)
            .await?;
        Ok(Json(Done::ok()))
    }
}

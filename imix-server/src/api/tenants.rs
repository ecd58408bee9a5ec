//! Tenants: the admin guide's Tenant Management, with logo and documents.

use imix_core::id::{DocumentId, TenantId};
use imix_tenancy::{NewTenant, Permission, TenantPatch};
use poem_openapi::{
    param::{Path, Query},
    payload::Json,
    types::{multipart::Upload, MaybeUndefined},
    ApiResponse, Multipart, Object, OpenApi,
};

use super::{
    dto::{page, Done, LanguageDto},
    files::FileDownload,
    parse_id,
    views::{DocumentList, DocumentView, LimitsView, TenantList, TenantView},
    ApiTags,
};
use crate::{auth::Auth, error::ApiError, state::AppState};

/// Tenant operations.
pub struct TenantsApi {
    state: AppState,
}

impl TenantsApi {
    /// The tenants API over `state`.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

/// `POST /api/v1/tenants`.
#[derive(Object)]
pub struct CreateTenant {
    /// Tenant name.
    pub name: String,
    /// Organization name.
    pub organization: Option<String>,
    /// Physical address.
    pub address: Option<String>,
    /// Primary phone, E.164.
    pub phone: Option<String>,
    /// Mobile phone, E.164.
    pub mobile: Option<String>,
    /// Primary email.
    pub email: Option<String>,
    /// Internal notes, visible to platform users only.
    pub private_notes: Option<String>,
    /// Default language (en, fr, ar); English when omitted.
    pub default_language: Option<LanguageDto>,
    /// Usage limits; an omitted or null limit is unlimited.
    #[oai(default)]
    pub limits: LimitsView,
}

/// `PATCH /api/v1/tenants/{tenant_id}`: omitted fields stay as they are, `null` clears.
#[derive(Object)]
pub struct UpdateTenant {
    /// Name.
    pub name: Option<String>,
    /// Organization.
    pub organization: MaybeUndefined<String>,
    /// Address.
    pub address: MaybeUndefined<String>,
    /// Phone.
    pub phone: MaybeUndefined<String>,
    /// Mobile.
    pub mobile: MaybeUndefined<String>,
    /// Email.
    pub email: MaybeUndefined<String>,
    /// Private notes (platform only).
    pub private_notes: MaybeUndefined<String>,
    /// Default language.
    pub default_language: Option<LanguageDto>,
    /// All six limits at once (platform only); omitted or null limits are unlimited.
    pub limits: Option<LimitsView>,
}

fn maybe(v: MaybeUndefined<String>) -> Option<Option<String>> {
    match v {
        MaybeUndefined::Undefined => None,
        MaybeUndefined::Null => Some(None),
        MaybeUndefined::Value(s) => Some(Some(s)),
    }
}

/// A logo upload.
#[derive(Multipart)]
pub struct LogoUpload {
    /// PNG, JPEG or WebP, at most 2 MB (type detected from the bytes).
    pub file: Upload,
}

/// A document upload.
#[derive(Multipart)]
pub struct DocumentUpload {
    /// PDF, image or office document, at most 20 MB (type detected from the bytes).
    pub file: Upload,
}

/// Today's daily counters.
#[derive(Debug, Object)]
pub struct DailyView {
    /// Messages sent today (UTC).
    pub messages: u64,
    /// Media messages sent today (UTC).
    pub media: u64,
}

/// Records in use, checked against the count limits.
#[derive(Debug, Object)]
pub struct CountsView {
    /// Message templates.
    pub templates: u64,
    /// Users that are not deactivated (invited ones included).
    pub agents: u64,
    /// Contacts.
    pub contacts: u64,
    /// Contact groups.
    pub contact_groups: u64,
}

/// A tenant's usage and limits.
#[derive(Debug, Object)]
pub struct UsageView {
    /// The UTC day the daily counters are for.
    pub day: String,
    /// Today's counters.
    pub today: DailyView,
    /// Records in use.
    pub counts: CountsView,
    /// The limits (null = unlimited).
    pub limits: LimitsView,
    /// When the daily counters start again from 0 (next UTC midnight).
    pub resets_at: chrono::DateTime<chrono::Utc>,
    /// Today's AI assistant tokens and the daily token limit (as `GET .../usage/ai`).
    pub ai_tokens: super::ai::AiUsageBody,
}

#[derive(ApiResponse)]
enum TenantCreated {
    /// Created.
    #[oai(status = 201)]
    Tenant(Json<TenantView>),
}

#[derive(ApiResponse)]
enum DocumentCreated {
    /// Stored.
    #[oai(status = 201)]
    Document(Json<DocumentView>),
}

/// Reads an upload, refusing more than `max` bytes.
async fn read_upload(
    upload: Upload,
    field: &'static str,
    max: u64,
) -> Result<(String, bytes::Bytes), ApiError> {
    if upload.size() as u64 > max {
        return Err(imix_tenancy::TenancyError::TooLarge {
            field,
            max_bytes: max,
        }
        .into());
    }
    let name = upload.file_name().unwrap_or("upload").to_owned();
    let data = upload.into_vec().await.map_err(|e| {
        ApiError::new(
            poem::http::StatusCode::BAD_REQUEST,
            "malformed_multipart",
            format!("cannot read the upload: {e}"),
        )
        .with_details(serde_json::json!({ "field": field }))
    })?;
    Ok((name, data.into()))
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Tenants")]
impl TenantsApi {
    /// Tenants visible to the caller (platform users: all; tenant users: their own).
    #[oai(path = "/tenants", method = "get", operation_id = "list_tenants")]
    async fn list(
        &self,
        auth: Auth,
        cursor: Query<Option<String>>,
        limit: Query<Option<u32>>,
    ) -> Result<Json<TenantList>, ApiError> {
        let p = self
            .state
            .tenancy
            .list_tenants(&auth.0, page(cursor.0, limit.0))
            .await?;
        let notes = auth.0.has(Permission::PlatformTenants);
        Ok(Json(TenantList {
            items: p
                .items
                .into_iter()
                .map(|t| TenantView::of(t, notes))
                .collect(),
            next_cursor: p.next_cursor,
        }))
    }

    /// Creates a tenant (platform admins).
    #[oai(path = "/tenants", method = "post", operation_id = "create_tenant")]
    async fn create(
        &self,
        auth: Auth,
        body: Json<CreateTenant>,
    ) -> Result<TenantCreated, ApiError> {
        let b = body.0;
        let t = self
            .state
            .tenancy
            .create_tenant(
                &auth.0,
                NewTenant {
                    name: b.name,
                    organization: b.organization,
                    address: b.address,
                    phone: b.phone,
                    mobile: b.mobile,
                    email: b.email,
                    private_notes: b.private_notes,
                    default_language: b.default_language.map(Into::into),
                    limits: b.limits.into(),
                },
            )
            .await?;
        Ok(TenantCreated::Tenant(Json(TenantView::of(t, true))))
    }

    /// One tenant.
    #[oai(
        path = "/tenants/:tenant_id",
        method = "get",
        operation_id = "get_tenant"
    )]
    async fn get(&self, auth: Auth, tenant_id: Path<String>) -> Result<Json<TenantView>, ApiError> {
        let id = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        let t = self.state.tenancy.get_tenant(&auth.0, id).await?;
        Ok(Json(TenantView::of(
            t,
            auth.0.has(Permission::PlatformTenants),
        )))
    }

    /// Edits a tenant.
    #[oai(
        path = "/tenants/:tenant_id",
        method = "patch",
        operation_id = "update_tenant"
    )]
    async fn update(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        body: Json<UpdateTenant>,
    ) -> Result<Json<TenantView>, ApiError> {
        let id = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        let b = body.0;
        let patch = TenantPatch {
            name: b.name,
            organization: maybe(b.organization),
            address: maybe(b.address),
            phone: maybe(b.phone),
            mobile: maybe(b.mobile),
            email: maybe(b.email),
            private_notes: maybe(b.private_notes),
            default_language: b.default_language.map(Into::into),
            limits: b.limits.map(Into::into),
        };
        let t = self.state.tenancy.update_tenant(&auth.0, id, patch).await?;
        Ok(Json(TenantView::of(
            t,
            auth.0.has(Permission::PlatformTenants),
        )))
    }

    /// Deactivates a tenant: its users cannot sign in and nothing is sent on its behalf;
    /// its data stays and reappears on activation.
    #[oai(
        path = "/tenants/:tenant_id/deactivate",
        method = "post",
        operation_id = "deactivate_tenant"
    )]
    async fn deactivate(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
    ) -> Result<Json<TenantView>, ApiError> {
        let id = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        Ok(Json(TenantView::of(
            self.state.tenancy.deactivate_tenant(&auth.0, id).await?,
            true,
        )))
    }

    /// Activates a tenant again.
    #[oai(
        path = "/tenants/:tenant_id/activate",
        method = "post",
        operation_id = "activate_tenant"
    )]
    async fn activate(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
    ) -> Result<Json<TenantView>, ApiError> {
        let id = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        Ok(Json(TenantView::of(
            self.state.tenancy.activate_tenant(&auth.0, id).await?,
            true,
        )))
    }

    /// Today's counters, the counts in use, the limits and when the daily counters reset.
    #[oai(
        path = "/tenants/:tenant_id/usage",
        method = "get",
        operation_id = "get_tenant_usage"
    )]
    async fn usage(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
    ) -> Result<Json<UsageView>, ApiError> {
        use imix_tenancy::quota::CountKind;
        let id = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        let u = self.state.tenancy.usage(&auth.0, id).await?;
        // The caller may read this tenant's usage (checked just above).
        let (tokens, token_limit) = self.state.ai.today(id).await?;
        Ok(Json(UsageView {
            ai_tokens: super::ai::AiUsageBody::of(tokens, token_limit),
            day: u.daily.day.to_string(),
            today: DailyView {
                messages: u.daily.messages,
                media: u.daily.media,
            },
            counts: CountsView {
                templates: u.counts.get(CountKind::Templates),
                agents: u.counts.get(CountKind::Agents),
                contacts: u.counts.get(CountKind::Contacts),
                contact_groups: u.counts.get(CountKind::ContactGroups),
            },
            limits: u.limits.into(),
            resets_at: u.resets_at,
        }))
    }

    /// Uploads or replaces the logo (multipart field `file`).
    #[oai(
        path = "/tenants/:tenant_id/logo",
        method = "put",
        operation_id = "put_tenant_logo"
    )]
    async fn put_logo(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        form: LogoUpload,
    ) -> Result<Json<TenantView>, ApiError> {
        let id = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        let (_, data) = read_upload(form.file, "logo", imix_tenancy::MAX_LOGO_BYTES).await?;
        let t = self.state.tenancy.set_logo(&auth.0, id, data).await?;
        Ok(Json(TenantView::of(
            t,
            auth.0.has(Permission::PlatformTenants),
        )))
    }

    /// Downloads the logo.
    #[oai(
        path = "/tenants/:tenant_id/logo",
        method = "get",
        operation_id = "get_tenant_logo"
    )]
    async fn get_logo(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
    ) -> Result<FileDownload, ApiError> {
        let id = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        Ok(self.state.tenancy.logo(&auth.0, id).await?.into())
    }

    /// The tenant's documents.
    #[oai(
        path = "/tenants/:tenant_id/documents",
        method = "get",
        operation_id = "list_tenant_documents"
    )]
    async fn documents(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
    ) -> Result<Json<DocumentList>, ApiError> {
        let id = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        let docs = self.state.tenancy.documents(&auth.0, id).await?;
        Ok(Json(DocumentList {
            items: docs
                .into_iter()
                .map(|d| DocumentView::of(&tenant_id.0, d))
                .collect(),
            next_cursor: None,
        }))
    }

    /// Uploads a document (multipart field `file`; its file name is kept for downloads).
    #[oai(
        path = "/tenants/:tenant_id/documents",
        method = "post",
        operation_id = "add_tenant_document"
    )]
    async fn add_document(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        form: DocumentUpload,
    ) -> Result<DocumentCreated, ApiError> {
        let id = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        let (name, data) = read_upload(form.file, "file", imix_tenancy::MAX_DOCUMENT_BYTES).await?;
        let d = self
            .state
            .tenancy
            .add_document(&auth.0, id, &name, data)
            .await?;
        Ok(DocumentCreated::Document(Json(DocumentView::of(
            &tenant_id.0,
            d,
        ))))
    }

    /// Downloads a document with its original name.
    #[oai(
        path = "/tenants/:tenant_id/documents/:document_id",
        method = "get",
        operation_id = "get_tenant_document"
    )]
    async fn get_document(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        document_id: Path<String>,
    ) -> Result<FileDownload, ApiError> {
        let id = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        let doc = parse_id::<DocumentId>(&document_id.0, "document")?;
        let (_, file) = self.state.tenancy.document(&auth.0, id, doc).await?;
        Ok(file.into())
    }

    /// Deletes a document.
    #[oai(
        path = "/tenants/:tenant_id/documents/:document_id",
        method = "delete",
        operation_id = "delete_tenant_document"
    )]
    async fn delete_document(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        document_id: Path<String>,
    ) -> Result<Json<Done>, ApiError> {
        let id = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        let doc = parse_id::<DocumentId>(&document_id.0, "document")?;
        self.state.tenancy.delete_document(&auth.0, id, doc).await?;
        Ok(Json(Done::ok()))
    }
}

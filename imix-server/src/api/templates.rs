//! Message templates: list (with a status filter), create (submitted to Meta, then
//! `PENDING`), delete, and sync with Meta's list. Max Templates is enforced atomically.

use chrono::{DateTime, Utc};
use imix_core::id::{TemplateId, TenantId, WhatsAppAccountId};
use imix_whatsapp::templates::NewTemplateRequest;
use imix_whatsapp::MessageTemplate;
use poem_openapi::{
    param::{Path, Query},
    payload::Json,
    ApiResponse, Object, OpenApi,
};

use super::{
    dto::{page, Done},
    parse_id, ApiTags,
};
use crate::{auth::Auth, error::ApiError, state::AppState};

/// Template operations.
pub struct TemplatesApi {
    state: AppState,
}

impl TemplatesApi {
    /// The templates API over `state`.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

/// A message template.
#[derive(Debug, Clone, Object)]
pub struct TemplateView {
    /// Id in imix.
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// The WhatsApp account it belongs to.
    pub account_id: String,
    /// Meta's template id.
    pub meta_id: String,
    /// Name (lowercase letters, digits, underscores).
    pub name: String,
    /// Language code, e.g. `en_US`.
    pub language: String,
    /// `MARKETING`, `UTILITY` or `AUTHENTICATION`.
    pub category: String,
    /// Meta's review status: `PENDING`, `APPROVED`, `REJECTED`, `PAUSED`, `DISABLED`, …
    pub status: String,
    /// Components as Meta defines them (`HEADER`, `BODY`, `FOOTER`, `BUTTONS`).
    pub components: serde_json::Value,
    /// Why Meta rejected it, when known.
    pub rejected_reason: Option<String>,
    /// Version.
    pub version: u64,
    /// Created or first synced.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<MessageTemplate> for TemplateView {
    fn from(t: MessageTemplate) -> Self {
        Self {
            id: t.id.to_string(),
            tenant_id: t.tenant_id.to_string(),
            account_id: t.account_id.to_string(),
            meta_id: t.meta_id,
            name: t.name,
            language: t.language,
            category: t.category,
            status: t.status,
            components: t.components,
            rejected_reason: t.rejected_reason,
            version: t.version,
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

/// One page of templates.
#[derive(Debug, Clone, Object)]
pub struct TemplateList {
    /// The templates, oldest first.
    pub items: Vec<TemplateView>,
    /// Cursor of the next page, `null` on the last.
    pub next_cursor: Option<String>,
}

/// `POST /api/v1/tenants/{tenant_id}/templates`.
#[derive(Object)]
pub struct CreateTemplate {
    /// The WhatsApp account (WABA) to create it on.
    pub account_id: String,
    /// Name: lowercase letters, digits and underscores.
    pub name: String,
    /// Language code, e.g. `en_US`.
    pub language: String,
    /// `MARKETING`, `UTILITY` or `AUTHENTICATION`.
    pub category: String,
    /// Components as Meta's API takes them; must include a `BODY`.
    pub components: Vec<serde_json::Value>,
}

/// What a sync changed.
#[derive(Debug, Clone, Object)]
pub struct SyncResult {
    /// Templates Meta has that imix did not.
    pub added: u64,
    /// Templates whose status, category or components changed.
    pub updated: u64,
    /// Templates Meta no longer has, removed here.
    pub removed: u64,
    /// The tenant's templates after the sync.
    pub total: u64,
}

#[derive(ApiResponse)]
enum Created {
    /// Submitted to Meta.
    #[oai(status = 201)]
    Template(Json<TemplateView>),
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::WhatsApp")]
impl TemplatesApi {
    /// The tenant's templates, oldest first; `status` (e.g. `APPROVED`) and `account_id`
    /// narrow the list.
    #[oai(
        path = "/tenants/:tenant_id/templates",
        method = "get",
        operation_id = "list_templates"
    )]
    async fn list(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        status: Query<Option<String>>,
        account_id: Query<Option<String>>,
        cursor: Query<Option<String>>,
        limit: Query<Option<u32>>,
    ) -> Result<Json<TemplateList>, ApiError> {
        let tenant = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        let p = self
            .state
            .templates
            .list(
                auth.0.access(),
                tenant,
                account_id.0.as_deref(),
                status.0.as_deref(),
                page(cursor.0, limit.0),
            )
            .await?;
        Ok(Json(TemplateList {
            items: p.items.into_iter().map(TemplateView::from).collect(),
            next_cursor: p.next_cursor,
        }))
    }

    /// Submits a template to Meta for review; it is stored `PENDING` with Meta's id. Over
    /// the tenant's Max Templates: 429 `limit_reached`.
    #[oai(
        path = "/tenants/:tenant_id/templates",
        method = "post",
        operation_id = "create_template"
    )]
    async fn create(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        body: Json<CreateTemplate>,
    ) -> Result<Created, ApiError> {
        let tenant = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        let b = body.0;
        let t = self
            .state
            .templates
            .create(
                auth.0.access(),
                tenant,
                NewTemplateRequest {
                    account_id: b.account_id,
                    name: b.name,
                    language: b.language,
                    category: b.category,
                    components: b.components,
                },
            )
            .await?;
        Ok(Created::Template(Json(t.into())))
    }

    /// Reconciles the tenant's templates with Meta's lists (all its accounts, or the one
    /// `account_id` names): new ones added, statuses updated, removed ones deleted.
    #[oai(
        path = "/tenants/:tenant_id/templates/sync",
        method = "post",
        operation_id = "sync_templates"
    )]
    async fn sync(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        account_id: Query<Option<String>>,
    ) -> Result<Json<SyncResult>, ApiError> {
        let tenant = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        let account = match account_id.0.as_deref() {
            Some(raw) => Some(parse_id::<WhatsAppAccountId>(raw, "whatsapp account")?),
            None => None,
        };
        let r = self
            .state
            .templates
            .sync(auth.0.access(), tenant, account)
            .await?;
        Ok(Json(SyncResult {
            added: r.added,
            updated: r.updated,
            removed: r.removed,
            total: r.total,
        }))
    }

    /// One template.
    #[oai(
        path = "/tenants/:tenant_id/templates/:template_id",
        method = "get",
        operation_id = "get_template"
    )]
    async fn get(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        template_id: Path<String>,
    ) -> Result<Json<TemplateView>, ApiError> {
        let tenant = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        let id = parse_id::<TemplateId>(&template_id.0, "template")?;
        let t = self
            .state
            .templates
            .get(auth.0.access(), tenant, id)
            .await?;
        Ok(Json(t.into()))
    }

    /// Deletes the template at Meta and here.
    #[oai(
        path = "/tenants/:tenant_id/templates/:template_id",
        method = "delete",
        operation_id = "delete_template"
    )]
    async fn delete(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        template_id: Path<String>,
    ) -> Result<Json<Done>, ApiError> {
        let tenant = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        let id = parse_id::<TemplateId>(&template_id.0, "template")?;
        self.state
            .templates
            .delete(auth.0.access(), tenant, id)
            .await?;
        Ok(Json(Done::ok()))
    }
}

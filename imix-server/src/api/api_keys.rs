//! API keys of a tenant, for integrators' programs: create (the key shown once), list
//! (never the key), delete (refused from the next request on). Checks are in
//! [`imix_tenancy::TenancyService`]; handlers parse, call and map.

use chrono::{DateTime, Utc};
use imix_core::id::TenantId;
use imix_tenancy::{ApiKey, ApiKeyId, NewApiKey};
use poem_openapi::{
    param::{Path, Query},
    payload::Json,
    ApiResponse, Object, OpenApi,
};
use secrecy::ExposeSecret;

use super::{
    dto::{page, Done, RoleDto},
    parse_id, ApiTags,
};
use crate::{auth::Auth, error::ApiError, state::AppState};

/// API key operations.
pub struct ApiKeysApi {
    state: AppState,
}

impl ApiKeysApi {
    /// The API keys API over `state`.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

/// An API key as listed: never the key itself.
#[derive(Debug, Clone, Object)]
pub struct ApiKeyView {
    /// Id.
    pub id: String,
    /// The tenant it acts in.
    pub tenant_id: String,
    /// Name.
    pub name: String,
    /// The role it acts with.
    pub role: RoleDto,
    /// Permissions (custom role only).
    pub permissions: Vec<String>,
    /// The key's first characters (`imix_` and 8 more), to tell keys apart.
    pub hint: String,
    /// Who created it.
    pub created_by: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last used to authenticate a request (updated at most once a minute).
    pub last_used_at: Option<DateTime<Utc>>,
}

impl From<ApiKey> for ApiKeyView {
    fn from(k: ApiKey) -> Self {
        Self {
            id: k.id.to_string(),
            tenant_id: k.tenant_id.to_string(),
            name: k.name,
            role: k.role.into(),
            permissions: k.permissions,
            hint: k.hint,
            created_by: k.created_by.map(|u| u.to_string()),
            created_at: k.created_at,
            last_used_at: k.last_used_at,
        }
    }
}

/// A key just created: the record and, this once, the key.
#[derive(Debug, Clone, Object)]
pub struct CreatedApiKeyView {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// The role it acts with.
    pub role: RoleDto,
    /// Permissions (custom role only).
    pub permissions: Vec<String>,
    /// The key: send it as `Authorization: Bearer <key>`. Shown now and never again (only
    /// its SHA-256 is stored).
    pub key: String,
    /// The key's first characters, as lists show them.
    pub hint: String,
    /// Created.
    pub created_at: DateTime<Utc>,
}

/// One page of API keys.
#[derive(Debug, Clone, Object)]
pub struct ApiKeyList {
    /// The keys, oldest first.
    pub items: Vec<ApiKeyView>,
    /// Cursor of the next page, `null` on the last.
    pub next_cursor: Option<String>,
}

/// `POST /api/v1/tenants/{tenant_id}/api-keys`.
#[derive(Debug, Object)]
pub struct NewApiKeyBody {
    /// A name for people: 1 to 100 characters.
    pub name: String,
    /// The role the key acts with; none may grant a permission its creator lacks.
    pub role: RoleDto,
    /// Permissions, for the `custom` role only.
    #[oai(default)]
    pub permissions: Vec<String>,
}

#[derive(ApiResponse)]
enum Created {
    /// Created; `key` is shown this once.
    #[oai(status = 201)]
    Key(Json<CreatedApiKeyView>),
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Integrations")]
impl ApiKeysApi {
    /// The tenant's API keys, oldest first, without the keys (`integrations.manage`).
    #[oai(
        path = "/tenants/:tenant_id/api-keys",
        method = "get",
        operation_id = "list_api_keys"
    )]
    async fn list(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        cursor: Query<Option<String>>,
        limit: Query<Option<u32>>,
    ) -> Result<Json<ApiKeyList>, ApiError> {
        let tenant = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        let p = self
            .state
            .tenancy
            .list_api_keys(&auth.0, tenant, page(cursor.0, limit.0))
            .await?;
        Ok(Json(ApiKeyList {
            items: p.items.into_iter().map(ApiKeyView::from).collect(),
            next_cursor: p.next_cursor,
        }))
    }

    /// Creates an API key (`integrations.manage`; its role may not grant more than the
    /// caller holds). The answer carries the key, once.
    #[oai(
        path = "/tenants/:tenant_id/api-keys",
        method = "post",
        operation_id = "create_api_key"
    )]
    async fn create(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        body: Json<NewApiKeyBody>,
    ) -> Result<Created, ApiError> {
        let tenant = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        let b = body.0;
        let created = self
            .state
            .tenancy
            .create_api_key(
                &auth.0,
                tenant,
                NewApiKey {
                    name: b.name,
                    role: b.role.into(),
                    permissions: b.permissions,
                },
            )
            .await?;
        let k = created.record;
        Ok(Created::Key(Json(CreatedApiKeyView {
            id: k.id.to_string(),
            name: k.name,
            role: k.role.into(),
            permissions: k.permissions,
            key: created.key.expose_secret().to_owned(),
            hint: k.hint,
            created_at: k.created_at,
        })))
    }

    /// Deletes an API key (`integrations.manage`): requests bearing it are refused from now
    /// on, on every replica.
    #[oai(
        path = "/tenants/:tenant_id/api-keys/:api_key_id",
        method = "delete",
        operation_id = "delete_api_key"
    )]
    async fn delete(
        &self,
        auth: Auth,
        tenant_id: Path<String>,
        api_key_id: Path<String>,
    ) -> Result<Json<Done>, ApiError> {
        let tenant = parse_id::<TenantId>(&tenant_id.0, "tenant")?;
        let id = parse_id::<ApiKeyId>(&api_key_id.0, "api_key")?;
        self.state
            .tenancy
            .delete_api_key(&auth.0, tenant, id)
            .await?;
        Ok(Json(Done::ok()))
    }
}

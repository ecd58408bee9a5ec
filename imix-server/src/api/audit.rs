//! The audit log.

use poem_openapi::{param::Query, payload::Json, OpenApi};

use super::{
    dto::page,
    views::{AuditList, AuditView},
    ApiTags,
};
use crate::{auth::Auth, error::ApiError, state::AppState};

/// Audit-log operations.
pub struct AuditApi {
    state: AppState,
}

impl AuditApi {
    /// The audit API over `state`.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Audit")]
impl AuditApi {
    /// Sign-ins and every change to tenants and users, newest first. Platform admins see
    /// everything; a tenant admin sees their tenant's entries.
    #[oai(path = "/audit-log", method = "get", operation_id = "list_audit_log")]
    async fn list(
        &self,
        auth: Auth,
        cursor: Query<Option<String>>,
        limit: Query<Option<u32>>,
    ) -> Result<Json<AuditList>, ApiError> {
        let p = self
            .state
            .tenancy
            .audit_log(&auth.0, page(cursor.0, limit.0))
            .await?;
        Ok(Json(AuditList {
            items: p.items.into_iter().map(AuditView::from).collect(),
            next_cursor: p.next_cursor,
        }))
    }
}

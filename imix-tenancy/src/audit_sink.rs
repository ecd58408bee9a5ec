//! The audit log as an [`AuditSink`]: how other capabilities' services record their
//! actions without depending on this crate's services.

use std::sync::Arc;

use async_trait::async_trait;
use imix_core::{
    access::{AccessContext, AuditSink},
    id::TenantId,
    model::AuditEntry,
    store::AuditLogRepository,
};

/// Appends each recorded action to the audit log, with the caller's id, email and address.
#[derive(Clone)]
pub struct AuditLog {
    repo: Arc<dyn AuditLogRepository>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").finish_non_exhaustive()
    }
}

impl AuditLog {
    /// The sink over the audit log's storage port.
    pub fn new(repo: Arc<dyn AuditLogRepository>) -> Self {
        Self { repo }
    }
}

/// The entry `ctx` doing `action` on a `target_type` record makes (in `tenant`, else the
/// caller's own tenant).
pub(crate) fn entry(
    ctx: &AccessContext,
    action: &str,
    target_type: &str,
    target_id: String,
    tenant: Option<TenantId>,
) -> AuditEntry {
    let mut e = AuditEntry::new(action, target_type);
    e.actor_id = Some(ctx.user_id());
    e.actor_email = Some(ctx.principal().email.clone());
    e.tenant_id = tenant.or(ctx.tenant_id());
    e.target_id = Some(target_id);
    e.client_addr = ctx.client_addr().map(str::to_owned);
    e
}

#[async_trait]
impl AuditSink for AuditLog {
    async fn record(
        &self,
        ctx: &AccessContext,
        action: &str,
        target_type: &str,
        target_id: String,
        tenant: Option<TenantId>,
    ) {
        let e = entry(ctx, action, target_type, target_id, tenant);
        if let Err(err) = self.repo.append(&e).await {
            tracing::error!(error = %err, action = %e.action, "cannot write the audit log");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use imix_core::{access::Principal, id::UserId, store::MockAuditLogRepository};

    use super::*;

    #[tokio::test]
    async fn records_the_caller_the_target_and_the_tenant() {
        let tenant = TenantId::new();
        let user = UserId::new();
        let ctx = AccessContext::new(
            Principal::new(user, "admin@acme.example"),
            Some(tenant),
            false,
            BTreeSet::new(),
            Some("192.0.2.7".into()),
        );
        let mut repo = MockAuditLogRepository::new();
        repo.expect_append()
            .withf(move |e| {
                e.action == "template.create"
                    && e.target_type == "template"
                    && e.target_id.as_deref() == Some("t-1")
                    && e.tenant_id == Some(tenant)
                    && e.actor_id == Some(user)
                    && e.actor_email.as_deref() == Some("admin@acme.example")
                    && e.client_addr.as_deref() == Some("192.0.2.7")
            })
            .times(1)
            .returning(|_| Ok(()));
        AuditLog::new(Arc::new(repo))
            .record(&ctx, "template.create", "template", "t-1".into(), None)
            .await;
    }
}

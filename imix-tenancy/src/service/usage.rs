//! Usage: today's counters, the counts and the limits of a tenant.

use imix_core::{id::TenantId, model::UsageLimits, Timestamp};

use super::{now, TenancyService};
use crate::{
    permission::Permission,
    quota::{Counts, DailyUsage},
    AuthContext, TenancyError,
};

/// A tenant's usage right now.
#[derive(Debug, Clone)]
pub struct Usage {
    /// Today's (UTC) message and media counters.
    pub daily: DailyUsage,
    /// Templates, agents, contacts and contact groups in use.
    pub counts: Counts,
    /// The limits they are checked against.
    pub limits: UsageLimits,
    /// When the daily counters start again from 0.
    pub resets_at: Timestamp,
}

impl TenancyService {
    /// The usage of `tenant`: for platform users and members with `usage.read`.
    pub async fn usage(&self, ctx: &AuthContext, tenant: TenantId) -> Result<Usage, TenancyError> {
        ctx.scope_for(tenant)?;
        if !ctx.has(Permission::PlatformTenants) {
            ctx.require(Permission::UsageRead)?;
        }
        let t = self.store.tenants.get(tenant).await?;
        let daily = self.quota.usage(tenant, now()).await?;
        let counts = self.counts.counts(tenant).await?;
        Ok(Usage {
            resets_at: daily.resets_at,
            daily,
            counts,
            limits: t.limits,
        })
    }

    /// The quota store (daily counters), for the services that send messages.
    pub fn quota(&self) -> &std::sync::Arc<dyn crate::quota::QuotaStore> {
        &self.quota
    }

    /// The count limits (templates, agents, contacts, groups), for the services that create
    /// those records.
    pub fn count_limits(&self) -> &crate::quota::CountLimits {
        &self.counts
    }
}

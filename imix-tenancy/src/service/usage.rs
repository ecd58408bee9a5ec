//! Usage: today's counters, the counts and the limits of a tenant.

use imix_core::{directory::UsageLimits, id::TenantId, Timestamp};

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
        let t = self.repos.tenants.get(tenant).await?;
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

/// What a tenant's admins are warned of.
#[derive(Debug, Clone, Copy)]
enum Warning {
    /// Today's messages reached `percent` of the daily limit.
    DailyMessages { percent: u8, used: u64, limit: u64 },
    /// The tenant's contacts reached a threshold of Max Contacts.
    Contacts {
        threshold: imix_notify::templates::ContactsThreshold,
        count: u64,
        limit: u64,
    },
}

/// The thresholds of the messages-per-day limit at which a tenant's admins are warned.
pub const WARNING_PERCENTS: [u8; 2] = [80, 100];

impl TenancyService {
    /// Takes `units` messages (and as many media messages when `media`) from the tenant's
    /// daily counters for one send, or refuses: a deactivated tenant sends nothing
    /// ([`TenancyError::TenantDeactivated`]), a reached limit is
    /// [`crate::quota::QuotaError::LimitReached`] and takes nothing. When the messages counter
    /// crosses 80 % or 100 % of the limit, the tenant's admins are warned by email — once per
    /// UTC day per threshold, also with several replicas (the claim is an atomic counter).
    ///
    /// The returned [`crate::quota::Consumed`] lets a send that never reached Meta give the
    /// units back with [`crate::quota::QuotaStore::release`].
    pub async fn consume_for_send(
        &self,
        tenant_id: TenantId,
        units: u64,
        media: bool,
    ) -> Result<crate::quota::Consumed, TenancyError> {
        use crate::quota::DailyQuota;
        let tenant = self.repos.tenants.get(tenant_id).await?;
        if tenant.status == crate::records::TenantStatus::Deactivated {
            return Err(TenancyError::TenantDeactivated);
        }
        let now = now();
        let limit = tenant.limits.max_messages_per_day;
        let consumed = self
            .quota
            .try_consume(tenant_id, DailyQuota::Messages, units, limit, now)
            .await?;
        if media {
            if let Err(e) = self
                .quota
                .try_consume(
                    tenant_id,
                    DailyQuota::Media,
                    units,
                    tenant.limits.max_media_per_day,
                    now,
                )
                .await
            {
                // All or nothing: give the messages back.
                if let Err(release) = self
                    .quota
                    .release(tenant_id, DailyQuota::Messages, units, consumed.day)
                    .await
                {
                    tracing::error!(error = %release, "cannot give back messages after a refused media send");
                }
                return Err(e.into());
            }
        }
        if let Some(limit) = limit.filter(|l| *l > 0) {
            let before = consumed.used.saturating_sub(units);
            for percent in WARNING_PERCENTS {
                let threshold = (limit * u64::from(percent)).div_ceil(100);
                if before < threshold && consumed.used >= threshold {
                    self.warn_admins(&tenant, percent, consumed.used, limit, consumed.day)
                        .await;
                }
            }
        }
        Ok(consumed)
    }

    async fn warn_admins(
        &self,
        tenant: &crate::records::Tenant,
        percent: u8,
        used: u64,
        limit: u64,
        day: chrono::NaiveDate,
    ) {
        // One warning per tenant, day and threshold, whichever replica gets there first.
        let key = format!("usage-warning:{}:{day}:{percent}", tenant.id);
        let expires = crate::quota::next_reset(day) + chrono::Duration::days(1);
        self.warn_admins_once(
            tenant,
            &key,
            Some(expires),
            Warning::DailyMessages {
                percent,
                used,
                limit,
            },
        )
        .await;
    }

    /// Warns `tenant`'s admins that it has `count` contacts, when that is at or past a
    /// threshold of its Max Contacts (80 %, 100 %, past it) it was not warned of yet: once
    /// per tenant, limit value and threshold, remembered in the store's counters (so a
    /// restart or another replica does not send it again; a changed limit warns afresh).
    /// Called for contacts created from inbound messages, which are counted past the limit.
    /// Failures are logged: a warning never stops what caused it.
    pub async fn warn_contacts_limit(&self, tenant_id: TenantId, count: u64) {
        use imix_notify::templates::ContactsThreshold;
        let tenant = match self.repos.tenants.get(tenant_id).await {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, tenant = %tenant_id, "cannot read the tenant for a contacts warning");
                return;
            }
        };
        let Some(limit) = tenant.limits.max_contacts.filter(|l| *l > 0) else {
            return;
        };
        // The highest threshold reached is enough: one email per crossing, not three
        // at once when the count jumps past several.
        let Some(threshold) = ContactsThreshold::ALL
            .into_iter()
            .rev()
            .find(|t| count >= t.count_at(limit))
        else {
            return;
        };
        let key = format!(
            "contacts-warning:{}:{limit}:{}",
            tenant.id,
            threshold.as_str()
        );
        self.warn_admins_once(
            &tenant,
            &key,
            None,
            Warning::Contacts {
                threshold,
                count,
                limit,
            },
        )
        .await;
    }

    /// Sends `warning` to each active admin of `tenant` if this replica is the first to
    /// claim `key` (an atomic counter, kept until `expires`, or for good).
    async fn warn_admins_once(
        &self,
        tenant: &crate::records::Tenant,
        key: &str,
        expires: Option<imix_core::Timestamp>,
        warning: Warning,
    ) {
        match self.repos.counters.try_add(key, 1, Some(1), expires).await {
            Ok(outcome) if outcome.is_added() => {}
            Ok(_) => return,
            Err(e) => {
                tracing::error!(error = %e, "cannot claim a usage warning");
                return;
            }
        }
        let mut cursor = None;
        loop {
            let page = match self
                .repos
                .users
                .list(
                    imix_core::store::Scope::Tenant(tenant.id),
                    imix_core::store::PageRequest {
                        cursor,
                        limit: Some(imix_core::store::MAX_PAGE_SIZE),
                    },
                )
                .await
            {
                Ok(page) => page,
                Err(e) => {
                    tracing::error!(error = %e, "cannot list the tenant's admins for a usage warning");
                    return;
                }
            };
            for admin in page.items.iter().filter(|u| {
                u.role == crate::records::Role::Admin
                    && u.status != crate::records::UserStatus::Deactivated
            }) {
                let sent = match warning {
                    Warning::DailyMessages {
                        percent,
                        used,
                        limit,
                    } => {
                        self.emails
                            .usage_warning(admin, tenant, percent, used, limit)
                            .await
                    }
                    Warning::Contacts {
                        threshold,
                        count,
                        limit,
                    } => {
                        self.emails
                            .contacts_warning(admin, tenant, threshold, count, limit)
                            .await
                    }
                };
                if let Err(e) = sent {
                    tracing::warn!(error = %e, admin = %admin.id, "usage warning not sent");
                }
            }
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
    }
}

//! Wiring of contact management: the tenants' contact and group counts kept by
//! `imix_tenancy::quota::CountLimits`, the contact service, and the webhook processor's
//! storage, whose new contacts are counted without the limit check.

use std::sync::Arc;

use imix_core::id::TenantId;
use imix_messaging::{
    contacts::{inbound::counting_inbound, ContactCounter, Counted, LimitAlerts},
    ContactService, MessagingError,
};
use imix_tenancy::quota::{CountKind, CountLimits, QuotaError};

use crate::storage::Storage;

/// [`ContactCounter`] over the tenancy count limits ([`CountKind::Contacts`],
/// [`CountKind::ContactGroups`]).
#[derive(Debug, Clone)]
pub struct CountLimitsContactCounter(pub CountLimits);

fn kind(counted: Counted) -> CountKind {
    match counted {
        Counted::Contacts => CountKind::Contacts,
        Counted::ContactGroups => CountKind::ContactGroups,
    }
}

fn quota_err(counted: Counted, err: QuotaError) -> MessagingError {
    match err {
        QuotaError::CountLimitReached { limit, current, .. } => MessagingError::LimitReached {
            limit_name: counted.limit_name(),
            limit,
            current,
        },
        other => MessagingError::Counter(Box::new(other)),
    }
}

#[async_trait::async_trait]
impl ContactCounter for CountLimitsContactCounter {
    async fn reserve(
        &self,
        tenant: TenantId,
        counted: Counted,
        limit: Option<u64>,
    ) -> imix_messaging::Result<()> {
        self.0
            .reserve(tenant, kind(counted), limit)
            .await
            .map(drop)
            .map_err(|e| quota_err(counted, e))
    }

    async fn count(&self, tenant: TenantId, counted: Counted) -> imix_messaging::Result<u64> {
        // No limit: the add cannot be refused.
        self.0
            .reserve(tenant, kind(counted), None)
            .await
            .map_err(|e| quota_err(counted, e))
    }

    async fn release(&self, tenant: TenantId, counted: Counted) -> imix_messaging::Result<()> {
        self.0
            .release(tenant, kind(counted))
            .await
            .map(drop)
            .map_err(|e| quota_err(counted, e))
    }
}

/// The contact counter over `count_limits`.
pub fn counter(count_limits: &CountLimits) -> Arc<dyn ContactCounter> {
    Arc::new(CountLimitsContactCounter(count_limits.clone()))
}

/// The contact service.
pub fn service(storage: &Storage, counter: Arc<dyn ContactCounter>) -> ContactService {
    ContactService::new(storage.messaging.clone(), storage.tenants(), counter)
}

/// `storage` as the webhook processor should use it: contacts it creates are counted
/// against Max Contacts, past the limit if need be, and the tenant's admins are warned
/// through `alerts` as the count nears and passes the limit.
pub fn inbound_storage(
    storage: &Storage,
    counter: Arc<dyn ContactCounter>,
    alerts: Arc<dyn LimitAlerts>,
) -> Storage {
    let mut counted = storage.clone();
    counted.messaging = counting_inbound(&storage.messaging, counter, alerts);
    counted
}

/// [`LimitAlerts`] over tenancy's admin warnings: the same emails, claims and mechanism as
/// the daily-limit warnings (`TenancyService::warn_contacts_limit`).
#[derive(Clone)]
pub struct TenancyLimitAlerts(pub imix_tenancy::TenancyService);

#[async_trait::async_trait]
impl LimitAlerts for TenancyLimitAlerts {
    async fn contacts_counted(&self, tenant: TenantId, count: u64) {
        self.0.warn_contacts_limit(tenant, count).await;
    }
}

/// Contact imports as background jobs over `contacts`: jobs in the store, uploaded files
/// in the blob store.
pub fn imports(
    storage: &Storage,
    contacts: ContactService,
) -> Result<imix_messaging::contacts::imports::ContactImports, crate::ServerError> {
    Ok(imix_messaging::contacts::imports::ContactImports::new(
        contacts,
        imix_messaging::storage::imports::open(&storage.store.backend)?,
        storage.store.blobs.clone(),
        imix_messaging::contacts::imports::ImportWorkerConfig::default(),
    ))
}

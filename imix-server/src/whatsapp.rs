//! Wiring of the WhatsApp services: the Graph API client from `IMIX_GRAPH_API_URL`, and the
//! tenants' template counts kept by `imix_tenancy::quota::CountLimits`.

use std::sync::Arc;

use imix_core::{access::AuditSink, crypto::Cipher, id::TenantId};
use imix_tenancy::{
    quota::{CountKind, CountLimits, QuotaError},
    AuditLog,
};
use imix_whatsapp::{
    accounts::{AccountService, ServiceResult, WhatsAppRepos},
    templates::{TemplateCounter, TemplateService},
    GraphApiClient, GraphApiConfig, ServiceError, WhatsAppClient,
};

use crate::{config::Config, storage::Storage, ServerError};

/// [`TemplateCounter`] over the tenancy count limits ([`CountKind::Templates`]).
#[derive(Debug, Clone)]
pub struct CountLimitsTemplateCounter(pub CountLimits);

fn quota_err(err: QuotaError) -> ServiceError {
    match err {
        QuotaError::CountLimitReached { limit, current, .. } => {
            ServiceError::LimitReached { limit, current }
        }
        other => ServiceError::Quota(Box::new(other)),
    }
}

#[async_trait::async_trait]
impl TemplateCounter for CountLimitsTemplateCounter {
    async fn reserve(&self, tenant: TenantId, limit: Option<u64>) -> ServiceResult<()> {
        self.0
            .reserve(tenant, CountKind::Templates, limit)
            .await
            .map(|_| ())
            .map_err(quota_err)
    }

    async fn release(&self, tenant: TenantId) -> ServiceResult<()> {
        self.0
            .release(tenant, CountKind::Templates)
            .await
            .map(|_| ())
            .map_err(quota_err)
    }

    async fn reconcile(&self, tenant: TenantId, actual: u64) -> ServiceResult<()> {
        self.0
            .reconcile(tenant, CountKind::Templates, actual)
            .await
            .map_err(quota_err)
    }
}

/// The Graph API client `IMIX_GRAPH_API_URL` names.
pub fn graph_client(config: &Config) -> Result<Arc<dyn WhatsAppClient>, ServerError> {
    let client = GraphApiClient::new(GraphApiConfig::with_base_url(config.graph_api_url.as_str()))
        .map_err(|e| crate::config::ConfigError {
            variable: "IMIX_GRAPH_API_URL".into(),
            problem: e.to_string(),
        })?;
    Ok(Arc::new(client))
}

/// The account and template services.
pub fn services(
    config: &Config,
    storage: &Storage,
    cipher: &Cipher,
    count_limits: &CountLimits,
) -> Result<(AccountService, TemplateService), ServerError> {
    let client = graph_client(config)?;
    let counter: Arc<dyn TemplateCounter> =
        Arc::new(CountLimitsTemplateCounter(count_limits.clone()));
    let repos = WhatsAppRepos::new(storage.whatsapp.clone(), storage.tenants());
    let audit: Arc<dyn AuditSink> = Arc::new(AuditLog::new(storage.store.audit.clone()));
    let accounts = AccountService::new(
        repos.clone(),
        client.clone(),
        cipher.clone(),
        config.public_url.as_str(),
        counter.clone(),
        audit.clone(),
    );
    let templates = TemplateService::new(repos, client, accounts.clone(), counter, audit);
    Ok((accounts, templates))
}

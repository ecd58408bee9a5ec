//! Wiring of outbound messaging: the send API's quota (tenancy's daily counters), the
//! stored WhatsApp accounts and templates as senders, the dispatcher and the service, and
//! the status mirror ingest feeds.

use std::sync::Arc;

use async_trait::async_trait;
use imix_core::{
    id::{TenantId, WhatsAppAccountId},
    store::{ConflictBackoff, PageRequest, Scope, MAX_PAGE_SIZE},
};
use imix_messaging::{
    ingest::Processor,
    outbound::{
        DispatchConfig, Dispatcher, OutboundService, OutboundStatuses, QuotaRefusal, QuotaTaken,
        SendFailure, SendQuota, Sender, SenderAccounts, SenderState, TemplateInfo,
    },
    storage::outbound::OutboundRepository,
    MessagingError,
};
use imix_tenancy::{
    quota::{DailyQuota, QuotaError},
    TenancyError, TenancyService, TenantStatus,
};
use imix_whatsapp::{
    accounts::AccountService,
    records::VerificationStatus,
    storage::{TemplateFilter, TemplateRepository, WhatsAppAccountRepository},
};
use tokio::sync::Notify;

use crate::{config::Config, storage::Storage, ServerError};

/// Tenancy's daily counters as the send API's quota.
#[derive(Clone)]
pub struct TenancySendQuota(
    pub TenancyService,
    pub Arc<dyn imix_tenancy::storage::TenantRepository>,
);

fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> QuotaRefusal {
    QuotaRefusal::Unavailable(Box::new(e))
}

#[async_trait]
impl SendQuota for TenancySendQuota {
    async fn tenant_active(&self, tenant: TenantId) -> Result<bool, QuotaRefusal> {
        match self.1.get(tenant).await {
            Ok(t) => Ok(t.status == TenantStatus::Active),
            Err(imix_core::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn take(&self, tenant: TenantId, media: bool) -> Result<QuotaTaken, QuotaRefusal> {
        match self.0.consume_for_send(tenant, 1, media).await {
            Ok(consumed) => Ok(QuotaTaken {
                day: consumed.day,
                media,
                returned: false,
            }),
            Err(TenancyError::TenantDeactivated) => Err(QuotaRefusal::TenantDeactivated),
            Err(TenancyError::Quota(QuotaError::LimitReached {
                quota,
                limit,
                used,
                resets_at,
            })) => Err(QuotaRefusal::LimitReached {
                limit_name: quota.as_str().to_owned(),
                limit,
                used,
                resets_at,
            }),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn give_back(&self, tenant: TenantId, taken: &QuotaTaken) -> Result<(), QuotaRefusal> {
        let quota = self.0.quota();
        quota
            .release(tenant, DailyQuota::Messages, 1, taken.day)
            .await
            .map_err(unavailable)?;
        if taken.media {
            quota
                .release(tenant, DailyQuota::Media, 1, taken.day)
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }
}

/// The stored WhatsApp accounts and templates, as the send API and the dispatcher read
/// them.
#[derive(Clone)]
pub struct StoredSenders {
    accounts: Arc<dyn WhatsAppAccountRepository>,
    templates: Arc<dyn TemplateRepository>,
    service: AccountService,
    /// Emails the tenant's admins when an account's sending is paused.
    alerts: Option<crate::admin_alerts::AdminAlerts>,
}

impl StoredSenders {
    /// Over WhatsApp's storage; tokens opened by `service`.
    pub fn new(storage: &Storage, service: AccountService) -> Self {
        Self {
            accounts: storage.whatsapp.accounts.clone(),
            templates: storage.whatsapp.templates.clone(),
            service,
            alerts: None,
        }
    }

    /// Tells the tenant's admins through `alerts` when Meta refuses an account's token.
    pub fn with_alerts(mut self, alerts: crate::admin_alerts::AdminAlerts) -> Self {
        self.alerts = Some(alerts);
        self
    }
}

#[async_trait]
impl SenderAccounts for StoredSenders {
    async fn state(&self, account: WhatsAppAccountId) -> imix_messaging::Result<SenderState> {
        let a = self.accounts.get(Scope::Platform, account).await?;
        Ok(SenderState {
            tenant_id: a.tenant_id,
            phone_number_id: a.phone_number_id,
            verified: a.verification.status == VerificationStatus::Verified,
            paused: a.verification.status == VerificationStatus::Failed,
        })
    }

    async fn sender(&self, account: WhatsAppAccountId) -> imix_messaging::Result<Sender> {
        let a = self.accounts.get(Scope::Platform, account).await?;
        let token = self
            .service
            .access_token(&a)
            .map_err(|e| MessagingError::Secret {
                account,
                source: Box::new(e),
            })?;
        Ok(Sender {
            paused: a.verification.status != VerificationStatus::Verified,
            phone_number_id: a.phone_number_id,
            token,
            max_messages_per_second: a.max_messages_per_second,
        })
    }

    async fn template(
        &self,
        account: WhatsAppAccountId,
        name: &str,
        language: &str,
    ) -> imix_messaging::Result<Option<TemplateInfo>> {
        let filter = TemplateFilter {
            account_id: Some(account),
            status: None,
        };
        let mut page = PageRequest::first(MAX_PAGE_SIZE);
        loop {
            let list = self
                .templates
                .list(Scope::Platform, filter.clone(), page.clone())
                .await?;
            if let Some(t) = list
                .items
                .into_iter()
                .find(|t| t.name == name && t.language == language)
            {
                return Ok(Some(TemplateInfo {
                    status: t.status,
                    category: t.category,
                    components: t.components,
                }));
            }
            match list.next_cursor {
                Some(c) => page.cursor = Some(c),
                None => return Ok(None),
            }
        }
    }

    async fn authentication_failed(
        &self,
        account: WhatsAppAccountId,
        error: &SendFailure,
    ) -> imix_messaging::Result<()> {
        let mut backoff = ConflictBackoff::new();
        while backoff.next_attempt().await {
            let mut a = self.accounts.get(Scope::Platform, account).await?;
            if a.verification.status == VerificationStatus::Failed {
                return Ok(());
            }
            a.verification.status = VerificationStatus::Failed;
            a.verification.checked_at = Some(imix_core::now());
            a.verification.last_error = Some(format!(
                "Meta refused the access token while sending ({}): sending is paused until the account is verified again",
                error.message
            ));
            a.updated_at = imix_core::now();
            match self.accounts.update(Scope::Platform, &a).await {
                Ok(_) => {
                    // The tenant's admins see it on the account (verification `failed`
                    // with this reason) and are emailed, once per pause: only the update
                    // that flagged the account gets here. The log carries it for the
                    // operator.
                    tracing::error!(target: "imix_whatsapp", %account, tenant = %a.tenant_id, code = ?error.code, message = %error.message, "access token refused while sending: account flagged, its queue paused");
                    if let Some(alerts) = &self.alerts {
                        let reason = match error.code {
                            Some(code) => format!("{code}: {}", error.message),
                            None => error.message.clone(),
                        };
                        alerts
                            .tell_admins(a.tenant_id, |tenant_name| {
                                imix_notify::templates::EmailContent::SendingPaused {
                                    tenant_name,
                                    phone_number: a.display_phone_number.clone(),
                                    reason: reason.clone(),
                                }
                            })
                            .await;
                    }
                    return Ok(());
                }
                Err(imix_core::Error::VersionConflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

/// The outbound parts, built once at start.
#[derive(Clone, Debug)]
pub struct Outbound {
    /// The send API.
    pub service: OutboundService,
    /// The worker that hands queued messages to Meta.
    pub dispatcher: Dispatcher,
    /// What ingest mirrors outbound statuses to.
    pub statuses: OutboundStatuses,
}

/// The outbound records and the status mirror over them (give the mirror to every
/// [`Processor`] that applies statuses).
pub fn statuses(
    storage: &Storage,
    tenancy: &TenancyService,
) -> Result<(Arc<dyn OutboundRepository>, OutboundStatuses), ServerError> {
    let records = imix_messaging::storage::outbound::open(&storage.store.backend)?;
    let quota: Arc<dyn SendQuota> = Arc::new(TenancySendQuota(
        tenancy.clone(),
        storage.tenancy.tenants.clone(),
    ));
    Ok((records.clone(), OutboundStatuses::new(records, Some(quota))))
}

/// Builds the send API and its dispatcher. `processor` applies held statuses to messages
/// once Meta accepted them (the ingest worker's, so events and mirrors are the same).
pub fn outbound(
    config: &Config,
    storage: &Storage,
    tenancy: &TenancyService,
    accounts: &AccountService,
    processor: Processor,
    alerts: crate::admin_alerts::AdminAlerts,
) -> Result<Outbound, ServerError> {
    let (records, statuses) = statuses(storage, tenancy)?;
    let quota: Arc<dyn SendQuota> = Arc::new(TenancySendQuota(
        tenancy.clone(),
        storage.tenancy.tenants.clone(),
    ));
    let senders: Arc<dyn SenderAccounts> =
        Arc::new(StoredSenders::new(storage, accounts.clone()).with_alerts(alerts));
    let client = crate::whatsapp::graph_client(config)?;
    let wake = Arc::new(Notify::new());
    // Files of ours (media `blob`s): the stored inbound media, uploaded to Meta on send.
    let media_jobs = imix_messaging::storage::media::open(&storage.store.backend)?;
    let uploads = imix_messaging::outbound::media_upload::MediaUploads::new(
        media_jobs.clone(),
        storage.store.blobs.clone(),
        imix_messaging::storage::outbound_media::open(&storage.store.backend)?,
        client.clone(),
    );
    let service = OutboundService::new(
        storage.messaging.clone(),
        records.clone(),
        senders.clone(),
        quota.clone(),
        client.clone(),
        wake.clone(),
    )
    .with_stored_media(media_jobs);
    let dispatcher = Dispatcher::new(
        records,
        storage.messaging.clone(),
        senders,
        client,
        quota,
        processor,
        wake,
        DispatchConfig {
            lease: std::time::Duration::from_secs(config.outbound_lease_seconds),
            ..DispatchConfig::default()
        },
    )
    .with_media_uploads(uploads);
    // Replicas sharing Redis share the queue and each number's rate limit through it.
    let (service, dispatcher) = match &config.redis_url {
        Some(url) => {
            use secrecy::ExposeSecret;
            let client = redis::Client::open(url.expose_secret()).map_err(|e| {
                crate::config::ConfigError {
                    variable: "REDIS_URL".into(),
                    problem: e.to_string(),
                }
            })?;
            crate::outbound_redis::replicated(config, client, service, dispatcher)
        }
        None => (service, dispatcher),
    };
    Ok(Outbound {
        service,
        dispatcher,
        statuses,
    })
}

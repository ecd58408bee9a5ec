//! Wiring of messaging: webhook ingest (receiver and worker) over the stored WhatsApp
//! accounts, whose app secrets verify the deliveries.

use std::sync::Arc;

use imix_messaging::{
    events::EventSink,
    ingest::{IngestWorker, Processor, Receiver, WorkerConfig},
};
use imix_whatsapp::accounts::AccountService;
use tokio::sync::Notify;

use crate::{storage::Storage, webhooks::AccountKeys};

/// The webhook receiver and the worker that processes what it stored, sharing a wake-up;
/// the worker reports what it changes to `events` (live events), queues inbound media
/// in `media`, assigns new conversations by [`round_robin`] when a tenant turned it on, and
/// mirrors the statuses of messages sent through the send API to `outbound`, and makes
/// the auto-reply jobs of inbound text messages in `auto_reply`.
pub fn ingest(
    storage: &Storage,
    accounts: &AccountService,
    events: Arc<dyn EventSink>,
    media: imix_messaging::media::MediaQueue,
    outbound: imix_messaging::outbound::OutboundStatuses,
    auto_reply: imix_messaging::auto_reply::AutoReplyQueue,
) -> (Receiver, IngestWorker) {
    let keys = Arc::new(AccountKeys::new(
        storage.whatsapp.accounts.clone(),
        accounts.clone(),
    ));
    let wake = Arc::new(Notify::new());
    let receiver = Receiver::new(
        keys.clone(),
        storage.messaging.deliveries.clone(),
        wake.clone(),
    );
    let worker = IngestWorker::new(
        storage.messaging.deliveries.clone(),
        Processor::new(storage.messaging.clone(), keys)
            .with_events(events)
            .with_media(media)
            .with_round_robin(round_robin(storage))
            .with_account_events(Arc::new(WhatsAppAccountEvents::new(&storage.whatsapp)))
            .with_outbound(outbound)
            .with_auto_reply(auto_reply),
        wake,
        WorkerConfig::default(),
    );
    (receiver, worker)
}

/// Tenants' inbox settings and the round-robin over their agents, on the store's settings
/// and counters (shared by replicas).
pub fn round_robin(storage: &Storage) -> imix_messaging::assign::RoundRobin {
    imix_messaging::assign::RoundRobin::new(
        storage.store.settings.clone(),
        storage.store.counters.clone(),
        Arc::new(TenancyAssignees::new(storage.tenancy.users.clone())),
    )
}

/// Who may be assigned conversations: an active user of the tenant whose role lets them
/// reply.
pub struct TenancyAssignees {
    users: Arc<dyn imix_tenancy::storage::UserRepository>,
}

impl TenancyAssignees {
    /// Over tenancy's users.
    pub fn new(users: Arc<dyn imix_tenancy::storage::UserRepository>) -> Self {
        Self { users }
    }
}

#[async_trait::async_trait]
impl imix_messaging::Assignees for TenancyAssignees {
    async fn can_be_assigned(
        &self,
        tenant: imix_core::id::TenantId,
        user: imix_core::id::UserId,
    ) -> imix_messaging::Result<bool> {
        use imix_core::access::Permission;
        let found = match self
            .users
            .get(imix_core::store::Scope::Tenant(tenant), user)
            .await
        {
            Ok(found) => found,
            Err(imix_core::Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        let custom: Vec<Permission> = found
            .permissions
            .iter()
            .filter_map(|p| p.parse().ok())
            .collect();
        let permissions = imix_tenancy::permission::tenant_role_permissions(found.role, &custom);
        Ok(found.status == imix_tenancy::UserStatus::Active
            && permissions.contains(&Permission::ConversationsReply))
    }

    async fn agents(
        &self,
        tenant: imix_core::id::TenantId,
    ) -> imix_messaging::Result<Vec<imix_core::id::UserId>> {
        use imix_core::{
            access::Permission,
            store::{PageRequest, Scope, MAX_PAGE_SIZE},
        };
        let mut agents = Vec::new();
        let mut page = PageRequest::first(MAX_PAGE_SIZE);
        loop {
            let list = self.users.list(Scope::Tenant(tenant), page.clone()).await?;
            for user in list.items {
                // The Agent role only: supervisors and managers answer too, but are not
                // handed conversations by rotation.
                let replies = imix_tenancy::permission::tenant_role_permissions(user.role, &[])
                    .contains(&Permission::ConversationsReply);
                if user.role == imix_tenancy::Role::Agent
                    && user.status == imix_tenancy::UserStatus::Active
                    && replies
                {
                    agents.push(user.id);
                }
            }
            match list.next_cursor {
                Some(cursor) => page.cursor = Some(cursor),
                None => return Ok(agents),
            }
        }
    }
}

/// Records account changes Meta sends by webhook on the WhatsApp records: a template's
/// review status (`message_template_status_update`), the number's quality and messaging
/// limit (`phone_number_quality_update`), and `account_update` events.
pub struct WhatsAppAccountEvents {
    accounts: Arc<dyn imix_whatsapp::storage::WhatsAppAccountRepository>,
    templates: Arc<dyn imix_whatsapp::storage::TemplateRepository>,
}

impl WhatsAppAccountEvents {
    /// Over WhatsApp's storage.
    pub fn new(storage: &imix_whatsapp::storage::WhatsAppStorage) -> Self {
        Self {
            accounts: storage.accounts.clone(),
            templates: storage.templates.clone(),
        }
    }

    async fn template_status(
        &self,
        account: imix_core::id::WhatsAppAccountId,
        value: &serde_json::Value,
    ) -> imix_messaging::Result<()> {
        use imix_core::store::{ConflictBackoff, PageRequest, Scope, MAX_PAGE_SIZE};
        let meta_id = match value.get("message_template_id") {
            Some(serde_json::Value::Number(n)) => n.to_string(),
            Some(serde_json::Value::String(s)) => s.clone(),
            _ => return Ok(()),
        };
        let Some(event) = value.get("event").and_then(|e| e.as_str()) else {
            return Ok(());
        };
        let reason = value
            .get("reason")
            .and_then(|r| r.as_str())
            .filter(|r| !r.is_empty() && *r != "NONE")
            .map(str::to_owned);
        let filter = imix_whatsapp::storage::TemplateFilter {
            account_id: Some(account),
            status: None,
        };
        let mut backoff = ConflictBackoff::new();
        while backoff.next_attempt().await {
            let mut page = PageRequest::first(MAX_PAGE_SIZE);
            let found = loop {
                let list = self
                    .templates
                    .list(Scope::Platform, filter.clone(), page.clone())
                    .await?;
                if let Some(t) = list.items.into_iter().find(|t| t.meta_id == meta_id) {
                    break Some(t);
                }
                match list.next_cursor {
                    Some(c) => page.cursor = Some(c),
                    None => break None,
                }
            };
            let Some(mut template) = found else {
                tracing::info!(target: "imix_whatsapp", %account, %meta_id, "status update for a template not stored here");
                return Ok(());
            };
            template.status = event.to_owned();
            template.rejected_reason = if event == "REJECTED" {
                reason.clone()
            } else {
                None
            };
            template.updated_at = imix_core::now();
            match self.templates.update(Scope::Platform, &template).await {
                Ok(_) => return Ok(()),
                Err(imix_core::Error::VersionConflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    async fn account_health(
        &self,
        account: imix_core::id::WhatsAppAccountId,
        field: &str,
        value: &serde_json::Value,
    ) -> imix_messaging::Result<()> {
        use imix_core::store::{ConflictBackoff, Scope};
        let mut backoff = ConflictBackoff::new();
        while backoff.next_attempt().await {
            let mut a = self.accounts.get(Scope::Platform, account).await?;
            if field == "phone_number_quality_update" {
                let text = |k: &str| value.get(k).and_then(|v| v.as_str()).map(str::to_owned);
                a.health.quality_rating = text("event").or(a.health.quality_rating);
                a.health.messaging_limit = text("current_limit").or(a.health.messaging_limit);
            } else {
                a.health.last_account_update = Some(value.clone());
            }
            a.health.updated_at = Some(imix_core::now());
            match self.accounts.update(Scope::Platform, &a).await {
                Ok(_) => return Ok(()),
                Err(imix_core::Error::VersionConflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl imix_messaging::ingest::AccountEvents for WhatsAppAccountEvents {
    async fn apply(
        &self,
        account: imix_core::id::WhatsAppAccountId,
        field: &str,
        value: &serde_json::Value,
    ) -> imix_messaging::Result<()> {
        match field {
            "message_template_status_update" => self.template_status(account, value).await,
            "phone_number_quality_update" | "account_update" => {
                self.account_health(account, field, value).await
            }
            other => {
                tracing::info!(target: "imix_whatsapp", %account, field = %other, "account change not recorded");
                Ok(())
            }
        }
    }
}

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
/// the worker reports what it changes to `events` (live events) and queues inbound media
/// in `media`.
pub fn ingest(
    storage: &Storage,
    accounts: &AccountService,
    events: Arc<dyn EventSink>,
    media: imix_messaging::media::MediaQueue,
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
            .with_media(media),
        wake,
        WorkerConfig::default(),
    );
    (receiver, worker)
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
}

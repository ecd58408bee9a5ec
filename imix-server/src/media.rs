//! Wiring of inbound media: the job queue ingest fills, the worker that fetches media from
//! the Graph API (`IMIX_GRAPH_API_URL`) with each account's access token, and the service
//! the API reads and retries through. They share one wake-up, so a new job or a retry is
//! picked up at once rather than at the next poll.

use std::sync::Arc;

use async_trait::async_trait;
use imix_core::{id::WhatsAppAccountId, store::Scope};
use imix_messaging::{
    media::{
        AccountTokens, GraphMediaSource, MediaQueue, MediaService, MediaWorker, MediaWorkerConfig,
    },
    MessagingError,
};
use imix_whatsapp::{
    accounts::AccountService, client::AccessToken, storage::WhatsAppAccountRepository,
};
use tokio::sync::Notify;

use crate::{config::Config, storage::Storage, ServerError};

/// Opens an account's access token from the stored accounts (platform-wide: the job was
/// made from a message of that account, found by a signed delivery).
#[derive(Clone)]
pub struct StoredAccountTokens {
    accounts: Arc<dyn WhatsAppAccountRepository>,
    service: AccountService,
}

impl StoredAccountTokens {
    /// Tokens of `accounts`, opened by `service`.
    pub fn new(accounts: Arc<dyn WhatsAppAccountRepository>, service: AccountService) -> Self {
        Self { accounts, service }
    }
}

#[async_trait]
impl AccountTokens for StoredAccountTokens {
    async fn access_token(
        &self,
        account: WhatsAppAccountId,
    ) -> imix_messaging::Result<AccessToken> {
        let found = self.accounts.get(Scope::Platform, account).await?;
        self.service
            .access_token(&found)
            .map_err(|e| MessagingError::Secret {
                account,
                source: Box::new(e),
            })
    }
}

/// Inbound media's parts, built once at start.
#[derive(Clone, Debug)]
pub struct Media {
    /// Creates jobs for stored messages (give it to the ingest processor).
    pub queue: MediaQueue,
    /// Fetches due jobs (run beside the ingest worker).
    pub worker: MediaWorker,
    /// Serves stored media and retries jobs (the API's).
    pub service: MediaService,
}

/// Builds the media queue, worker and service on `storage`, fetching with the Graph API
/// client `config` names and the tokens `accounts` opens.
pub fn media(
    config: &Config,
    storage: &Storage,
    accounts: &AccountService,
) -> Result<Media, ServerError> {
    let jobs = imix_messaging::storage::media::open(&storage.store.backend)?;
    let wake = Arc::new(Notify::new());
    let tokens = Arc::new(StoredAccountTokens::new(
        storage.whatsapp.accounts.clone(),
        accounts.clone(),
    ));
    let source = Arc::new(GraphMediaSource::new(
        crate::whatsapp::graph_client(config)?,
        tokens,
    ));
    Ok(Media {
        queue: MediaQueue::new(jobs.clone(), wake.clone()),
        worker: MediaWorker::new(
            jobs.clone(),
            source,
            storage.store.blobs.clone(),
            wake.clone(),
            MediaWorkerConfig::default(),
        ),
        service: MediaService::new(
            storage.messaging.clone(),
            jobs,
            storage.store.blobs.clone(),
            wake,
        ),
    })
}

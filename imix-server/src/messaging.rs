//! Wiring of messaging: webhook ingest (receiver and worker) over the stored WhatsApp
//! accounts, whose app secrets verify the deliveries.

use std::sync::Arc;

use imix_messaging::ingest::{IngestWorker, Processor, Receiver, WorkerConfig};
use imix_whatsapp::accounts::AccountService;
use tokio::sync::Notify;

use crate::{storage::Storage, webhooks::AccountKeys};

/// The webhook receiver and the worker that processes what it stored, sharing a wake-up.
pub fn ingest(storage: &Storage, accounts: &AccountService) -> (Receiver, IngestWorker) {
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
        Processor::new(storage.messaging.clone(), keys),
        wake,
        WorkerConfig::default(),
    );
    (receiver, worker)
}

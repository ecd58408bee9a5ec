//! Wiring of event subscriptions: the service over the store, observing the live-event
//! bus (every recorded event of a tenant becomes stored deliveries for its endpoints),
//! and the worker that sends them.

use imix_subscriptions::{worker::DeliveryWorker, SubscriptionService, SubscriptionsConfig};

use crate::{config::Config, storage::Storage};

/// The service, subscribed to `bus`, and its delivery worker (not started).
pub fn subscriptions(
    config: &Config,
    storage: &Storage,
    cipher: &imix_core::crypto::Cipher,
    bus: &imix_messaging::events::EventBus,
    alerts: crate::admin_alerts::AdminAlerts,
) -> (SubscriptionService, DeliveryWorker) {
    let service = SubscriptionService::new(
        storage.subscriptions.clone(),
        cipher.clone(),
        SubscriptionsConfig {
            allow_private_targets: config.allow_private_webhook_targets,
            retry_base: config.webhook_retry_base,
            max_attempts: config.webhook_max_attempts,
            ..SubscriptionsConfig::default()
        },
        storage.store.audit.clone(),
    )
    // An endpoint disabled after repeated failures: its tenant's admins are emailed.
    .with_alerts(std::sync::Arc::new(alerts));
    bus.observe(std::sync::Arc::new(service.clone()));
    let worker = DeliveryWorker::new(service.clone());
    (service, worker)
}
